// What the version history shows, without the DOM: a version's text marked with the changes
// since (from the diff endpoint's delta), and the file name of a download.
//
// The delta turns the version's text into the current one. Its counts are code points, as
// everywhere in the protocol (docs/protocol.md): the text is walked with Array.from, never by
// UTF-16 units, so an emoji is one step and never split.

import { validate } from './delta.js';

/**
 * The version's text cut into pieces: `same` (in both), `del` (in the version, gone now) and
 * `ins` (not in the version, there now), in reading order. Where a stretch is both deleted and
 * inserted (a replacement), the deleted text comes first. Throws a RangeError when the delta
 * does not fit the text (it was made for another one).
 *
 * A character diff of prose keeps stray letters in common ("first line" -> "second text"
 * keeps an "s", a "t", an "e"; "jumps" -> "leaps" keeps "ps"). So that words change whole (as
 * `git diff --word-diff` shows them), an unchanged piece of a word between two changes joins
 * them, and a replacement (something deleted and something inserted) takes the rest of the
 * words it cuts into. A pure insertion or deletion stays exactly as it is ("color" + "u").
 *
 * @param {string} base the version's text
 * @param {Array<object>} delta ops turning `base` into the current text
 * @returns {Array<{kind: 'same'|'del'|'ins', text: string}>}
 */
export function changeSegments(base, delta) {
  validate(delta);
  const chars = Array.from(base);
  // runs: {same} or {del, ins} (a change), alternating
  const runs = [];
  const change = () => {
    const last = runs[runs.length - 1];
    if (last && 'del' in last) return last;
    const run = { del: '', ins: '' };
    runs.push(run);
    return run;
  };
  let at = 0;
  const take = (n) => {
    if (at + n > chars.length) {
      throw new RangeError(`the delta reaches past the end of the text (${chars.length} code points)`);
    }
    const piece = chars.slice(at, at + n).join('');
    at += n;
    return piece;
  };
  const same = (text) => {
    if (!text) return;
    const last = runs[runs.length - 1];
    if (last && 'same' in last) last.same += text;
    else runs.push({ same: text });
  };
  for (const op of delta) {
    if ('retain' in op) same(take(op.retain));
    else if ('delete' in op) change().del += take(op.delete);
    else change().ins += op.insert;
  }
  same(chars.slice(at).join(''));
  const out = [];
  for (const run of wholeWords(runs)) {
    if ('same' in run) out.push({ kind: 'same', text: run.same });
    else {
      if (run.del) out.push({ kind: 'del', text: run.del });
      if (run.ins) out.push({ kind: 'ins', text: run.ins });
    }
  }
  return out;
}

const SPACE = /\s/u;
const isLetter = (ch) => !!ch && !SPACE.test(ch);
const firstChar = (text) => (text ? String.fromCodePoint(text.codePointAt(0)) : '');
const lastChar = (text) => (text ? Array.from(text).pop() : '');

/** Runs with changes grown to whole words (see changeSegments). */
function wholeWords(runs) {
  let current = merged(runs);
  for (;;) {
    let grown = false;
    for (let i = 0; i < current.length; i++) {
      const run = current[i];
      const before = current[i - 1];
      const after = current[i + 1];
      if ('same' in run) {
        // a word's unchanged middle between two changes: one change
        const between = before && after && !SPACE.test(run.same) && (
          isLetter(lastChar(before.del)) || isLetter(lastChar(before.ins))
          || isLetter(firstChar(after.del)) || isLetter(firstChar(after.ins)));
        if (between) {
          before.del += run.same;
          before.ins += run.same;
          run.same = '';
          grown = true;
        }
        continue;
      }
      if (!run.del || !run.ins) continue; // an insertion or a deletion: exact
      if (before && (isLetter(firstChar(run.del)) || isLetter(firstChar(run.ins)))) {
        const piece = /[^\s]*$/u.exec(before.same)[0];
        if (piece) {
          before.same = before.same.slice(0, before.same.length - piece.length);
          run.del = piece + run.del;
          run.ins = piece + run.ins;
          grown = true;
        }
      }
      if (after && (isLetter(lastChar(run.del)) || isLetter(lastChar(run.ins)))) {
        const piece = /^[^\s]*/u.exec(after.same)[0];
        if (piece) {
          after.same = after.same.slice(piece.length);
          run.del += piece;
          run.ins += piece;
          grown = true;
        }
      }
    }
    if (!grown) return current;
    current = merged(current); // an unchanged piece used up: the changes beside it are one
  }
}

/** Without empty unchanged pieces, neighbours of one kind joined. */
function merged(runs) {
  const out = [];
  for (const run of runs) {
    if ('same' in run && !run.same) continue;
    const last = out[out.length - 1];
    if (last && 'del' in last && 'del' in run) {
      last.del += run.del;
      last.ins += run.ins;
    } else if (last && 'same' in last && 'same' in run) {
      last.same += run.same;
    } else {
      out.push(run);
    }
  }
  return out;
}

/** Code points removed and added by a list of segments: {removed, added}. */
export function changeCounts(segments) {
  let removed = 0;
  let added = 0;
  for (const s of segments) {
    if (s.kind === 'del') removed += Array.from(s.text).length;
    else if (s.kind === 'ins') added += Array.from(s.text).length;
  }
  return { removed, added };
}

/**
 * The file name a Content-Disposition header gives (RFC 6266): `filename*=UTF-8''…` first
 * (percent-encoded UTF-8), else `filename="…"` (or unquoted); null when it names none. Only the
 * last path component is kept.
 */
export function dispositionFilename(header) {
  if (!header) return null;
  let name = null;
  const extended = /(?:^|;)\s*filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(header);
  if (extended) {
    try {
      name = decodeURIComponent(extended[2].trim().replace(/^"(.*)"$/, '$1'));
    } catch (err) {
      name = null;
    }
  }
  if (!name) {
    const quoted = /(?:^|;)\s*filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(header);
    const bare = /(?:^|;)\s*filename\s*=\s*([^";]+)/i.exec(header);
    if (quoted) name = quoted[1].replace(/\\(.)/g, '$1');
    else if (bare) name = bare[1].trim();
  }
  if (!name) return null;
  name = name.split(/[\\/]/).pop().trim();
  return name || null;
}

/** A file name for a note's download when the server names none: its title, made safe. */
export function fallbackFilename(title, extension = 'md') {
  const slug = (title || '').normalize('NFKC').toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-+|-+$/g, '').slice(0, 80);
  return `${slug || 'note'}.${extension}`;
}
