"""The export layout, shared by ``GET /export`` and the ``notes export``/``notes import`` commands:
one Markdown file per note, named after its title and id, with a small front matter.

    ---
    id: 5f0c6f4e-4b8e-4a44-9c55-3c1f8f1a2b3d
    title: "Shopping list"
    created: 2026-12-07T10:00:00.123456+00:00
    updated: 2026-12-07T11:30:00.654321+00:00
    ---
    the content, byte for byte

The title is a JSON string (so any title fits on one line, and it is valid YAML too); the content
is everything after the closing ``---`` line, unchanged. Reading is strict: an archive or folder
that is not such an export is refused as a whole (``InvalidExport``, naming the file), before
anything is imported. No I/O beyond the files and archives it is given.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from notes.collab.text import field_problem

EXTENSION = ".md"
FIELDS = ("id", "title", "created", "updated")
MAX_FILES = 10_000
_DELIMITER = "---"
# Front matter is a few hundred bytes; a file may hold at most this much besides its content.
_FRONT_MATTER_ROOM = 64 * 1024
# Ignored when reading: what file managers and version control leave beside an export.
_IGNORED_PREFIXES = (".", "__MACOSX")


class InvalidExport(ValueError):
    """Not an export this server can import: ``where`` is the file (or archive) at fault."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class ExportedNote:
    id: uuid.UUID
    title: str
    content: str
    created_at: datetime
    updated_at: datetime


def download_name(title: str, extension: str) -> str:
    """A safe file name for a note: its title's letters, digits, spaces and dashes."""
    kept = "".join(char if char.isalnum() or char in " -_" else " " for char in title)
    return (" ".join(kept.split())[:80] or "note") + extension


def file_name(note: ExportedNote) -> str:
    """The note's file in an export: unique by its id, readable by its title."""
    return download_name(note.title, f" {note.id}{EXTENSION}")


def render(note: ExportedNote) -> bytes:
    """The note as an export file."""
    header = "\n".join([
        _DELIMITER,
        f"id: {note.id}",
        f"title: {json.dumps(note.title, ensure_ascii=False)}",
        f"created: {note.created_at.isoformat()}",
        f"updated: {note.updated_at.isoformat()}",
        _DELIMITER,
        "",
    ])
    return header.encode() + note.content.encode()


@dataclass(frozen=True)
class Limits:
    max_title: int
    max_content: int

    @property
    def max_file_bytes(self) -> int:
        return 4 * self.max_content + _FRONT_MATTER_ROOM  # (UTF-8: at most 4 bytes a code point)


def parse(name: str, data: bytes, limits: Limits) -> ExportedNote:
    """One export file, checked: every field present once, an id, dates with a time zone, and
    text within the limits a note must keep."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidExport(name, f"not UTF-8 text (byte {error.start})") from None
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r") != _DELIMITER:
        raise InvalidExport(name, "no front matter (the file must start with a '---' line)")
    fields: dict[str, str] = {}
    content: str | None = None
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if line == _DELIMITER:
            content = "\n".join(lines[number:])
            break
        if number == len(lines) and not line:
            break  # (the end of the file)
        key, colon, value = line.partition(":")
        if not colon or key not in FIELDS:
            raise InvalidExport(name, f"line {number}: expected one of {', '.join(FIELDS)}"
                                f" as 'key: value'")
        if key in fields:
            raise InvalidExport(name, f"line {number}: {key} given twice")
        fields[key] = value.strip()
    if content is None:
        raise InvalidExport(name, "the front matter has no closing '---' line")
    missing = [key for key in FIELDS if key not in fields]
    if missing:
        raise InvalidExport(name, f"the front matter lacks {', '.join(missing)}")
    try:
        note_id = uuid.UUID(fields["id"])
    except ValueError:
        raise InvalidExport(name, f"id is not a UUID: {fields['id'][:60]!r}") from None
    try:
        title = json.loads(fields["title"])
    except ValueError:
        title = None
    if not isinstance(title, str):
        raise InvalidExport(name, "title is not a JSON string")
    created, updated = (_timestamp(name, key, fields[key]) for key in ("created", "updated"))
    for field, value, limit in (("title", title, limits.max_title),
                                ("content", content, limits.max_content)):
        problem = field_problem(value, limit)
        if problem:
            raise InvalidExport(name, f"the {field}: {problem[1]}")
    return ExportedNote(note_id, title, content, created, updated)


def _timestamp(name: str, key: str, value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidExport(name, f"{key} is not an ISO 8601 time: {value[:60]!r}") from None
    if when.tzinfo is None:
        raise InvalidExport(name, f"{key} has no time zone: {value[:60]!r}")
    return when


def read_export(path: Path, limits: Limits) -> Iterator[ExportedNote]:
    """The notes of an export: a folder or a zip archive of one (its files at the top, or in one
    folder). Checks as it goes, so a caller that stores them in one transaction stores none of
    an invalid export; at most ``MAX_FILES`` notes, each id once."""
    if path.is_dir():
        files = _folder_files(path)
    elif zipfile.is_zipfile(path):
        files = _archive_files(path, limits)
    else:
        raise InvalidExport(str(path), "neither a folder nor a zip archive")
    seen: set[uuid.UUID] = set()
    for count, (name, read) in enumerate(files, start=1):
        if count > MAX_FILES:
            raise InvalidExport(str(path), f"more than {MAX_FILES} notes")
        note = parse(name, read(), limits)
        if note.id in seen:
            raise InvalidExport(name, f"a second note with the id {note.id}")
        seen.add(note.id)
        yield note


def _ignored(name: str) -> bool:
    return name.startswith(_IGNORED_PREFIXES)


def _refuse_other(name: str) -> None:
    if not name.endswith(EXTENSION):
        raise InvalidExport(name, f"not a note file (an export holds only {EXTENSION} files)")


def _folder_files(folder: Path):
    entries = sorted(entry for entry in folder.iterdir() if not _ignored(entry.name))
    for entry in entries:
        if entry.is_dir():
            raise InvalidExport(str(entry), "a folder inside the export")
        _refuse_other(str(entry))
    # (checked before reading any, so a stray file is reported before a slow import)
    for entry in entries:
        yield str(entry), entry.read_bytes


def _archive_files(path: Path, limits: Limits):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InvalidExport(str(path), f"not a readable zip archive ({error})") from None
    with archive:
        members = [member for member in archive.infolist()
                   if not member.is_dir()
                   and not any(_ignored(part) for part in PurePosixPath(member.filename).parts)]
        folders = {PurePosixPath(member.filename).parent for member in members}
        if len(folders) > 1:
            raise InvalidExport(str(path), "notes in more than one folder of the archive")
        for member in members:
            _refuse_other(member.filename)
            if member.file_size > limits.max_file_bytes:
                raise InvalidExport(member.filename, "larger than any note may be")
        for member in members:
            yield member.filename, _archive_reader(archive, member, limits)


def _archive_reader(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limits: Limits):
    def read() -> bytes:
        try:
            with archive.open(member) as stream:
                data = stream.read(limits.max_file_bytes + 1)  # (whatever its header says)
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as error:
            raise InvalidExport(member.filename, f"cannot be read ({error})") from None
        if len(data) > limits.max_file_bytes:
            raise InvalidExport(member.filename, "larger than any note may be")
        return data
    return read
