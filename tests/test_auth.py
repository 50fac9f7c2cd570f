"""Accounts, tokens and sharing over REST, on a real server with NOTES_AUTH=on (``auth_server``).

One table says, for every note route, what each kind of caller gets: nobody, a bad token, another
user, a viewer, an editor and the owner.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass

import httpx
import pytest
from conftest import ROOT, TEST_SERVER_ENV, ServerProcess, wait_until

from notes.accounts import LoginThrottle, Throttled

PASSWORD = "correct horse battery"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Account:
    username: str
    token: str
    client: httpx.Client  # holds the session cookie of the sign-up

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def sign_up(base_url: str, prefix: str = "user") -> Account:
    client = httpx.Client(base_url=base_url, timeout=30)
    username = unique(prefix)
    response = client.post("/auth/signup", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201, response.text
    token = client.post("/auth/tokens", json={"name": "tests"})
    assert token.status_code == 201, token.text
    return Account(username, token.json()["token"], client)


@dataclass
class World:
    url: str
    owner: Account
    editor: Account
    viewer: Account
    stranger: Account

    def note(self, content: str = "shared text") -> str:
        """A new note of the owner's, shared with the editor and the viewer."""
        response = httpx.post(self.url + "/notes", json={"title": "shared", "content": content},
                              headers=self.owner.bearer())
        assert response.status_code == 201, response.text
        note_id = response.json()["id"]
        for account, role in ((self.editor, "editor"), (self.viewer, "viewer")):
            shared = httpx.put(f"{self.url}/notes/{note_id}/shares/{account.username}",
                               json={"role": role}, headers=self.owner.bearer())
            assert shared.status_code == 201, shared.text
        return note_id


@pytest.fixture(scope="module")
def world(auth_server: ServerProcess) -> World:
    accounts = [sign_up(auth_server.url, name)
                for name in ("owner", "editor", "viewer", "stranger")]
    return World(auth_server.url, *accounts)


CALLERS = ("nobody", "bad_token", "stranger", "viewer", "editor", "owner")


def headers_of(world: World, caller: str) -> dict[str, str]:
    if caller == "nobody":
        return {}
    if caller == "bad_token":
        return {"Authorization": f"Bearer notes_{uuid.uuid4().hex}_not-a-real-secret"}
    return getattr(world, caller).bearer()


# What each caller gets, in the order of CALLERS.
NOTE_ROUTES = [
    ("GET", "/notes/{id}", None, (401, 401, 404, 200, 200, 200)),
    ("PUT", "/notes/{id}", {"title": "put", "content": "put text"},
     (401, 401, 404, 403, 200, 200)),
    ("PATCH", "/notes/{id}", {"title": "patched"}, (401, 401, 404, 403, 200, 200)),
    ("POST", "/notes/{id}/edits", {"rev": 0, "delta": [{"insert": "x"}]},
     (401, 401, 404, 403, 200, 200)),
    ("DELETE", "/notes/{id}", None, (401, 401, 404, 403, 403, 204)),
    ("GET", "/notes/{id}/shares", None, (401, 401, 404, 200, 200, 200)),
    ("PUT", "/notes/{id}/shares/{stranger}", {"role": "viewer"},
     (401, 401, 404, 403, 403, 201)),
    ("DELETE", "/notes/{id}/shares/{viewer}", None, (401, 401, 404, 403, 403, 204)),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), NOTE_ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in NOTE_ROUTES])
@pytest.mark.parametrize("caller", CALLERS)
def test_note_routes_by_caller(world: World, caller: str, method: str, path: str, body,
                               expected: tuple[int, ...]):
    note_id = world.note()
    before = httpx.get(f"{world.url}/notes/{note_id}", headers=world.owner.bearer()).json()
    shares_before = httpx.get(f"{world.url}/notes/{note_id}/shares",
                              headers=world.owner.bearer()).json()
    url = world.url + path.format(id=note_id, stranger=world.stranger.username,
                                  viewer=world.viewer.username)
    response = httpx.request(method, url, json=body, headers=headers_of(world, caller))
    status = expected[CALLERS.index(caller)]
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        # Refused means unchanged.
        after = httpx.get(f"{world.url}/notes/{note_id}", headers=world.owner.bearer())
        assert after.status_code == 200
        assert {k: after.json()[k] for k in ("title", "content")} == \
            {k: before[k] for k in ("title", "content")}
        assert httpx.get(f"{world.url}/notes/{note_id}/shares",
                         headers=world.owner.bearer()).json() == shares_before
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if caller == "stranger":
        # A note you may not see looks exactly like one that does not exist.
        missing = httpx.request(method, world.url + path.format(
            id=uuid.uuid4(), stranger=world.stranger.username, viewer=world.viewer.username),
            json=body, headers=headers_of(world, caller))
        assert (missing.status_code, missing.json()) == (response.status_code, response.json())


@pytest.mark.parametrize("caller", CALLERS)
def test_account_routes_by_caller(world: World, caller: str):
    headers = headers_of(world, caller)
    signed_in = caller not in ("nobody", "bad_token")
    me = httpx.get(world.url + "/auth/me", headers=headers)
    assert me.status_code == (200 if signed_in else 401)
    if signed_in:
        assert me.json()["username"] == getattr(world, caller).username
    tokens = httpx.get(world.url + "/auth/tokens", headers=headers)
    assert tokens.status_code == (200 if signed_in else 401)
    listing = httpx.get(world.url + "/notes", headers=headers)
    assert listing.status_code == (200 if signed_in else 401)
    created = httpx.post(world.url + "/notes", json={"title": "mine"}, headers=headers)
    assert created.status_code == (201 if signed_in else 401)
    if signed_in:
        assert created.json()["role"] == "owner"
        assert created.json()["owner"] == getattr(world, caller).username


@pytest.mark.parametrize("path", ["/health", "/docs", "/docs/openapi.json", "/docs/protocol",
                                  "/static/app.js", "/", "/auth/status"])
def test_public_routes_need_no_credentials(auth_server: ServerProcess, path: str):
    response = httpx.get(auth_server.url + path)
    assert response.status_code == 200, response.text


def test_listing_and_search_show_only_readable_notes_with_roles(world: World):
    word = uuid.uuid4().hex[:12]
    note_id = world.note(f"findme {word}")
    own = httpx.post(world.url + "/notes", json={"title": "stranger's", "content": word},
                     headers=world.stranger.bearer()).json()["id"]
    for account, role in ((world.owner, "owner"), (world.editor, "editor"),
                          (world.viewer, "viewer")):
        for params in ({}, {"q": word}):
            items = httpx.get(world.url + "/notes", params={**params, "limit": 200},
                              headers=account.bearer()).json()["items"]
            found = {item["id"]: item for item in items}
            assert found[note_id]["role"] == role
            assert found[note_id]["owner"] == world.owner.username
            assert own not in found
    items = httpx.get(world.url + "/notes", params={"q": word},
                      headers=world.stranger.bearer()).json()["items"]
    assert [item["id"] for item in items] == [own]


def test_share_roles_change_and_are_listed(world: World):
    note_id = world.note()
    url = f"{world.url}/notes/{note_id}/shares/{world.stranger.username}"
    assert httpx.put(url, json={"role": "viewer"}, headers=world.owner.bearer()).status_code == 201
    changed = httpx.put(url, json={"role": "editor"}, headers=world.owner.bearer())
    assert changed.status_code == 200
    assert changed.json()["role"] == "editor"
    listed = httpx.get(f"{world.url}/notes/{note_id}/shares", headers=world.owner.bearer()).json()
    assert listed["owner"] == world.owner.username
    assert {item["username"]: item["role"] for item in listed["items"]} == {
        world.editor.username: "editor", world.viewer.username: "viewer",
        world.stranger.username: "editor"}
    # The stranger, now an editor, may write.
    assert httpx.patch(f"{world.url}/notes/{note_id}", json={"title": "by stranger"},
                       headers=world.stranger.bearer()).status_code == 200
    assert httpx.delete(url, headers=world.owner.bearer()).status_code == 204
    assert httpx.get(f"{world.url}/notes/{note_id}",
                     headers=world.stranger.bearer()).status_code == 404
    assert httpx.delete(url, headers=world.owner.bearer()).status_code == 404


def test_sharing_with_nobody_or_the_owner_is_refused(world: World):
    note_id = world.note()
    base = f"{world.url}/notes/{note_id}/shares/"
    missing = httpx.put(base + unique("ghost"), json={"role": "viewer"},
                        headers=world.owner.bearer())
    assert missing.status_code == 404
    own = httpx.put(base + world.owner.username, json={"role": "viewer"},
                    headers=world.owner.bearer())
    assert own.status_code == 422
    bad_role = httpx.put(base + world.stranger.username, json={"role": "owner"},
                         headers=world.owner.bearer())
    assert bad_role.status_code == 422


# --- sign-up, sign-in, sessions, tokens ---------------------------------------------------


@pytest.mark.parametrize(("username", "password"), [
    ("", PASSWORD), ("Upper", PASSWORD), ("a" * 41, PASSWORD), ("spa ce", PASSWORD),
    ("ünï", PASSWORD), ("fine-name", "short"), ("fine-name", ""),
])
def test_signup_rejects_bad_usernames_and_passwords(auth_server: ServerProcess, username: str,
                                                    password: str):
    response = httpx.post(auth_server.url + "/auth/signup",
                          json={"username": username, "password": password})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in response.headers


def test_signup_takes_each_username_once(auth_server: ServerProcess):
    username = unique("taken")
    body = {"username": username, "password": PASSWORD}
    assert httpx.post(auth_server.url + "/auth/signup", json=body).status_code == 201
    again = httpx.post(auth_server.url + "/auth/signup", json={**body, "password": "x" * 12})
    assert again.status_code == 409
    # The first password still works: the second sign-up changed nothing.
    login = httpx.post(auth_server.url + "/auth/login", json=body)
    assert login.status_code == 200


def test_session_cookie_is_httponly_lax_and_logout_ends_it(auth_server: ServerProcess):
    account = sign_up(auth_server.url, "cookie")
    login = account.client.post("/auth/login",
                                json={"username": account.username, "password": PASSWORD})
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    session = account.client.cookies["notes_session"]
    assert account.client.get("/auth/me").status_code == 200
    assert account.client.post("/auth/logout").status_code == 204
    # The server forgot the session: the old cookie value no longer works.
    replay = httpx.get(auth_server.url + "/auth/me", cookies={"notes_session": session})
    assert replay.status_code == 401
    assert account.client.get("/auth/me").status_code == 401


def test_wrong_name_and_wrong_password_get_the_same_answer(auth_server: ServerProcess):
    account = sign_up(auth_server.url, "same")
    wrong_password = httpx.post(auth_server.url + "/auth/login",
                                json={"username": account.username, "password": "wrong pass"})
    wrong_name = httpx.post(auth_server.url + "/auth/login",
                            json={"username": unique("nobody"), "password": PASSWORD})
    assert wrong_password.status_code == wrong_name.status_code == 401
    assert wrong_password.json() == wrong_name.json()


def test_failed_logins_are_throttled_per_username(auth_server: ServerProcess):
    account = sign_up(auth_server.url, "throttled")
    other = sign_up(auth_server.url, "unthrottled")
    for _ in range(5):
        response = httpx.post(auth_server.url + "/auth/login",
                              json={"username": account.username, "password": "wrong pass"})
        assert response.status_code == 401
    blocked = httpx.post(auth_server.url + "/auth/login",
                         json={"username": account.username, "password": PASSWORD})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 300
    assert blocked.headers["content-type"] == "application/problem+json"
    # Another name from the same address still signs in.
    assert httpx.post(auth_server.url + "/auth/login",
                      json={"username": other.username, "password": PASSWORD}).status_code == 200


def test_tokens_are_shown_once_listed_without_secret_and_deleted(auth_server: ServerProcess,
                                                                  sql):
    account = sign_up(auth_server.url, "tokens")
    made = account.client.post("/auth/tokens", json={"name": "script"})
    assert made.status_code == 201
    token = made.json()["token"]
    assert len(token) > 43
    listed = account.client.get("/auth/tokens").json()["items"]
    assert {item["name"] for item in listed} == {"tests", "script"}
    assert all("token" not in item for item in listed)
    assert token not in account.client.get("/auth/tokens").text
    # Stored only as a hash.
    rows = sql("SELECT secret_hash FROM api_tokens WHERE id = :id", id=made.json()["id"])
    assert len(rows) == 1 and token.encode() not in rows[0][0] and len(rows[0][0]) == 32
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(auth_server.url + "/auth/me", headers=headers).status_code == 200
    # Another user cannot delete it.
    other = sign_up(auth_server.url, "other")
    assert httpx.delete(f"{auth_server.url}/auth/tokens/{made.json()['id']}",
                        headers=other.bearer()).status_code == 404
    assert account.client.delete(f"/auth/tokens/{made.json()['id']}").status_code == 204
    assert httpx.get(auth_server.url + "/auth/me", headers=headers).status_code == 401


def test_passwords_are_stored_as_argon2id(auth_server: ServerProcess, sql):
    account = sign_up(auth_server.url, "hash")
    (row,) = sql("SELECT password_hash FROM users WHERE username = :name", name=account.username)
    assert row[0].startswith("$argon2id$") and PASSWORD not in row[0]


def test_cross_site_cookie_writes_are_refused(auth_server: ServerProcess):
    account = sign_up(auth_server.url, "csrf")
    evil = account.client.post("/notes", json={"title": "forged"},
                               headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert evil.headers["content-type"] == "application/problem+json"
    titles = [item["title"] for item in account.client.get("/notes").json()["items"]]
    assert "forged" not in titles
    same = account.client.post("/notes", json={"title": "mine"},
                               headers={"Origin": auth_server.url})
    assert same.status_code == 201
    # A form post (no JSON) is refused too, before it could change anything.
    form = account.client.post("/notes", content="title=x",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415


def test_notes_made_with_auth_off_belong_to_the_next_account(server: ServerProcess,
                                                             auth_server: ServerProcess):
    made = httpx.post(server.url + "/notes", json={"title": "made while open"})
    assert made.status_code == 201 and made.json()["owner"] is None
    note_id = made.json()["id"]
    account = sign_up(auth_server.url, "claims")
    note = httpx.get(f"{auth_server.url}/notes/{note_id}", headers=account.bearer())
    assert note.status_code == 200
    assert (note.json()["owner"], note.json()["role"]) == (account.username, "owner")
    later = sign_up(auth_server.url, "later")
    assert httpx.get(f"{auth_server.url}/notes/{note_id}",
                     headers=later.bearer()).status_code == 404


def test_closed_signup_and_users_add(database_url: str):
    """With NOTES_SIGNUP=closed sign-up is 403 and `notes users add` makes accounts; the cookie
    is Secure with NOTES_COOKIE_SECURE=true; NOTES_ALLOWED_ORIGINS admits another origin."""
    server = ServerProcess(database_url, env={
        "NOTES_AUTH": "on", "NOTES_SIGNUP": "closed", "NOTES_COOKIE_SECURE": "true",
        "NOTES_ALLOWED_ORIGINS": "https://editor.example",
    }, log_name="closed-signup").start()
    try:
        refused = httpx.post(server.url + "/auth/signup",
                             json={"username": unique("closed"), "password": PASSWORD})
        assert refused.status_code == 403
        env = {**server.env, **TEST_SERVER_ENV, "NOTES_DATABASE_URL": database_url}
        username = unique("cli")
        made = subprocess.run([sys.executable, "-m", "notes", "users", "add", username,
                               "--password-stdin"], input=PASSWORD + "\n", capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=120)
        assert made.returncode == 0, made.stderr
        assert PASSWORD not in made.stdout + made.stderr
        generated = subprocess.run([sys.executable, "-m", "notes", "users", "add",
                                    unique("gen")], capture_output=True, text=True, env=env,
                                   cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
        assert generated.returncode == 0, generated.stderr
        taken = subprocess.run([sys.executable, "-m", "notes", "users", "add", username,
                                "--password-stdin"], input=PASSWORD + "\n",
                               capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert taken.returncode == 1 and "taken" in taken.stderr
        client = httpx.Client(base_url=server.url)
        login = client.post("/auth/login", json={"username": username, "password": PASSWORD})
        assert login.status_code == 200
        assert "Secure" in login.headers["set-cookie"]
        generated_name = generated.stdout.split()[2]
        generated_password = generated.stdout.split("password: ")[1].strip()
        assert httpx.post(server.url + "/auth/login", json={
            "username": generated_name, "password": generated_password}).status_code == 200
        cookie = {"notes_session": login.cookies["notes_session"]}
        allowed = httpx.post(server.url + "/notes", json={"title": "from the editor"},
                             cookies=cookie, headers={"Origin": "https://editor.example"})
        assert allowed.status_code == 201
        other = httpx.post(server.url + "/notes", json={"title": "no"}, cookies=cookie,
                           headers={"Origin": "https://other.example"})
        assert other.status_code == 403
    finally:
        server.stop()


def test_status_says_whether_accounts_are_on_and_who_i_am(world: World, server: ServerProcess):
    status = httpx.get(world.url + "/auth/status").json()
    assert status == {"auth": "on", "signup": "open", "user": None}
    mine = httpx.get(world.url + "/auth/status", headers=world.viewer.bearer()).json()
    assert mine["user"]["username"] == world.viewer.username
    assert httpx.get(server.url + "/auth/status").json()["auth"] == "off"
    # And `notes serve` with accounts off says so loudly.
    assert "accounts: OFF" in server.log()


def test_login_throttle_window():
    now = [1000.0]
    throttle = LoginThrottle(per_user=3, per_address=5, window=60, clock=lambda: now[0])
    user, address = ("user", "ada"), ("address", "10.0.0.1")
    for _ in range(3):
        throttle.check(user, address)
        throttle.failed(user, address)
        now[0] += 10
    with pytest.raises(Throttled) as throttled:
        throttle.check(user, address)
    assert throttled.value.retry_after == 30  # the first failure, at 1000, ages out at 1060
    throttle.check(("user", "grace"), address)  # another name from the address: 3 of 5
    now[0] = 1060.5
    throttle.check(user, address)  # the oldest aged out
    throttle.failed(user)
    with pytest.raises(Throttled):
        throttle.check(user)
    throttle.succeeded(user)
    throttle.check(user)


def test_a_changed_role_changes_the_etag(world: World):
    """The role is part of the note as the caller sees it: a 304 must not keep an old one."""
    note_id = world.note()
    url = f"{world.url}/notes/{note_id}"
    first = httpx.get(url, headers=world.viewer.bearer())
    assert first.json()["role"] == "viewer"
    assert "private" in first.headers["cache-control"]
    assert httpx.get(url, headers={**world.viewer.bearer(), "If-None-Match": first.headers[
        "etag"]}).status_code == 304
    assert httpx.put(f"{url}/shares/{world.viewer.username}", json={"role": "editor"},
                     headers=world.owner.bearer()).status_code == 200
    again = httpx.get(url, headers={**world.viewer.bearer(),
                                    "If-None-Match": first.headers["etag"]})
    assert again.status_code == 200 and again.json()["role"] == "editor"
    # The new ETag is good for If-Match.
    patched = httpx.patch(url, json={"title": "by the new editor"},
                          headers={**world.viewer.bearer(), "If-Match": again.headers["etag"]})
    assert patched.status_code == 200, patched.text


# --- share links -------------------------------------------------------------------------------


def make_link(world: World, note_id: str, role: str) -> dict:
    response = httpx.post(f"{world.url}/notes/{note_id}/links", json={"role": role},
                          headers=world.owner.bearer())
    assert response.status_code == 201, response.text
    return response.json()


def test_share_links_open_one_note_with_their_role(world: World, sql):
    note_id = world.note("linked text")
    viewer_link = make_link(world, note_id, "viewer")
    assert viewer_link["url"].startswith(world.url + "/?")
    assert f"note={note_id}" in viewer_link["url"] and "link=" in viewer_link["url"]
    as_viewer = {"Authorization": f"Bearer {viewer_link['token']}"}
    note = httpx.get(f"{world.url}/notes/{note_id}", headers=as_viewer)
    assert (note.status_code, note.json()["role"]) == (200, "viewer")
    assert httpx.patch(f"{world.url}/notes/{note_id}", json={"title": "no"},
                       headers=as_viewer).status_code == 403
    # One note only: nothing else, no account.
    other = world.note()
    assert httpx.get(f"{world.url}/notes/{other}", headers=as_viewer).status_code == 404
    for method, path, body in (("GET", "/notes", None), ("POST", "/notes", {"title": "x"}),
                               ("GET", "/auth/me", None), ("GET", "/auth/tokens", None),
                               ("GET", f"/notes/{note_id}/shares", None),
                               ("POST", f"/notes/{note_id}/links", {"role": "editor"})):
        response = httpx.request(method, world.url + path, json=body, headers=as_viewer)
        assert response.status_code == 403, (method, path, response.text)
    editor_link = make_link(world, note_id, "editor")
    as_editor = {"Authorization": f"Bearer {editor_link['token']}"}
    assert httpx.patch(f"{world.url}/notes/{note_id}", json={"title": "by link"},
                       headers=as_editor).status_code == 200
    # Listed for the owner without secrets; stored as hashes.
    listed = httpx.get(f"{world.url}/notes/{note_id}/links", headers=world.owner.bearer())
    assert {item["id"]: item["role"] for item in listed.json()["items"]} == {
        viewer_link["id"]: "viewer", editor_link["id"]: "editor"}
    assert viewer_link["token"] not in listed.text
    (row,) = sql("SELECT secret_hash FROM share_links WHERE id = :id", id=viewer_link["id"])
    assert len(row[0]) == 32
    # Revoked: it stops working at once.
    assert httpx.delete(f"{world.url}/notes/{note_id}/links/{viewer_link['id']}",
                        headers=world.owner.bearer()).status_code == 204
    assert httpx.get(f"{world.url}/notes/{note_id}", headers=as_viewer).status_code == 401
    assert httpx.delete(f"{world.url}/notes/{note_id}/links/{viewer_link['id']}",
                        headers=world.owner.bearer()).status_code == 404


@pytest.mark.parametrize("caller", CALLERS)
def test_only_the_owner_makes_and_sees_links(world: World, caller: str):
    note_id = world.note()
    expected = dict(zip(CALLERS, (401, 401, 404, 403, 403, 201), strict=True))[caller]
    made = httpx.post(f"{world.url}/notes/{note_id}/links", json={"role": "viewer"},
                      headers=headers_of(world, caller))
    assert made.status_code == expected, made.text
    listed = httpx.get(f"{world.url}/notes/{note_id}/links", headers=headers_of(world, caller))
    assert listed.status_code == (200 if caller == "owner" else expected)


def test_tokens_in_urls_stay_out_of_the_access_log(database_url: str):
    server = ServerProcess(database_url, env={"NOTES_AUTH": "on", "NOTES_ACCESS_LOG": "true"},
                           log_name="access-log").start()
    try:
        secret = f"notes_{uuid.uuid4().hex}_s3cr3t-{uuid.uuid4().hex}"
        assert httpx.get(server.url + f"/health?name=x&token={secret}").status_code == 200
        assert httpx.get(server.url + "/health?marker=done").status_code == 200
        wait_until(lambda: "marker=done" in server.log(), 10, message="the access log")
        assert "token=REDACTED" in server.log()
        assert secret not in server.log()
    finally:
        server.stop()


def test_share_link_urls_use_the_public_url(database_url: str):
    server = ServerProcess(database_url, env={"NOTES_AUTH": "on",
                                              "NOTES_PUBLIC_URL": "https://notes.example/"},
                           log_name="public-url").start()
    try:
        account = sign_up(server.url, "publicurl")
        note_id = httpx.post(server.url + "/notes", json={"title": "t"},
                             headers=account.bearer()).json()["id"]
        link = httpx.post(f"{server.url}/notes/{note_id}/links", json={"role": "viewer"},
                          headers=account.bearer()).json()
        assert link["url"].startswith(f"https://notes.example/?note={note_id}&link=")
    finally:
        server.stop()
