"""Accounts: sign-up and sign-in, sessions and API tokens, and who a request's caller is.

Passwords are hashed with argon2id (``argon2-cffi``), off the event loop. A session or token is
``notes_<id>_<secret>``: the id finds the row, and only a SHA-256 hash of the 32-byte random
secret is stored, compared in constant time. Failed sign-ins are throttled per username and per
address (``LoginThrottle``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from notes.collab.access import Role
from notes.collab.text import field_problem, text_problem
from notes.store.accounts import (
    AccountStore,
    LinkInfo,
    StoredCredential,
    TokenInfo,
    User,
    UsernameTaken,
)

T = TypeVar("T")  # what a lookup reads beside the credential

USERNAME = re.compile(r"[a-z0-9_.-]{1,40}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # code points: hashing cost stays bounded
MAX_TOKEN_NAME = 100
TOKEN_PREFIX = "notes_"  # API tokens and sessions
LINK_PREFIX = "noteslink_"  # share links
SECRET_BYTES = 32
HASHING_AT_ONCE = 2


class InvalidAccount(ValueError):
    """Field errors, each ``{"loc": [...], "msg": ..., "type": ...}``."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(error["msg"] for error in errors))
        self.errors = errors


class BadCredentials(Exception):
    """A wrong username or a wrong password: the same answer for both."""


class Throttled(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"too many failed sign-ins; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Caller:
    """Who makes a request: ``user`` and the credential used (``"session"`` or ``"token"``),
    or, with ``kind`` ``"link"``, no user but a share link: ``link``'s one note, its role."""

    user: User | None
    credential_id: uuid.UUID
    kind: str
    link: LinkInfo | None = None


@dataclass(frozen=True)
class Issued:
    """A new session or token: its id and the secret string, shown once."""

    id: uuid.UUID
    token: str


def check_username(username: str) -> None:
    if not USERNAME.fullmatch(username):
        raise InvalidAccount([{"loc": ["username"], "type": "invalid_username",
                               "msg": "1 to 40 of a-z, 0-9, '_', '.' and '-'"}])


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidAccount([{"loc": ["password"], "type": "invalid_password",
                               "msg": f"{MIN_PASSWORD} to {MAX_PASSWORD} characters"}])
    problem = text_problem(password)
    if problem:
        raise InvalidAccount([{"loc": ["password"], "type": "invalid_text", "msg": problem}])


def generate_password() -> str:
    return secrets.token_urlsafe(15)


# --- secrets -------------------------------------------------------------------------------------


def issue_secret(prefix: str = TOKEN_PREFIX) -> tuple[Issued, bytes]:
    """A new credential and the hash of its secret to store."""
    credential_id = uuid.uuid4()
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return Issued(credential_id, f"{prefix}{credential_id.hex}_{secret}"), _hash(secret)


def parse_secret(token: str, prefix: str = TOKEN_PREFIX) -> tuple[uuid.UUID, str] | None:
    """(id, secret) of a ``<prefix><id>_<secret>`` string, None if it is not one."""
    if not token.startswith(prefix) or len(token) > 200:
        return None
    body = token[len(prefix):]
    raw_id, separator, secret = body[:32], body[32:33], body[33:]
    if separator != "_" or not secret:
        return None
    try:
        return uuid.UUID(hex=raw_id), secret
    except ValueError:
        return None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _verified(kind: str, stored: StoredCredential | None, secret: str) -> Caller | None:
    """The caller of a stored credential whose secret is ``secret``; None if there is none, it
    has expired, or the secret is wrong."""
    if (stored is None or stored.expired
            or not hmac.compare_digest(stored.secret_hash, _hash(secret))):
        return None
    return Caller(stored.user, stored.id, kind)


# --- throttling ----------------------------------------------------------------------------------


@dataclass
class LoginThrottle:
    """At most ``per_user`` failed sign-ins per username and ``per_address`` per client address
    within ``window`` seconds; beyond, sign-in is refused (even with the right password) until
    the oldest of those failures is ``window`` old. In memory, per process."""

    per_user: int = 5
    per_address: int = 50
    window: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def _limit(self, key: tuple[str, str]) -> int:
        return self.per_user if key[0] == "user" else self.per_address

    def check(self, *keys: tuple[str, str]) -> None:
        """``Throttled`` (with the seconds to wait) if any key failed too often lately."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            failures = self._failures.get(key)
            if failures is not None and len(failures) == self._limit(key):
                wait = max(wait, failures[0] + self.window - now)
        if wait > 0:
            raise Throttled(math.ceil(wait))

    def failed(self, *keys: tuple[str, str]) -> None:
        now = self.clock()
        if len(self._failures) > 100_000:  # forget the keys whose failures are all old
            self._failures = {key: failures for key, failures in self._failures.items()
                              if failures[-1] > now - self.window}
        for key in keys:
            self._failures.setdefault(key, deque(maxlen=self._limit(key))).append(now)

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)


# --- the service ---------------------------------------------------------------------------------


class Accounts:
    def __init__(self, store: AccountStore, *, session_days: float = 30.0,
                 throttle: LoginThrottle | None = None):
        self.store = store
        self.session_lifetime = timedelta(days=session_days)
        self.throttle = throttle or LoginThrottle()
        self.hasher = PasswordHasher()  # argon2id, RFC 9106's low-memory profile (64 MiB)
        self._dummy_hash: str | None = None
        # Hashes at once, at most: a flood of sign-ins queues instead of taking 64 MiB each.
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    async def _run(self, function, *args):
        """Hash or verify off the event loop."""
        async with self._hashing:
            return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    async def create_user(self, username: str, password: str) -> User:
        """A new account (``UsernameTaken`` if the name is in use). The first one created after
        notes were made with accounts off owns them."""
        check_username(username)
        check_password(password)
        password_hash = await self._run(self.hasher.hash, password)
        return await self.store.create_user(username, password_hash)

    async def verify_password(self, username: str, password: str) -> User:
        """The user, if the password is theirs; ``BadCredentials`` otherwise (after the same
        work either way)."""
        # A name no account can have (NUL, say, which PostgreSQL cannot even compare) is looked
        # up as nobody's.
        found = await self.store.user_and_hash(username) if USERNAME.fullmatch(username) else None
        if found is None:
            # Hash anyway, so that a missing name takes as long as a wrong password.
            if self._dummy_hash is None:
                self._dummy_hash = await self._run(self.hasher.hash, generate_password())
            await self._run(self._verifies, self._dummy_hash, password)
            raise BadCredentials()
        user, password_hash = found
        if not await self._run(self._verifies, password_hash, password):
            raise BadCredentials()
        if self.hasher.check_needs_rehash(password_hash):
            await self.store.set_password_hash(user.id, await self._run(self.hasher.hash,
                                                                        password))
        return user

    def _verifies(self, password_hash: str, password: str) -> bool:
        if text_problem(password):  # (argon2 cannot encode a lone surrogate; no password has one)
            return False
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def login(self, username: str, password: str, address: str) -> tuple[User, Issued]:
        keys = (("user", username), ("address", address))
        self.throttle.check(*keys)
        try:
            user = await self.verify_password(username, password[:MAX_PASSWORD + 1])
        except BadCredentials:
            self.throttle.failed(*keys)
            raise
        self.throttle.succeeded(keys[0])
        return user, await self.start_session(user)

    async def start_session(self, user: User) -> Issued:
        issued, secret_hash = issue_secret()
        expires_at = datetime.now(UTC) + self.session_lifetime
        await self.store.create_session(user.id, issued.id, secret_hash, expires_at)
        return issued

    async def end_session(self, token: str) -> uuid.UUID | None:
        """End the session this cookie holds (if it is valid); its id."""
        caller = await self.authenticate("session", token)
        if caller is None:
            return None
        await self.store.delete_session(caller.credential_id)
        return caller.credential_id

    async def authenticate(self, kind: str, token: str) -> Caller | None:
        """The caller a ``"session"`` cookie or a ``"token"`` (an API token or a share link)
        stands for; None if not valid."""
        if kind == "token" and token.startswith(LINK_PREFIX):
            return await self._follow_link(token)
        parsed = parse_secret(token)
        if parsed is None:
            return None
        credential_id, secret = parsed
        return _verified(kind, await self.store.credential(kind, credential_id), secret)

    async def authenticate_with(
            self, kind: str, token: str,
            lookup: Callable[[uuid.UUID], Awaitable[tuple[StoredCredential | None, T]]],
    ) -> tuple[Caller | None, T | None]:
        """As ``authenticate``, with the credential found by ``lookup(credential_id)``: a
        statement that reads something else (``T``) in the same round trip. That something
        comes back only with a valid caller. A share link is followed as ever (no ``T``)."""
        if kind == "token" and token.startswith(LINK_PREFIX):
            return await self._follow_link(token), None
        parsed = parse_secret(token)
        if parsed is None:
            return None, None
        credential_id, secret = parsed
        stored, extra = await lookup(credential_id)
        caller = _verified(kind, stored, secret)
        return caller, (None if caller is None else extra)

    async def still_valid(self, caller: Caller) -> bool:
        """Has the credential ``caller`` came with not ended since (deleted, signed out,
        revoked, expired)?"""
        if caller.kind == "link":
            return await self.store.link(caller.credential_id) is not None
        stored = await self.store.credential(caller.kind, caller.credential_id)
        return stored is not None and not stored.expired

    async def _follow_link(self, token: str) -> Caller | None:
        parsed = parse_secret(token, LINK_PREFIX)
        if parsed is None:
            return None
        link_id, secret = parsed
        stored = await self.store.link(link_id)
        if stored is None or not hmac.compare_digest(stored.secret_hash, _hash(secret)):
            return None
        return Caller(None, link_id, "link", stored.info)

    async def create_link(self, note_id: uuid.UUID, role: Role) -> tuple[LinkInfo, Issued]:
        issued, secret_hash = issue_secret(LINK_PREFIX)
        info = await self.store.create_link(note_id, role, issued.id, secret_hash)
        return info, issued

    async def create_token(self, user: User, name: str) -> tuple[TokenInfo, Issued]:
        problem = field_problem(name, MAX_TOKEN_NAME)
        if not name or problem:
            raise InvalidAccount([{"loc": ["name"], "type": problem[0] if problem else "too_short",
                                   "msg": problem[1] if problem else "may not be empty"}])
        issued, secret_hash = issue_secret()
        info = await self.store.create_token(user.id, issued.id, name, secret_hash)
        return info, issued


__all__ = ["Accounts", "BadCredentials", "Caller", "InvalidAccount", "Issued", "LoginThrottle",
           "Throttled", "UsernameTaken", "check_password", "check_username", "generate_password",
           "issue_secret", "parse_secret"]
