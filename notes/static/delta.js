// Deltas over text counted in Unicode code points (see docs/protocol.md).
//
// A delta is a list of ops walked from the start of a text: {retain: n} keeps n code points,
// {insert: "s"} inserts s, {delete: n} removes n code points. JavaScript strings are UTF-16, so
// every position here is converted at the boundary: nothing in this module ever splits a
// surrogate pair. The canonical form (what every function returns) merges adjacent ops of one
// kind, puts an insert before a delete it touches and drops a trailing retain, as the server does.

// --- code points <-> UTF-16 ------------------------------------------------------------------

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/** Number of code points in a string. */
export function cpLength(str) {
  let n = str.length;
  for (let i = 0; i < str.length - 1; i++) {
    if (isHigh(str.charCodeAt(i)) && isLow(str.charCodeAt(i + 1))) {
      n--;
      i++;
    }
  }
  return n;
}

/** UTF-16 offset of code point `cp` in `str` (clamped to the string). */
export function cpToUtf16(str, cp, from = 0, fromCp = 0) {
  let u = from;
  let c = fromCp;
  while (c < cp && u < str.length) {
    u += isHigh(str.charCodeAt(u)) && u + 1 < str.length && isLow(str.charCodeAt(u + 1)) ? 2 : 1;
    c++;
  }
  return u;
}

/** Code point index of UTF-16 offset `u` in `str`; an offset inside a pair counts as after it. */
export function utf16ToCp(str, u) {
  const end = Math.min(u, str.length);
  let c = 0;
  let i = 0;
  while (i < end) {
    i += isHigh(str.charCodeAt(i)) && i + 1 < str.length && isLow(str.charCodeAt(i + 1)) ? 2 : 1;
    c++;
  }
  return c;
}

/** Code point slice of a string: cpSlice("a😀b", 1, 2) === "😀". */
export function cpSlice(str, start, end = Infinity) {
  const s = cpToUtf16(str, start);
  if (end === Infinity) return str.slice(s);
  return str.slice(s, cpToUtf16(str, end, s, start));
}

// --- ops -------------------------------------------------------------------------------------

const kindOf = (op) => ('insert' in op ? 'insert' : 'retain' in op ? 'retain' : 'delete');
const sizeOf = (op) => ('insert' in op ? cpLength(op.insert) : 'retain' in op ? op.retain : op.delete);

/** Throw unless `delta` is a well-formed list of ops. */
export function validate(delta) {
  if (!Array.isArray(delta)) throw new TypeError('a delta must be an array of ops');
  delta.forEach((op, i) => {
    const keys = op && typeof op === 'object' ? Object.keys(op) : [];
    if (keys.length !== 1) throw new TypeError(`op ${i} must have exactly one of retain, insert, delete`);
    const [k] = keys;
    const v = op[k];
    if (k === 'insert') {
      if (typeof v !== 'string' || v === '') throw new TypeError(`op ${i}: insert must be a non-empty string`);
    } else if (k === 'retain' || k === 'delete') {
      if (!Number.isInteger(v) || v < 1) throw new TypeError(`op ${i}: ${k} must be an integer >= 1`);
    } else {
      throw new TypeError(`op ${i}: unknown op ${k}`);
    }
  });
  return delta;
}

/** Appends ops to a list keeping it canonical. */
class Builder {
  constructor() {
    this.ops = [];
  }

  push(kind, value) {
    if (!value) return this;
    const ops = this.ops;
    const last = ops[ops.length - 1];
    if (kind === 'insert' && last && 'delete' in last) {
      const before = ops[ops.length - 2];
      if (before && 'insert' in before) ops[ops.length - 2] = { insert: before.insert + value };
      else ops.splice(ops.length - 1, 0, { insert: value });
    } else if (last && kind in last) {
      ops[ops.length - 1] = { [kind]: last[kind] + value };
    } else {
      ops.push({ [kind]: value });
    }
    return this;
  }

  pushOp(op) {
    const k = kindOf(op);
    return this.push(k, op[k]);
  }

  finish() {
    const ops = this.ops;
    if (ops.length && 'retain' in ops[ops.length - 1]) ops.pop();
    return ops;
  }
}

/** The canonical form of a valid delta (a new array). */
export function normalize(delta) {
  const b = new Builder();
  for (const op of delta) b.pushOp(op);
  return b.finish();
}

/** Reads a delta piece by piece; past its end it yields an endless retain. */
class Walker {
  constructor(ops) {
    this.ops = ops;
    this.i = 0;
    this.offset = 0; // code points consumed of ops[i]
    this.size = ops.length ? sizeOf(ops[0]) : 0;
  }

  done() {
    return this.i >= this.ops.length;
  }

  kind() {
    return this.done() ? 'retain' : kindOf(this.ops[this.i]);
  }

  remaining() {
    return this.done() ? Infinity : this.size - this.offset;
  }

  take(n = Infinity) {
    if (this.done()) return { retain: n };
    const op = this.ops[this.i];
    const k = kindOf(op);
    const count = Math.min(n, this.size - this.offset);
    let piece;
    if (k === 'insert') {
      piece = count === this.size && this.offset === 0
        ? { insert: op.insert }
        : { insert: cpSlice(op.insert, this.offset, this.offset + count) };
    } else {
      piece = { [k]: count };
    }
    this.offset += count;
    if (this.offset >= this.size) {
      this.i++;
      this.offset = 0;
      this.size = this.done() ? 0 : sizeOf(this.ops[this.i]);
    }
    return piece;
  }
}

// --- measuring and applying ------------------------------------------------------------------

/** Code points the delta walks over: the minimum length of a text it fits. */
export function baseLength(delta) {
  let n = 0;
  for (const op of delta) if (!('insert' in op)) n += sizeOf(op);
  return n;
}

/** How much longer (negative: shorter) the delta makes a text, in code points. */
export function lengthChange(delta) {
  let n = 0;
  for (const op of delta) {
    if ('insert' in op) n += cpLength(op.insert);
    else if ('delete' in op) n -= op.delete;
  }
  return n;
}

/** UTF-16 offset `n` code points after UTF-16 offset `u`, or -1 if the text ends first. */
function advance(text, u, n) {
  while (n > 0) {
    if (u >= text.length) return -1;
    u += isHigh(text.charCodeAt(u)) && u + 1 < text.length && isLow(text.charCodeAt(u + 1)) ? 2 : 1;
    n--;
  }
  return u;
}

function pastEnd(text, delta) {
  return new RangeError(
    `the delta reaches code point ${baseLength(delta)} but the text has only ${cpLength(text)}`);
}

/** Apply a delta to a text; throws a RangeError if it reaches past the end. */
export function apply(text, delta) {
  const out = [];
  let u = 0; // UTF-16 position in text
  for (const op of delta) {
    if ('insert' in op) {
      out.push(op.insert);
      continue;
    }
    const end = advance(text, u, 'retain' in op ? op.retain : op.delete);
    if (end < 0) throw pastEnd(text, delta);
    if ('retain' in op) out.push(text.slice(u, end));
    u = end;
  }
  out.push(text.slice(u));
  return out.join('');
}

/** The delta undoing `delta` on `text`: apply(apply(text, d), invert(d, text)) === text. */
export function invert(delta, text) {
  const b = new Builder();
  let u = 0;
  for (const op of delta) {
    if ('insert' in op) {
      b.push('delete', cpLength(op.insert));
      continue;
    }
    const n = 'retain' in op ? op.retain : op.delete;
    const end = advance(text, u, n);
    if (end < 0) throw pastEnd(text, delta);
    if ('retain' in op) b.push('retain', n);
    else b.push('insert', text.slice(u, end));
    u = end;
  }
  return b.finish();
}

// --- transform and compose -------------------------------------------------------------------

/**
 * Rewrite `a` to apply after `b`, both made on the same text. `aFirst` settles inserts at the
 * same position: true puts a's insert before b's. transform(a, b, f) and transform(b, a, !f)
 * lead to the same text (TP1).
 */
export function transform(a, b, aFirst) {
  const out = new Builder();
  const wa = new Walker(a);
  const wb = new Walker(b);
  while (!wa.done()) {
    if (wa.kind() === 'insert' && (aFirst || wb.kind() !== 'insert')) {
      out.pushOp(wa.take());
    } else if (wb.kind() === 'insert') {
      out.push('retain', sizeOf(wb.take()));
    } else {
      const n = Math.min(wa.remaining(), wb.remaining());
      const opA = wa.take(n);
      const opB = wb.take(n);
      if ('delete' in opB) continue; // what a kept or deleted is gone already
      out.pushOp(opA);
    }
  }
  return out.finish();
}

/** One delta doing `a` then `b`: apply(t, compose(a, b)) === apply(apply(t, a), b). */
export function compose(a, b) {
  const out = new Builder();
  const wa = new Walker(a);
  const wb = new Walker(b);
  while (!(wa.done() && wb.done())) {
    if (wb.kind() === 'insert') {
      out.pushOp(wb.take());
    } else if (wa.kind() === 'delete') {
      out.pushOp(wa.take());
    } else if (wb.done()) {
      while (!wa.done()) out.pushOp(wa.take());
    } else if (wa.done()) {
      while (!wb.done()) out.pushOp(wb.take());
    } else {
      const n = Math.min(wa.remaining(), wb.remaining());
      const opA = wa.take(n);
      const opB = wb.take(n);
      if ('retain' in opB) out.pushOp(opA);
      else if ('retain' in opA) out.push('delete', n);
      // b deleting what a inserted: nothing left of either
    }
  }
  return out.finish();
}

// --- carets ----------------------------------------------------------------------------------

/**
 * Move a position (code points) through a delta. An insert exactly at the position pushes it
 * right when `push` is true (the default, as the server does), else the position stays before
 * it. A deleted range holding the position collapses to its start.
 */
export function transformIndex(index, delta, push = true) {
  let offset = 0; // position in the new text reached so far
  for (const op of delta) {
    if (offset > index || (offset === index && !push && !('delete' in op))) break;
    if ('insert' in op) {
      const n = cpLength(op.insert);
      index += n;
      offset += n;
    } else if ('retain' in op) {
      offset += op.retain;
    } else {
      index -= Math.min(op.delete, index - offset);
    }
  }
  return index;
}

/**
 * Move a cursor {index, length} (or null) through a delta. A selection does not grow to take in
 * text inserted at its edges; a collapsed caret is moved with `push` (see transformIndex).
 */
export function transformCursor(cursor, delta, push = true) {
  if (!cursor) return cursor ?? null;
  const start = cursor.index;
  const end = start + (cursor.length || 0);
  if (end === start) {
    const i = transformIndex(start, delta, push);
    return { index: i, length: 0 };
  }
  const s = transformIndex(start, delta, true);
  const e = Math.max(s, transformIndex(end, delta, false));
  return { index: s, length: e - s };
}

// --- diff ------------------------------------------------------------------------------------

/**
 * A delta turning `oldText` into `newText`: the common prefix and suffix are kept and the middle
 * diffed (Myers) or, when that is too costly, replaced. `cursor` (optional, code points in newText) is where the caret ended up after the
 * change; it settles ambiguous cases such as typing "a" in "aa", so the delta says what the user
 * did. Never splits a surrogate pair.
 */
export function diff(oldText, newText, cursor = null) {
  if (oldText === newText) return [];
  const la = oldText.length;
  const lb = newText.length;
  const minLen = Math.min(la, lb);
  let prefix = 0;
  let suffix = 0;
  const scanPrefix = (limit) => {
    let p = 0;
    while (p < limit && oldText.charCodeAt(p) === newText.charCodeAt(p)) p++;
    // never end inside a pair (same high surrogate, different low one)
    if (p > 0 && isHigh(oldText.charCodeAt(p - 1))) p--;
    return p;
  };
  const scanSuffix = (limit) => {
    let s = 0;
    while (s < limit && oldText.charCodeAt(la - 1 - s) === newText.charCodeAt(lb - 1 - s)) s++;
    if (s > 0 && isLow(oldText.charCodeAt(la - s))) s--;
    return s;
  };
  if (cursor !== null && cursor !== undefined) {
    // the unchanged tail lies after the caret: cap the suffix, then take the longest prefix
    const cu = cpToUtf16(newText, cursor);
    suffix = scanSuffix(Math.max(0, Math.min(minLen, lb - cu)));
    prefix = scanPrefix(minLen - suffix);
  } else {
    prefix = scanPrefix(minLen);
    suffix = scanSuffix(minLen - prefix);
  }
  const out = new Builder();
  out.push('retain', utf16ToCp(oldText, prefix));
  const oldMid = oldText.slice(prefix, la - suffix);
  const newMid = newText.slice(prefix, lb - suffix);
  if (oldMid && newMid && !refineMiddle(out, Array.from(oldMid), Array.from(newMid))) {
    out.push('insert', newMid);
    out.push('delete', cpLength(oldMid));
  } else if (!oldMid || !newMid) {
    out.push('insert', newMid);
    out.push('delete', cpLength(oldMid));
  }
  return out.finish();
}

/**
 * Myers' O(ND) diff of two code point arrays, pushed onto `out` as retain/insert/delete. Gives
 * up (returns false, pushing nothing) when the edit distance or the work would be too large;
 * the caller then replaces the middle wholesale. A fine-grained diff matters when rebasing text
 * typed offline: edits elsewhere in the note must not swallow it.
 */
function refineMiddle(out, a, b) {
  const n = a.length;
  const m = b.length;
  const limit = Math.min(n + m, 1000, Math.floor(20_000_000 / (n + m)));
  const off = limit + 1;
  const v = new Int32Array(2 * limit + 3);
  const trace = [];
  let end = -1;
  for (let d = 0; d <= limit && end < 0; d++) {
    trace.push(v.slice(off - d - 1, off + d + 2)); // v[k] for k in [-d-1, d+1], before step d
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1] < v[off + k + 1]) ? v[off + k + 1] : v[off + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[off + k] = x;
      if (x >= n && y >= m) {
        end = d;
        break;
      }
    }
  }
  if (end < 0) return false;
  // walk back from (n, m) to (0, 0)
  const steps = []; // 0 = keep, 1 = insert b[y], 2 = delete a[x] (reversed)
  let x = n;
  let y = m;
  for (let d = end; d > 0; d--) {
    const prev = trace[d]; // index of k in prev: k + d + 1
    const at = (k) => prev[k + d + 1];
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      steps.push(0);
      x--;
      y--;
    }
    if (x === prevX) steps.push(1);
    else steps.push(2);
    x = prevX;
    y = prevY;
  }
  while (x > 0 && y > 0) {
    steps.push(0);
    x--;
    y--;
  }
  x = 0;
  y = 0;
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i];
    if (s === 0) {
      out.push('retain', 1);
      x++;
      y++;
    } else if (s === 1) {
      out.push('insert', b[y]);
      y++;
    } else {
      out.push('delete', 1);
      x++;
    }
  }
  return true;
}
