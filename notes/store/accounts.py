"""AccountStore: users, sessions, API tokens, note owners and shares in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from notes.collab.access import Role
from notes.store.database import Statements


class UsernameTaken(Exception):
    pass


class NoSuchUser(LookupError):
    pass


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    username: str
    created_at: datetime


@dataclass(frozen=True)
class StoredCredential:
    """A session or token as stored: whose, and the hash its secret must match."""

    id: uuid.UUID
    user: User
    secret_hash: bytes
    expires_at: datetime | None  # sessions only

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


@dataclass(frozen=True)
class TokenInfo:
    id: uuid.UUID
    name: str
    created_at: datetime


@dataclass(frozen=True)
class LinkInfo:
    """A share link: whoever holds its secret may use the note with ``role``."""

    id: uuid.UUID
    note_id: uuid.UUID
    role: Role
    created_at: datetime


@dataclass(frozen=True)
class StoredLink:
    info: LinkInfo
    secret_hash: bytes


@dataclass(frozen=True)
class ShareInfo:
    username: str
    role: Role
    created_at: datetime


# A new account claims the notes nobody owns (made while NOTES_AUTH=off), not those in the trash.
_CREATE_USER = text(
    "WITH made AS (INSERT INTO users (id, username, password_hash)"
    " VALUES (:id, :username, :password_hash) RETURNING id, username, created_at),"
    " claimed AS (UPDATE notes SET owner_id = (SELECT id FROM made)"
    "             WHERE owner_id IS NULL AND deleted_at IS NULL)"
    " SELECT id, username, created_at FROM made"
)
_USER_BY_NAME = text(
    "SELECT id, username, created_at, password_hash FROM users WHERE username = :username"
)
_SET_PASSWORD_HASH = text("UPDATE users SET password_hash = :password_hash WHERE id = :id")
# The hot reads (``Statements._hot``: asyncpg, prepared), run on every request with credentials:
# the credential and its user, and the user's role on a note.
# (kind: the table it is kept in, and its expiry)
CREDENTIAL_TABLES = {"session": ("sessions", "c.expires_at"),
                     "token": ("api_tokens", "NULL::timestamptz")}
# The credential's columns (``c``) and its user's (``u``), as ``stored_credential`` reads them.
CREDENTIAL_FIELDS = {
    kind: (f"c.id AS credential_id, c.secret_hash, {expires} AS expires_at,"
           " u.id AS user_id, u.username, u.created_at AS user_created_at")
    for kind, (_, expires) in CREDENTIAL_TABLES.items()
}
_CREDENTIAL = {
    kind: (f"SELECT {CREDENTIAL_FIELDS[kind]}"
           f" FROM {table} c JOIN users u ON u.id = c.user_id WHERE c.id = $1")
    for kind, (table, _) in CREDENTIAL_TABLES.items()
}
_CREATE_SESSION = text(
    "INSERT INTO sessions (id, user_id, secret_hash, expires_at)"
    " VALUES (:id, :user_id, :secret_hash, :expires_at)"
)
_DELETE_SESSION = text("DELETE FROM sessions WHERE id = :id")
_DELETE_EXPIRED_SESSIONS = text("DELETE FROM sessions WHERE expires_at < now()")
_CREATE_TOKEN = text(
    "INSERT INTO api_tokens (id, user_id, name, secret_hash)"
    " VALUES (:id, :user_id, :name, :secret_hash) RETURNING id, name, created_at"
)
_LIST_TOKENS = text(
    "SELECT id, name, created_at FROM api_tokens WHERE user_id = :user_id"
    " ORDER BY created_at, id"
)
_DELETE_TOKEN = text("DELETE FROM api_tokens WHERE id = :id AND user_id = :user_id")
_ROLE = (
    "SELECT CASE WHEN n.owner_id = $2 THEN 'owner' ELSE s.role END AS role"
    " FROM notes n LEFT JOIN shares s ON s.note_id = n.id AND s.user_id = $2"
    " WHERE n.id = $1 AND n.deleted_at IS NULL"  # (a trashed note is nobody's to see)
)
_OWNER = text(
    "SELECT u.id, u.username, u.created_at FROM notes n JOIN users u ON u.id = n.owner_id"
    " WHERE n.id = :note_id"
)
_SHARES = text(
    "SELECT u.username, s.role, s.created_at FROM shares s JOIN users u ON u.id = s.user_id"
    " WHERE s.note_id = :note_id ORDER BY s.created_at, u.username"
)
# (xmax = 0: the row was inserted, not updated)
_PUT_SHARE = text(
    "INSERT INTO shares (note_id, user_id, role) VALUES (:note_id, :user_id, :role)"
    " ON CONFLICT (note_id, user_id) DO UPDATE SET role = EXCLUDED.role"
    " RETURNING (xmax = 0) AS created, role, created_at"
)
_DELETE_SHARE = text("DELETE FROM shares WHERE note_id = :note_id AND user_id = :user_id")
_CREATE_LINK = text(
    "INSERT INTO share_links (id, note_id, role, secret_hash)"
    " VALUES (:id, :note_id, :role, :secret_hash) RETURNING id, note_id, role, created_at"
)
# (a link to a trashed note opens nothing until the note is restored)
_LINK = (  # (a hot read too: every request with a share link)
    "SELECT l.id, l.note_id, l.role, l.created_at, l.secret_hash FROM share_links l"
    " JOIN notes n ON n.id = l.note_id AND n.deleted_at IS NULL WHERE l.id = $1"
)
_LINKS = text(
    "SELECT id, note_id, role, created_at FROM share_links WHERE note_id = :note_id"
    " ORDER BY created_at, id"
)
_DELETE_LINK = text("DELETE FROM share_links WHERE id = :id AND note_id = :note_id")


def stored_credential(row) -> StoredCredential:
    """A credential from a row with ``CREDENTIAL_FIELDS``."""
    return StoredCredential(row["credential_id"],
                            User(row["user_id"], row["username"], row["user_created_at"]),
                            row["secret_hash"], row["expires_at"])


def _user(row) -> User:
    return User(row.id, row.username, row.created_at)


def _link(row) -> LinkInfo:
    return LinkInfo(row.id, row.note_id, Role(row.role), row.created_at)


class AccountStore(Statements):
    # --- users ------------------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        """The new user, owner of every note nobody owned. ``UsernameTaken`` if it exists."""
        try:
            row = await self._one(_CREATE_USER, id=uuid.uuid4(), username=username,
                                  password_hash=password_hash)
        except IntegrityError:
            raise UsernameTaken(username) from None
        return _user(row)

    async def user_and_hash(self, username: str) -> tuple[User, str] | None:
        row = await self._one(_USER_BY_NAME, username=username)
        return None if row is None else (_user(row), row.password_hash)

    async def user_by_name(self, username: str) -> User | None:
        found = await self.user_and_hash(username)
        return None if found is None else found[0]

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self._count(_SET_PASSWORD_HASH, id=user_id, password_hash=password_hash)

    # --- sessions and tokens ----------------------------------------------------------------------

    async def credential(self, kind: str, credential_id: uuid.UUID) -> StoredCredential | None:
        """A ``"session"`` or ``"token"`` by its id, with its user."""
        row = await self._hot(_CREDENTIAL[kind], credential_id)
        return None if row is None else stored_credential(row)

    async def create_session(self, user_id: uuid.UUID, credential_id: uuid.UUID,
                             secret_hash: bytes, expires_at: datetime) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(_DELETE_EXPIRED_SESSIONS)
            await connection.execute(_CREATE_SESSION, {
                "id": credential_id, "user_id": user_id, "secret_hash": secret_hash,
                "expires_at": expires_at})

    async def delete_session(self, credential_id: uuid.UUID) -> bool:
        return await self._count(_DELETE_SESSION, id=credential_id) > 0

    async def create_token(self, user_id: uuid.UUID, credential_id: uuid.UUID, name: str,
                           secret_hash: bytes) -> TokenInfo:
        row = await self._one(_CREATE_TOKEN, id=credential_id, user_id=user_id, name=name,
                              secret_hash=secret_hash)
        return TokenInfo(row.id, row.name, row.created_at)

    async def tokens(self, user_id: uuid.UUID) -> list[TokenInfo]:
        return [TokenInfo(row.id, row.name, row.created_at)
                for row in await self._all(_LIST_TOKENS, user_id=user_id)]

    async def delete_token(self, user_id: uuid.UUID, token_id: uuid.UUID) -> bool:
        """Delete one of this user's tokens (False: no such token of theirs)."""
        return await self._count(_DELETE_TOKEN, id=token_id, user_id=user_id) > 0

    # --- roles and shares -------------------------------------------------------------------------

    async def role(self, note_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
        """The user's role on the note: None if they may not see it (or it does not exist)."""
        row = await self._hot(_ROLE, note_id, user_id)
        return None if row is None or row["role"] is None else Role(row["role"])

    async def owner(self, note_id: uuid.UUID) -> User | None:
        row = await self._one(_OWNER, note_id=note_id)
        return None if row is None else _user(row)

    async def shares(self, note_id: uuid.UUID) -> list[ShareInfo]:
        return [ShareInfo(row.username, Role(row.role), row.created_at)
                for row in await self._all(_SHARES, note_id=note_id)]

    async def put_share(self, note_id: uuid.UUID, user: User, role: Role
                        ) -> tuple[ShareInfo, bool]:
        """Give the user ``role`` on the note: the share, and whether it is new."""
        row = await self._one(_PUT_SHARE, note_id=note_id, user_id=user.id, role=role.value)
        return ShareInfo(user.username, Role(row.role), row.created_at), bool(row.created)

    async def delete_share(self, note_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        return await self._count(_DELETE_SHARE, note_id=note_id, user_id=user_id) > 0

    # --- share links ------------------------------------------------------------------------------

    async def create_link(self, note_id: uuid.UUID, role: Role, credential_id: uuid.UUID,
                          secret_hash: bytes) -> LinkInfo:
        return _link(await self._one(_CREATE_LINK, id=credential_id, note_id=note_id,
                                     role=role.value, secret_hash=secret_hash))

    async def link(self, link_id: uuid.UUID) -> StoredLink | None:
        row = await self._hot(_LINK, link_id)
        return None if row is None else StoredLink(
            LinkInfo(row["id"], row["note_id"], Role(row["role"]), row["created_at"]),
            row["secret_hash"])

    async def links(self, note_id: uuid.UUID) -> list[LinkInfo]:
        return [_link(row) for row in await self._all(_LINKS, note_id=note_id)]

    async def delete_link(self, note_id: uuid.UUID, link_id: uuid.UUID) -> bool:
        return await self._count(_DELETE_LINK, id=link_id, note_id=note_id) > 0
