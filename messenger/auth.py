"""Accounts and tokens: argon2 password hashes (computed off the event loop) and
opaque random tokens stored only as SHA-256 hashes."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError

from messenger.errors import ErrorCode, MessengerError
from messenger.events import UserRef, utc_now
from messenger.store import queries
from messenger.store.db import Database


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    token_id: int
    expires_at: datetime
    user: UserRef


@dataclass(frozen=True, slots=True)
class Authenticated:
    token_id: int
    user: UserRef


def password_hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    """argon2id with the given cost. Hashes record their parameters, so changing the
    cost later still verifies the passwords stored before."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, db: Database, token_ttl: timedelta, hasher: PasswordHasher) -> None:
        self._db = db
        self._ttl = token_ttl
        self._hasher = hasher
        # Verified against when the username is unknown, so a login takes as long
        # whether or not the user exists.
        self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    async def register(self, username: str, password: str) -> UserRef:
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        try:
            user_id = await self._db.write(queries.insert_user, username, password_hash, utc_now())
        except IntegrityError:
            raise MessengerError(ErrorCode.USERNAME_TAKEN, "that username is taken") from None
        return UserRef(user_id, username)

    async def login(self, username: str, password: str) -> Session:
        row = await self._db.read(queries.user_by_name, username)
        stored = row["password_hash"] if row is not None else self._decoy_hash
        if not await asyncio.to_thread(self._verify, stored, password) or row is None:
            raise MessengerError(ErrorCode.BAD_CREDENTIALS, "wrong username or password")
        user = UserRef(row["id"], row["username"])
        token = secrets.token_urlsafe(32)
        now = utc_now()
        expires_at = now + self._ttl
        token_id = await self._db.write(
            queries.insert_token, user.id, hash_token(token), now, expires_at
        )
        return Session(token, token_id, expires_at, user)

    async def authenticate(self, token: object) -> Authenticated:
        """The user a bearer token belongs to, or `unauthorized`."""
        if not isinstance(token, str) or not 16 <= len(token) <= 256 or not token.isascii():
            # Tokens are URL-safe ASCII; anything else (unpaired surrogates from a
            # mangled header included) cannot be one.
            raise MessengerError(ErrorCode.UNAUTHORIZED, "a valid token is required")
        row = await self._db.read(queries.live_token, hash_token(token), utc_now())
        if row is None:
            raise MessengerError(ErrorCode.UNAUTHORIZED, "the token is unknown, expired or revoked")
        return Authenticated(row["token_id"], UserRef(row["id"], row["username"]))

    async def revoke(self, token_id: int) -> None:
        await self._db.write(queries.revoke_token, token_id, utc_now())

    async def live_tokens(self, token_ids: list[int]) -> set[int]:
        return await self._db.read(queries.live_token_ids, token_ids, utc_now())

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
