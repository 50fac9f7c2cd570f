"""The page's version history, trash and download: headless Chromium against real servers
(``auth_server`` with accounts on, ``server`` with them off), real sockets, no fakes.

Through the page, as a person would:

- typing in a note records versions (waited for through ``GET /versions``, never a sleep); the
  History panel lists them newest first with their authors; a version's preview marks what was
  deleted since (``<del>``) and inserted since (``<ins>``) at the right places in a text of é, 漢
  and 😀 (code points, not UTF-16 units), and the title when it changed;
- "Restore this version" puts the version's text in the editor through the live socket, and a
  second tab on the note sees it live without reloading; the history then lists the restore;
- "Name this version" puts the label on the current text's version;
- a viewer (shared as viewer) and a viewer link see the history and previews but no restore and
  no naming; an editor link may restore; link visitors have no Trash and no Export;
- Move to trash (the dialog's wording), the Trash view lists the note (when trashed, when it is
  purged), Restore brings it back to the list with its text, Delete forever (after a
  confirmation that can be cancelled) removes it for good;
- Download saves a file named ``….md`` holding the note's content byte for byte (with the
  account's cookie and with a share link's bearer token); Export all links to ``/export``;
- with accounts off the same panel, trash and download work;
- versions.js on its own: segments on surrogate pairs, replacements, the server's character
  diffs of prose shown word by word, a delta that does not fit; Content-Disposition file names.

Waits are conditions (Playwright's ``expect`` and ``wait_for_function``, polling the API),
never sleeps.
"""

from __future__ import annotations

import json
import re
import uuid
import zipfile
from pathlib import Path

import pytest
from conftest import ARTIFACTS, wait_until
from test_browser_auth import (  # people: the fixture, shared with the accounts tests
    Person,
    notice,
    people,  # noqa: F401
    shared_pair,
    visit_link,
)
from test_browser_e2e import (  # browser, open_page: the fixtures, shared with the e2e tests
    TIMEOUT_MS,
    Editor,
    browser,  # noqa: F401
    open_page,  # noqa: F401
    uid,
)

from notes.transfer import Limits, parse

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture fails with a clear message
    expect = None

BACKSPACE = "\b"

# What the preview shows, piece by piece: [kind, text] for text nodes ("same"), <del> and <ins>.
PREVIEW_PIECES = """() => {
    const box = document.querySelector('[data-testid=preview-text]');
    const out = [];
    for (const node of box.childNodes) {
        const kind = node.nodeType === Node.TEXT_NODE ? 'same' : node.localName;
        const text = node.textContent.replace(/\\u200b/g, '');
        if (text) out.push([kind, text]);
    }
    return out;
}"""


def versions_of(person: Person, note_id: str) -> list[dict]:
    status, page = person.rest("GET", f"/notes/{note_id}/versions?limit=200")
    assert status == 200, (status, page)
    return page["items"]


def wait_version_of(person: Person, note_id: str, content: str, title: str | None = None
                    ) -> list[dict]:
    """Wait until the newest version holds ``content`` (and ``title``): the saves are done."""

    def newest_is_it():
        items = versions_of(person, note_id)
        if not items:
            return None
        if title is not None and items[0]["title"] != title:
            return None
        status, full = person.rest("GET", f"/notes/{note_id}/versions/{items[0]['id']}")
        return items if status == 200 and full["content"] == content else None

    return wait_until(newest_is_it, 15, 0.1, f"a version holding {content!r}")


def history_panel(person: Editor):
    person.page.get_by_role("button", name="History", exact=True).click()
    panel = person.testid("history-panel")
    expect(panel).to_be_visible()
    expect(person.testid("version-list").locator(".version-item").first).to_be_visible()
    return panel


def version_rows(person: Editor):
    return person.testid("version-list").locator(".version-item")


def preview_version(person: Editor, version_id: int) -> None:
    row = person.testid("version-list").locator(f'.version-item[data-id="{version_id}"]')
    row.get_by_role("button").click()
    preview = person.testid("preview")
    expect(preview).to_be_visible()
    expect(preview).to_have_attribute("data-version", str(version_id))
    expect(person.testid("preview-text")).not_to_have_attribute("aria-busy", "true")
    expect(person.testid("editor")).to_be_hidden()


def restore_button(person: Editor):
    return person.page.get_by_role("button", name="Restore this version")


def name_button(person: Editor):
    return person.page.get_by_role("button", name="Name this version")


# --- history: the list, the preview ---------------------------------------------------------


def test_versions_are_listed_and_the_preview_marks_the_changes(people):  # noqa: F811
    ada = people("Ada").sign_up()
    old = "é漢😀 one QQQQ two three"
    old_title = f"Draft {uid()}"
    note = ada.create_note(old_title, old)
    first = versions_of(ada, note["id"])
    assert [v["length"] for v in first] == [len(old)], first  # its text as its first version

    ada.open_note(note["id"])
    # delete "QQQQ " (Backspace after it) and insert " 😀漢é ZZ" after "two"
    ada.set_caret(len("é漢😀 one QQQQ "))
    ada.type(BACKSPACE * 5)
    ada.set_caret(len("é漢😀 one two"))
    ada.type(" 😀漢é ZZ")
    new_title = f"Final {uid()}"
    ada.testid("title").fill(new_title)
    ada.testid("title").press("Enter")
    new = "é漢😀 one two 😀漢é ZZ three"
    assert ada.idle()["text"] == new
    items = wait_version_of(ada, note["id"], new, new_title)
    assert len(items) >= 2 and items[-1]["id"] == first[0]["id"]

    history_panel(ada)
    expect(ada.page.get_by_role("button", name="History", exact=True)).to_have_attribute(
        "aria-expanded", "true")
    rows = version_rows(ada)
    expect(rows).to_have_count(len(items))
    # newest first, each with its authors
    assert rows.evaluate_all("rs => rs.map((r) => Number(r.dataset.id))") == [
        v["id"] for v in items]
    expect(rows.first.locator(".version-latest")).to_have_text("latest")
    expect(rows.first.locator(".version-authors")).to_have_text(f"by {ada.username}")
    # a writer may restore and name
    expect(name_button(ada)).to_be_visible()

    preview_version(ada, first[0]["id"])
    assert ada.js(PREVIEW_PIECES) == [
        ["same", "é漢😀 one "],
        ["del", "QQQQ "],
        ["same", "two"],
        ["ins", " 😀漢é ZZ"],
        ["same", " three"],
    ]
    expect(ada.testid("preview-text").locator("del.diff-del")).to_have_count(1)
    expect(ada.testid("preview-text").locator("ins.diff-ins")).to_have_count(1)
    expect(ada.testid("preview-summary")).to_have_text("5 removed, 7 added (characters)")
    title = ada.testid("preview-title")
    expect(title).to_be_visible()
    expect(title.locator("del")).to_have_text(old_title)
    expect(title.locator("ins")).to_have_text(new_title)
    expect(restore_button(ada)).to_be_visible()
    ada.page.screenshot(path=str(ARTIFACTS / "history-preview.png"))

    # the newest version is the current text: nothing marked, no title line
    preview_version(ada, items[0]["id"])
    assert ada.js(PREVIEW_PIECES) == [["same", new]]
    expect(ada.testid("preview-title")).to_be_hidden()
    expect(ada.testid("preview-summary")).to_have_text("The text is the same as now.")

    # typing elsewhere (another writer) while a preview is open refreshes its changes
    status, _ = ada.rest("PATCH", f"/notes/{note['id']}", {"content": new + " 😀"})
    assert status == 200
    ada.wait("""() => {
        const ins = document.querySelectorAll('[data-testid=preview-text] ins');
        return ins.length === 1 && ins[0].textContent === ' 😀';
    }""")

    ada.page.get_by_role("button", name="Back to the note").click()
    expect(ada.testid("preview")).to_be_hidden()
    expect(ada.testid("editor")).to_be_visible()
    ada.page.get_by_role("button", name="Close history").click()
    expect(ada.testid("history-panel")).to_be_hidden()


def test_restore_reaches_another_tab_live_and_naming_labels_the_text(people):  # noqa: F811
    ada = people("Ada").sign_up()
    old = "first 😀 line\nsecond 漢 line"
    note = ada.create_note(f"Restore {uid()}", old)
    ada.open_note(note["id"])
    other = ada.tab()
    sockets: list[str] = []
    other.page.on("websocket", lambda ws: sockets.append(ws.url))
    other.open_note(note["id"])
    other.js("() => { window.__sameDocument = true; }")  # gone if the tab reloads

    ada.set_caret(len(old))
    ada.type("\nthird é line")
    new = old + "\nthird é line"
    ada.idle()
    expect(other.testid("editor")).to_have_value(new)
    items = wait_version_of(ada, note["id"], new)
    oldest = items[-1]

    history_panel(ada)
    expect(version_rows(ada)).to_have_count(len(items))
    preview_version(ada, oldest["id"])
    assert ada.js(PREVIEW_PIECES) == [["same", old], ["ins", "\nthird é line"]]
    with ada.page.expect_response(lambda r: r.request.method == "POST"
                                  and r.url.endswith("/restore")) as answer:
        restore_button(ada).click()
    assert answer.value.status == 200
    # the text comes back live: here, and in the other tab without a reload
    expect(ada.testid("preview")).to_be_hidden()
    expect(ada.testid("editor")).to_be_visible()
    expect(ada.testid("editor")).to_have_value(old)
    expect(other.testid("editor")).to_have_value(old)
    assert other.js("() => window.__sameDocument") is True
    assert len(sockets) == 1, sockets
    expect(notice(ada)).to_contain_text("Restored the version of")
    state = ada.idle()
    assert state["text"] == old and other.idle()["text"] == old
    # the restore is saved as a version of its own, and the open list shows it
    after = wait_version_of(ada, note["id"], old)
    assert len(after) == len(items) + 1
    expect(version_rows(ada)).to_have_count(len(after))

    # name the current text: the newest version gets the label
    label = "Sent to print 😀"
    name_button(ada).click()
    form = ada.testid("name-version-form")
    expect(form).to_be_visible()
    form.get_by_label("Name the current text").fill(label)
    with ada.page.expect_response(lambda r: r.request.method == "POST"
                                  and r.url.endswith("/versions")) as answer:
        form.get_by_role("button", name="Save name").click()
    assert answer.value.status == 201
    expect(form).to_be_hidden()
    expect(version_rows(ada).first.locator(".version-label")).to_have_text(label)
    named = versions_of(ada, note["id"])
    assert named[0]["label"] == label
    status, full = ada.rest("GET", f"/notes/{note['id']}/versions/{named[0]['id']}")
    assert full["content"] == old
    # the other tab, opening History, sees the label too
    history_panel(other)
    expect(version_rows(other).first.locator(".version-label")).to_have_text(label)


# --- who may restore and name ----------------------------------------------------------------


def make_link(owner: Person, note_id: str, role: str) -> str:
    status, link = owner.rest("POST", f"/notes/{note_id}/links", {"role": role})
    assert status == 201, (status, link)
    return f"{owner.base}/?note={note_id}&link={link['token']}"


def expect_read_only_history(person: Person, version_id: int, text: str) -> None:
    history_panel(person)
    expect(name_button(person)).to_be_hidden()
    preview_version(person, version_id)
    expect(person.testid("preview-text")).to_contain_text(text)
    expect(restore_button(person)).to_be_hidden()


def test_viewers_see_history_but_cannot_restore_or_name(people):  # noqa: F811
    ada, bob, note = shared_pair(people, "viewer")
    status, _ = ada.rest("PATCH", f"/notes/{note['id']}", {"content": "second 😀 text"})
    assert status == 200
    items = wait_version_of(ada, note["id"], "second 😀 text")
    oldest = items[-1]["id"]

    # Bob, shared with as viewer
    bob.open_note(note["id"])
    expect(bob.testid("access")).to_contain_text("Read only")
    expect_read_only_history(bob, oldest, "first line")
    assert bob.js(PREVIEW_PIECES)[0] == ["del", "first line"]
    expect(version_rows(bob).first.locator(".version-authors")).to_have_text(
        f"by {ada.username}")

    # Cara, with a viewer link (no account): the history, read only; no Trash, no Export
    cara = visit_link(people, "Cara", make_link(ada, note["id"], "viewer"))
    expect_read_only_history(cara, oldest, "first line")
    expect(cara.testid("open-trash")).to_be_hidden()
    expect(cara.testid("export-all")).to_be_hidden()
    assert cara.errors == [] and not cara.testid("history-error").is_visible()

    # Dan, with an editor link: he may restore
    dan = visit_link(people, "Dan", make_link(ada, note["id"], "editor"))
    history_panel(dan)
    expect(name_button(dan)).to_be_visible()
    preview_version(dan, oldest)
    restore_button(dan).click()
    expect(dan.testid("editor")).to_have_value("first line")
    expect(dan.testid("open-trash")).to_be_hidden()
    # and the viewers see the restored text live
    expect(bob.testid("editor")).to_have_value("first line")
    expect(cara.testid("editor")).to_have_value("first line")


# --- the trash -------------------------------------------------------------------------------


def trash_dialog(person: Person):
    person.testid("open-trash").click()
    dialog = person.page.get_by_role("dialog", name="Trash")
    expect(dialog).to_be_visible()
    expect(person.testid("trash-list")).not_to_have_attribute("aria-busy", "true")
    return dialog


def move_to_trash(person: Person) -> None:
    person.page.get_by_role("button", name="Move to trash", exact=True).click()
    dialog = person.page.get_by_role("dialog", name="Move this note to the trash?")
    expect(dialog).to_contain_text("restore it from the Trash")
    dialog.get_by_role("button", name="Move to trash").click()
    person.wait("() => notesApp.noteId === null")
    expect(notice(person)).to_have_text("The note was moved to the trash.")


def test_trash_restore_and_delete_forever(people):  # noqa: F811
    ada = people("Ada").sign_up()
    kept = ada.create_note(f"Kept {uid()}", "kept é漢😀 text")
    doomed = ada.create_note(f"Doomed {uid()}", "gone for good")
    ada.goto("/")
    expect(ada.list_item(kept["title"])).to_be_visible()
    dialog = trash_dialog(ada)
    expect(ada.testid("trash-list")).to_have_text("The trash is empty.")
    dialog.get_by_role("button", name="Done").click()

    ada.open_note(kept["id"])
    move_to_trash(ada)
    expect(ada.list_item(kept["title"])).to_have_count(0)
    ada.open_note(doomed["id"])
    move_to_trash(ada)

    # the trash lists both, newest trashed first, with when each goes for good
    dialog = trash_dialog(ada)
    rows = ada.testid("trash-list").locator(".trash-item")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map((r) => r.dataset.id)") == [doomed["id"], kept["id"]]
    row = rows.filter(has_text=kept["title"])
    expect(row.locator(".trash-deleted")).to_have_text("trashed just now")
    expect(row.locator(".trash-purge")).to_have_text(
        re.compile(r"^deleted for good (in \d+ days|tomorrow|today)$"))
    ada.page.screenshot(path=str(ARTIFACTS / "history-trash.png"))

    # Restore: back in the list, with its text
    row.get_by_role("button", name="Restore").click()
    expect(rows).to_have_count(1)
    expect(notice(ada)).to_have_text(f"“{kept['title']}” is back in your notes.")
    expect(ada.list_item(kept["title"])).to_be_visible()

    # Delete forever: a confirmation first (Cancel keeps it)
    row = rows.filter(has_text=doomed["title"])
    row.get_by_role("button", name="Delete forever").click()
    confirm = ada.page.get_by_role("dialog", name="Delete this note forever?")
    expect(confirm).to_contain_text(f"“{doomed['title']}”")
    expect(confirm).to_contain_text("cannot be undone")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(rows).to_have_count(1)
    row.get_by_role("button", name="Delete forever").click()
    with ada.page.expect_response(lambda r: r.request.method == "DELETE"
                                  and "/trash/" in r.url) as answer:
        confirm.get_by_role("button", name="Delete forever").click()
    assert answer.value.status == 204
    expect(ada.testid("trash-list")).to_have_text("The trash is empty.")
    assert ada.rest("POST", f"/trash/{doomed['id']}/restore")[0] == 404
    assert ada.rest("GET", f"/notes/{doomed['id']}")[0] == 404
    dialog.get_by_role("button", name="Done").click()

    ada.list_item(kept["title"]).click()
    ada.wait_connected(kept["id"])
    expect(ada.testid("editor")).to_have_value("kept é漢😀 text")
    expect(ada.list_item(doomed["title"])).to_have_count(0)


# --- download and export ---------------------------------------------------------------------


def download(person: Editor) -> tuple[str, bytes]:
    with person.page.expect_download() as info:
        person.page.get_by_role("button", name="Download", exact=True).click()
    file = info.value
    return file.suggested_filename, Path(file.path()).read_bytes()


def test_download_saves_the_note_as_markdown(people):  # noqa: F811
    ada = people("Ada").sign_up()
    title = f"Plan é漢😀 {uid()}"
    content = "# Plan\n\né漢😀 — a line\nand the last one, no newline"
    note = ada.create_note(title, content)
    ada.open_note(note["id"])
    ada.set_caret(len(content))
    ada.type(" 😀")  # typed, not yet saved: the download has it all the same
    name, data = download(ada)
    assert name.endswith(".md"), name
    assert "Plan" in name and "/" not in name, name
    assert data == (content + " 😀").encode(), data
    expect(ada.testid("export-all")).to_be_visible()
    assert ada.testid("export-all").get_attribute("href") == "/export"
    with ada.page.expect_download() as info:  # (signed in by the session cookie)
        ada.testid("export-all").click()
    assert info.value.suggested_filename.startswith("notes-")
    with zipfile.ZipFile(info.value.path()) as archive:
        notes = [parse(name, archive.read(name), Limits(200, 1_000_000))
                 for name in archive.namelist()]
    exported = {exported_note.id: exported_note for exported_note in notes}
    assert exported[uuid.UUID(note["id"])].content == content + " 😀"

    # with a share link (a bearer token, no cookie) too
    status, link = ada.rest("POST", f"/notes/{note['id']}/links", {"role": "viewer"})
    assert status == 201
    cara = visit_link(people, "Cara", f"{ada.base}/?note={note['id']}&link={link['token']}")
    cara_name, cara_data = download(cara)
    assert (cara_name, cara_data) == (name, data)
    expect(cara.testid("export-all")).to_be_hidden()


# --- accounts off ----------------------------------------------------------------------------


def test_accounts_off_history_trash_and_download(open_page, http):  # noqa: F811
    expect.set_options(timeout=TIMEOUT_MS)
    title = f"Open {uid()}"
    response = http.post("/notes", json={"title": title, "content": "one"})
    assert response.status_code == 201
    note = response.json()
    ed = open_page("Zoë 😀").open(note["id"])
    ed.set_caret(3)
    ed.type(" two")
    ed.idle()

    def versions():
        items = http.get(f"/notes/{note['id']}/versions").json()["items"]
        return items if items and items[0]["length"] == len("one two") else None

    items = wait_until(versions, 15, 0.1, "the typing's version")
    ed.page.get_by_role("button", name="History", exact=True).click()
    rows = ed.testid("version-list").locator(".version-item")
    expect(rows).to_have_count(len(items))
    expect(rows.first.locator(".version-authors")).to_have_text("by Zoë 😀")
    preview_version(ed, items[-1]["id"])
    assert ed.js(PREVIEW_PIECES) == [["same", "one"], ["ins", " two"]]
    expect(restore_button(ed)).to_be_visible()
    # a phone's width: the panel above the preview, both inside the screen
    ed.page.set_viewport_size({"width": 390, "height": 760})
    for testid in ("history-panel", "preview", "restore-version"):
        box = ed.testid(testid).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 391, (testid, box)
    assert ed.testid("history-panel").bounding_box()["y"] < ed.testid("preview").bounding_box()["y"]
    ed.page.screenshot(path=str(ARTIFACTS / "history-narrow.png"))
    ed.page.set_viewport_size({"width": 1100, "height": 700})

    name, data = download(ed)
    assert name.endswith(".md") and data == b"one two"

    ed.page.get_by_role("button", name="Move to trash", exact=True).click()
    ed.page.get_by_role("dialog", name="Move this note to the trash?").get_by_role(
        "button", name="Move to trash").click()
    ed.wait("() => notesApp.noteId === null")
    ed.testid("open-trash").click()
    row = ed.testid("trash-list").locator(f'.trash-item[data-id="{note["id"]}"]')
    expect(row).to_be_visible()
    row.get_by_role("button", name="Restore").click()
    expect(row).to_have_count(0)
    ed.page.get_by_role("dialog", name="Trash").get_by_role("button", name="Done").click()
    expect(ed.testid("note-list").locator(f'.note-item[data-id="{note["id"]}"]')).to_be_visible()
    assert http.get(f"/notes/{note['id']}").json()["content"] == "one two"


# --- versions.js -----------------------------------------------------------------------------


@pytest.fixture
def module_page(browser, server):  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/docs/protocol")  # any page of the server: same origin, no app
    page.evaluate("async () => { window.V = await import('/static/versions.js'); }")
    yield page
    context.close()
    assert not errors, errors


PROSE = [  # (version, current, what the preview shows)
    ("first line", "second 😀 text", [["del", "first line"], ["ins", "second 😀 text"]]),
    ("The quick brown fox jumps", "The quick red fox leaps",
     [["same", "The quick "], ["del", "brown"], ["ins", "red"], ["same", " fox "],
      ["del", "jumps"], ["ins", "leaps"]]),
    ("hello world", "hello brave new world",
     [["same", "hello "], ["ins", "brave new "], ["same", "world"]]),
    ("colour", "color", [["same", "colo"], ["del", "u"], ["same", "r"]]),
    ("line one\nline two", "line one\nline 2",
     [["same", "line one\nline "], ["del", "two"], ["ins", "2"]]),
    ("é漢😀 one QQQQ two three", "é漢😀 one two 😀漢é ZZ three",
     [["same", "é漢😀 one "], ["del", "QQQQ "], ["same", "two"], ["ins", " 😀漢é ZZ"],
      ["same", " three"]]),
]


def test_versions_module_on_the_servers_diffs(module_page):
    """The server's own character diff (notes.collab.delta.diff), shown word by word."""
    from notes.collab.delta import diff

    shown = module_page.evaluate(
        "(cases) => cases.map(([base, delta]) => "
        "V.changeSegments(base, delta).map((s) => [s.kind, s.text]))",
        [[old, diff(old, new)] for old, new, _ in PROSE])
    assert shown == [expected for _, _, expected in PROSE]


def test_versions_module(module_page):
    result = module_page.evaluate("""() => {
        const seg = (base, delta) => V.changeSegments(base, delta).map((s) => [s.kind, s.text]);
        let misfit = null;
        try { V.changeSegments('a😀', [{ retain: 3 }]); } catch (e) { misfit = e.name; }
        return {
            // a change inside a word takes the whole word
            emoji: seg('a😀b漢c d',
                [{ retain: 1 }, { delete: 1 }, { retain: 1 }, { insert: '😀' }, { delete: 1 }]),
            // (canonical: the insert before the delete) shown as the deleted text, then the new
            replace: seg('a b 😀 c', [{ retain: 4 }, { insert: '漢é' }, { delete: 1 }]),
            tail: seg('é漢😀', [{ retain: 3 }, { insert: '!' }]),
            untouched: seg('é漢😀', []),
            empty: seg('', [{ insert: '😀' }]),
            counts: V.changeCounts(V.changeSegments('a 😀😀 b',
                [{ retain: 2 }, { delete: 2 }, { insert: '漢' }])),
            // an insertion or a deletion inside a word stays exact
            inWord: seg('colour hello',
                [{ retain: 4 }, { delete: 1 }, { retain: 7 }, { insert: 's' }]),
            misfit,
            names: [
                V.dispositionFilename('attachment; filename="Plan _.md"; '
                    + "filename*=UTF-8''Plan%20%F0%9F%98%80.md"),
                V.dispositionFilename('attachment; filename="My \\\\"note\\\\".md"'),
                V.dispositionFilename('attachment; filename=plain.txt'),
                V.dispositionFilename('attachment; filename="../../etc/passwd"'),
                V.dispositionFilename('attachment'),
                V.dispositionFilename(null),
                V.fallbackFilename('Plan é漢😀!'),
                V.fallbackFilename(''),
            ],
        };
    }""")
    assert result == {
        "emoji": [["del", "a😀b漢c"], ["ins", "ab😀c"], ["same", " d"]],
        "replace": [["same", "a b "], ["del", "😀"], ["ins", "漢é"], ["same", " c"]],
        "tail": [["same", "é漢😀"], ["ins", "!"]],
        "untouched": [["same", "é漢😀"]],
        "empty": [["ins", "😀"]],
        "counts": {"removed": 2, "added": 1},
        "inWord": [["same", "colo"], ["del", "u"], ["same", "r hello"], ["ins", "s"]],
        "misfit": "RangeError",
        "names": ["Plan 😀.md", 'My "note".md', "plain.txt", "passwd", None, None,
                  "plan-é漢.md", "note.md"],
    }


def test_preview_falls_back_when_the_delta_does_not_fit(open_page, http):  # noqa: F811
    """A diff that does not fit the version (it should not happen) shows the version's text and
    says so, rather than something wrong."""
    expect.set_options(timeout=TIMEOUT_MS)
    response = http.post("/notes", json={"title": f"Misfit {uid()}", "content": "abc"})
    note = response.json()
    ed = open_page("Misfit").open(note["id"])
    ed.page.route("**/diff", lambda route: route.fulfill(json={
        "from": 1, "to": None, "title": {"from": "x", "to": "x"},
        "delta": [{"retain": 10}], "unified": ""}))
    ed.page.get_by_role("button", name="History", exact=True).click()
    row = ed.testid("version-list").locator(".version-item").first
    row.get_by_role("button").click()
    expect(ed.testid("preview-error")).to_contain_text("could not be shown")
    assert ed.js(PREVIEW_PIECES) == [["same", "abc"]]
    ed.warnings.clear()  # (the page logs the misfit: expected here)
    assert json.dumps(ed.errors) == "[]"
