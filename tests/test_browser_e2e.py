"""The browser editor end to end: headless Chromium against the real server, no fakes.

Every test drives the page served at ``/`` by ``python -m notes serve`` (the session ``server``
fixture, or a server of its own where it has to stop one) through Playwright's sync API, with
real keystrokes on the editor, and checks the result against the REST API:

- two pages type at the same time, interleaved key by key, at different places and at the same
  place (é, 漢, 😀, Enter and Backspace); both end with the same text, equal to ``GET /notes/{id}``,
  with every typed character there exactly once and in the order its author typed it;
- a new note made with the "New note" action, titled and typed into, is found by the search box;
- a page that goes offline (disconnect/reconnect, a dropped socket, and the server restarting)
  keeps what was typed and converges with a page that typed meanwhile; the status goes
  offline/reconnecting -> connected -> saved;
- the server SIGKILLed mid-typing, three times, each time a new process (its own revision
  numbering, its own epoch) on the same port and database: the page reconnects by itself, gets
  a hello without ``missed``, rebases and resends; every typed character is there exactly once
  (the acknowledged ones from the update log, the rest resent; a resent ref that the log holds is
  not applied twice);
- remote edits (REST ``POST /notes/{id}/edits``, ``PATCH``, another page) before, at and after the
  caret leave the caret and the selection on the same text; typing continues at the right spot;
- presence: names in ``peers``, line/column and the caret drawn in the mirror, renames, leaving;
- ``/docs`` (Swagger UI) renders with every request that is not to 127.0.0.1 aborted;
- back/forward between the list and a note, and a note's URL opened in another browser;
- test-artifacts/two-editors.png: two pages editing one note, side by side, for a person to see.

Needs Debian's chromium at /usr/bin/chromium (installed here with apt-get when running as root)
and Playwright for Python; never ``playwright install``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import ARTIFACTS, ServerProcess, free_port, wait_until
from yjs_node import NodeYjsClient

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the fixture fails with a clear message (Playwright is a test dependency)
    sync_playwright = None

CHROMIUM = "/usr/bin/chromium"
BACKSPACE = "\b"  # in typing scripts: press Backspace
TIMEOUT_MS = 20_000  # for any one condition in the browser; a pass takes far less

# Runs before the page's own scripts, in every page: the display name, and a log of the status
# element's data-connection values (every change, however brief).
INIT_JS = """
((name) => {
  try { localStorage.setItem('notes.name', name); } catch (err) { /* storage disabled */ }
  window.__statusLog = [];
  const push = (v) => {
    const log = window.__statusLog;
    if (v && log[log.length - 1] !== v) log.push(v);
  };
  document.addEventListener('DOMContentLoaded', () => {
    const st = document.querySelector('[data-testid=status]');
    if (!st) return;
    push(st.dataset.connection);
    new MutationObserver((records) => {
      for (const r of records) push(r.oldValue);
      push(st.dataset.connection);
    }).observe(st, {
      attributes: true, attributeOldValue: true, attributeFilter: ['data-connection'],
    });
  });
})(%s);
"""


def _chromium() -> str:
    """Debian's chromium (apt-get installs it when we are root), else a clear failure."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    log = ""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "chromium"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                                  check=False)
            log += f"$ {' '.join(command)} -> {done.returncode}\n{done.stderr[-2000:]}\n"
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"The browser tests need Debian's chromium at {CHROMIUM}, and it is missing. "
            f"Install it with `apt-get install chromium` as root (the tests do that themselves "
            f"when they run as root; .ci/run does too).\n{log}",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if sync_playwright is None:
        pytest.fail("Playwright for Python is missing: pip install -e '.[test]'", pytrace=False)
    executable = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def uid() -> str:
    """Letters only (a full-text search term must not be split or stemmed into something else)."""
    return "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


class Editor:
    """One browser context (one person) with the page open, and what the tests do with it."""

    def __init__(self, context, page, base: str, name: str):
        self.context, self.page, self.base, self.name = context, page, base, name
        self.errors: list[str] = []
        self.warnings: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))
        page.on("console", self._console)
        page.set_default_timeout(TIMEOUT_MS)

    def _console(self, msg) -> None:
        # the app's own reports ("notes: ...") mean it went out of step; network errors are fine
        if msg.type in ("error", "warning") and "notes:" in msg.text:
            self.warnings.append(f"{self.name}: {msg.type}: {msg.text}")

    def testid(self, name: str):
        return self.page.get_by_test_id(name)

    def js(self, expression: str, arg: object = None):
        return self.page.evaluate(expression, arg)

    def wait(self, expression: str, arg: object = None, timeout: int = TIMEOUT_MS):
        return self.page.wait_for_function(expression, arg=arg, timeout=timeout, polling=20)

    def goto(self, path: str = "/") -> Editor:
        self.page.goto(self.base + path)
        self.wait("() => !!window.notesApp")
        return self

    def open(self, note_id: str) -> Editor:
        self.goto(f"/?note={note_id}")
        self.wait_connected(note_id)
        return self

    def wait_connected(self, note_id: str | None = None) -> None:
        self.wait("(id) => notesApp.state().connected && (!id || notesApp.noteId === id)", note_id)

    def state(self) -> dict:
        return self.js("() => notesApp.state()")

    def idle(self) -> dict:
        return self.js("(ms) => notesApp.whenIdle(ms)", TIMEOUT_MS)

    def text(self) -> str:
        return self.testid("editor").input_value()

    def caret(self) -> list[int]:
        """The editor's selection [start, end] in code points."""
        return self.js("""() => {
            const ta = document.querySelector('[data-testid=editor]');
            const cp = (u) => Array.from(ta.value.slice(0, u)).length;
            return [cp(ta.selectionStart), cp(ta.selectionEnd)];
        }""")

    def selected(self) -> str:
        return self.js("""() => {
            const ta = document.querySelector('[data-testid=editor]');
            return ta.value.slice(ta.selectionStart, ta.selectionEnd);
        }""")

    def set_caret(self, start: int, end: int | None = None) -> None:
        """Put the caret (or select start..end), in code points, as a click or arrow keys would."""
        self.testid("editor").focus()
        self.js("""([s, e]) => {
            const ta = document.querySelector('[data-testid=editor]');
            const u = (cp) => Array.from(ta.value).slice(0, cp).join('').length;
            ta.setSelectionRange(u(s), u(e));
        }""", [start, start if end is None else end])

    def key(self, ch: str) -> None:
        """One keystroke: Backspace, Enter, a character (insert_text for those outside the BMP)."""
        if ch == BACKSPACE:
            self.page.keyboard.press("Backspace")
        elif ch == "\n":
            self.page.keyboard.press("Enter")
        elif ord(ch) > 0xFFFF:
            self.page.keyboard.insert_text(ch)
        else:
            self.page.keyboard.type(ch)

    def type(self, script: str) -> None:
        for ch in script:
            self.key(ch)

    def status(self) -> dict:
        return self.js("""() => {
            const st = document.querySelector('[data-testid=status]');
            return { connection: st.dataset.connection, saved: st.dataset.saved };
        }""")

    def wait_status(self, connection: str | None = None, saved: str | None = None) -> None:
        self.wait("""([c, s]) => {
            const st = document.querySelector('[data-testid=status]');
            return (!c || st.dataset.connection === c) && (!s || st.dataset.saved === s);
        }""", [connection, saved])

    def status_log(self) -> list[str]:
        return self.js("() => window.__statusLog.slice()")

    def count_overlaps(self) -> None:
        """Count the remote edits that arrive while a local edit awaits its ack (transformed)."""
        self.js("""() => {
            window.__overlaps = 0;
            notesApp.client.on('text', (e) => {
                if (e.source === 'remote' && notesApp.client.pending) window.__overlaps += 1;
            });
        }""")

    def overlaps(self) -> int:
        return self.js("() => window.__overlaps")


@pytest.fixture
def open_page(browser, server, request) -> Iterator[Callable[..., Editor]]:
    """Make a person: a browser context of their own, with a display name, on the real server."""
    made: list[Editor] = []
    failed_before = request.session.testsfailed

    def make(name: str, *, base: str | None = None, width: int = 1100, height: int = 700
             ) -> Editor:
        context = browser.new_context(viewport={"width": width, "height": height},
                                      locale="en-US")
        context.add_init_script(INIT_JS % json.dumps(name))
        editor = Editor(context, context.new_page(), base or server.url, name)
        made.append(editor)
        return editor

    yield make
    if request.session.testsfailed > failed_before:  # keep what the pages showed
        ARTIFACTS.mkdir(exist_ok=True)
        for i, editor in enumerate(made):
            with contextlib.suppress(Exception):  # a page that is gone has nothing to show
                editor.page.screenshot(path=str(
                    ARTIFACTS / f"e2e-failed-{request.node.name}-{i}.png"))
    problems = [p for editor in made for p in editor.errors + editor.warnings]
    for editor in made:
        editor.context.close()
    assert not problems, problems


def converge(http: httpx.Client, note_id: str, *editors: Editor, timeout: float = 20) -> str:
    """Wait until every page is connected with nothing pending and shows the same text at the same
    revision; that text must be the server's. Returns it."""

    def check():
        states = [e.state() for e in editors]
        if not all(s["connected"] and not s["pending"] for s in states):
            return None
        if len({s["rev"] for s in states}) != 1:
            return None
        if len({s["text"] for s in states} | {s["editorText"] for s in states}) != 1:
            return None
        return states

    states = wait_until(check, timeout, 0.05, "the pages to converge")
    content = http.get(f"/notes/{note_id}").json()["content"]
    assert content == states[0]["text"], (content, [s["text"] for s in states])
    return content


def went_away_and_back(log: list[str]) -> list[str]:
    """The status (every value its data-connection took) last left 'connected' for 'reconnecting'
    or 'offline' only, and is 'connected' again. Returns the values it took while away."""
    assert log and log[-1] == "connected", log
    rest = log[:-1]
    start = len(rest) - rest[::-1].index("connected") if "connected" in rest else 0
    away = rest[start:]
    assert away and set(away) <= {"reconnecting", "offline"}, log
    return away


def typed(script: str) -> str:
    """What a typing script leaves in the text (Backspace removes the author's last character)."""
    out: list[str] = []
    for ch in script:
        if ch == BACKSPACE:
            out.pop()
        else:
            out.append(ch)
    return "".join(out)


def interleave(a: Editor, a_script: str, b: Editor, b_script: str) -> None:
    """Key by key, alternating pages, never waiting for the other page (or for any ack)."""
    for i in range(max(len(a_script), len(b_script))):
        if i < len(a_script):
            a.key(a_script[i])
        if i < len(b_script):
            b.key(b_script[i])


def is_interleaving(merged: str, x: str, y: str) -> bool:
    """merged is x and y shuffled together, each keeping its own order (by code points)."""
    if len(merged) != len(x) + len(y):
        return False
    reachable = [[False] * (len(y) + 1) for _ in range(len(x) + 1)]
    reachable[0][0] = True
    for i in range(len(x) + 1):
        for j in range(len(y) + 1):
            if i and reachable[i - 1][j] and x[i - 1] == merged[i + j - 1]:
                reachable[i][j] = True
            if j and reachable[i][j - 1] and y[j - 1] == merged[i + j - 1]:
                reachable[i][j] = True
    return reachable[len(x)][len(y)]


# --- 1. two pages typing at once -----------------------------------------------------------------


def test_two_pages_type_at_once_and_converge(open_page, make_note, http):
    start = "start 漢字 😀 middle\nend"
    note = make_note("Typing together", start)
    ada = open_page("Ada").open(note["id"])
    bob = open_page("Bob").open(note["id"])
    for me, other in ((ada, bob), (bob, ada)):
        me.wait("(n) => notesApp.state().peers.some((p) => p.name === n)", other.name)
        me.count_overlaps()

    # different places: Ada at the start, Bob at the end
    ada_script = "Ada é漢😀 wrote thix\bs.\n"
    bob_script = "\nBob 😀漢é typed that, to\bo!"
    ada.set_caret(0)
    bob.set_caret(len(start))
    interleave(ada, ada_script, bob, bob_script)
    text = converge(http, note["id"], ada, bob)
    assert text == typed(ada_script) + start + typed(bob_script)
    # each caret is still right after what its owner typed
    assert ada.caret() == [len(typed(ada_script))] * 2
    assert bob.caret() == [len(text)] * 2

    # the same place: both carets right after "start "
    at = len(typed(ada_script)) + len("start ")
    ada.set_caret(at)
    bob.set_caret(at)
    ada_script2 = "[a1 é漢😀 a2\ba3]"
    bob_script2 = "<b1 😀é漢 b2\bb3>"
    interleave(ada, ada_script2, bob, bob_script2)
    final = converge(http, note["id"], ada, bob)

    before, after = text[:at], text[at:]
    assert final.startswith(before) and final.endswith(after)
    middle = final[len(before):len(final) - len(after)]
    # every typed character exactly once, each author's in the order typed
    expected = Counter(text) + Counter(typed(ada_script2)) + Counter(typed(bob_script2))
    assert Counter(final) == expected
    assert is_interleaving(middle, typed(ada_script2), typed(bob_script2)), middle
    # typing really was concurrent: remote edits arrived while local ones awaited their acks
    assert ada.overlaps() + bob.overlaps() > 0, "no edit was ever transformed"


# --- 2. new note, title, text, search ------------------------------------------------------------


def test_new_note_is_found_by_search(open_page, http):
    word, title_word = uid(), uid()
    title = f"Groceries {title_word}"
    body = f"milk, eggs, 漢字 and 😀 for the {word} party"
    ed = open_page("Creator").goto("/")
    searches: list[str] = []

    def on_request(req) -> None:
        url = urlparse(req.url)
        if url.path == "/notes" and req.method == "GET" and "q" in parse_qs(url.query):
            searches.append(parse_qs(url.query)["q"][0])

    ed.page.on("request", on_request)

    ed.testid("new-note").click()
    ed.wait("() => notesApp.noteId !== null && notesApp.state().connected")
    note_id = ed.js("() => notesApp.noteId")
    assert parse_qs(urlparse(ed.page.url).query)["note"] == [note_id]
    # the title is focused and selected: typing replaces it, Enter goes to the text
    assert ed.js("() => document.activeElement.dataset.testid") == "title"
    ed.type(title)
    ed.page.keyboard.press("Enter")
    assert ed.js("() => document.activeElement.dataset.testid") == "editor"
    ed.type(body)
    ed.idle()
    ed.wait_status("connected", "true")
    wait_until(lambda: http.get(f"/notes/{note_id}").json()["title"] == title, 10,
               message="the title on the server")
    stored = http.get(f"/notes/{note_id}").json()
    assert (stored["title"], stored["content"]) == (title, body)

    # back to the list and search it by a word of the text, typed key by key
    ed.page.get_by_role("link", name="notes: all notes").click()
    ed.wait("() => notesApp.noteId === null")
    ed.testid("search").click()
    ed.page.keyboard.type(word, delay=30)
    items = ed.testid("note-list").locator(".note-item")
    ed.wait("""(id) => {
        const items = [...document.querySelectorAll('[data-testid=note-list] .note-item')];
        return items.length === 1 && items[0].dataset.id === id;
    }""", note_id)
    assert items.first.locator(".note-title").inner_text() == title
    # debounced: a request once typing pauses, not one per key (a slow machine may pause early)
    assert searches[-1] == word and len(searches) <= 3, searches
    assert all(word.startswith(q) for q in searches), searches

    # by a word of the title (Enter searches at once), then open the note from the result
    ed.testid("search").fill(title_word)
    ed.testid("search").press("Enter")
    ed.wait("(id) => document.querySelector('[data-testid=note-list] .note-item')?.dataset.id"
            " === id && document.querySelectorAll('[data-testid=note-list] .note-item')"
            ".length === 1", note_id)
    assert searches[-1] == title_word
    ed.testid("search").fill("nothing" + uid())
    ed.testid("search").press("Enter")
    ed.testid("note-list").get_by_text("No notes match").wait_for()
    ed.testid("search").fill(word)
    ed.testid("search").press("Enter")
    items.first.wait_for()
    items.first.click()
    ed.wait_connected(note_id)
    assert ed.testid("title").input_value() == title
    assert ed.text() == body


# --- 3. offline typing ---------------------------------------------------------------------------


def test_offline_typing_is_kept_and_converges(open_page, make_note, http):
    start = "one two three"
    note = make_note("Offline", start)
    ada = open_page("Ada").open(note["id"])
    bob = open_page("Bob").open(note["id"])
    ada.wait_status("connected", "true")

    # Ada goes offline and types at the end; Bob types at the start meanwhile
    ada.js("() => notesApp.disconnect()")
    ada.wait_status("offline")
    ada.set_caret(len(start))
    ada.type(" four é漢😀")
    ada.wait_status("offline", "false")
    assert ada.state()["pending"]
    bob.set_caret(0)
    bob.type("zero 😀 ")
    bob.idle()
    assert http.get(f"/notes/{note['id']}").json()["content"] == "zero 😀 one two three"
    assert ada.text() == "one two three four é漢😀"

    ada.js("() => notesApp.reconnect()")
    text = converge(http, note["id"], ada, bob)
    assert text == "zero 😀 one two three four é漢😀"
    ada.wait_status("connected", "true")  # the server stored it, and said so
    log = ada.status_log()
    assert "offline" in went_away_and_back(log), log

    # the socket drops (as the network would); both keep typing; it comes back by itself
    ada.js("() => notesApp.dropConnection()")
    ada.type(" five")
    bob.set_caret(0)
    bob.type(">> ")
    text = converge(http, note["id"], ada, bob)
    assert text == ">> zero 😀 one two three four é漢😀 five"
    ada.wait_status("connected", "true")
    bob.wait_status("connected", "true")
    log = ada.status_log()
    assert "reconnecting" in went_away_and_back(log), log


def test_server_restart_while_typing(open_page, database_url, make_note):
    """The server itself goes away (its sockets close) and comes back on the same port."""
    own = ServerProcess(database_url, log_name="e2e-restart").start()
    try:
        with httpx.Client(base_url=own.url, timeout=30) as client:
            note = client.post("/notes", json={"title": "Restart", "content": "before"}).json()
            ed = open_page("Ada", base=own.url).open(note["id"])
            ed.set_caret(len("before"))
            ed.type(" online")
            ed.idle()
            assert own.stop() == 0
            ed.wait("() => ['reconnecting', 'offline'].includes(notesApp.state().status)")
            ed.type(" while the server was down 漢😀")
            ed.wait_status(saved="false")
            own.start()
            ed.wait_connected()
            text = converge(client, note["id"], ed)
            assert text == "before online while the server was down 漢😀"
            ed.wait_status("connected", "true")
            went_away_and_back(ed.status_log())
    finally:
        own.stop()


# Saves (snapshots) far away: in the SIGKILL test, what a killed process acknowledged can only
# survive through the update log (which a later load, or another process, merges).
SLOW_SAVES = {"NOTES_SAVE_DEBOUNCE": "60", "NOTES_SAVE_MAX_WAIT": "120"}

# The page's side of a kill and a restart, recorded by wrapping the OT client's receive(): every
# hello (its epoch, whether it had `missed`), every ack (and whether it came at a revision the page
# had already: a ref the server recognised), and, while window.__holdAck is set, the ack of the
# awaiting edit kept from the page (as if the process died between its commit and the ack leaving).
# The hold ends with the next hello (the socket that carried the ack is gone by then).
SIGKILL_HOOKS_JS = """() => {
    const c = notesApp.client;
    // the hello of the page's first connection came before this: its numbering, as a start
    window.__hellos = [{ epoch: c.epoch, rev: c.rev, missed: false, since: null, content: null }];
    window.__acks = [];
    window.__holdAck = false;
    window.__heldAck = null;
    const receive = c.receive.bind(c);
    c.receive = (msg) => {
        if (msg && msg.type === 'hello') {
            window.__holdAck = false;
            window.__hellos.push({ epoch: msg.epoch, rev: msg.rev, missed: 'missed' in msg,
                                   since: msg.since ?? null, content: msg.content });
        } else if (msg && msg.type === 'ack') {
            const awaiting = c.awaiting ? c.awaiting.ref : null;
            if (window.__holdAck && awaiting !== null && msg.ref === awaiting) {
                window.__heldAck = { ref: msg.ref, rev: msg.rev, delta: c.awaiting.delta };
                return undefined;
            }
            window.__acks.push({ rev: msg.rev, ref: msg.ref, awaiting,
                                 duplicate: c.rev !== null && msg.rev <= c.rev });
        }
        return receive(msg);
    };
}"""


# Is this client ref stored, in the log or compacted into the snapshot (as the server asks)?
REF_STORED = ("SELECT EXISTS (SELECT 1 FROM note_updates WHERE note_id = :id AND ref = :ref)"
              " OR COALESCE((SELECT refs ? :ref FROM notes WHERE id = :id), false)")


def server_on_port(database_url: str, port: int, log_name: str,
                   env: dict[str, str] | None = None) -> ServerProcess:
    """A ServerProcess for ``port`` (conftest's picks a free one): to stand in for a dead one."""
    process = ServerProcess(database_url, env=env, log_name=log_name)
    process.port = port
    process.url = f"http://127.0.0.1:{port}"
    process.ws_url = f"ws://127.0.0.1:{port}"
    process.env["NOTES_PORT"] = str(port)
    process.log_path = ARTIFACTS / f"{log_name}-{port}.log"
    return process


def port_bindable(port: int) -> bool:
    """Could a server listen on 127.0.0.1:port now (as Sanic does, with SO_REUSEADDR)?"""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def restart_on_port(database_url: str, port: int, log_name: str,
                    env: dict[str, str] | None = None, attempts: int = 3) -> ServerProcess:
    """A new server process on the port a killed one held (the kernel frees it when the process
    dies; should a bind still fail, wait for the port and start again)."""
    for attempt in range(1, attempts + 1):
        wait_until(lambda: port_bindable(port), 10, 0.05, f"port {port} to be free")
        process = server_on_port(database_url, port, f"{log_name}-{attempt}", env)
        try:
            return process.start()
        except AssertionError:
            process.stop(signal.SIGKILL)
            if attempt == attempts or "address already in use" not in process.log().lower():
                raise
    raise AssertionError("unreachable")


def distinct_characters(n: int) -> str:
    """n different characters, ASCII letters and CJK ideographs in turn (keys and text input)."""
    assert n <= 2 * len(string.ascii_letters)
    return "".join(string.ascii_letters[i // 2] if i % 2 == 0 else chr(0x4E00 + 7 * i)
                   for i in range(n))


def off_the_loop(sql: Callable[..., list]) -> Callable[..., list]:
    """conftest's ``sql`` (asyncio.run) from a thread of its own: Playwright's sync API keeps an
    event loop running on this one."""

    def run(statement: str, **params) -> list:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(sql, statement, **params).result(30)

    return run


def test_sigkill_mid_typing_and_a_new_process_on_the_port(open_page, database_url, sql, http):
    """The server is SIGKILLed while the page types, three times; each time a new process (a new
    revision numbering: epoch) starts on the same port and database. The page reconnects by itself
    with its old since/epoch, gets a hello without `missed`, rebases by diff and resends what was
    not acknowledged; the server recognises a resent ref it had committed. Every typed character is
    there exactly once, in typing order, and the page and the REST view agree (on the new process
    and on the session's, another process on that database). The killed processes never wrote a
    snapshot (saves far away): what they acknowledged survived through the update log. In the
    second round the ack of a committed edit is kept from the page, so a resend of a stored ref
    certainly happens."""
    start = "0) "
    rounds = [(6, 4), (6, 4), (6, 4)]  # (characters before the kill, after it while down)
    chars = distinct_characters(sum(a + b + 2 for a, b in rounds))
    assert not set(chars) & set(start)
    sql = off_the_loop(sql)
    own = server_on_port(database_url, free_port(), "e2e-sigkill-0", SLOW_SAVES).start()
    sockets: list[str] = []
    try:
        with httpx.Client(base_url=own.url, timeout=30) as client:
            note = client.post("/notes", json={"title": "SIGKILL", "content": start}).json()
        nid = note["id"]
        ed = open_page("Ada", base=own.url)
        ed.page.on("websocket", lambda ws: sockets.append(ws.url))
        ed.open(nid)
        ed.js(SIGKILL_HOOKS_JS)
        ed.set_caret(len(start))
        expected, at = start, 0

        def type_next(n: int) -> None:
            nonlocal expected, at
            for ch in chars[at:at + n]:
                ed.key(ch)
                expected += ch
            at += n

        for i, (before, after) in enumerate(rounds):
            hello = ed.js("() => window.__hellos.at(-1)")
            held = None
            type_next(before)
            assert httpx.get(own.url + "/health").json()["process"]["saves"] == 0
            if i == 1:
                # the next ack of the awaiting edit never reaches the page; the edit is committed
                # (an ack means stored), and the page goes on typing into its buffer
                ed.js("() => { window.__holdAck = true; }")
                type_next(1)
                held = ed.wait("() => window.__heldAck").json_value()
                assert sql(REF_STORED, id=uuid.UUID(nid), ref=held["ref"]) == [(True,)], held
                type_next(1)
            else:
                type_next(2)
            # mid-typing: the process dies at once, sockets and all
            n_sockets = len(sockets)
            assert own.stop(signal.SIGKILL) == -signal.SIGKILL
            acked = ed.js("() => notesApp.client.serverText")  # all acked, so all committed
            ed.wait("() => ['reconnecting', 'offline'].includes(notesApp.state().status)")
            type_next(after)
            assert ed.state()["pending"]
            acks_before = ed.js("() => window.__acks.length")

            own = restart_on_port(database_url, own.port, f"e2e-sigkill-{i + 1}", SLOW_SAVES)
            ed.wait("(n) => window.__hellos.length > n", i + 1, timeout=30_000)
            with httpx.Client(base_url=own.url, timeout=30) as client:
                text = converge(client, nid, ed)
                process = client.get("/health").json()["process"]
            assert process["saves"] == 0 and process["log_entries"] > 0, process
            counts = Counter(text)
            assert {ch: counts[ch] for ch in chars[:at] if counts[ch] != 1} == {}, text
            assert text == expected and ed.text() == expected, (text, expected)

            # the reconnect named the old numbering; the new process has its own: no `missed`
            again = ed.js("() => window.__hellos.at(-1)")
            assert again["epoch"] and again["epoch"] != hello["epoch"], (hello, again)
            assert not again["missed"] and again["since"] is None, again
            assert sockets[n_sockets:], sockets
            for url in sockets[n_sockets:]:
                query = parse_qs(urlparse(url).query)
                assert query.get("epoch") == [hello["epoch"]], url
                assert int(query["since"][0]) >= hello["rev"], url
            # what the killed process acknowledged came back from the log (the snapshot has none
            # of it): the new process began with a prefix of the typing, all the acked part at least
            loaded = again["content"]
            assert expected.startswith(loaded) and loaded.startswith(acked), (loaded, acked)
            acks = ed.js("(n) => window.__acks.slice(n)", acks_before)
            if held is not None:
                # the edit whose ack was kept from the page was loaded from the log; resent with
                # its ref, it was recognised: a duplicate ack, and the page dropped its own copy
                inserted = "".join(op.get("insert", "") for op in held["delta"])
                assert inserted and loaded == acked + inserted, (held, acked, loaded)
                assert [a for a in acks if a["ref"] == held["ref"] and a["duplicate"]], acks
            went_away_and_back(ed.status_log())
        # another process on the database reads the same text (snapshot and log merged)
        assert http.get(f"/notes/{nid}").json()["content"] == expected
    finally:
        own.stop()


# --- 4. remote edits before, at and after the caret ----------------------------------------------


def test_remote_edits_keep_the_caret_in_place(open_page, make_note, http):
    note = make_note("Caret", "0123456789")
    nid = note["id"]
    ada = open_page("Ada").open(nid)
    bob = open_page("Bob").open(nid)
    ada.set_caret(5)  # after "01234"

    def post_edit(delta: list[dict]) -> None:
        rev = http.get(f"/notes/{nid}").json()["rev"]
        response = http.post(f"/notes/{nid}/edits", json={"rev": rev, "delta": delta})
        assert response.status_code == 200, response.text

    # a REST edit before the caret (with characters outside the BMP): the caret moves with its text
    post_edit([{"retain": 2}, {"insert": "é漢😀"}])
    ada.wait("() => notesApp.state().editorText === '01é漢😀23456789'")
    assert ada.caret() == [8, 8]
    # a REST PATCH (a minimal diff) before and after the caret
    assert http.patch(f"/notes/{nid}", json={"content": "XY01é漢😀23456789!"}).status_code == 200
    ada.wait("() => notesApp.state().editorText === 'XY01é漢😀23456789!'")
    assert ada.caret() == [10, 10]
    # another page typing before it
    bob.set_caret(0)
    bob.type("Bob: ")
    ada.wait("() => notesApp.state().editorText.startsWith('Bob: XY')")
    assert ada.caret() == [15, 15]
    # typing goes on exactly there
    ada.type("|ada|")
    text = converge(http, nid, ada, bob)
    assert text == "Bob: XY01é漢😀234|ada|56789!"
    assert ada.caret() == [20, 20]

    # text someone else inserts right at the caret stays after it
    post_edit([{"retain": 20}, {"insert": "@"}])
    ada.wait("() => notesApp.state().editorText.includes('|ada|@')")
    assert ada.caret() == [20, 20]
    ada.type("#")
    assert converge(http, nid, ada, bob) == "Bob: XY01é漢😀234|ada|#@56789!"

    # a selection stays on the same text while others edit around it, and typing replaces it
    ada.set_caret(22, 24)
    assert ada.selected() == "56"
    bob.set_caret(0)
    bob.type("😀")
    bob.page.keyboard.press("End")
    bob.type("?")
    ada.wait("() => notesApp.state().editorText.endsWith('!?')")
    assert ada.selected() == "56"
    ada.type("漢")
    assert converge(http, nid, ada, bob) == "😀Bob: XY01é漢😀234|ada|#@漢789!?"

    # a remote delete around the caret puts it where the deleted text was
    ada.set_caret(4)  # in "Bob: ", after "😀Bob"
    bob.set_caret(1, 6)
    bob.page.keyboard.press("Backspace")
    ada.wait("() => notesApp.state().editorText.startsWith('😀XY')")
    assert ada.caret() == [1, 1]
    ada.type("-")
    assert converge(http, nid, ada, bob).startswith("😀-XY01")


# --- 5. presence ---------------------------------------------------------------------------------


def test_presence_names_and_cursors(open_page, make_note, http):
    note = make_note("Presence", "line one\nline 😀 two\nthree")
    ada = open_page("Ada Lovelace").open(note["id"])
    bob = open_page("Bob 漢").open(note["id"])
    bob.testid("peers").get_by_text("Ada Lovelace").wait_for()
    ada.testid("peers").get_by_text("Bob 漢").wait_for()
    ada_id = ada.state()["clientId"]

    # Ada's caret after the emoji on line 2: Bob sees where, and the caret in the text
    ada.set_caret(15)
    chip = bob.page.locator(f'[data-testid=peers] .peer[data-client="{ada_id}"]')
    bob.wait("(id) => document.querySelector(`[data-testid=peers] .peer[data-client=\"${id}\"]`)"
             "?.dataset.cursor === '15'", ada_id)
    assert chip.get_attribute("data-name") == "Ada Lovelace"
    assert "Ln 2, Col 7" in chip.inner_text()
    caret = bob.page.locator(f'#mirror .caret[data-client="{ada_id}"]')
    caret.wait_for()
    assert "Ada Lovelace" in caret.inner_text()
    mirror_text_before = """(id) => {
        // the mirror's text up to that caret (the carets' own labels left out)
        let s = '';
        for (const n of document.getElementById('mirror').childNodes) {
            if (n.nodeType === 1 && n.classList.contains('caret')) {
                if (n.dataset.client === id) return s;
                continue;
            }
            s += n.textContent;
        }
        return null;
    }"""
    assert bob.js(mirror_text_before, ada_id) == "line one\nline 😀"
    box, editor_box = caret.bounding_box(), bob.testid("editor").bounding_box()
    assert box and editor_box and editor_box["y"] < box["y"] < editor_box["y"] + 90

    # a selection: its length, and the selected text marked
    ada.set_caret(9, 13)
    bob.wait("() => document.querySelector('[data-testid=peers] .peer-where')?.textContent"
             ".includes('4 selected')")
    assert bob.page.locator("#mirror .sel").inner_text() == "line"

    # Bob types before Ada's caret: Bob's page moves Ada's caret along with the text
    ada.set_caret(15)
    bob.set_caret(0)
    bob.type("漢😀 ")
    bob.wait("(id) => notesApp.state().peers.find((p) => p.client === id)?.cursor?.index === 18",
             ada_id)
    # (the mirror is redrawn after the state changes: wait for it rather than read it at once)
    bob.wait(f"(id) => ({mirror_text_before})(id) === '漢😀 line one\\nline 😀'", ada_id)
    converge(http, note["id"], ada, bob)

    # a new name shows for the others; leaving takes the chip away
    ada.js("() => notesApp.setName('Ada L.')")
    bob.testid("peers").get_by_text("Ada L.").wait_for()
    assert "Ada Lovelace" not in bob.testid("peers").inner_text()
    ada.js("() => notesApp.showList()")
    bob.testid("peers").get_by_text("Only you here").wait_for()
    assert bob.page.locator("#mirror .caret").count() == 0


def test_a_yjs_editor_beside_the_page(open_page, make_note, http, server):
    """A real npm Yjs client (node) and the page on one note: the page shows it as a peer with
    its awareness name, and their edits meet."""
    note = make_note("With Yjs", "shared 😀 text")
    ada = open_page("Ada").open(note["id"])
    with node_yjs_client() as yjs:
        yjs.run(yjs.client.connect(server.ws_url + "/yjs", note["id"]))
        yjs.run(yjs.client.wait_synced())
        yjs.run(yjs.client.set_awareness("user", {"name": "Yuki 雪"}))
        ada.testid("peers").get_by_text("Yuki 雪").wait_for()
        yjs.run(yjs.client.insert(0, "漢 "))  # UTF-16 index 0
        ada.wait("() => notesApp.state().editorText.startsWith('漢 shared')")
        ada.set_caret(len("漢 shared 😀 text"))
        ada.type(" 😀!")
        yjs.run(yjs.client.wait_content("漢 shared 😀 text 😀!"))
        converge(http, note["id"], ada)
    ada.testid("peers").get_by_text("Only you here").wait_for()


class _NodeYjs:
    """A NodeYjsClient on an event loop of its own (these tests are synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = NodeYjsClient("page-peer")
        self.run(self.client.start())

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextlib.contextmanager
def node_yjs_client() -> Iterator[_NodeYjs]:
    peer = _NodeYjs()
    try:
        yield peer
    finally:
        peer.close()


# --- 6. the API docs, offline --------------------------------------------------------------------


def test_docs_page_renders_with_no_request_leaving_the_machine(open_page):
    ed = open_page("Reader")
    blocked: list[str] = []
    served: list[str] = []

    def only_local(route) -> None:
        host = urlparse(route.request.url).hostname
        if host == "127.0.0.1":
            served.append(route.request.url)
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    ed.context.route("**/*", only_local)
    ed.goto("/")
    link = ed.testid("docs-link")
    assert link.get_attribute("href") == "/docs"
    with ed.context.expect_page() as opened:
        link.click()
    docs = opened.value
    docs.get_by_text("Create a note").first.wait_for(timeout=TIMEOUT_MS)
    for summary in ("List and search notes", "Read a note", "Apply one edit (a delta) over HTTP"):
        assert docs.get_by_text(summary).first.is_visible(), summary
    assert docs.locator(".opblock").count() >= 7
    assert urlparse(docs.url).path.startswith("/docs")
    assert any("swagger-ui-bundle" in url for url in served), served
    assert blocked == [], f"requests that would have left the machine: {blocked}"
    docs.close()


# --- 7. back button and shared links -------------------------------------------------------------


def test_back_button_and_a_shared_link(open_page, make_note, http):
    note = make_note(f"Shared {uid()}", "hello from the list")
    ed = open_page("Walker").goto("/")
    item = ed.page.locator(f'[data-testid=note-list] .note-item[data-id="{note["id"]}"] a')
    item.click()
    ed.wait_connected(note["id"])
    assert urlparse(ed.page.url).query == f"note={note['id']}"
    assert ed.text() == "hello from the list"

    ed.page.go_back()
    ed.wait("() => notesApp.noteId === null")
    assert urlparse(ed.page.url).path == "/" and not urlparse(ed.page.url).query
    assert ed.page.locator("#note").is_hidden() and ed.page.locator("#welcome").is_visible()
    item.wait_for()
    ed.page.go_forward()
    ed.wait_connected(note["id"])
    assert ed.text() == "hello from the list"

    # the address, opened by someone else in another browser, joins the same note
    friend = open_page("Friend")
    friend.page.goto(ed.page.url)
    friend.wait_connected(note["id"])
    friend.testid("peers").get_by_text("Walker").wait_for()
    ed.testid("peers").get_by_text("Friend").wait_for()
    friend.set_caret(0)
    friend.type("😀 ")
    ed.wait("() => notesApp.state().editorText === '😀 hello from the list'")
    assert converge(http, note["id"], ed, friend) == "😀 hello from the list"


# --- 8. a screenshot for people ------------------------------------------------------------------


def test_screenshot_of_two_editors(browser, open_page, make_note, http):
    text = "Packing list\n- passport\n- camera\n\nPlaces\n"
    note = make_note("Trip to Kyoto 京都", text)
    ada = open_page("Ada Lovelace", width=720, height=520).open(note["id"])
    bob = open_page("Bob 漢", width=720, height=520).open(note["id"])
    ada_script = "\n- umbrella ☂ and 😀 stickers"
    bob_script = "- Fushimi Inari 伏見稲荷\n- Kinkaku-ji 金閣寺"
    ada.set_caret(text.index("\n\nPlaces"))
    bob.testid("editor").press("Control+End")
    interleave(ada, ada_script, bob, bob_script)
    at = text.index("\n\nPlaces")
    final = converge(http, note["id"], ada, bob)
    assert final == text[:at] + ada_script + text[at:] + bob_script
    ada.wait_status("connected", "true")
    bob.wait_status("connected", "true")
    # Ada selects a word, Bob moves his caret: each page shows the other's caret with its name
    ada.set_caret(final.index("passport"), final.index("passport") + len("passport"))
    for _ in range(3):
        bob.page.keyboard.press("ArrowLeft")
    bob.page.locator("#mirror .sel").get_by_text("passport").wait_for()
    for me, other in ((ada, bob), (bob, ada)):
        me.testid("peers").get_by_text(other.name).wait_for()
        me.page.locator("#mirror .caret.fresh").get_by_text(other.name).wait_for()
        assert me.text() == final
    # Bob's caret, three characters back: before 金閣寺 (presence arrives after the key presses)
    ada.testid("peers").get_by_text("Ln 8, Col 14").wait_for(timeout=TIMEOUT_MS)
    shots = [base64.b64encode(e.page.screenshot()).decode() for e in (ada, bob)]

    sheet = browser.new_page(viewport={"width": 1480, "height": 600})
    try:
        sheet.set_content(f"""<!doctype html><meta charset="utf-8">
            <style>
              body {{ margin: 0; padding: 12px; background: #2b2f3a; display: flex; gap: 16px;
                      font: 14px system-ui, sans-serif; color: #eee; }}
              figure {{ margin: 0; }} img {{ display: block; border: 1px solid #555; }}
              figcaption {{ height: 20px; line-height: 20px; padding-bottom: 6px; }}
            </style>
            <figure><figcaption>Ada Lovelace</figcaption>
              <img src="data:image/png;base64,{shots[0]}"></figure>
            <figure><figcaption>Bob 漢</figcaption>
              <img src="data:image/png;base64,{shots[1]}"></figure>""")
        sheet.wait_for_function("() => [...document.images].every((i) => i.complete)")
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / "two-editors.png"
        sheet.screenshot(path=str(path), full_page=True)
    finally:
        sheet.close()
    assert path.stat().st_size > 20_000
