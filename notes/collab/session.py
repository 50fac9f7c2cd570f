"""The JSON client protocol (docs/protocol.md): room events out as JSON text, frames in."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from notes.collab.document import BadMessage, EditRejected, StaleRevision
from notes.collab.events import (
    Deleted,
    Event,
    PeerJoined,
    PeerLeft,
    PresenceChanged,
    RevisionApplied,
    Saved,
    SaveFailed,
    TitleChanged,
)
from notes.collab.json_input import BadJson, check_depth, parse_json
from notes.collab.limits import CLOSE_POLICY_VIOLATION, RateLimit, Verdict
from notes.collab.room import Member, Room


@dataclass(frozen=True)
class Resume:
    """A reconnecting client's ``since`` and ``epoch``: the revision it has, in whose numbering."""

    rev: int
    epoch: str | None


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


class JsonCodec:
    """Room events as JSON protocol messages (one instance, ``JSON``, for every JSON member)."""

    protocol = "json"

    def greet(self, room: Room, member: Member, since: Resume | None) -> Iterable[str]:
        hello: dict[str, Any] = {
            "type": "hello",
            "client": member.id,
            "epoch": room.document.epoch,
            "rev": room.rev,
            "content": room.content,
            "title": room.title,
            "peers": room.peers(),
        }
        missed = _missed_since(room, since)
        if since is not None and missed is not None:
            hello["since"] = since.rev
            hello["missed"] = missed
        return [encode(hello)]

    def encode(self, event: Event) -> str | None:
        if isinstance(event, RevisionApplied):
            return encode({"type": "edit", "rev": event.rev, "delta": event.delta,
                           "client": event.origin})
        if isinstance(event, PresenceChanged):
            return encode({"type": "presence", "client": event.client, "name": event.name,
                           "cursor": event.cursor})
        if isinstance(event, TitleChanged):
            return encode({"type": "title", "title": event.title, "client": event.origin})
        if isinstance(event, PeerJoined):
            return encode({"type": "join", "client": event.client, "name": event.name})
        if isinstance(event, PeerLeft):
            return encode({"type": "leave", "client": event.client})
        if isinstance(event, Saved):
            return encode({"type": "saved", "rev": event.rev})
        if isinstance(event, SaveFailed):
            return _error("save_failed", event.message)
        if isinstance(event, Deleted):
            return encode({"type": "deleted"})
        return None  # Yjs-only events (awareness, other shared types)

    def encode_own(self, event: Event) -> str | None:
        if isinstance(event, RevisionApplied):
            return encode({"type": "ack", "rev": event.rev, "ref": event.ref})
        return None


JSON = JsonCodec()


def _error(code: str, message: str, ref: Any = None) -> str:
    return encode({"type": "error", "code": code, "message": message, "ref": ref})


def _missed_since(room: Room, since: Resume | None) -> list[dict] | None:
    """The revisions after the client's, if it has one of this document's numbering and the
    history reaches back to it."""
    if since is None or since.epoch != room.document.epoch:
        return None
    try:
        revisions = room.document.revisions_since(since.rev)
    except EditRejected:
        return None
    if revisions is None:
        return None
    return [{"rev": r.rev, "delta": r.delta, "client": r.client, "ref": r.ref} for r in revisions]


def _revision_field(message: dict) -> int:
    rev = message.get("rev")
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 0:
        raise BadMessage("`rev` must be a non-negative integer")
    return rev


def first_edit_ref(frame: str | bytes) -> tuple[bool, Any]:
    """(is this an ``edit``, its ``ref``): cheap, for the check before a client's first edit."""
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(message, dict) or message.get("type") != "edit":
        return False, None
    return True, message.get("ref")


def admit_frame(member: Member, limit: RateLimit | None, frame: str | bytes) -> bool:
    """Is this frame within the socket's rate limit (every JSON frame counts)? If not, it is
    answered with ``error`` ``rate_limited`` (its ``ref`` echoed), or, once the client has gone
    on past its allowance of refusals too, the socket is closed with 1008."""
    if limit is None:
        return True
    verdict = limit.check()
    if verdict is Verdict.ADMIT:
        return True
    if verdict is Verdict.REFUSE:
        member.send(_error("rate_limited", "too many messages: slow down, this one was not "
                           "applied", _ref_of(frame)))
    else:
        member.close(CLOSE_POLICY_VIOLATION, "rate limit exceeded")
    return False


def _ref_of(frame: str | bytes) -> Any:
    try:
        message = parse_json(frame)
        ref = message.get("ref") if isinstance(message, dict) else None
        check_depth(ref, text=True)
    except BadJson:
        return None
    return ref


WRITES = ("edit", "title")  # the messages that change the note (refused to a viewer)


def handle_frame(room: Room, member: Member, frame: str | bytes) -> None:
    """Apply one client frame to the room. Rejections answer ``error`` and change nothing."""
    try:
        message = parse_json(frame)
        if not isinstance(message, dict):
            raise BadJson("the frame must be a JSON object")
        # `ref` is the one free-form value kept (history) and echoed; the rest is checked field
        # by field.
        check_depth(message.get("ref"), text=True)
    except BadJson as error:
        member.send(_error("bad_json", str(error)))
        return
    ref = message.get("ref")
    kind = message.get("type")
    if kind in WRITES and not member.access.can_write:
        member.send(_error("forbidden", "you may read this note but not change it", ref))
        return
    try:
        if kind == "edit":
            if "delta" not in message:
                raise BadMessage("`delta` is missing")
            room.apply_edit(_revision_field(message), message["delta"], origin=member, ref=ref)
        elif kind == "presence":
            # An old cursor is not worth a resync; the next one will do.
            with contextlib.suppress(StaleRevision):
                room.set_presence(member, _revision_field(message), message.get("cursor"))
        elif kind == "title":
            title = message.get("title")
            if not isinstance(title, str):
                raise BadMessage("`title` must be a string")
            room.set_title(title, origin=member)
        else:
            raise BadMessage(f"unknown message type {kind!r}")
    except StaleRevision:
        member.send(
            encode({"type": "resync", "rev": room.rev, "content": room.content, "ref": ref})
        )
    except EditRejected as rejected:
        member.send(_error(rejected.code, rejected.message, ref))
