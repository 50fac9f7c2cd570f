"""Export and import: the file layout (round trips, strict refusals), ``GET /export`` on a server
with accounts, and ``notes export``/``notes import`` moving notes into an empty database."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, TEST_SERVER_ENV, run_sql
from hypothesis import given, settings
from hypothesis import strategies as st
from test_auth import sign_up
from test_rest import assert_problem

from notes.collab.text import text_problem
from notes.transfer import (
    MAX_FILES,
    ExportedNote,
    InvalidExport,
    Limits,
    file_name,
    parse,
    read_export,
    render,
)

LIMITS = Limits(max_title=200, max_content=1_000_000)
WHEN = datetime(2026, 12, 7, 10, 30, 15, 123456, tzinfo=UTC)
SAMPLE = ExportedNote(uuid.UUID(int=7), "Café 漢字 😀", "é 漢 😀\r\n---\nlast line", WHEN,
                      WHEN + timedelta(hours=1))

# --- the layout ----------------------------------------------------------------------------------

storable = st.text().filter(lambda text: text_problem(text) is None)
moments = st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2200, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                  timezone(timedelta(hours=-8))]))


@given(title=storable.map(lambda title: title[:200]), content=storable,
       created=moments, updated=moments, note_id=st.uuids())
@settings(max_examples=300, deadline=None)
def test_a_rendered_note_parses_back_the_same(title, content, created, updated, note_id):
    note = ExportedNote(note_id, title, content, created, updated)
    assert parse("note.md", render(note), LIMITS) == note


def test_the_file_is_readable_markdown_with_the_content_byte_for_byte():
    data = render(SAMPLE)
    assert data.decode().startswith(
        "---\nid: 00000000-0000-0000-0000-000000000007\ntitle: \"Café 漢字 😀\"\n"
        "created: 2026-12-07T10:30:15.123456+00:00\n"
        "updated: 2026-12-07T11:30:15.123456+00:00\n---\n")
    assert data.endswith("é 漢 😀\r\n---\nlast line".encode())
    assert file_name(SAMPLE) == "Café 漢字 00000000-0000-0000-0000-000000000007.md"
    assert file_name(ExportedNote(SAMPLE.id, "../../etc/passwd", "", WHEN, WHEN)) == (
        "etc passwd 00000000-0000-0000-0000-000000000007.md")
    # Front matter written on Windows (CRLF) still reads.
    crlf = data.replace(b"\n", b"\r\n", 6)
    assert parse("crlf.md", crlf, LIMITS) == SAMPLE


GOOD_HEAD = ("---\nid: 00000000-0000-0000-0000-000000000007\ntitle: \"t\"\n"
             "created: 2026-12-07T10:00:00+00:00\nupdated: 2026-12-07T10:00:00+00:00\n---\n")


@pytest.mark.parametrize(("data", "reason"), [
    (b"no front matter", "no front matter"),
    (b"---\nid: 00000000-0000-0000-0000-000000000007\n", "no closing"),
    (GOOD_HEAD.replace("title: \"t\"\n", "").encode(), "lacks title"),
    (GOOD_HEAD.replace("title:", "tags: [a]\ntitle:").encode(), "expected one of"),
    (GOOD_HEAD.replace("title: \"t\"\n", "title: \"t\"\ntitle: \"u\"\n").encode(), "given twice"),
    (GOOD_HEAD.replace("00000000-0000-0000-0000-000000000007", "7").encode(), "not a UUID"),
    (GOOD_HEAD.replace("\"t\"", "t").encode(), "not a JSON string"),
    (GOOD_HEAD.replace("\"t\"", "3").encode(), "not a JSON string"),
    (GOOD_HEAD.replace("10:00:00+00:00\nupdated", "10:00:00\nupdated").encode(), "no time zone"),
    (GOOD_HEAD.replace("2026-12-07T10:00:00+00:00\n---", "yesterday\n---").encode(),
     "not an ISO 8601 time"),
    (GOOD_HEAD.encode() + b"\xff\xfe", "not UTF-8"),
    (GOOD_HEAD.encode() + b"a\x00b", "NUL"),
    (GOOD_HEAD.replace("\"t\"", "\"\\ud800\"").encode(), "lone surrogates"),
    (GOOD_HEAD.encode() + b"x" * 11, "at most 10 characters"),
    (GOOD_HEAD.replace("\"t\"", "\"" + "t" * 6 + "\"").encode(), "the title: at most 5"),
])
def test_a_malformed_file_is_refused_naming_the_file_and_why(data, reason):
    with pytest.raises(InvalidExport) as refused:
        parse("bad.md", data, Limits(max_title=5, max_content=10))
    assert refused.value.where == "bad.md"
    assert reason in str(refused.value)


def _note(number: int, **changes) -> ExportedNote:
    fields = {"id": uuid.UUID(int=number), "title": f"note {number}",
              "content": f"text {number} é漢😀", "created_at": WHEN, "updated_at": WHEN,
              **changes}
    return ExportedNote(**fields)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_folder_or_zip_of_notes_reads_back_and_strays_are_refused(tmp_path):
    notes = [_note(1), _note(2), _note(3, title="")]
    folder = tmp_path / "export"
    folder.mkdir()
    for note in notes:
        (folder / file_name(note)).write_bytes(render(note))
    (folder / ".DS_Store").write_bytes(b"\0\1")  # (left by a file manager: ignored)
    assert sorted(read_export(folder, LIMITS), key=lambda note: note.id) == notes
    members = {f"export/{file_name(note)}": render(note) for note in notes}
    archive = _zip(tmp_path / "one-folder.zip", {**members, "__MACOSX/._x.md": b"junk"})
    assert sorted(read_export(archive, LIMITS), key=lambda note: note.id) == notes

    (folder / "README.txt").write_text("hello")
    with pytest.raises(InvalidExport, match="README.txt: not a note file"):
        list(read_export(folder, LIMITS))
    refusals = {
        "two folders": ({"a/1.md": render(_note(1)), "b/2.md": render(_note(2))},
                        "more than one folder"),
        "same id twice": ({"1.md": render(_note(1)), "again.md": render(_note(1))},
                          "again.md: a second note with the id"),
        "a stray": ({"1.md": render(_note(1)), "photo.png": b"\x89PNG"},
                    "photo.png: not a note file"),
        "too large": ({"big.md": render(_note(1, content="x" * 70_000))},
                      "big.md: larger"),
    }
    for name, (files, reason) in refusals.items():
        archive = _zip(tmp_path / f"{name}.zip", files)
        with pytest.raises(InvalidExport, match=reason):
            list(read_export(archive, Limits(max_title=200, max_content=10)))
    (tmp_path / "notes.tar").write_bytes(b"not a zip at all")
    with pytest.raises(InvalidExport, match="neither a folder nor a zip"):
        list(read_export(tmp_path / "notes.tar", LIMITS))
    assert MAX_FILES == 10_000


# --- GET /export ---------------------------------------------------------------------------------


def _exported(response: httpx.Response) -> dict[str, bytes]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith('attachment; filename="notes-')
    assert response.headers["cache-control"] == "private, no-store"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_export_zips_my_notes_outside_the_trash_and_nobody_elses(auth_server):
    me, other = sign_up(auth_server.url, "exporter"), sign_up(auth_server.url, "other")
    made = {}
    for title, content in (("Café", "é 漢 😀\r\nline two"), ("empty", ""), ("漢", "---\n")):
        response = httpx.post(auth_server.url + "/notes", headers=me.bearer(),
                              json={"title": title, "content": content})
        made[response.json()["id"]] = (title, content)
    trashed = httpx.post(auth_server.url + "/notes", headers=me.bearer(),
                         json={"title": "gone", "content": "trashed"}).json()["id"]
    assert httpx.delete(f"{auth_server.url}/notes/{trashed}",
                        headers=me.bearer()).status_code == 204
    theirs = httpx.post(auth_server.url + "/notes", headers=other.bearer(),
                        json={"title": "theirs", "content": "private"}).json()["id"]
    # Shared with me is still theirs: not in my export.
    assert httpx.put(f"{auth_server.url}/notes/{theirs}/shares/{me.username}",
                     json={"role": "editor"}, headers=other.bearer()).status_code in (200, 201)

    files = _exported(httpx.get(auth_server.url + "/export", headers=me.bearer()))
    notes = {str(note.id): (name, note)
             for name, note in ((name, parse(name, data, LIMITS)) for name, data in files.items())}
    # (A new account also owns the notes nobody owned: other tests make some with accounts off.)
    assert made.keys() <= notes.keys() and not {trashed, theirs} & notes.keys()
    for note_id, (title, content) in made.items():
        name, note = notes[note_id]
        assert (name, note.title, note.content) == (file_name(note), title, content)
        stored = httpx.get(f"{auth_server.url}/notes/{note_id}", headers=me.bearer()).json()
        assert note.created_at == datetime.fromisoformat(stored["created_at"])
        assert note.updated_at == datetime.fromisoformat(stored["updated_at"])
    their_files = _exported(httpx.get(auth_server.url + "/export", headers=other.bearer()))
    their_ids = {str(parse(n, d, LIMITS).id) for n, d in their_files.items()}
    assert theirs in their_ids and not made.keys() & their_ids


def test_export_needs_an_account_not_a_share_link(auth_server):
    assert_problem(httpx.get(auth_server.url + "/export"), 401)
    me = sign_up(auth_server.url, "linker")
    note_id = httpx.post(auth_server.url + "/notes", headers=me.bearer(),
                         json={"title": "linked"}).json()["id"]
    link = httpx.post(f"{auth_server.url}/notes/{note_id}/links", json={"role": "editor"},
                      headers=me.bearer()).json()
    as_link = {"Authorization": f"Bearer {link['token']}"}
    assert_problem(httpx.get(auth_server.url + "/export", headers=as_link), 403)


def test_export_holds_an_edit_just_applied(server):
    note = httpx.post(server.url + "/notes", json={"title": "live", "content": "abc"}).json()
    with httpx.Client(base_url=server.url) as client:
        applied = client.post(f"/notes/{note['id']}/edits",
                              json={"rev": 0, "delta": [{"retain": 3}, {"insert": " 😀"}]})
        assert applied.status_code == 200, applied.text
        files = _exported(client.get("/export"))
    exported = {note.id: note for note in (parse(n, d, LIMITS) for n, d in files.items())}
    assert exported[uuid.UUID(note["id"])].content == "abc 😀"


# --- notes export / notes import -----------------------------------------------------------------


def notes_command(*args: str, database_url: str, auth: str = "off"
                  ) -> subprocess.CompletedProcess:
    env = {**os.environ, **TEST_SERVER_ENV, "NOTES_DATABASE_URL": database_url,
           "NOTES_AUTH": auth}
    return subprocess.run([sys.executable, "-m", "notes", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory):
    """A second PostgreSQL, migrated and empty: where the notes move to."""
    from notes.store.embedded import EmbeddedPostgres
    from notes.store.migrate import upgrade

    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("second-db"))
    url = embedded.start()
    upgrade(url)
    yield url
    embedded.delete()


def _rows(database_url: str, ids: list[str]) -> dict[str, tuple]:
    rows = run_sql(database_url,
                   "SELECT id::text, title, content, created_at, updated_at,"
                   " (SELECT count(*) FROM note_versions v WHERE v.note_id = notes.id)"
                   " FROM notes WHERE id::text = ANY(:ids)", ids=ids)
    return {row[0]: tuple(row[1:]) for row in rows}


def test_export_then_import_into_an_empty_database_gives_the_same_notes(
        auth_server, database_url, empty_database, tmp_path):
    me = sign_up(auth_server.url, "mover")
    ids = [httpx.post(auth_server.url + "/notes", headers=me.bearer(),
                      json={"title": title, "content": content}).json()["id"]
           for title, content in (("é", "é 漢 😀"), ("crlf", "a\r\nb\r\n"), ("", ""),
                                  ("long", "word " * 50_000))]
    folder = tmp_path / "backup"
    exported = notes_command("export", str(folder), "--owner", me.username,
                             database_url=database_url, auth="on")
    assert exported.returncode == 0, exported.stderr
    zipped = _exported(httpx.get(auth_server.url + "/export", headers=me.bearer()))
    # The command and the route write the same files. (A new account also owns the notes
    # nobody owned, made by other tests with accounts off.)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == zipped
    assert f"exported {len(zipped)} notes" in exported.stdout
    assert set(ids) <= {str(parse(name, data, LIMITS).id) for name, data in zipped.items()}
    ids = [str(parse(name, data, LIMITS).id) for name, data in zipped.items()]
    count = len(ids)

    imported = notes_command("import", str(folder), database_url=empty_database)
    assert imported.returncode == 0, imported.stderr
    assert f"imported {count} notes, skipped 0" in imported.stdout
    before, after = _rows(database_url, ids), _rows(empty_database, ids)
    assert {key: row[:4] for key, row in after.items()} == {
        key: row[:4] for key, row in before.items()}
    assert all(row[4] == 1 for row in after.values())  # (each with its text as a version)
    # Twice, or from the zip: nothing duplicated, nothing changed.
    again = notes_command("import", str(folder), database_url=empty_database)
    assert f"imported 0 notes, skipped {count}" in again.stdout
    archive = tmp_path / "export.zip"
    archive.write_bytes(httpx.get(auth_server.url + "/export", headers=me.bearer()).content)
    from_zip = notes_command("import", str(archive), database_url=empty_database)
    assert f"imported 0 notes, skipped {count}" in from_zip.stdout, from_zip.stderr
    assert _rows(empty_database, ids) == after
    # Into a folder holding an earlier export: refused (stale files would repeat ids).
    assert notes_command("export", str(folder), database_url=database_url).returncode == 2


def test_an_invalid_export_imports_nothing(empty_database, tmp_path):
    folder = tmp_path / "half-bad"
    folder.mkdir()
    good = [_note(number) for number in range(1001, 1004)]
    for note in good:
        (folder / file_name(note)).write_bytes(render(note))
    (folder / "zz broken.md").write_bytes(GOOD_HEAD.replace('"t"', "t").encode())
    result = notes_command("import", str(folder), database_url=empty_database)
    assert result.returncode == 2
    assert "not imported" in result.stderr and "zz broken.md" in result.stderr
    assert "not a JSON string" in result.stderr
    assert _rows(empty_database, [str(note.id) for note in good]) == {}
    # With accounts on, the notes must be someone's; an unknown account is refused.
    (folder / "zz broken.md").unlink()
    assert notes_command("import", str(folder), database_url=empty_database,
                         auth="on").returncode == 2
    unknown = notes_command("import", str(folder), "--owner", "nobody-here",
                            database_url=empty_database, auth="on")
    assert unknown.returncode == 2 and "no account is named 'nobody-here'" in unknown.stderr
    assert _rows(empty_database, [str(note.id) for note in good]) == {}
    assert notes_command("import", str(folder), database_url=empty_database).returncode == 0
    assert len(_rows(empty_database, [str(note.id) for note in good])) == 3
