"""Request and response bodies of the REST API (pydantic models, also the OpenAPI schemas)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# PostgreSQL cannot store NUL in text (checked in the use cases, documented here).
STORABLE = {"pattern": "^[^\\u0000]*$"}


class NoteCreate(_Strict):
    title: str = Field(description="The note's title.", json_schema_extra=STORABLE)
    content: str = Field(default="", description="The note's text.", json_schema_extra=STORABLE)


class NoteReplace(_Strict):
    title: str = Field(json_schema_extra=STORABLE)
    content: str = Field(json_schema_extra=STORABLE)


class NotePatch(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})

    title: str = Field(default=None, description="The new title, if it changes.",
                       json_schema_extra=STORABLE)
    content: str = Field(default=None, description="The new content, if it changes.",
                         json_schema_extra=STORABLE)


class Retain(_Strict):
    retain: int = Field(ge=1, description="Keep this many code points.")


class Insert(_Strict):
    insert: str = Field(min_length=1, description="Insert this text.")


class Delete(_Strict):
    delete: int = Field(ge=1, description="Remove this many code points.")


class EditRequest(_Strict):
    rev: int = Field(ge=0, description="The revision the delta was made on.")
    epoch: str | None = Field(
        default=None, max_length=64,
        description="The `epoch` that `rev` counts in (from the note or an earlier edit). "
                    "Revision numbers belong to one server process; another process answers "
                    "409 so that the client rebases.")
    delta: list[Retain | Insert | Delete] = Field(
        description="The change, in code points; it must fit the text of revision `rev`."
    )

    def delta_ops(self) -> list[dict[str, Any]]:
        return [op.model_dump() for op in self.delta]


class NoteOut(BaseModel):
    id: uuid.UUID
    title: str
    content: str
    rev: int = Field(description="The live-editing revision of the content.")
    epoch: str | None = Field(
        default=None,
        description="Names the numbering `rev` counts in: the answering process's live copy "
                    "(null when the note is not open for live editing).")
    version: int = Field(description="Changes whenever the stored note changes.")
    created_at: datetime
    updated_at: datetime
    owner: str | None = Field(
        default=None, description="The owner's username (null: made while accounts were off).")
    role: Literal["owner", "editor", "viewer"] | None = Field(
        default=None, description="Your role on the note: `owner`, `editor` or `viewer`.")


class NotePage(BaseModel):
    items: list[NoteOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class VersionOut(BaseModel):
    id: int = Field(description="The version's id (larger: newer).")
    created_at: datetime = Field(description="When the save that recorded it happened.")
    rev: int = Field(description="The live-editing revision it was saved at.")
    title: str
    length: int = Field(description="Code points in its content.")
    authors: list[str] = Field(description="Who changed the note since the version before "
                               "(usernames; live clients' names with accounts off).")
    label: str | None = Field(description="Its name (named versions are kept forever).")


class VersionDetail(VersionOut):
    content: str


class VersionPage(BaseModel):
    items: list[VersionOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end.")


class VersionLabel(_Strict):
    label: str = Field(min_length=1, max_length=100, description="The version's name.",
                       json_schema_extra=STORABLE)


class TitleChange(BaseModel):
    from_: str = Field(alias="from")
    to: str


class VersionDiffOut(BaseModel):
    from_: int = Field(alias="from", description="The version the changes start from.")
    to: int | None = Field(description="The version they lead to (null: the current text).")
    title: TitleChange
    delta: list[dict[str, Any]] = Field(
        description="The changes as a delta of the live protocol (code points): applied to "
                    "version `from`'s content it gives the target's.")
    unified: str = Field(description="The same changes as a unified diff of lines.")


class TrashedNoteOut(BaseModel):
    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime = Field(description="When it was moved to the trash.")
    purge_at: datetime = Field(description="When it will be deleted for good "
                               "(NOTES_TRASH_DAYS after `deleted_at`).")


class TrashPage(BaseModel):
    items: list[TrashedNoteOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end.")


class EditApplied(BaseModel):
    rev: int
    epoch: str
    delta: list[dict[str, Any]] = Field(description="The delta as applied (after transformation).")


class EditConflict(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    rev: int
    epoch: str
    content: str


class ProcessStats(BaseModel):
    """The answering process (with ``--workers N``, one of them): what it holds and wrote."""

    pid: int
    open_notes: int
    durability: str
    log_commits: int = Field(description="commits of the update log (each holds many edits)")
    log_entries: int = Field(description="updates those commits wrote")
    saves: int = Field(description="snapshots written (compactions)")
    catch_ups: int = Field(description="times an open note was caught up from the log")
    listen_reconnects: int
    frames_sent: int = Field(description="websocket frames sent to clients")
    socket_writes: int = Field(description="transport writes those frames took (a socket's "
                               "frames of one turn of the event loop go out in one write)")


class Health(BaseModel):
    status: str
    database: str
    process: ProcessStats


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


# --- accounts and sharing ------------------------------------------------------------------------


class Credentials(_Strict):
    username: str = Field(description="1 to 40 of `a-z`, `0-9`, `_`, `.`, `-`.",
                          json_schema_extra=STORABLE)
    password: str = Field(description="At least 8 characters.", json_schema_extra=STORABLE)


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    created_at: datetime


class AuthStatus(BaseModel):
    auth: Literal["on", "off"] = Field(description="`off`: every note is open to everyone.")
    signup: Literal["open", "closed"]
    user: UserOut | None = Field(description="Who you are signed in as (null: nobody).")


class TokenCreate(_Strict):
    name: str = Field(min_length=1, max_length=100, description="What the token is for.",
                      json_schema_extra=STORABLE)


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


class TokenCreated(TokenOut):
    token: str = Field(description="The secret, shown only this once: send it as "
                       "`Authorization: Bearer TOKEN`, or `?token=TOKEN` on a websocket.")


class TokenList(BaseModel):
    items: list[TokenOut]


class ShareRequest(_Strict):
    role: Literal["viewer", "editor"]


class ShareOut(BaseModel):
    username: str
    role: Literal["viewer", "editor"]
    created_at: datetime


class ShareList(BaseModel):
    owner: str | None = Field(description="The owner's username.")
    items: list[ShareOut]


class LinkCreate(_Strict):
    role: Literal["viewer", "editor"]


class LinkOut(BaseModel):
    id: uuid.UUID
    role: Literal["viewer", "editor"]
    created_at: datetime


class LinkCreated(LinkOut):
    token: str = Field(description="The link's secret, shown only this once: a bearer token "
                       "(`Authorization: Bearer`, `?token=` on a websocket) for this note only.")
    url: str = Field(description="The page, opening the note with the link.")


class LinkList(BaseModel):
    items: list[LinkOut]
