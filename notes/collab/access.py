"""Who may do what to a note: roles, and the access a live connection was given.

Roles come from ownership and shares (kept by the store); they are checked at the edges (REST
routes, socket handshakes). A live connection carries its ``Access`` so that the protocols can
refuse a viewer's writes and the hub can close a user's sockets when a share or credential ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    VIEWER = "viewer"  # reads, live too (edits and presence)
    EDITOR = "editor"  # also changes content and title
    OWNER = "owner"  # also shares and deletes

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEWER

    @property
    def can_manage(self) -> bool:
        return self is Role.OWNER


SHARED_ROLES = (Role.VIEWER, Role.EDITOR)  # what a share may give


@dataclass
class Access:
    """A live connection's user and credential (None: accounts are off) and whether it may
    change the note; ``can_write`` changes in place when the user's share changes."""

    user_id: uuid.UUID | None = None
    credential_id: uuid.UUID | None = None
    can_write: bool = True
    username: str | None = None  # the account's name: the author of its changes in versions


@dataclass(frozen=True)
class AccessChanged:
    """News for the open sockets: a credential ended (``credential_id``: close its sockets,
    4401), or a user's role on a note changed (``note_id``, ``user_id``; ``role`` None: the
    share was revoked, close their sockets there, 4403)."""

    credential_id: uuid.UUID | None = None
    note_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    role: Role | None = None


CLOSE_UNAUTHENTICATED = 4401  # no valid credentials, or they ended (token deleted, logged out)
CLOSE_FORBIDDEN = 4403  # share revoked; a cookie socket from a foreign Origin


__all__ = ["Access", "AccessChanged", "CLOSE_FORBIDDEN", "CLOSE_UNAUTHENTICATED", "Role",
           "SHARED_ROLES"]
