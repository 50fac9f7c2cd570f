// Binds an OTClient to the note's websocket: connects, reconnects with backoff (keeping the
// client's state, so nothing typed offline is lost) and reports the connection status.
// No DOM here either; the WebSocket class can be swapped out (tests, other runtimes).

export const CLOSE_NOTE_GONE = 4404;
export const CLOSE_UNAUTHENTICATED = 4401; // not signed in, the session ended, a link revoked
export const CLOSE_FORBIDDEN = 4403; // access to the note was taken away (or a cross-site page)

// Closes after which trying again cannot help: the status to report instead.
const FINAL_CLOSES = {
  [CLOSE_UNAUTHENTICATED]: 'unauthorized',
  [CLOSE_FORBIDDEN]: 'forbidden',
};

/** The socket's URL. `token`: a bearer credential (a share link's) for browsers, which cannot set
 * headers on a websocket; without it the session cookie goes along. */
export function liveUrl(noteId, name, since, loc = globalThis.location, epoch = null, token = null) {
  const scheme = loc.protocol === 'https:' ? 'wss' : 'ws';
  const params = new URLSearchParams({ name });
  if (token) params.set('token', token);
  if (since !== null && since !== undefined) {
    params.set('since', String(since));
    // whose revision numbers `since` counts in: another server process has its own
    if (epoch) params.set('epoch', epoch);
  }
  return `${scheme}://${loc.host}/notes/${encodeURIComponent(noteId)}/live?${params}`;
}

export class LiveConnection {
  /**
   * @param {object} o
   * @param {string} o.noteId
   * @param {string} o.name display name (the `name` query parameter)
   * @param {import('./ot.js').OTClient} o.client
   * @param {string|null} [o.token] sent as ?token= (a share link's); null: the cookie
   * @param {(status: string, info: object) => void} [o.onStatus]
   *   'connecting' | 'connected' | 'reconnecting' | 'offline' | 'deleted' | 'closed', or after a
   *   close that no retry can help, 'unauthorized' (4401: sign in, then start() again; the
   *   client keeps what is pending) or 'forbidden' (4403)
   */
  constructor({
    noteId, name, client, onStatus = () => {}, WebSocketImpl = globalThis.WebSocket,
    url = liveUrl, minDelay = 250, maxDelay = 5000, offlineAfter = 4, token = null,
  }) {
    Object.assign(this, { noteId, name, client, onStatus, WebSocketImpl, url, minDelay, maxDelay, offlineAfter, token });
    this.ws = null;
    this.status = 'idle';
    this.failures = 0; // consecutive connection attempts that never got a hello
    this.timer = null;
    this.stopped = false;
    this.suspended = false;
    this.nextDelay = 0;
    client.send = (msg) => this.send(msg);
    this.offResync = client.on('resync-needed', () => this.drop(0));
    this.onOnline = () => {
      if (!this.ws && !this.stopped && !this.suspended) this.connect();
    };
    globalThis.addEventListener?.('online', this.onOnline);
  }

  setStatus(status, info = {}) {
    this.status = status;
    this.onStatus(status, { failures: this.failures, delay: this.nextDelay, ...info });
  }

  get connected() {
    return this.status === 'connected';
  }

  start() {
    this.stopped = false;
    this.failures = 0;
    this.connect();
    return this;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.suspended) return;
    const url = this.url(this.noteId, this.name, this.client.since(), undefined, this.client.epoch, this.token);
    let ws;
    try {
      ws = new this.WebSocketImpl(url);
    } catch (err) {
      console.error('notes: cannot open the live connection', err);
      this.closed({ code: 1006 });
      return;
    }
    this.ws = ws;
    this.setStatus(this.client.rev === null && this.failures === 0 ? 'connecting' : 'reconnecting');
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.error('notes: a frame that is not JSON', ev.data);
        return;
      }
      try {
        this.client.receive(msg);
      } catch (err) {
        // out of step (a bug, or a frame we cannot apply): start over from the server's text
        console.error('notes: cannot process', msg, err);
        this.client.forceFull = true;
        this.drop(0);
        return;
      }
      if (msg.type === 'hello') {
        this.failures = 0;
        this.setStatus('connected');
      } else if (msg.type === 'deleted') {
        this.setStatus('deleted');
      }
    };
    ws.onclose = (ev) => {
      if (ws === this.ws) this.closed(ev);
    };
    ws.onerror = () => {}; // onclose follows
  }

  send(msg) {
    const ws = this.ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg));
  }

  /** The socket is gone: keep the client's state and try again later (unless the note is gone). */
  closed(ev) {
    this.ws = null;
    this.client.disconnected();
    if (this.stopped) return;
    if (ev.code === 4404 || this.client.deleted) {
      this.stopped = true;
      this.client.deleted = true;
      this.setStatus('deleted', { code: ev.code });
      return;
    }
    if (FINAL_CLOSES[ev.code]) {
      this.stopped = true;
      clearTimeout(this.timer);
      this.setStatus(FINAL_CLOSES[ev.code], { code: ev.code, reason: ev.reason || '' });
      return;
    }
    if (ev.code === 1009 && this.client.awaiting) {
      // the server refused a frame that big: the edit was not applied and never will be
      this.client.dropAwaiting();
      this.client.emit('error', { code: 'too_large', message: 'That change is too large to send.' });
    }
    if (this.suspended) {
      this.setStatus('offline');
      return;
    }
    this.schedule();
  }

  schedule(delay = null) {
    const d = delay ?? Math.min(this.maxDelay, this.minDelay * 2 ** this.failures);
    this.failures += 1;
    this.nextDelay = d;
    const offline = globalThis.navigator?.onLine === false || this.failures > this.offlineAfter;
    this.setStatus(offline ? 'offline' : 'reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), d);
  }

  /** Drop the connection as if the network failed; reconnects after `delay` (default: backoff). */
  drop(delay = null) {
    const ws = this.ws;
    if (ws) {
      this.ws = null;
      ws.onclose = null;
      ws.onmessage = null;
      try { ws.close(); } catch (err) { /* already closed */ }
      this.client.disconnected();
    }
    if (this.stopped) return;
    if (this.suspended) {
      this.setStatus('offline');
      return;
    }
    this.failures = 0;
    this.schedule(delay);
  }

  /** Stay disconnected until resume() (typing still works and is kept). */
  suspend() {
    this.suspended = true;
    clearTimeout(this.timer);
    this.drop();
  }

  resume() {
    this.suspended = false;
    this.failures = 0;
    if (!this.ws) this.connect();
  }

  /** Reconnect now, e.g. under a new display name. */
  reconnect() {
    this.drop(0);
  }

  setName(name) {
    if (name === this.name) return;
    this.name = name;
    if (this.ws || this.timer) this.reconnect();
  }

  /** Close for good (leaving the note). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.offResync();
    globalThis.removeEventListener?.('online', this.onOnline);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      try { ws.close(1000); } catch (err) { /* ignore */ }
    }
    this.client.disconnected();
    this.setStatus('closed');
  }
}
