// The live editing client state machine (docs/protocol.md, "Client state"), with no DOM and no
// socket: messages come in through receive(), go out through the `send` callback, and changes
// are reported to listeners. live.js binds it to a WebSocket, app.js to the page.
//
// State: `rev` and `serverText` (the server's text at rev), at most one edit `awaiting` its ack
// ({ref, delta}, kept transformed onto rev) and a `buffer` of later local edits composed into
// one delta (on top of awaiting). The local text is always serverText + awaiting + buffer.

import {
  apply, compose, diff, invert, transform, transformCursor,
} from './delta.js';

export function randomId(n = 12) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = new Uint8Array(n);
  (globalThis.crypto || { getRandomValues: (b) => b.map(() => Math.floor(Math.random() * 256)) })
    .getRandomValues(bytes);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

export class OTClient {
  /**
   * @param {object} options
   * @param {string} [options.sessionId] prefix of the edit refs (`${sessionId}:${counter}`)
   * @param {(msg: object) => void} [options.send] sends one message to the server
   */
  constructor({ sessionId = randomId(), send = () => {} } = {}) {
    this.sessionId = sessionId;
    this.send = send;
    this.counter = 0;
    this.rev = null; // null until the first hello
    this.serverText = '';
    this.text = '';
    this.awaiting = null; // {ref, delta}
    this.buffer = null; // delta
    this.synced = false; // a hello arrived on the current connection
    this.clientId = null;
    this.title = '';
    this.pendingTitle = null; // a title set while not synced
    this.savedRev = null;
    this.peers = new Map(); // client id -> {client, name, cursor} (cursor in server coordinates)
    this.cursor = null; // the local cursor, in local text coordinates
    this.sentCursorClean = false; // the last presence was sent with nothing pending
    this.deleted = false;
    this.forceFull = false; // reconnect without `since` (rebase onto the server's text)
    this.epoch = null; // the server's name for its revision numbering (from `hello`)
    this.listeners = new Map();
  }

  // --- events ------------------------------------------------------------------------------

  /** Listen to 'text' ({text, delta, source, client}), 'title', 'peers', 'state', 'error', 'deleted', 'hello'. */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, payload) {
    for (const fn of this.listeners.get(event) || []) fn(payload);
  }

  // --- state -------------------------------------------------------------------------------

  get pending() {
    return this.awaiting !== null || this.buffer !== null;
  }

  /** Everything local is on the server and the server has stored it. */
  get saved() {
    return !this.pending && this.rev !== null && this.savedRev !== null && this.savedRev >= this.rev;
  }

  /** The local edits the server has not acknowledged, as one delta on serverText. */
  pendingDelta() {
    if (this.awaiting && this.buffer) return compose(this.awaiting.delta, this.buffer);
    if (this.awaiting) return this.awaiting.delta;
    return this.buffer || [];
  }

  nextRef() {
    this.counter += 1;
    return `${this.sessionId}:${this.counter}`;
  }

  /** A peer's cursor in local text coordinates (through the pending local edits). */
  peerCursor(peer) {
    let c = peer.cursor;
    if (!c) return null;
    if (this.awaiting) c = transformCursor(c, this.awaiting.delta, false);
    if (this.buffer) c = transformCursor(c, this.buffer, false);
    return c;
  }

  // --- connection --------------------------------------------------------------------------

  /** The `since` query parameter for the next connection (null on the first one). */
  since() {
    return this.forceFull ? null : this.rev;
  }

  /** The connection is gone: keep everything and wait for the next hello. */
  disconnected() {
    const was = this.synced;
    this.synced = false;
    this.peers.clear();
    if (was) {
      this.emit('peers', this.peers);
      this.emit('state', this);
    }
  }

  /** Handle one message from the server (an object, already parsed). */
  receive(msg) {
    switch (msg && msg.type) {
      case 'hello': return this.onHello(msg);
      case 'ack': return this.onAck(msg.rev, msg.ref);
      case 'edit': return this.onEdit(msg.rev, msg.delta, msg.client);
      case 'resync': return this.onResync(msg);
      case 'saved':
        this.savedRev = Math.max(this.savedRev ?? 0, msg.rev);
        return this.emit('state', this);
      case 'title':
        if (this.pendingTitle === null) {
          this.title = msg.title;
          this.emit('title', { title: msg.title, client: msg.client });
        }
        return undefined;
      case 'presence': {
        const peer = this.peers.get(msg.client) || { client: msg.client, name: msg.name, cursor: null };
        peer.name = msg.name ?? peer.name;
        peer.cursor = msg.cursor || null;
        this.peers.set(msg.client, peer);
        return this.emit('peers', this.peers);
      }
      case 'join':
        this.peers.set(msg.client, { client: msg.client, name: msg.name, cursor: null });
        return this.emit('peers', this.peers);
      case 'leave':
        this.peers.delete(msg.client);
        return this.emit('peers', this.peers);
      case 'error': return this.onError(msg);
      case 'deleted':
        this.deleted = true;
        return this.emit('deleted', msg);
      default:
        return undefined;
    }
  }

  onHello(msg) {
    this.clientId = msg.client;
    this.epoch = msg.epoch || null; // the numbering of `rev` (each server process has its own)
    // the peers' cursors are at msg.rev: set them once the missed edits are processed
    this.peers = new Map();
    const first = this.rev === null;
    if (first) this.savedRev = msg.rev; // what was loaded is stored (or `saved` will say)
    this.forceFull = false;
    if (first && !this.pending) {
      this.rev = msg.rev;
      this.serverText = msg.content;
      this.text = msg.content;
      this.emit('text', { text: this.text, delta: null, source: 'reset', client: null });
    } else if (Array.isArray(msg.missed) && msg.since === this.rev) {
      for (const m of msg.missed) {
        if (this.awaiting && m.ref !== null && m.ref !== undefined && m.ref === this.awaiting.ref) {
          this.onAck(m.rev, m.ref);
        } else {
          this.onEdit(m.rev, m.delta, m.client);
        }
      }
      if (this.rev !== msg.rev || this.serverText !== msg.content) {
        this.rebaseOnto(diff(this.serverText, msg.content), msg.rev, msg.content);
      }
    } else {
      this.rebaseOnto(diff(this.serverText, msg.content), msg.rev, msg.content);
    }
    this.peers = new Map((msg.peers || []).map((p) => [p.client, { ...p, cursor: p.cursor || null }]));
    if (this.pendingTitle !== null) {
      this.title = this.pendingTitle;
    } else if (this.title !== msg.title) {
      this.title = msg.title;
      this.emit('title', { title: msg.title, client: null });
    }
    this.synced = true;
    if (this.pendingTitle !== null) {
      const t = this.pendingTitle;
      this.pendingTitle = null;
      if (t !== msg.title) this.send({ type: 'title', title: t });
    }
    this.flush();
    this.sentCursorClean = false;
    if (this.cursor) this.sendCursor();
    this.emit('peers', this.peers);
    this.emit('hello', msg);
    this.emit('state', this);
  }

  /** Send what is pending: the awaiting edit again (same ref), else the buffer. */
  flush() {
    if (!this.synced) return;
    if (!this.awaiting && this.buffer) {
      this.awaiting = { ref: this.nextRef(), delta: this.buffer };
      this.buffer = null;
    }
    if (this.awaiting) {
      this.send({ type: 'edit', rev: this.rev, delta: this.awaiting.delta, ref: this.awaiting.ref });
    }
  }

  onAck(rev, ref) {
    if (!this.awaiting || (ref !== undefined && ref !== null && ref !== this.awaiting.ref)) return;
    if (rev <= this.rev) {
      // The server had applied this edit before (its ref was known): after a rebase by diff it is
      // in serverText already, and locally twice. Undo the local copy.
      this.dropAwaiting();
    } else {
      this.serverText = apply(this.serverText, this.awaiting.delta);
      for (const peer of this.peers.values()) {
        peer.cursor = transformCursor(peer.cursor, this.awaiting.delta, false);
      }
      this.rev = rev;
      this.awaiting = null;
    }
    this.flush();
    if (!this.pending && this.cursor && !this.sentCursorClean) this.sendCursor();
    this.emit('state', this);
  }

  /** Remove the awaiting edit from the local text, keeping the buffer (rebased past the undo). */
  dropAwaiting() {
    const a = this.awaiting.delta;
    this.awaiting = null;
    const undo = invert(a, this.serverText); // on serverText + a, i.e. the base of the buffer
    let local = undo;
    if (this.buffer) {
      local = transform(undo, this.buffer, true);
      this.buffer = transform(this.buffer, undo, false);
      if (!this.buffer.length) this.buffer = null;
    }
    this.text = apply(this.text, local);
    this.cursor = transformCursor(this.cursor, local, false);
    this.emit('text', { text: this.text, delta: local, source: 'undo', client: null });
  }

  /** Take back every local change the server has not applied (it refused them). */
  discardPending() {
    this.pendingTitle = null;
    if (!this.pending) return;
    const undo = invert(this.pendingDelta(), this.serverText);
    this.awaiting = null;
    this.buffer = null;
    this.text = apply(this.text, undo);
    this.cursor = transformCursor(this.cursor, undo, false);
    this.emit('text', { text: this.text, delta: undo, source: 'undo', client: null });
  }

  onEdit(rev, delta, client = null) {
    if (this.rev !== null && rev <= this.rev) return; // already have it
    this.applyServerDelta(delta, client);
    this.rev = rev;
    this.emit('state', this);
  }

  /**
   * The server text changes by `delta`: transform the pending edits past it (it goes first) and
   * apply it, transformed past them, to the local text.
   */
  applyServerDelta(delta, client = null) {
    const serverText = apply(this.serverText, delta);
    let d = delta;
    let awaiting = this.awaiting;
    let buffer = this.buffer;
    if (awaiting) {
      const a2 = transform(awaiting.delta, d, false);
      d = transform(d, awaiting.delta, true);
      awaiting = { ref: awaiting.ref, delta: a2 };
    }
    if (buffer) {
      const b2 = transform(buffer, d, false);
      d = transform(d, buffer, true);
      buffer = b2.length ? b2 : null;
    }
    const text = apply(this.text, d);
    // all computed: commit
    this.serverText = serverText;
    this.awaiting = awaiting;
    this.buffer = buffer;
    this.text = text;
    this.cursor = transformCursor(this.cursor, d, false);
    for (const peer of this.peers.values()) {
      peer.cursor = transformCursor(peer.cursor, delta, client === null || peer.client === client);
    }
    if (d.length) this.emit('text', { text, delta: d, source: 'remote', client });
  }

  /** Rebase the pending edits onto `content` at `rev`, `d` taking serverText to content. */
  rebaseOnto(d, rev, content) {
    if (d.length) this.applyServerDelta(d, null);
    this.serverText = content;
    this.rev = rev;
  }

  onResync(msg) {
    // The awaiting edit was not applied: rebase everything onto the given text and send again.
    this.rebaseOnto(diff(this.serverText, msg.content), msg.rev, msg.content);
    this.flush();
    this.emit('state', this);
  }

  onError(msg) {
    const mine = this.awaiting && msg.ref !== undefined && msg.ref !== null && msg.ref === this.awaiting.ref;
    if (msg.code === 'forbidden') {
      // we may only read this note (now): nothing we sent was applied and nothing will be.
      // Take it all back; a refused title is put right by the server's, in the next hello.
      this.discardPending();
      this.forceFull = true;
      this.emit('state', this);
      this.emit('resync-needed', msg);
    } else if (mine && msg.code === 'too_large') {
      // the edit was rejected for good: take it back so we stay in step with the server
      this.dropAwaiting();
      this.flush();
      this.emit('state', this);
    } else if (mine || msg.code === 'future_rev') {
      // we are out of step with the server: start over from its text, keeping what was typed
      this.forceFull = true;
      this.emit('resync-needed', msg);
    }
    this.emit('error', msg);
  }

  // --- local changes -----------------------------------------------------------------------

  /** A local edit (a delta on the current local text). */
  localEdit(delta) {
    if (!delta || !delta.length) return;
    this.text = apply(this.text, delta);
    this.cursor = transformCursor(this.cursor, delta, true);
    if (this.awaiting === null && this.synced) {
      this.awaiting = { ref: this.nextRef(), delta };
      this.flush();
    } else {
      this.buffer = this.buffer ? compose(this.buffer, delta) : delta;
      if (!this.buffer.length) this.buffer = null;
    }
    this.sentCursorClean = false;
    this.emit('state', this);
  }

  /** The local text became `newText` (cursor: the caret after the change, in code points). */
  localText(newText, cursor = null) {
    const d = diff(this.text, newText, cursor);
    this.localEdit(d);
    return d;
  }

  setTitle(title) {
    if (title === this.title && this.pendingTitle === null) return;
    this.title = title;
    if (this.synced) this.send({ type: 'title', title });
    else this.pendingTitle = title;
  }

  /** The local cursor {index, length} (code points in the local text) moved; sends presence. */
  setCursor(cursor) {
    this.cursor = cursor;
    this.sendCursor();
  }

  sendCursor() {
    if (!this.synced) return;
    let c = this.cursor;
    if (c && this.pending) {
      // express it at `rev`: map it back through the pending edits
      const p = this.pendingDelta();
      c = transformCursor(c, invert(p, this.serverText), false);
    }
    this.sentCursorClean = !this.pending;
    this.send({ type: 'presence', rev: this.rev, cursor: c });
  }

  /** A plain snapshot (for tests and automation). */
  state() {
    return {
      rev: this.rev,
      text: this.text,
      serverText: this.serverText,
      title: this.title,
      pending: this.pending,
      awaiting: this.awaiting ? { ...this.awaiting } : null,
      buffer: this.buffer,
      synced: this.synced,
      savedRev: this.savedRev,
      saved: this.saved,
      clientId: this.clientId,
      peers: [...this.peers.values()].map((p) => ({ ...p, localCursor: this.peerCursor(p) })),
    };
  }
}
