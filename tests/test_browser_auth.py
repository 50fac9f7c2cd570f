"""The browser page with accounts on: headless Chromium against a real server (``auth_server``,
NOTES_AUTH=on), real cookies, real sockets, no fakes.

Each person is a browser context of their own (their own cookie jar), with a username unique to
the test (the database is shared by the whole session). Through the page, as a person would:

- signing up, creating a note and finding it in the list (a reload keeps the session);
- signing out (the notes go away, REST answers 401) and signing in again;
- the problem's detail for a wrong password, a taken username, a short password and throttling
  (429: the wait from ``Retry-After`` is shown);
- the owner shares a note with a second user as viewer in the share dialog: the viewer finds it
  in their list with the role and the owner, opens it, sees the owner's edits live, cannot type
  (a read-only label, the text and the title unchanged); the dialog's errors (no such user, the
  owner themselves);
- the owner changes the share to editor: the other person, reopening the note, edits it; an
  editor sees no Share or Move to trash;
- a share downgraded to viewer while the note is open: the next edit is refused (``forbidden``),
  the page takes it back and turns read-only;
- a share revoked while the note is open (4403): a clear message, and no reconnecting;
- the owner moves a note that a viewer has open to the trash;
- signing out in one tab closes the other tab's socket (4401): it shows the sign-in view, and
  signing in again there carries on with the note;
- share links: the owner makes a viewer link in the share dialog (its address shown once, with
  Copy); someone who never signed in opens it: the note and nothing else (no sign-in, no list, no
  request the link may not make), labelled, the token out of the address bar but kept for a
  reload, the owner's edits live, no typing; an editor link lets them type, and the owner sees it
  live; revoking a link that is open says it no longer works (no sign-in view, no reconnecting,
  also after a reload); signed in as someone else, the link opens the note beside one's own
  notes; the owner opening their own link stays the owner;
- with accounts off (the ``server`` fixture) none of this shows, a ``link`` in the address
  included.

Waits are conditions (Playwright's ``expect`` and ``wait_for_function``), never sleeps.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import ARTIFACTS
from test_browser_e2e import (  # browser: the fixture, shared with the e2e tests
    INIT_JS,
    TIMEOUT_MS,
    Editor,
    browser,  # noqa: F401
    uid,
)

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture fails with a clear message
    expect = None

PASSWORD = "correct horse battery"


class Person(Editor):
    """One user: a browser context (cookies of their own) and a page, on the accounts server."""

    def __init__(self, context, page, base: str, name: str, username: str):
        super().__init__(context, page, base, name)
        self.username = username
        self.password = PASSWORD

    def tab(self) -> Person:
        """Another page in the same context: the same browser, the same session cookie."""
        return Person(self.context, self.context.new_page(), self.base, f"{self.name}'s tab",
                      self.username)

    # --- REST as this person (the context's cookies) --------------------------------------------

    def rest(self, method: str, path: str, body: object = None):
        response = self.context.request.fetch(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": "application/json"} if body is not None else None)
        return response.status, (response.json() if "json" in response.headers.get(
            "content-type", "") else None)

    def create_note(self, title: str, content: str = "") -> dict:
        status, note = self.rest("POST", "/notes", {"title": title, "content": content})
        assert status == 201, (status, note)
        return note

    def share(self, note_id: str, other: Person | str, role: str) -> int:
        username = other if isinstance(other, str) else other.username
        status, body = self.rest("PUT", f"/notes/{note_id}/shares/{username}", {"role": role})
        assert status in (200, 201), (status, body)
        return status

    # --- the page ---------------------------------------------------------------------------

    @property
    def auth(self):
        return self.testid("auth")

    def fill_credentials(self, username: str, password: str) -> None:
        self.auth.get_by_label("Username").fill(username)
        self.auth.get_by_label("Password").fill(password)

    def sign_up(self) -> Person:
        self.goto("/")
        expect(self.auth.get_by_role("heading", name="Sign in")).to_be_visible()
        self.auth.get_by_role("button", name="Create an account").click()
        expect(self.auth.get_by_role("heading", name="Create an account")).to_be_visible()
        self.fill_credentials(self.username, self.password)
        self.auth.get_by_role("button", name="Sign up").click()
        self.wait_signed_in()
        return self

    def sign_in(self, password: str | None = None) -> None:
        expect(self.auth.get_by_role("heading", name="Sign in")).to_be_visible()
        self.fill_credentials(self.username, password or self.password)
        self.auth.get_by_role("button", name="Sign in", exact=True).click()

    def sign_out(self) -> None:
        self.page.get_by_role("button", name="Sign out").click()
        expect(self.auth).to_be_visible()

    def wait_signed_in(self) -> None:
        expect(self.testid("account-name")).to_have_text(self.username)
        expect(self.auth).to_be_hidden()

    def list_item(self, title: str):
        return self.testid("note-list").locator(".note-item", has_text=title)

    def open_note(self, note_id: str) -> None:
        self.open(note_id)
        self.wait("() => notesApp.role !== null")

    def share_dialog(self):
        self.page.get_by_role("button", name="Share", exact=True).click()
        dialog = self.page.get_by_role("dialog", name="Share this note")
        expect(dialog).to_be_visible()
        expect(dialog.locator(".share-owner")).to_have_text(f"Owner: {self.username} (you)")
        return dialog


@pytest.fixture
def people(browser, auth_server, request) -> Iterator[Callable[[str], Person]]:  # noqa: F811
    """Make a person (a context of their own) with a fresh username on the accounts server."""
    expect.set_options(timeout=TIMEOUT_MS)
    made: list[Person] = []
    failed_before = request.session.testsfailed

    def make(name: str) -> Person:
        context = browser.new_context(viewport={"width": 1100, "height": 700}, locale="en-US")
        context.add_init_script(INIT_JS % json.dumps(name))
        person = Person(context, context.new_page(), auth_server.url, name,
                        f"{name.lower()}-{uuid.uuid4().hex[:10]}")
        made.append(person)
        return person

    yield make
    if request.session.testsfailed > failed_before:  # keep what the pages showed
        ARTIFACTS.mkdir(exist_ok=True)
        for i, person in enumerate(made):
            for j, page in enumerate(person.context.pages):
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(
                        ARTIFACTS / f"auth-failed-{request.node.name}-{i}-{j}.png"))
    problems = [p for person in made for p in person.errors + person.warnings]
    for person in made:
        with contextlib.suppress(Exception):  # a tab's context may be closed already
            person.context.close()
    assert not problems, problems


def shared_pair(people, role: str) -> tuple[Person, Person, dict]:
    """Ada (signed up, owns a note) and Bob (signed up), the note shared with Bob as ``role``."""
    ada = people("Ada").sign_up()
    bob = people("Bob").sign_up()
    note = ada.create_note(f"Plans {uid()}", "first line")
    ada.share(note["id"], bob, role)
    return ada, bob, note


def expect_read_only(person: Person, owner: Person) -> None:
    access = person.testid("access")
    expect(access).to_be_visible()
    expect(access).to_have_text(
        f"Read only — shared with you as viewer by {owner.username}.")
    expect(person.testid("editor")).not_to_be_editable()
    expect(person.testid("title")).not_to_be_editable()
    expect(person.page.get_by_role("button", name="Share", exact=True)).to_be_hidden()
    expect(person.page.get_by_role("button", name="Move to trash", exact=True)).to_be_hidden()


def notice(person: Person):
    """The page's notice (role=alert), its text without the Dismiss button."""
    return person.testid("error").locator(".notice-text")


def screenshot(person: Person, name: str) -> None:
    """test-artifacts/auth-<name>.png, for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    person.page.screenshot(path=str(ARTIFACTS / f"auth-{name}.png"))


def content_of(person: Person, note_id: str) -> str:
    status, note = person.rest("GET", f"/notes/{note_id}")
    assert status == 200, (status, note)
    return note["content"]


# --- accounts ----------------------------------------------------------------------------------


def test_sign_up_create_a_note_and_see_it_listed(people):
    ada = people("Ada").sign_up()
    assert ada.js("() => notesApp.account")["user"]["username"] == ada.username

    ada.testid("new-note").click()
    ada.wait_connected()
    title = f"Groceries {uid()}"
    ada.testid("title").fill(title)
    ada.testid("title").press("Enter")
    ada.type("milk, eggs")
    state = ada.idle()
    assert state["text"] == "milk, eggs"
    item = ada.list_item(title)
    expect(item).to_be_visible()
    expect(item).to_have_attribute("data-role", "owner")
    expect(item.locator(".note-badge")).to_have_count(0)  # my own note: no "shared" badge
    # an owner's note: writable, Share and Move to trash offered, no read-only label
    expect(ada.testid("access")).to_be_hidden()
    expect(ada.page.get_by_role("button", name="Share", exact=True)).to_be_visible()
    expect(ada.page.get_by_role("button", name="Move to trash", exact=True)).to_be_visible()
    expect(ada.testid("editor")).to_be_editable()

    note_id = state["noteId"]
    ada.wait(f"() => document.querySelector('[data-testid=title]').value === {json.dumps(title)}")
    status, note = ada.rest("GET", f"/notes/{note_id}")
    assert status == 200
    assert (note["owner"], note["role"], note["content"]) == (ada.username, "owner", "milk, eggs")
    ada.wait_status(saved="true")

    # the session outlives a reload; the note is still listed and opens
    ada.page.reload()
    ada.wait_signed_in()
    expect(ada.list_item(title)).to_be_visible()
    ada.list_item(title).click()
    ada.wait_connected(note_id)
    expect(ada.testid("editor")).to_have_value("milk, eggs")


def test_sign_out_then_sign_in_again(people):
    ada = people("Ada").sign_up()
    title = f"Diary {uid()}"
    note = ada.create_note(title, "dear diary")
    ada.open_note(note["id"])
    expect(ada.testid("editor")).to_have_value("dear diary")

    ada.sign_out()
    expect(ada.testid("auth-message")).to_have_text("You are signed out.")
    expect(ada.testid("account")).to_be_hidden()
    expect(ada.testid("note-list")).to_be_hidden()
    assert ada.testid("note-list").locator(".note-item").count() == 0  # nothing left behind
    assert ada.rest("GET", "/notes")[0] == 401
    assert ada.js("() => notesApp.noteId") is None
    # the username is filled in; a reload shows the sign-in view again
    expect(ada.auth.get_by_label("Username")).to_have_value(ada.username)
    ada.page.reload()
    expect(ada.auth).to_be_visible()

    ada.sign_in()
    ada.wait_signed_in()
    expect(ada.list_item(title)).to_be_visible()
    ada.wait_connected(note["id"])  # the address still names the note: it opens again
    expect(ada.testid("editor")).to_have_value("dear diary")
    expect(ada.testid("editor")).to_be_editable()


def test_sign_in_and_sign_up_errors_show_the_problem(people):
    ada = people("Ada").sign_up()
    ada.sign_out()
    error = ada.testid("auth-error")

    ada.sign_in(password="not the password")
    expect(error).to_have_text("Wrong username or password.")
    screenshot(ada, "sign-in-error")
    expect(ada.auth).to_be_visible()
    assert ada.rest("GET", "/auth/status")[1]["user"] is None

    # signing up: a taken name, a short password, a name breaking the rule
    other = people("Eve")
    other.goto("/")
    other.auth.get_by_role("button", name="Create an account").click()
    other.fill_credentials(ada.username, PASSWORD)
    other.auth.get_by_role("button", name="Sign up").click()
    other_error = other.testid("auth-error")
    expect(other_error).to_have_text("That username is taken.")
    other.fill_credentials(other.username, "short")
    other.auth.get_by_role("button", name="Sign up").click()
    expect(other_error).to_contain_text("Password: 8 to")
    other.fill_credentials("Not Allowed!", PASSWORD)
    other.auth.get_by_role("button", name="Sign up").click()
    expect(other_error).to_contain_text("Username: 1 to 40")
    expect(other.auth).to_be_visible()

    # five more failures for Ada's name: then even the right password waits (429, Retry-After)
    for _ in range(5):
        status, _body = ada.rest("POST", "/auth/login",
                                 {"username": ada.username, "password": "wrong again"})
        if status == 429:
            break
        assert status == 401
    ada.sign_in()
    expect(error).to_contain_text("Too many failed sign-ins")
    expect(error).to_have_text(re.compile(r"Try again in \d+ (s|min)\.$"))
    expect(ada.auth).to_be_visible()


# --- sharing -----------------------------------------------------------------------------------


def test_owner_shares_as_viewer_who_sees_live_edits_and_cannot_type(people):
    ada = people("Ada").sign_up()
    bob = people("Bob").sign_up()
    title = f"Recipe {uid()}"
    note = ada.create_note(title, "first line")
    ada.open_note(note["id"])

    dialog = ada.share_dialog()
    expect(dialog.locator(".share-empty")).to_have_text("Not shared with anyone yet.")
    # errors come back as the problem's detail
    dialog.get_by_label("Share with").fill("nobody-" + uuid.uuid4().hex[:8])
    dialog.get_by_role("button", name="Share", exact=True).click()
    expect(ada.testid("share-error")).to_contain_text("No user named")
    dialog.get_by_label("Share with").fill(ada.username)
    dialog.get_by_role("button", name="Share", exact=True).click()
    expect(ada.testid("share-error")).to_contain_text("The owner already has every right")
    # share with Bob, as viewer
    dialog.get_by_label("Share with").fill(bob.username)
    dialog.get_by_label("Role", exact=True).select_option("viewer")
    dialog.get_by_role("button", name="Share", exact=True).click()
    row = ada.testid("share-list").locator(".share-item", has_text=bob.username)
    expect(row).to_have_attribute("data-role", "viewer")
    expect(row.get_by_label(f"Role of {bob.username}")).to_have_value("viewer")
    expect(ada.testid("share-error")).to_be_hidden()
    expect(dialog.get_by_label("Share with")).to_have_value("")
    screenshot(ada, "share-dialog")
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_be_hidden()

    # Bob finds it in his list, with the role and the owner
    bob.js("() => notesApp.refreshList()")
    item = bob.list_item(title)
    expect(item).to_have_attribute("data-role", "viewer")
    expect(item.locator(".note-badge")).to_have_text(f"viewer · shared by {ada.username}")
    item.click()
    bob.wait_connected(note["id"])
    expect(bob.testid("editor")).to_have_value("first line")
    expect_read_only(bob, ada)

    # Ada's typing reaches Bob live
    ada.set_caret(len("first line"))
    ada.type(" and more")
    expect(bob.testid("editor")).to_have_value("first line and more")
    screenshot(bob, "viewer")

    # Bob's keystrokes change nothing: not the text, not the title
    bob.testid("editor").click()
    bob.page.keyboard.type("zzz")
    bob.page.keyboard.press("Backspace")
    bob.page.keyboard.press("Enter")
    bob.testid("title").click()
    bob.page.keyboard.type("hijacked")
    state = bob.state()
    assert state["text"] == state["editorText"] == "first line and more", state
    assert not state["pending"]
    expect(bob.testid("title")).to_have_value(title)
    # after another edit of Ada's has reached Bob, the server still has only Ada's text
    ada.type("!")
    expect(bob.testid("editor")).to_have_value("first line and more!")
    ada.idle()
    assert content_of(ada, note["id"]) == "first line and more!"
    assert ada.testid("title").input_value() == title
    assert not bob.errors and not ada.testid("error").is_visible()


def test_changing_a_viewer_to_editor_lets_them_edit(people):
    ada, bob, note = shared_pair(people, "viewer")
    ada.open_note(note["id"])
    bob.open_note(note["id"])
    expect_read_only(bob, ada)

    dialog = ada.share_dialog()
    row = ada.testid("share-list").locator(".share-item", has_text=bob.username)
    row.get_by_label(f"Role of {bob.username}").select_option("editor")
    expect(row).to_have_attribute("data-role", "editor")  # the list is read back after the PUT
    status, shares = ada.rest("GET", f"/notes/{note['id']}/shares")
    assert status == 200 and shares["owner"] == ada.username
    assert [(s["username"], s["role"]) for s in shares["items"]] == [(bob.username, "editor")]
    dialog.get_by_role("button", name="Done").click()

    # reopened, Bob edits (and, an editor, gets neither Share nor Move to trash)
    bob.page.reload()
    bob.wait_connected(note["id"])
    access = bob.testid("access")
    expect(access).to_have_text(f"Shared with you as editor by {ada.username}.")
    expect(bob.testid("editor")).to_be_editable()
    expect(bob.page.get_by_role("button", name="Share", exact=True)).to_be_hidden()
    expect(bob.page.get_by_role("button", name="Move to trash", exact=True)).to_be_hidden()
    bob.set_caret(0)
    bob.type("Bob: ")
    bob.idle()
    expect(ada.testid("editor")).to_have_value("Bob: first line")
    assert content_of(ada, note["id"]) == "Bob: first line"
    bob.js("() => notesApp.refreshList()")
    expect(bob.list_item(note["title"]).locator(".note-badge")).to_have_text(
        f"editor · shared by {ada.username}")


def test_a_share_downgraded_while_open_turns_the_editor_read_only(people):
    ada, bob, note = shared_pair(people, "editor")
    bob.open_note(note["id"])
    expect(bob.testid("editor")).to_be_editable()
    bob.set_caret(len("first line"))
    bob.type(" ok")
    bob.idle()
    assert content_of(ada, note["id"]) == "first line ok"

    assert ada.share(note["id"], bob, "viewer") == 200  # Bob's socket stays open
    bob.type("X")  # refused: forbidden
    expect_read_only(bob, ada)
    expect(notice(bob)).to_contain_text("You may only read this note now")
    bob.wait("() => notesApp.state().connected && !notesApp.state().pending")
    expect(bob.testid("editor")).to_have_value("first line ok")
    bob.page.keyboard.type("YZ")  # the editor is read-only now
    assert bob.state()["editorText"] == "first line ok"
    assert content_of(ada, note["id"]) == "first line ok"


def test_revoking_a_share_while_open_says_access_was_removed(people):
    ada, bob, note = shared_pair(people, "viewer")
    sockets: list[str] = []
    bob.page.on("websocket", lambda ws: sockets.append(ws.url))
    bob.open_note(note["id"])
    expect_read_only(bob, ada)
    assert len(sockets) == 1

    ada.open_note(note["id"])
    dialog = ada.share_dialog()
    dialog.get_by_role("button", name=f"Remove {bob.username}").click()
    expect(dialog.locator(".share-empty")).to_have_text("Not shared with anyone yet.")

    expect(notice(bob)).to_have_text(
        "Your access to this note was removed: it is no longer shared with you.")
    expect(bob.testid("access")).to_have_text("No access: this note is no longer shared with you.")
    expect(bob.testid("status")).to_contain_text("no access")
    assert bob.state()["status"] == "forbidden"
    expect(bob.testid("editor")).not_to_be_editable()
    # gone from his list; and no reconnecting: still the one socket after a round trip
    bob.js("() => notesApp.refreshList()")
    expect(bob.list_item(note["title"])).to_have_count(0)
    assert len(sockets) == 1, sockets
    expect(notice(bob)).to_be_visible()  # it stays until dismissed
    screenshot(bob, "access-removed")


def test_owner_deletes_a_note_a_viewer_has_open(people):
    ada, bob, note = shared_pair(people, "viewer")
    bob.open_note(note["id"])
    ada.open_note(note["id"])
    ada.page.get_by_role("button", name="Move to trash", exact=True).click()
    dialog = ada.page.get_by_role("dialog", name="Move this note to the trash?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert ada.js("() => notesApp.noteId") == note["id"]

    ada.page.get_by_role("button", name="Move to trash", exact=True).click()
    dialog.get_by_role("button", name="Move to trash").click()
    ada.wait("() => notesApp.noteId === null")
    expect(notice(ada)).to_have_text("The note was moved to the trash.")
    expect(ada.list_item(note["title"])).to_have_count(0)
    assert ada.rest("GET", f"/notes/{note['id']}")[0] == 404

    bob.wait("() => notesApp.state().status === 'deleted'")
    expect(notice(bob)).to_have_text("This note was moved to the trash.")
    expect(bob.testid("editor")).not_to_be_editable()


def test_signing_out_in_one_tab_signs_out_the_other(people):
    ada = people("Ada").sign_up()
    note = ada.create_note(f"Tabs {uid()}", "one")
    other = ada.tab()
    other.open_note(note["id"])
    expect(other.testid("editor")).to_be_editable()

    ada.sign_out()  # the server closes this session's sockets with 4401
    expect(other.auth).to_be_visible()
    expect(other.testid("auth-message")).to_have_text("Your session has ended: sign in again.")
    expect(other.auth.get_by_label("Username")).to_have_value(ada.username)

    other.sign_in()
    other.wait_signed_in()
    other.wait_connected(note["id"])  # the same user: the note carries on
    expect(other.testid("editor")).to_be_editable()
    other.set_caret(3)
    other.type(" two")
    other.idle()
    assert content_of(other, note["id"]) == "one two"


# --- share links -------------------------------------------------------------------------------


LINK_LABEL = {"viewer": "Opened with a share link — viewer (read only)",
              "editor": "Opened with a share link — editor"}
REVOKED = "This link no longer works (it was revoked)."
VIA_LINK = "() => notesApp.viaLink && notesApp.role !== null && notesApp.state().connected"


def make_link(owner: Person, role: str):
    """The owner (the note open) makes a ``role`` link in the share dialog: (the dialog, the
    link's address as the dialog shows it, once)."""
    dialog = owner.share_dialog()
    links = owner.testid("link-list")
    expect(links.locator(".link-item, .link-empty").first).not_to_have_text("Loading…")
    before = links.locator(".link-item").count()
    with owner.page.expect_response(lambda r: r.request.method == "POST"
                                    and r.url.endswith("/links")) as answer:
        dialog.get_by_role("button", name=f"Create {role} link").click()
    assert answer.value.status == 201
    created = owner.testid("link-created")
    expect(created).to_be_visible()
    expect(created).to_have_attribute("data-role", role)
    expect(created).to_contain_text(f"New {role} link")
    expect(created).to_contain_text("Shown only now")
    url = owner.testid("link-url").input_value()
    note_id = owner.js("() => notesApp.noteId")
    assert re.fullmatch(re.escape(f"{owner.base}/?note={note_id}&link=noteslink_") + r"\S+",
                        url), url
    assert url == answer.value.json()["url"]  # the page's origin is the server's own here
    expect(links.locator(".link-item")).to_have_count(before + 1)
    fresh = links.locator(f'.link-item[data-id="{created.get_attribute("data-id")}"]')
    expect(fresh).to_have_attribute("data-role", role)
    expect(fresh).to_contain_text(f"{role.title()} link")
    expect(fresh.locator(".link-fresh")).to_have_text("new")
    expect(fresh).to_contain_text("created just now")
    return dialog, url


def visit_link(people, name: str, url: str) -> Person:
    """Someone who never signed in (a context of their own) opens a link's address."""
    person = people(name)
    person.page.goto(url)
    person.wait(VIA_LINK)
    return person


def token_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["link"][0]


def expect_link_view(person: Person, role: str) -> None:
    """The one note, labelled as opened with a link: no sign-in view, no list, no account."""
    expect(person.auth).to_be_hidden()
    expect(person.testid("access")).to_have_text(LINK_LABEL[role])
    expect(person.testid("note-list")).to_be_hidden()
    expect(person.testid("new-note")).to_be_hidden()
    expect(person.testid("account")).to_be_hidden()
    expect(person.testid("link-sign-in")).to_be_visible()
    expect(person.page.get_by_role("button", name="Share", exact=True)).to_be_hidden()
    expect(person.page.get_by_role("button", name="Move to trash", exact=True)).to_be_hidden()
    assert person.js("() => notesApp.role") == role


def test_a_viewer_link_opens_the_note_without_an_account_read_only(people):
    ada = people("Ada").sign_up()
    title = f"Minutes {uid()}"
    note = ada.create_note(title, "first line")
    ada.open_note(note["id"])
    dialog = ada.share_dialog()
    expect(ada.testid("link-list").locator(".link-empty")).to_have_text("No links yet.")
    dialog.get_by_role("button", name="Done").click()

    ada.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ada.base)
    dialog, url = make_link(ada, "viewer")
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_role("button", name="Copied")).to_be_visible()
    assert ada.js("() => navigator.clipboard.readText()") == url
    screenshot(ada, "link-created")
    # shown once: closed and opened again, the dialog lists the link without its address
    dialog.get_by_role("button", name="Done").click()
    dialog = ada.share_dialog()
    row = ada.testid("link-list").locator(".link-item")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-role", "viewer")
    expect(row.locator(".link-fresh")).to_have_count(0)
    expect(ada.testid("link-created")).to_be_hidden()
    assert token_of(url) not in ada.page.content()
    dialog.get_by_role("button", name="Done").click()

    # Cara has no account: the link opens the note, and nothing else is asked for
    cara = people("Cara")
    answers: list[tuple[int, str]] = []
    sockets: list[str] = []
    cara.page.on("response", lambda r: answers.append((r.status, r.url)))
    cara.page.on("websocket", lambda ws: sockets.append(ws.url))
    cara.page.goto(url)
    cara.wait(VIA_LINK)
    expect_link_view(cara, "viewer")
    expect(cara.testid("editor")).to_have_value("first line")
    expect(cara.testid("title")).to_have_value(title)
    expect(cara.testid("editor")).not_to_be_editable()
    expect(cara.testid("title")).not_to_be_editable()
    # the token left the address bar (kept for this tab), and went on the socket as token=
    assert cara.page.url == f"{cara.base}/?note={note['id']}"
    stored = cara.js("() => JSON.parse(sessionStorage.getItem('notes.links'))")
    assert stored == {note["id"]: {"token": token_of(url), "revoked": False}}
    assert len(sockets) == 1 and f"token={token_of(url)}" in sockets[0], sockets
    screenshot(cara, "link-viewer")

    # Ada's typing reaches Cara live; Cara's keystrokes change nothing
    ada.set_caret(len("first line"))
    ada.type(" and more")
    expect(cara.testid("editor")).to_have_value("first line and more")
    expect(ada.testid("peers")).to_contain_text("Cara")
    cara.testid("editor").click()
    cara.page.keyboard.type("zzz")
    cara.page.keyboard.press("Enter")
    cara.testid("title").click()
    cara.page.keyboard.type("hijacked")
    state = cara.state()
    assert state["text"] == state["editorText"] == "first line and more", state
    assert not state["pending"]
    ada.type("!")
    expect(cara.testid("editor")).to_have_value("first line and more!")
    ada.idle()
    assert content_of(ada, note["id"]) == "first line and more!"
    expect(cara.testid("title")).to_have_value(title)

    # a reload in the same tab keeps the note open with the link
    cara.page.reload()
    cara.wait(VIA_LINK)
    expect_link_view(cara, "viewer")
    expect(cara.testid("editor")).to_have_value("first line and more!")
    refused = [(status, u) for status, u in answers if status in (401, 403)]
    assert not refused, refused  # no list, no /auth/me, no share list: nothing a link may not
    assert not cara.errors and not cara.testid("error").is_visible()

    # "Sign in" leaves the link for the sign-in view; Back comes back to the note
    cara.testid("link-sign-in").click()
    expect(cara.auth.get_by_role("heading", name="Sign in")).to_be_visible()
    assert cara.js("() => notesApp.noteId") is None
    cara.page.go_back()
    cara.wait(VIA_LINK)
    expect_link_view(cara, "viewer")


def test_an_editor_link_lets_someone_without_an_account_edit_live(people):
    ada = people("Ada").sign_up()
    note = ada.create_note(f"Draft {uid()}", "first line")
    ada.open_note(note["id"])
    dialog, url = make_link(ada, "editor")
    dialog.get_by_role("button", name="Done").click()

    dan = visit_link(people, "Dan", url)
    expect_link_view(dan, "editor")
    expect(dan.testid("editor")).to_be_editable()
    expect(dan.testid("editor")).to_have_value("first line")
    dan.set_caret(0)
    dan.type("Dan: ")
    expect(ada.testid("editor")).to_have_value("Dan: first line")
    expect(ada.testid("peers")).to_contain_text("Dan")
    dan.idle()
    assert content_of(ada, note["id"]) == "Dan: first line"
    # the title too
    dan.testid("title").fill("Renamed by a link")
    dan.testid("title").press("Enter")
    expect(ada.testid("title")).to_have_value("Renamed by a link")
    # and the other way: Ada's typing reaches Dan
    ada.set_caret(len("Dan: first line"))
    ada.type(" (ok)")
    expect(dan.testid("editor")).to_have_value("Dan: first line (ok)")
    dan.idle()
    # a phone's width: still the note alone (no list pane to switch to)
    dan.page.set_viewport_size({"width": 390, "height": 700})
    expect(dan.testid("editor")).to_be_visible()
    expect(dan.testid("note-list")).to_be_hidden()
    expect(dan.testid("access")).to_have_text(LINK_LABEL["editor"])
    screenshot(dan, "link-editor")
    assert not dan.testid("error").is_visible()


def test_revoking_a_link_that_is_open_says_it_no_longer_works(people):
    ada = people("Ada").sign_up()
    note = ada.create_note(f"Secret {uid()}", "first line")
    ada.open_note(note["id"])
    dialog, url = make_link(ada, "editor")

    eve = people("Eve")
    sockets: list[str] = []
    eve.page.on("websocket", lambda ws: sockets.append(ws.url))
    eve.page.goto(url)
    eve.wait(VIA_LINK)
    expect_link_view(eve, "editor")
    expect(eve.testid("editor")).to_be_editable()
    assert len(sockets) == 1

    # Ada revokes it in the dialog, still open: the address shown goes too
    dialog.locator(".link-item").get_by_role(
        "button", name=re.compile(r"^Revoke editor link created ")).click()
    expect(ada.testid("link-list").locator(".link-empty")).to_have_text("No links yet.")
    expect(ada.testid("link-created")).to_be_hidden()

    expect(notice(eve)).to_contain_text(REVOKED)
    expect(eve.testid("access")).to_have_text(REVOKED)
    expect(eve.testid("status")).to_contain_text("link revoked")
    expect(eve.testid("editor")).not_to_be_editable()
    expect(eve.testid("title")).not_to_be_editable()
    expect(eve.auth).to_be_hidden()  # not the sign-in view: Eve never had an account
    assert eve.state()["status"] != "connected"
    # no reconnecting: after a round trip through the server, still the one socket
    assert eve.context.request.get(
        f"{eve.base}/notes/{note['id']}",
        headers={"Authorization": f"Bearer {token_of(url)}"}).status == 401
    assert len(sockets) == 1, sockets
    screenshot(eve, "link-revoked")

    # a reload says the same (the REST answer is 401), without a socket or the sign-in view
    eve.page.reload()
    eve.wait("() => !!window.notesApp")
    expect(eve.testid("access")).to_have_text(REVOKED)
    expect(notice(eve)).to_contain_text(REVOKED)
    expect(eve.auth).to_be_hidden()
    assert len(sockets) == 1, sockets
    assert content_of(ada, note["id"]) == "first line"


def test_a_link_opened_while_signed_in(people):
    ada = people("Ada").sign_up()
    bob = people("Bob").sign_up()
    title = f"Agenda {uid()}"
    note = ada.create_note(title, "first line")
    mine = bob.create_note(f"Own {uid()}")
    ada.open_note(note["id"])
    dialog, url = make_link(ada, "viewer")
    dialog.get_by_role("button", name="Done").click()

    # Bob, whom it is not shared with, opens it: with the link, his account still there
    bob.page.goto(url)
    bob.wait(VIA_LINK)
    expect(bob.testid("access")).to_have_text(LINK_LABEL["viewer"])
    expect(bob.testid("editor")).not_to_be_editable()
    expect(bob.testid("account-name")).to_have_text(bob.username)
    expect(bob.testid("link-sign-in")).to_be_hidden()
    expect(bob.testid("note-list")).to_be_hidden()
    screenshot(bob, "link-signed-in")
    bob.page.get_by_role("link", name="← All notes").click()  # back to his own notes
    expect(bob.list_item(mine["title"])).to_be_visible()
    expect(bob.list_item(title)).to_have_count(0)
    assert bob.js("() => notesApp.viaLink") is False

    # the owner opening her own link stays the owner (Share and Move to trash, no link label)
    ada.page.goto(url)
    ada.wait_connected(note["id"])
    ada.wait("() => notesApp.role === 'owner'")
    assert ada.js("() => notesApp.viaLink") is False
    expect(ada.testid("access")).to_be_hidden()
    expect(ada.page.get_by_role("button", name="Share", exact=True)).to_be_visible()
    expect(ada.list_item(title)).to_be_visible()


# --- accounts off ------------------------------------------------------------------------------


def test_accounts_off_shows_no_sign_in(browser, server):  # noqa: F811
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.url + "/")
        page.wait_for_function("() => window.notesApp && notesApp.account.on === false")
        page.get_by_test_id("new-note").click()
        page.wait_for_function("() => notesApp.state().connected")
        for testid in ("auth", "account", "access", "share"):
            assert page.get_by_test_id(testid).is_hidden(), testid
        assert page.get_by_test_id("name").is_visible()
        assert page.get_by_test_id("delete-note").is_visible()  # everyone owns everything
        assert page.get_by_test_id("editor").is_editable()
        assert page.evaluate("() => notesApp.role") == "owner"
        # deleting works too (to the trash, whose notes the next account does not claim)
        page.get_by_role("button", name="Move to trash", exact=True).click()
        page.get_by_role("dialog", name="Move this note to the trash?").get_by_role(
            "button", name="Move to trash").click()
        page.wait_for_function("() => notesApp.noteId === null")
        assert page.get_by_test_id("auth").is_hidden()
    finally:
        context.close()


def test_accounts_off_ignores_a_link_in_the_address(browser, server):  # noqa: F811
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(server.url + "/")
        page.wait_for_function("() => window.notesApp && notesApp.account.on === false")
        page.get_by_test_id("new-note").click()
        page.wait_for_function("() => notesApp.state().connected")
        note_id = page.evaluate("() => notesApp.noteId")
        page.goto(f"{server.url}/?note={note_id}&link=noteslink_{'0' * 32}_whatever")
        page.wait_for_function("(id) => notesApp.state().connected && notesApp.noteId === id",
                               arg=note_id)
        assert page.evaluate("() => [notesApp.role, notesApp.viaLink]") == ["owner", False]
        for testid in ("auth", "account", "access", "share", "link-sign-in"):
            assert page.get_by_test_id(testid).is_hidden(), testid
        assert page.get_by_test_id("note-list").is_visible()  # the list as ever
        assert page.get_by_test_id("editor").is_editable()
        assert not any("token=" in url for url in sockets), sockets
        page.get_by_role("button", name="Move to trash", exact=True).click()
        page.get_by_role("dialog", name="Move this note to the trash?").get_by_role(
            "button", name="Move to trash").click()
        page.wait_for_function("() => notesApp.noteId === null")
    finally:
        context.close()
