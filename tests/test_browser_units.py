"""The browser page's JavaScript, checked in a real headless Chromium (no server, no database).

notes/static is served by a tiny threaded http.server; delta.js and ot.js are imported into a blank
page and exercised there: the protocol's examples, TP1 of transform on random deltas with
characters outside the BMP, compose, diff on surrogate pairs, and a simulated server with several
ot.js clients typing, dropping and rebasing in random interleavings until they converge. The page
itself (app.js) is then driven against an in-page fake of the live websocket and the REST API.

Needs Debian's chromium at /usr/bin/chromium and Playwright for Python (never `playwright install`).
"""

# The JavaScript embedded below keeps its own line lengths.
# ruff: noqa: E501

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
STATIC = Path(__file__).resolve().parent.parent / "notes" / "static"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright for Python is not installed")


# --- a static server shaped like the app's: / -> index.html, /static/<file> -> notes/static ----


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".css": "text/css",
        ".html": "text/html; charset=utf-8",
    }

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = urlparse(self.path).path
        if path == "/blank":
            body = b"<!doctype html><meta charset=utf-8><title>blank</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path == "/":
            self.path = "/index.html"
        elif path.startswith("/static/"):
            self.path = path[len("/static"):]
        else:
            self.send_error(404, "not here")
            return
        super().do_GET()


@pytest.fixture(scope="module")
def static_server():
    handler = functools.partial(_Handler, directory=str(STATIC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, static_server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(f"{static_server}/blank")
    pg.evaluate(
        """async () => {
            window.D = await import('/static/delta.js');
            window.OT = await import('/static/ot.js');
        }"""
    )
    pg.add_script_tag(content=CORE_JS)
    yield pg
    context.close()
    assert not errors, errors


# --- shared JS: a seeded PRNG, random texts and deltas, and a reference server ------------------

CORE_JS = r"""
window.mulberry32 = function (seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};
// é, 漢 and emoji (😀 is a surrogate pair; 👍🏽 two code points, both outside the BMP)
window.ALPHABET = ['a', 'b', 'c', ' ', '\n', 'é', '漢', '字', '😀', '👍', '🏽', 'x'];
window.randText = function (r, n) {
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
  return s;
};
window.randDelta = function (r, text) {
  const L = D.cpLength(text);
  const ops = [];
  let pos = 0;
  while (pos < L && r() < 0.8) {
    const k = r();
    const n = 1 + Math.floor(r() * Math.min(4, L - pos));
    if (k < 0.45) { ops.push({ retain: n }); pos += n; }
    else if (k < 0.7) { ops.push({ delete: n }); pos += n; }
    else ops.push({ insert: randText(r, 1 + Math.floor(r() * 3)) });
  }
  if (r() < 0.4) ops.push({ insert: randText(r, 1 + Math.floor(r() * 3)) });
  return D.normalize(ops);
};
window.wellFormed = (s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

// The server side of docs/protocol.md, just enough of it: revisions, transform past history,
// ref de-duplication, missed on reconnect (or not), resync, errors, presence, titles.
window.SimCore = class SimCore {
  constructor({ text = '', title = '', rng = Math.random, pNoMissed = 0, pResync = 0, pTooLarge = 0 } = {}) {
    Object.assign(this, { text, title, rng, pNoMissed, pResync, pTooLarge });
    this.rev = 0;
    this.history = [];
    this.refs = new Map();
    this.conns = new Map();
    this.cursors = new Map();
    this.nextId = 1;
  }
  connect(conn, since, name = 'anonymous') {
    conn.id = `c${this.nextId++}`;
    conn.name = name;
    const hello = {
      type: 'hello', client: conn.id, rev: this.rev, content: this.text, title: this.title,
      peers: [...this.conns.values()].map((c) => ({ client: c.id, name: c.name, cursor: this.cursors.get(c.id) ?? null })),
    };
    if (since !== null && since !== undefined && this.rng() >= this.pNoMissed) {
      hello.since = since;
      hello.missed = this.history.filter((h) => h.rev > since).map((h) => ({ ...h }));
    }
    conn.deliver(hello);
    this.broadcast({ type: 'join', client: conn.id, name }, conn);
    this.conns.set(conn.id, conn);
    this.cursors.set(conn.id, null);
  }
  leave(conn) {
    if (this.conns.get(conn.id) !== conn) return;
    this.conns.delete(conn.id);
    this.cursors.delete(conn.id);
    this.broadcast({ type: 'leave', client: conn.id });
  }
  broadcast(msg, except = null) {
    for (const c of this.conns.values()) if (c !== except) c.deliver(msg);
  }
  receive(conn, msg) {
    if (msg.type === 'edit') {
      if (msg.ref !== null && msg.ref !== undefined && this.refs.has(msg.ref)) {
        conn.deliver({ type: 'ack', rev: this.refs.get(msg.ref), ref: msg.ref });
        return;
      }
      if (msg.rev > this.rev) {
        conn.deliver({ type: 'error', code: 'future_rev', message: 'from the future', ref: msg.ref });
        return;
      }
      if (this.rng() < this.pResync) {
        conn.deliver({ type: 'resync', rev: this.rev, content: this.text, ref: msg.ref });
        return;
      }
      if (this.rng() < this.pTooLarge) {
        conn.deliver({ type: 'error', code: 'too_large', message: 'too large', ref: msg.ref });
        return;
      }
      D.validate(msg.delta);
      let d = msg.delta;
      for (const h of this.history) if (h.rev > msg.rev) d = D.transform(d, h.delta, false);
      this.commit(D.normalize(d), conn.id, msg.ref ?? null, conn);
    } else if (msg.type === 'presence') {
      let c = msg.cursor;
      for (const h of this.history) if (h.rev > msg.rev) c = D.transformCursor(c, h.delta);
      this.cursors.set(conn.id, c);
      this.broadcast({ type: 'presence', client: conn.id, name: conn.name, cursor: c }, conn);
    } else if (msg.type === 'title') {
      this.title = msg.title;
      this.broadcast({ type: 'title', title: msg.title, client: conn.id }, conn);
    }
  }
  commit(d, client, ref, origin) {
    this.text = D.apply(this.text, d);
    this.rev += 1;
    this.history.push({ rev: this.rev, delta: d, client, ref });
    if (ref !== null) this.refs.set(ref, this.rev);
    for (const [id, c] of this.cursors) this.cursors.set(id, D.transformCursor(c, d));
    if (origin) origin.deliver({ type: 'ack', rev: this.rev, ref });
    this.broadcast({ type: 'edit', rev: this.rev, delta: d, client }, origin);
  }
};
"""


# --- delta.js ---------------------------------------------------------------------------------


def test_protocol_examples(page):
    result = page.evaluate(
        """() => {
            const t = 'héllo 漢字';
            let rejected = false;
            try { D.apply(t, [{ retain: 9 }]); } catch (e) { rejected = e instanceof RangeError; }
            return {
                len: D.cpLength(t),
                a: D.apply(t, [{ retain: 6 }, { insert: '😀 ' }]),
                b: D.apply(t, [{ delete: 1 }, { insert: 'H' }]),
                rejected,
                fits: D.apply(t, [{ retain: 8 }]),
                empty: D.apply(t, []),
                len3: D.cpLength('a😀b'),
                bAt: D.cpSlice('a😀b', 2, 3),
                emoji: D.apply('a😀b', [{ retain: 1 }, { delete: 1 }, { insert: '漢' }]),
                u16: [D.cpToUtf16('a😀b', 2), D.utf16ToCp('a😀b', 3), D.utf16ToCp('a😀b', 2)],
            };
        }"""
    )
    assert result == {
        "len": 8,
        "a": "héllo 😀 漢字",
        "b": "Héllo 漢字",
        "rejected": True,
        "fits": "héllo 漢字",
        "empty": "héllo 漢字",
        "len3": 3,
        "bAt": "b",
        "emoji": "a漢b",
        "u16": [3, 2, 2],  # an offset inside the pair counts as after it
    }


def test_canonical_form(page):
    result = page.evaluate(
        """() => [
            D.normalize([{ retain: 1 }, { retain: 2 }, { insert: 'a' }, { insert: '😀' }, { retain: 3 }]),
            D.normalize([{ delete: 1 }, { insert: 'x' }]),
            D.compose([{ insert: 'ab' }], [{ retain: 1 }, { delete: 1 }]),
            D.transform([{ retain: 2 }, { insert: 'X' }], [{ delete: 5 }], false),
        ]"""
    )
    assert result == [
        [{"retain": 3}, {"insert": "a😀"}],
        [{"insert": "x"}, {"delete": 1}],
        [{"insert": "a"}],
        [{"insert": "X"}],
    ]


def test_transform_tp1_and_tie_break(page):
    result = page.evaluate(
        """() => {
            const r = mulberry32(20240601);
            const failures = [];
            let cases = 0;
            for (let i = 0; i < 600; i++) {
                const s = randText(r, Math.floor(r() * 12));
                const a = randDelta(r, s);
                const b = randDelta(r, s);
                for (const aFirst of [true, false]) {
                    const left = D.apply(D.apply(s, a), D.transform(b, a, !aFirst));
                    const right = D.apply(D.apply(s, b), D.transform(a, b, aFirst));
                    cases++;
                    if (left !== right || !wellFormed(left)) failures.push({ s, a, b, aFirst, left, right });
                }
            }
            // same position: the one that goes first stays first
            const tie = [
                D.apply(D.apply('ab', [{ retain: 1 }, { insert: 'Y' }]),
                        D.transform([{ retain: 1 }, { insert: '😀' }], [{ retain: 1 }, { insert: 'Y' }], true)),
                D.apply(D.apply('ab', [{ retain: 1 }, { insert: 'Y' }]),
                        D.transform([{ retain: 1 }, { insert: '😀' }], [{ retain: 1 }, { insert: 'Y' }], false)),
            ];
            return { cases, failures: failures.slice(0, 3), tie };
        }"""
    )
    assert result["cases"] == 1200
    assert result["failures"] == []
    assert result["tie"] == ["a😀Yb", "aY😀b"]


def test_compose_and_invert(page):
    result = page.evaluate(
        """() => {
            const r = mulberry32(7);
            const failures = [];
            for (let i = 0; i < 400; i++) {
                const s = randText(r, Math.floor(r() * 12));
                const a = randDelta(r, s);
                const s1 = D.apply(s, a);
                const b = randDelta(r, s1);
                const want = D.apply(s1, b);
                const got = D.apply(s, D.compose(a, b));
                const back = D.apply(s1, D.invert(a, s));
                if (got !== want || back !== s) failures.push({ s, a, b, want, got, back });
            }
            return failures.slice(0, 3);
        }"""
    )
    assert result == []


def test_diff_never_splits_a_surrogate_pair(page):
    result = page.evaluate(
        """() => {
            const cases = {
                sameHigh: D.diff('a😀b', 'a😁b'),   // U+1F600 -> U+1F601: same high surrogate
                sameLow: D.diff('x\\u{1F600}', 'x\\u{1F400}'),  // same low surrogate
                insertEmoji: D.diff('héllo', 'hé😀llo'),
                deleteEmoji: D.diff('a😀😀b', 'a😀b'),
                typedInRun: D.diff('aa', 'aaa', 2),      // typed after the second a
                typedEarly: D.diff('aa', 'aaa', 1),      // typed after the first a
                backspace: D.diff('😀😀😀', '😀😀', 1),
                noHint: D.diff('aa', 'aaa'),
                replace: D.diff('漢字', '字'),
            };
            const r = mulberry32(99);
            const failures = [];
            for (let i = 0; i < 500; i++) {
                const a = randText(r, Math.floor(r() * 10));
                const b = r() < 0.5 ? randText(r, Math.floor(r() * 10)) : D.apply(a, randDelta(r, a));
                const hint = r() < 0.5 ? null : Math.floor(r() * (D.cpLength(b) + 1));
                const d = D.diff(a, b, hint);
                const ok = D.apply(a, d) === b && d.every((op) => !('insert' in op) || wellFormed(op.insert));
                if (!ok) failures.push({ a, b, hint, d });
            }
            return { cases, failures: failures.slice(0, 3) };
        }"""
    )
    c = result["cases"]
    assert c["sameHigh"] == [{"retain": 1}, {"insert": "😁"}, {"delete": 1}]
    assert c["sameLow"] == [{"retain": 1}, {"insert": "\U0001F400"}, {"delete": 1}]
    assert c["insertEmoji"] == [{"retain": 2}, {"insert": "😀"}]
    assert c["deleteEmoji"] in ([{"retain": 1}, {"delete": 1}], [{"retain": 2}, {"delete": 1}])
    assert c["typedInRun"] == [{"retain": 1}, {"insert": "a"}]
    assert c["typedEarly"] == [{"insert": "a"}]
    assert c["backspace"] == [{"retain": 1}, {"delete": 1}]
    assert c["noHint"] == [{"retain": 2}, {"insert": "a"}]
    assert c["replace"] == [{"delete": 1}]
    assert result["failures"] == []


def test_transform_index_and_cursor(page):
    result = page.evaluate(
        """() => {
            const ins = [{ retain: 2 }, { insert: '😀😀' }];
            const del = [{ retain: 1 }, { delete: 3 }];
            return {
                before: D.transformIndex(1, ins),
                at: D.transformIndex(2, ins),
                atStay: D.transformIndex(2, ins, false),
                after: D.transformIndex(3, ins),
                inDeleted: D.transformIndex(3, del),
                afterDeleted: D.transformIndex(6, del),
                selection: D.transformCursor({ index: 2, length: 2 }, [{ retain: 2 }, { insert: 'x' }, { retain: 2 }, { insert: 'y' }]),
                caret: D.transformCursor({ index: 4, length: 0 }, [{ insert: '漢😀' }]),
                none: D.transformCursor(null, ins),
            };
        }"""
    )
    assert result == {
        "before": 1, "at": 4, "atStay": 2, "after": 5, "inDeleted": 1, "afterDeleted": 3,
        "selection": {"index": 3, "length": 2},
        "caret": {"index": 6, "length": 0},
        "none": None,
    }


def test_same_results_as_the_server_delta_module(page):
    """JS and Python deltas do the same to a text (when the server's module is importable)."""
    delta_py = pytest.importorskip("notes.collab.delta")
    cases = page.evaluate(
        """() => {
            const r = mulberry32(4242);
            const out = [];
            for (let i = 0; i < 300; i++) {
                const s = randText(r, Math.floor(r() * 10));
                const a = randDelta(r, s);
                const b = randDelta(r, s);
                const aFirst = r() < 0.5;
                const c = randDelta(r, D.apply(s, a));
                out.push({ s, a, b, aFirst, c,
                           t: D.apply(D.apply(s, b), D.transform(a, b, aFirst)),
                           comp: D.apply(s, D.compose(a, c)),
                           diff: D.diff(s, D.apply(s, b)) });
            }
            return out;
        }"""
    )
    for case in cases:
        s, a, b, c = case["s"], case["a"], case["b"], case["c"]
        after_b = delta_py.apply_delta(s, b)
        moved = delta_py.transform(a, b, a_first=case["aFirst"])
        assert delta_py.apply_delta(after_b, moved) == case["t"], case
        assert delta_py.apply_delta(s, delta_py.compose(a, c)) == case["comp"], case
        assert delta_py.apply_delta(s, case["diff"]) == after_b, case


# --- ot.js: several clients and a server, random interleavings --------------------------------

SIMULATE_JS = r"""
async ({ seed, clients, steps, mode, pDrop, pNoMissed, pResync, pTooLarge }) => {
  const r = mulberry32(seed);
  const core = new SimCore({ text: mode === 'tokens' ? '' : 'héllo 漢字 😀', rng: r, pNoMissed, pResync, pTooLarge });
  const peers = [];
  const typed = [];
  for (let i = 0; i < clients; i++) {
    const p = { i, ot: new OT.OTClient({ sessionId: `s${seed}-${i}` }), conn: null, inbox: [], outbox: [], k: 0 };
    p.ot.send = (m) => { if (p.conn) p.outbox.push(JSON.stringify(m)); };
    peers.push(p);
  }
  const connect = (p) => {
    p.inbox = [];
    p.outbox = [];
    p.conn = { deliver: (m) => p.inbox.push(JSON.stringify(m)) };
    core.connect(p.conn, p.ot.since(), `user ${p.i}`);
  };
  const drop = (p) => {
    // what the client sent may or may not have reached the server before the line went down
    if (r() < 0.5) for (const m of p.outbox) core.receive(p.conn, JSON.parse(m));
    core.leave(p.conn);
    p.conn = null;
    p.inbox = [];
    p.outbox = [];
    p.ot.disconnected();
  };
  const localEdit = (p) => {
    const text = p.ot.text;
    if (mode === 'tokens') {
      // insert a unique token at a token boundary; nothing is ever deleted
      const cps = Array.from(text);
      const bounds = [0];
      cps.forEach((ch, j) => { if (ch === '>') bounds.push(j + 1); });
      const at = bounds[Math.floor(r() * bounds.length)];
      const token = `<${p.i}.${p.k++}${r() < 0.5 ? '😀' : '漢'}>`;
      typed.push(token);
      p.ot.localEdit(D.normalize([{ retain: at }, { insert: token }]));
    } else {
      p.ot.localEdit(randDelta(r, text));
    }
  };
  for (const p of peers) connect(p);
  for (let step = 0; step < steps; step++) {
    const p = peers[Math.floor(r() * peers.length)];
    const x = r();
    if (x < 0.3) localEdit(p);
    else if (x < 0.55) { if (p.conn && p.outbox.length) core.receive(p.conn, JSON.parse(p.outbox.shift())); }
    else if (x < 0.85) { if (p.inbox.length) p.ot.receive(JSON.parse(p.inbox.shift())); }
    else if (x < 0.85 + pDrop) { if (p.conn) drop(p); else connect(p); }
    else if (x < 0.95) {
      const L = D.cpLength(p.ot.text);
      const i = Math.floor(r() * (L + 1));
      p.ot.setCursor({ index: i, length: Math.floor(r() * (L - i + 1)) });
    } else if (x < 0.96) {
      p.ot.setTitle(`title ${p.i}.${step}`);
    } else if (!p.conn) {
      connect(p);
    }
  }
  // the network heals: everyone reconnects and every message is delivered
  for (const p of peers) if (!p.conn) connect(p);
  core.pResync = 0;
  core.pTooLarge = 0;
  for (let guard = 0; guard < 100000; guard++) {
    let moved = false;
    for (const p of peers) {
      while (p.outbox.length) { core.receive(p.conn, JSON.parse(p.outbox.shift())); moved = true; }
      while (p.inbox.length) { p.ot.receive(JSON.parse(p.inbox.shift())); moved = true; }
    }
    if (!moved) break;
  }
  const bad = [];
  for (const p of peers) {
    if (p.ot.text !== core.text || p.ot.serverText !== core.text || p.ot.rev !== core.rev || p.ot.pending) {
      bad.push({ i: p.i, text: p.ot.text, rev: p.ot.rev, pending: p.ot.pending });
    }
    for (const peer of p.ot.peers.values()) {
      const c = p.ot.peerCursor(peer);
      if (c && (c.index < 0 || c.index + c.length > D.cpLength(p.ot.text))) bad.push({ i: p.i, cursor: c });
    }
    if (p.ot.peers.size !== clients - 1) bad.push({ i: p.i, peers: p.ot.peers.size });
  }
  let tokens = null;
  if (mode === 'tokens') {
    // every character typed is there exactly once
    const chars = (s) => Array.from(s).sort().join('');
    const found = core.text.match(/<[^>]*>/g) || [];
    tokens = {
      chars: chars(core.text) === chars(typed.join('')),
      // and, when nothing had to be rebased by diffing, every token is whole
      whole: JSON.stringify([...found].sort()) === JSON.stringify([...typed].sort()) && found.join('') === core.text,
      typed: typed.length,
    };
  }
  return { bad, rev: core.rev, text: core.text, tokens, wellFormed: wellFormed(core.text) };
}
"""


@pytest.mark.parametrize(
    "mode,options",
    [
        ("random", {"pDrop": 0.0, "pNoMissed": 0.0, "pResync": 0.0, "pTooLarge": 0.0}),
        ("random", {"pDrop": 0.04, "pNoMissed": 0.0, "pResync": 0.0, "pTooLarge": 0.0}),
        ("random", {"pDrop": 0.04, "pNoMissed": 0.5, "pResync": 0.03, "pTooLarge": 0.02}),
        ("tokens", {"pDrop": 0.05, "pNoMissed": 0.0, "pResync": 0.0, "pTooLarge": 0.0}),
        ("tokens", {"pDrop": 0.05, "pNoMissed": 0.5, "pResync": 0.03, "pTooLarge": 0.0}),
    ],
    ids=["in-order", "reconnect-missed", "reconnect-rebase-resync-errors", "nothing-lost-missed",
         "nothing-lost-rebased"],
)
def test_clients_converge(page, mode, options):
    for seed in range(1, 41):
        out = page.evaluate(
            SIMULATE_JS,
            {"seed": seed, "clients": 3, "steps": 500, "mode": mode, **options},
        )
        assert out["bad"] == [], (seed, out)
        assert out["rev"] > 10, (seed, out)
        assert out["wellFormed"], (seed, out)
        if mode == "tokens":
            assert out["tokens"]["chars"], (seed, out)
            if not options["pNoMissed"] and not options["pResync"]:
                assert out["tokens"]["whole"], (seed, out)
            assert out["tokens"]["typed"] > 20


def test_client_state_machine_by_hand(page):
    """The protocol's 'Client state' steps, one message at a time."""
    out = page.evaluate(
        """() => {
            const sent = [];
            const c = new OT.OTClient({ sessionId: 'sess', send: (m) => sent.push(m) });
            const log = [];
            c.on('text', (e) => log.push(e.source));
            c.receive({ type: 'hello', client: 'me', rev: 3, content: 'a😀b', title: 'T', peers: [] });
            c.localEdit([{ retain: 2 }, { insert: '漢' }]);          // sent, awaiting
            c.localEdit([{ retain: 3 }, { insert: 'é' }]);           // buffered
            const afterTyping = { sent: sent.length, awaiting: c.awaiting, buffer: c.buffer, text: c.text };
            c.receive({ type: 'edit', rev: 4, delta: [{ retain: 2 }, { insert: 'X' }], client: 'other' });
            const afterEdit = { text: c.text, awaiting: c.awaiting.delta, buffer: c.buffer, rev: c.rev };
            c.receive({ type: 'ack', rev: 5, ref: 'sess:1' });
            const afterAck = { rev: c.rev, serverText: c.serverText, sent: sent.slice(1), awaiting: c.awaiting };
            c.receive({ type: 'ack', rev: 6, ref: 'sess:2' });
            c.receive({ type: 'saved', rev: 6 });
            return { first: sent[0], afterTyping, afterEdit, afterAck, end: c.state(), log };
        }"""
    )
    assert out["first"] == {
        "type": "edit", "rev": 3, "delta": [{"retain": 2}, {"insert": "漢"}], "ref": "sess:1"
    }
    assert out["afterTyping"]["sent"] == 1
    assert out["afterTyping"]["buffer"] == [{"retain": 3}, {"insert": "é"}]
    assert out["afterTyping"]["text"] == "a😀漢éb"
    # the server's X goes first at the same position
    assert out["afterEdit"] == {
        "text": "a😀X漢éb", "awaiting": [{"retain": 3}, {"insert": "漢"}],
        "buffer": [{"retain": 4}, {"insert": "é"}], "rev": 4,
    }
    assert out["afterAck"]["rev"] == 5
    assert out["afterAck"]["serverText"] == "a😀X漢b"
    assert out["afterAck"]["sent"] == [
        {"type": "edit", "rev": 5, "delta": [{"retain": 4}, {"insert": "é"}], "ref": "sess:2"}
    ]
    end = out["end"]
    assert (end["text"], end["rev"], end["pending"], end["saved"]) == ("a😀X漢éb", 6, False, True)
    assert out["log"] == ["reset", "remote"]


def test_reconnect_ack_in_missed_and_duplicate_ack(page):
    out = page.evaluate(
        """() => {
            const sent = [];
            const c = new OT.OTClient({ sessionId: 's', send: (m) => sent.push(m) });
            c.receive({ type: 'hello', client: 'a', rev: 1, content: 'ab', title: '', peers: [] });
            c.localEdit([{ retain: 1 }, { insert: '😀' }]);      // awaiting s:1
            c.disconnected();
            c.localEdit([{ retain: 2 }, { insert: '!' }]);       // typed offline: buffered
            const since = c.since();
            // the edit did reach the server (rev 3) after someone else's (rev 2)
            c.receive({ type: 'hello', client: 'a2', rev: 3, content: 'Za😀b', title: '', peers: [], since: 1,
                        missed: [{ rev: 2, delta: [{ insert: 'Z' }], client: 'b', ref: 'x:1' },
                                 { rev: 3, delta: [{ retain: 2 }, { insert: '😀' }], client: 'a', ref: 's:1' }] });
            const one = { since, text: c.text, rev: c.rev, sent: sent.slice(1) };

            // no missed, and the server had the awaiting edit already: its duplicate ack undoes the copy
            const sent2 = [];
            const d = new OT.OTClient({ sessionId: 't', send: (m) => sent2.push(m) });
            d.receive({ type: 'hello', client: 'a', rev: 1, content: 'ab', title: '', peers: [] });
            d.localEdit([{ retain: 1 }, { insert: '😀' }]);      // t:1, applied by the server as rev 2
            d.disconnected();
            d.localEdit([{ insert: '>' }]);
            d.receive({ type: 'hello', client: 'a3', rev: 2, content: 'a😀b', title: '', peers: [] });
            const resent = sent2.slice(1);
            d.receive({ type: 'ack', rev: 2, ref: 't:1' });      // duplicate: answered with the original rev
            const after = { text: d.text, sent: sent2.slice(1 + resent.length) };
            d.receive({ type: 'ack', rev: 3, ref: 't:2' });
            return { one, resent, after, two: { text: d.text, rev: d.rev, pending: d.pending } };
        }"""
    )
    assert out["one"]["since"] == 1
    assert out["one"]["text"] == "Za😀!b"
    assert out["one"]["rev"] == 3
    assert out["one"]["sent"] == [
        {"type": "edit", "rev": 3, "delta": [{"retain": 3}, {"insert": "!"}], "ref": "s:2"}
    ]
    assert out["resent"][0]["ref"] == "t:1"
    assert out["after"]["text"] == ">a😀b"
    assert out["after"]["sent"] == [
        {"type": "edit", "rev": 2, "delta": [{"insert": ">"}], "ref": "t:2"}
    ]
    assert out["two"] == {"text": ">a😀b", "rev": 3, "pending": False}


# --- the page, against an in-page fake of the server -------------------------------------------

FAKE_SERVER_JS = r"""
(() => {
  if (!location.protocol.startsWith('http')) return;
  const deltaReady = import(new URL('/static/delta.js', location.href).href).then((m) => { window.D = m; });
  const hub = {
    core: null, latency: 5, refuse: false, sockets: new Set(), log: [],
    init(opts) { hub.core = new SimCore(opts); },
    other: null,
  };
  window.fakeHub = hub;
  const later = (fn) => setTimeout(fn, hub.latency);
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      const u = new URL(url);
      hub.log.push(u.pathname + u.search);
      deltaReady.then(() => later(() => {
        if (this.readyState !== 0) return;
        if (hub.refuse || !hub.core) { this.readyState = 3; this.onclose?.({ code: 1006 }); return; }
        if (hub.core.deleted) { this.readyState = 3; this.onclose?.({ code: 4404 }); return; }
        this.readyState = 1;
        hub.sockets.add(this);
        this.conn = { deliver: (m) => later(() => { if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(m) }); }) };
        this.onopen?.({});
        const since = u.searchParams.get('since');
        hub.core.connect(this.conn, since === null ? null : Number(since), u.searchParams.get('name'));
      }));
    }
    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      later(() => { if (this.readyState === 1) hub.core.receive(this.conn, JSON.parse(data)); });
    }
    close(code = 1000) {
      if (this.readyState === 3) return;
      const was = this.readyState;
      this.readyState = 3;
      hub.sockets.delete(this);
      if (was === 1) hub.core.leave(this.conn);
      later(() => this.onclose?.({ code }));
    }
    kill(code) {  // the server side goes away
      this.close(code);
    }
  }
  FakeWebSocket.OPEN = 1;
  window.WebSocket = FakeWebSocket;
  // another user, without a socket: edits, title, presence straight into the core
  hub.join = (name) => {
    hub.other = { deliver: () => {} };
    hub.core.connect(hub.other, null, name);
    return hub.other.id;
  };
  hub.edit = (delta) => hub.core.commit(D.normalize(delta), hub.other ? hub.other.id : null, null, hub.other);
  hub.cursor = (cursor) => hub.core.receive(hub.other, { type: 'presence', rev: hub.core.rev, cursor });
  hub.title = (title) => hub.core.receive(hub.other, { type: 'title', title });
  hub.saved = () => hub.core.broadcast({ type: 'saved', rev: hub.core.rev });
  hub.send = (msg) => hub.core.broadcast(msg);
  hub.killAll = (code = 1006) => { for (const s of [...hub.sockets]) s.kill(code); };
  hub.deleteNote = () => {
    hub.core.broadcast({ type: 'deleted' });
    hub.core.deleted = true;
    setTimeout(() => hub.killAll(4404), hub.latency * 2);
  };
})();
"""

NOTE = {
    "id": "11111111-2222-3333-4444-555555555555",
    "title": "Shopping",
    "content": "héllo 漢字",
    "created_at": "2024-06-01T10:00:00Z",
    "updated_at": "2024-06-01T10:00:00Z",
    "version": 1,
}


@pytest.fixture
def app_page(browser, static_server):
    """index.html with the websocket faked in the page and the REST API answered by Playwright."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(CORE_JS + FAKE_SERVER_JS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    api = {"notes": [dict(NOTE)], "requests": []}

    def handle(route):
        req = route.request
        url = urlparse(req.url)
        api["requests"].append((req.method, url.path, parse_qs(url.query)))
        if req.method == "GET" and url.path == "/notes":
            q = parse_qs(url.query).get("q", [""])[0].lower()
            items = [n for n in api["notes"] if q in (n["title"] + n["content"]).lower()]
            route.fulfill(json={"items": items, "next_cursor": None})
        elif req.method == "POST" and url.path == "/notes":
            body = json.loads(req.post_data or "{}")
            note = dict(NOTE, id=f"00000000-0000-0000-0000-{len(api['notes']):012d}",
                        title=body["title"], content=body["content"])
            api["notes"].insert(0, note)
            route.fulfill(status=201, json=note)
        elif req.method == "GET" and any(url.path == f"/notes/{n['id']}" for n in api["notes"]):
            route.fulfill(json=next(n for n in api["notes"] if url.path == f"/notes/{n['id']}"))
        else:
            route.fulfill(status=404, content_type="application/problem+json",
                          body=json.dumps({"type": "about:blank", "title": "Not Found",
                                           "status": 404, "detail": "no such note"}))

    pg.route(lambda u: urlparse(u).path.startswith("/notes"), handle)
    pg.base = static_server
    pg.api = api
    yield pg
    context.close()
    assert not errors, errors


def screenshot_path(name):
    """Screenshots go to $NOTES_SCREENSHOT_DIR (default: the temp dir) for a person to look at."""
    folder = Path(os.environ.get("NOTES_SCREENSHOT_DIR") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / name)


def wait_status(pg, key, value):
    """Wait for data-<key> of the status element (data-connection, data-saved) to be value."""
    pg.wait_for_function(
        "([k, v]) => document.querySelector('[data-testid=status]').dataset[k] === v",
        arg=[key, value])


def open_note(pg, text="héllo 漢字", title="Shopping"):
    pg.goto(f"{pg.base}/?note={NOTE['id']}")
    pg.evaluate("([text, title]) => fakeHub.init({ text, title })", [text, title])
    pg.wait_for_function("() => window.notesApp && notesApp.state().connected")


def idle(pg):
    return pg.evaluate("() => notesApp.whenIdle(10000)")


def caret(pg):
    """The editor's selection in code points."""
    return pg.evaluate(
        """async () => {
            const D = await import('/static/delta.js');
            const ta = document.querySelector('[data-testid=editor]');
            return [D.utf16ToCp(ta.value, ta.selectionStart), D.utf16ToCp(ta.value, ta.selectionEnd)];
        }"""
    )


def set_caret(pg, start, end=None):
    pg.evaluate(
        """async ([s, e]) => {
            const D = await import('/static/delta.js');
            const ta = document.querySelector('[data-testid=editor]');
            ta.focus();
            ta.setSelectionRange(D.cpToUtf16(ta.value, s), D.cpToUtf16(ta.value, e));
        }""",
        [start, start if end is None else end],
    )


def test_page_types_code_points_and_keeps_the_caret(app_page):
    pg = app_page
    open_note(pg)
    tid = lambda t: pg.get_by_test_id(t)  # noqa: E731
    assert tid("title").input_value() == "Shopping"
    assert tid("editor").input_value() == "héllo 漢字"
    assert tid("note-list").get_by_text("Shopping").is_visible()
    assert "connected" in tid("status").inner_text()

    # typing at the end, with characters outside the BMP
    set_caret(pg, 8)
    pg.keyboard.type(" 😀 ok")
    st = idle(pg)
    assert st["text"] == "héllo 漢字 😀 ok" == st["editorText"]
    assert pg.evaluate("fakeHub.core.text") == "héllo 漢字 😀 ok"

    # a remote insert before the caret moves it by its length; after it, not at all
    set_caret(pg, 5)
    pg.evaluate("() => { fakeHub.join('Ada'); fakeHub.edit([{ insert: '😀X' }]); }")
    pg.wait_for_function("() => notesApp.state().editorText.startsWith('😀X')")
    assert caret(pg) == [7, 7]
    pg.evaluate("() => fakeHub.edit([{ retain: 9 }, { insert: '!' }])")
    pg.wait_for_function("() => notesApp.state().editorText.includes('漢!字')")
    assert caret(pg) == [7, 7]
    pg.keyboard.type("é")
    idle(pg)
    assert pg.evaluate("fakeHub.core.text") == "😀Xhélloé 漢!字 😀 ok"

    # a selection stays on the same text
    set_caret(pg, 2, 7)
    pg.evaluate("() => fakeHub.edit([{ retain: 1 }, { insert: '漢漢' }])")
    pg.wait_for_function("() => notesApp.state().editorText.startsWith('😀漢漢X')")
    assert caret(pg) == [4, 9]

    # typing fast while edits await their acks, with remote edits landing in between
    pg.evaluate("fakeHub.latency = 40")
    set_caret(pg, 0)
    pg.evaluate("""() => {
        for (let i = 1; i <= 5; i++) setTimeout(() => fakeHub.edit([{ insert: '' + i }]), i * 37);
    }""")
    pg.keyboard.type("abc😀漢é", delay=15)
    pg.wait_for_timeout(300)
    st = idle(pg)
    server = pg.evaluate("fakeHub.core.text")
    assert st["text"] == server == st["editorText"]
    assert "abc😀漢é" in server and all(str(i) in server for i in range(1, 6))


def test_page_offline_typing_is_rebased_and_kept(app_page):
    pg = app_page
    open_note(pg, text="one two")
    status = pg.get_by_test_id("status")

    pg.evaluate("() => notesApp.disconnect()")
    wait_status(pg, "connection", "offline")
    assert "offline" in status.inner_text()
    set_caret(pg, 7)
    pg.keyboard.type(" three 😀")
    assert "unsaved changes" in status.inner_text()
    # meanwhile someone else edits, and the server forgets the history (no missed)
    pg.evaluate("""() => {
        fakeHub.join('Bob');
        fakeHub.edit([{ insert: 'zero ' }]);
        fakeHub.core.pNoMissed = 1;
    }""")
    pg.evaluate("() => notesApp.reconnect()")
    st = idle(pg)
    assert st["text"] == "zero one two three 😀" == st["editorText"]
    assert pg.evaluate("fakeHub.core.text") == st["text"]
    assert "since=0" in pg.evaluate("fakeHub.log[fakeHub.log.length - 1]")

    # a dropped connection comes back by itself (backoff), with missed edits this time
    pg.evaluate("() => { fakeHub.core.pNoMissed = 0; notesApp.dropConnection(); }")
    pg.keyboard.type(" four")
    pg.evaluate("() => fakeHub.edit([{ retain: 5 }, { insert: '½ ' }])")
    st = idle(pg)
    assert st["text"] == "zero ½ one two three 😀 four" == pg.evaluate("fakeHub.core.text")

    # the server goes away (close 1006) and refuses a few times: reconnecting, then back
    pg.evaluate("() => { fakeHub.refuse = true; fakeHub.killAll(); }")
    pg.wait_for_function("() => ['reconnecting', 'offline'].includes(notesApp.state().status)")
    pg.keyboard.type("!")
    pg.wait_for_timeout(600)
    pg.evaluate("() => { fakeHub.refuse = false; }")
    st = idle(pg)
    assert st["text"].endswith("four!") and st["text"] == pg.evaluate("fakeHub.core.text")
    pg.evaluate("() => fakeHub.saved()")
    wait_status(pg, "saved", "true")
    assert "saved" in status.inner_text() and "unsaved" not in status.inner_text()


def test_page_presence_title_errors_and_delete(app_page):
    pg = app_page
    open_note(pg, text="line one\nline 😀 two")
    pg.evaluate("() => { fakeHub.join('Ada Lovelace'); fakeHub.cursor({ index: 14, length: 0 }); }")
    peers = pg.get_by_test_id("peers")
    peers.get_by_text("Ada Lovelace").wait_for()
    assert "Ln 2, Col 6" in peers.inner_text()
    assert pg.locator("#mirror .caret").count() == 1
    # our own cursor reaches the server as presence
    set_caret(pg, 3)
    pg.wait_for_function("() => [...fakeHub.core.cursors.values()].some((c) => c && c.index === 3)")
    # the remote cursor follows a remote edit before it
    pg.evaluate("() => fakeHub.edit([{ insert: '😀😀' }])")
    pg.wait_for_function(
        "() => notesApp.state().peers.some((p) => p.cursor && p.cursor.index === 16)")

    # titles both ways
    pg.evaluate("() => fakeHub.title('Remote title 漢')")
    pg.wait_for_function(
        "() => document.querySelector('[data-testid=title]').value === 'Remote title 漢'")
    pg.get_by_test_id("title").fill("Mine 😀")
    pg.wait_for_function("() => fakeHub.core.title === 'Mine 😀'")

    # an error frame is shown
    pg.evaluate(
        "() => fakeHub.send({ type: 'error', code: 'bad_title', message: 'too long', ref: null })")
    pg.get_by_test_id("error").wait_for()
    assert "too long" in pg.get_by_test_id("error").inner_text().lower()

    pg.screenshot(path=screenshot_path("notes-browser-units.png"))

    # deleted
    pg.evaluate("() => fakeHub.deleteNote()")
    pg.wait_for_function("() => notesApp.state().status === 'deleted'")
    assert "note deleted" in pg.get_by_test_id("status").inner_text()
    assert pg.get_by_test_id("editor").get_attribute("readonly") is not None


def test_page_list_search_new_note_and_history(app_page):
    pg = app_page
    pg.goto(f"{pg.base}/")
    pg.evaluate("() => fakeHub.init({ text: '', title: 'Untitled note' })")
    lst = pg.get_by_test_id("note-list")
    lst.get_by_text("Shopping").wait_for()

    pg.get_by_test_id("search").fill("nothing-like-this")
    lst.get_by_text("No notes match").wait_for()
    searches = [q for (method, path, q) in pg.api["requests"]
                if method == "GET" and path == "/notes" and "q" in q]
    assert searches and searches[-1]["q"] == ["nothing-like-this"]
    assert len(searches) == 1  # debounced: one request for the whole word
    pg.get_by_test_id("search").fill("")
    lst.get_by_text("Shopping").wait_for()

    lst.get_by_text("Shopping").click()
    pg.wait_for_function("() => notesApp.state().connected")
    assert urlparse(pg.url).query == f"note={NOTE['id']}"
    assert pg.evaluate("notesApp.noteId") == NOTE["id"]
    pg.go_back()
    pg.wait_for_function("() => notesApp.noteId === null")
    assert urlparse(pg.url).path == "/" and not urlparse(pg.url).query
    pg.go_forward()
    pg.wait_for_function("() => notesApp.noteId !== null && notesApp.state().connected")

    # leaving a note while an edit awaits its ack still delivers it
    pg.evaluate("fakeHub.latency = 300")
    set_caret(pg, 0)
    pg.keyboard.type("bye 😀")
    pg.evaluate("() => notesApp.showList()")
    pg.wait_for_function("() => fakeHub.core.text === 'bye 😀' && fakeHub.sockets.size === 0")
    pg.evaluate("fakeHub.latency = 5")

    pg.get_by_test_id("new-note").click()
    pg.wait_for_function(f"() => notesApp.noteId && notesApp.noteId !== '{NOTE['id']}'")
    assert ("POST", "/notes", {}) in pg.api["requests"]
    assert re.search(r"note=0+-", pg.url)
    assert pg.evaluate("document.activeElement.dataset.testid") == "title"
    assert pg.get_by_test_id("docs-link").get_attribute("href") == "/docs"

    # a note that does not exist: the socket just fails, the page asks REST and says so
    pg.evaluate("() => { fakeHub.refuse = true; }")
    pg.evaluate("() => notesApp.open('99999999-9999-9999-9999-999999999999')")
    pg.wait_for_function("() => notesApp.state().status === 'deleted'")
    assert "does not exist" in pg.get_by_test_id("error").inner_text()


def test_page_layout_without_a_server(browser, static_server):
    """The page renders (and says why the list is empty) when the API cannot be reached."""
    for width, height in [(1280, 800), (390, 760)]:
        context = browser.new_context(viewport={"width": width, "height": height})
        pg = context.new_page()
        pg.goto(f"{static_server}/")
        pg.get_by_test_id("note-list").get_by_text("Could not load notes").wait_for()
        for testid in ("search", "new-note", "note-list"):
            box = pg.get_by_test_id(testid).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (testid, box)
        pg.screenshot(path=screenshot_path(f"notes-list-{width}.png"))
        context.close()
