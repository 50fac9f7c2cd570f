"""The REST API against a real server and a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest

PROBLEM = "application/problem+json"
MULTILINGUAL = "héllo 漢字 😀"


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    assert "Traceback" not in response.text and "SELECT" not in response.text
    return body


def test_create_returns_note_location_and_etag(http: httpx.Client):
    response = http.post("/notes", json={"title": "Groceries 😀", "content": MULTILINGUAL})
    assert response.status_code == 201
    note = response.json()
    assert note["title"] == "Groceries 😀"
    assert note["content"] == MULTILINGUAL
    assert uuid.UUID(note["id"])
    assert response.headers["location"] == f"/notes/{note['id']}"
    assert response.headers["etag"].startswith('"')
    created = datetime.fromisoformat(note["created_at"])
    assert created.utcoffset().total_seconds() == 0
    assert note["version"] == 1
    fetched = http.get(response.headers["location"])
    assert fetched.json() == note
    assert fetched.headers["etag"] == response.headers["etag"]


def test_content_defaults_to_empty(http: httpx.Client):
    assert http.post("/notes", json={"title": "t"}).json()["content"] == ""


def test_get_unknown_and_malformed_ids_are_404(http: httpx.Client):
    assert_problem(http.get(f"/notes/{uuid.uuid4()}"), 404)
    assert_problem(http.get("/notes/not-a-uuid"), 404)
    assert_problem(http.get("/no/such/route"), 404)


def test_if_none_match_gives_304(http: httpx.Client, make_note):
    note = make_note("cached", MULTILINGUAL)
    first = http.get(f"/notes/{note['id']}")
    etag = first.headers["etag"]
    again = http.get(f"/notes/{note['id']}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = http.get(f"/notes/{note['id']}", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200


def test_put_replaces_and_changes_etag_and_version(http: httpx.Client, make_note):
    note = make_note("old", "old text")
    before = http.get(f"/notes/{note['id']}")
    response = http.put(f"/notes/{note['id']}", json={"title": "new 漢", "content": "new 😀"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["title"], updated["content"]) == ("new 漢", "new 😀")
    assert updated["version"] > note["version"]
    assert response.headers["etag"] != before.headers["etag"]
    assert http.get(f"/notes/{note['id']}").json()["content"] == "new 😀"
    assert updated["updated_at"] >= note["updated_at"]


def test_patch_changes_one_field(http: httpx.Client, make_note):
    note = make_note("title", "content é")
    response = http.patch(f"/notes/{note['id']}", json={"title": "renamed"})
    assert response.status_code == 200
    assert response.json()["content"] == "content é"
    assert response.json()["title"] == "renamed"
    response = http.patch(f"/notes/{note['id']}", json={"content": "changed 😀"})
    # (the note was live while the PATCH ran, and is not now: only `epoch` differs)
    assert response.json() | {"epoch": None} == http.get(f"/notes/{note['id']}").json()
    assert response.json()["title"] == "renamed"


def test_if_match_guards_writes(http: httpx.Client, make_note):
    note = make_note("guarded", "v1")
    etag = http.get(f"/notes/{note['id']}").headers["etag"]
    stale = http.put(f"/notes/{note['id']}", json={"title": "x", "content": "v2"},
                     headers={"If-Match": '"not-the-etag"'})
    assert_problem(stale, 412)
    assert http.get(f"/notes/{note['id']}").json()["content"] == "v1"
    ok = http.put(f"/notes/{note['id']}", json={"title": "x", "content": "v2"},
                  headers={"If-Match": etag})
    assert ok.status_code == 200
    assert_problem(http.patch(f"/notes/{note['id']}", json={"content": "v3"},
                              headers={"If-Match": etag}), 412)
    assert http.patch(f"/notes/{note['id']}", json={"content": "v3"},
                      headers={"If-Match": "*"}).status_code == 200
    assert_problem(http.delete(f"/notes/{note['id']}", headers={"If-Match": etag}), 412)


def test_delete_then_404(http: httpx.Client, make_note):
    note = make_note("doomed")
    assert http.delete(f"/notes/{note['id']}").status_code == 204
    assert_problem(http.get(f"/notes/{note['id']}"), 404)
    assert_problem(http.delete(f"/notes/{note['id']}"), 404)
    assert_problem(http.put(f"/notes/{note['id']}", json={"title": "a", "content": "b"}), 404)


def test_malformed_json_is_400_and_changes_nothing(http: httpx.Client, make_note):
    note = make_note("stable", "same")
    body = assert_problem(http.post("/notes", content=b'{"title": ', headers={
        "content-type": "application/json"}), 400)
    assert "JSON" in body["detail"]
    assert_problem(http.put(f"/notes/{note['id']}", content=b"\xff\xfe",
                            headers={"content-type": "application/json"}), 400)
    assert http.get(f"/notes/{note['id']}").json()["content"] == "same"


def test_deeply_nested_json_is_400_not_a_server_error(http: httpx.Client, make_note):
    note = make_note("stable", "same")
    for depth in (1_000, 100_000):
        nested = b'{"title": "t", "content": ' + b"[" * depth + b"]" * depth + b"}"
        body = assert_problem(http.post("/notes", content=nested,
                                        headers={"content-type": "application/json"}), 400)
        assert "nested too deeply" in body["detail"]
        assert_problem(http.patch(f"/notes/{note['id']}", content=nested,
                                  headers={"content-type": "application/json"}), 400)
    assert http.get(f"/notes/{note['id']}").json()["content"] == "same"
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize("body", [
    {"title": 5},
    {"title": "ok", "content": ["list"]},
    {"title": "ok", "colour": "blue"},
    {"content": "no title"},
    ["not", "an", "object"],
    {"title": None},
])
def test_wrong_fields_are_422_with_field_errors(http: httpx.Client, body):
    problem = assert_problem(http.post("/notes", json=body), 422)
    assert problem["errors"]
    assert all({"loc", "msg", "type"} <= error.keys() for error in problem["errors"])


def test_patch_with_nothing_to_change_is_422(http: httpx.Client, make_note):
    note = make_note()
    assert_problem(http.patch(f"/notes/{note['id']}", json={}), 422)


def test_wrong_content_type_is_415(http: httpx.Client, make_note):
    assert_problem(http.post("/notes", content=b"title=x",
                             headers={"content-type": "application/x-www-form-urlencoded"}), 415)
    note = make_note()
    assert_problem(http.put(f"/notes/{note['id']}", content=b'{"title":"a","content":"b"}',
                            headers={"content-type": "text/plain"}), 415)


def test_body_over_limit_is_413(http: httpx.Client):
    big = b'{"title": "big", "content": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = http.post("/notes", content=big, headers={"content-type": "application/json"})
    assert_problem(response, 413)


@pytest.mark.parametrize("text", [b"nul \\u0000 inside", b"lone \\ud800 surrogate"])
def test_text_postgresql_cannot_store_is_422(http: httpx.Client, text):
    body = b'{"title": "t", "content": "' + text + b'"}'
    response = http.post("/notes", content=body, headers={"content-type": "application/json"})
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["content"]


def test_limits_are_422(http: httpx.Client, make_note):
    problem = assert_problem(http.post("/notes", json={"title": "é" * 201}), 422)
    assert problem["errors"][0]["loc"] == ["title"]
    note = make_note()
    assert_problem(http.patch(f"/notes/{note['id']}", json={"title": "漢" * 201}), 422)
    assert http.get(f"/notes/{note['id']}").json()["title"] == "A note"


def test_method_not_allowed_is_405(http: httpx.Client, make_note):
    note = make_note()
    response = http.post(f"/notes/{note['id']}", json={})
    assert_problem(response, 405)
    assert_problem(http.delete("/notes"), 405)


def test_list_pagination_is_newest_updated_first(http: httpx.Client, make_note):
    tag = uuid.uuid4().hex[:10]
    created = [make_note(f"page {tag} {i}", "é") for i in range(7)]
    # Touch one old note: it becomes the newest-updated.
    http.patch(f"/notes/{created[1]['id']}", json={"content": "touched 😀"})
    seen, cursor = [], None
    while True:
        params = {"q": tag, "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = http.get("/notes", params=params)
        assert page.status_code == 200
        body = page.json()
        assert len(body["items"]) <= 3
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)) == 7
    assert ids[0] == created[1]["id"]
    stamps = [item["updated_at"] for item in seen]
    assert stamps == sorted(stamps, reverse=True)


def test_search_finds_words_in_title_and_content(http: httpx.Client, make_note):
    word = "zebra" + uuid.uuid4().hex[:8]
    in_title = make_note(f"About {word}", "nothing")
    in_content = make_note("Other", f"a line with {word} inside, 漢字 😀")
    make_note("Unrelated", "nothing at all")
    found = http.get("/notes", params={"q": word}).json()["items"]
    assert {note["id"] for note in found} == {in_title["id"], in_content["id"]}
    both = http.get("/notes", params={"q": f"{word} inside"}).json()["items"]
    assert [note["id"] for note in both] == [in_content["id"]]
    assert http.get("/notes", params={"q": "\"unclosed or -"}).status_code == 200


def test_list_rejects_bad_limit_and_cursor(http: httpx.Client):
    assert_problem(http.get("/notes", params={"limit": 0}), 422)
    assert_problem(http.get("/notes", params={"limit": 2**31}), 422)
    assert http.get("/notes", params={"limit": 10_000}).status_code == 200  # capped
    assert_problem(http.get("/notes", params={"limit": "many"}), 422)
    assert_problem(http.get("/notes?limit="), 422)
    assert_problem(http.get("/notes", params={"cursor": "garbage!"}), 400)
    assert_problem(http.get("/notes", params={"q": "nul \x00"}), 422)


def test_health_ok(http: httpx.Client):
    health = http.get("/health").json()
    assert (health["status"], health["database"]) == ("ok", "ok")
    assert health["process"]["durability"] == "log"


def test_health_503_when_database_is_down(tmp_path):
    from conftest import ServerProcess

    from notes.store.embedded import EmbeddedPostgres
    from notes.store.migrate import upgrade

    embedded = EmbeddedPostgres(tmp_path / "db")
    url = embedded.start()
    upgrade(url)
    server = ServerProcess(url, log_name="health-server").start()
    try:
        assert httpx.get(server.url + "/health").status_code == 200
        embedded.stop()
        response = httpx.get(server.url + "/health", timeout=30)
        assert_problem(response, 503)
        # The server keeps running and answers other requests with problems, not crashes.
        assert_problem(httpx.get(server.url + f"/notes/{uuid.uuid4()}", timeout=30), 503)
    finally:
        server.stop()
        embedded.delete()

