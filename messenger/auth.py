"""Accounts and tokens: argon2 password hashes (computed in the node's hashing pool,
never on the event loop) and opaque random tokens stored only as SHA-256 hashes."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import RowMapping
from sqlalchemy.exc import IntegrityError

from messenger.errors import ErrorCode, MessengerError, forbidden
from messenger.hashing import HashPool
from messenger.ratelimit import Throttled
from messenger.store.db import Database
from messenger.store.tokens import insert_token, live_token, live_token_ids, revoke_token
from messenger.store.users import insert_user, replace_password_hash, user_by_id, user_by_name
from messenger.token_use import TokenUse
from messenger.wire import UserRef, utc_now

# Weight of the newest verify in the running estimate of a verify at the current cost.
VERIFY_ESTIMATE_WEIGHT = 0.2
# The pool of an `Accounts` made without one (`messenger user add`, test helpers).
OWN_POOL_WORKERS, OWN_POOL_QUEUE = 1, 64
# What a session keeps of its login's User-Agent and client address (the columns).
USER_AGENT_MAX, ADDRESS_MAX = 256, 64


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
    cost later still verifies the passwords stored before (and a login rehashes them)."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(
        self,
        db: Database,
        token_ttl: timedelta,
        hasher: PasswordHasher,
        pool: HashPool | None = None,
    ) -> None:
        self._db = db
        self._ttl = token_ttl
        self._hasher = hasher
        self.pool = pool if pool is not None else HashPool(OWN_POOL_WORKERS, OWN_POOL_QUEUE)
        # Verified against when the username is unknown, so that failure costs what a
        # wrong password costs; made (and timed) by `prepare`.
        self._decoy_hash: str | None = None
        self._prepared = asyncio.Lock()
        # How long a verify at the current cost takes, kept up to date by each one:
        # every failed login lasts at least this long (see `_level`).
        self._verify_seconds = 0.0
        # When each token was last used, written in the background (`GET /sessions`).
        self.token_use = TokenUse(db)

    async def prepare(self) -> str:
        """Make the decoy hash and time the current cost, in the pool: at start, so the
        first login is not the one that pays for it. Returns the decoy hash."""
        async with self._prepared:
            if self._decoy_hash is not None:
                return self._decoy_hash
            decoy, hashed = await self.pool.run(self._timed_hash, secrets.token_urlsafe(16))
            _, verified = await self.pool.run(self._check, decoy, secrets.token_urlsafe(16))
            # A hash and a verify do the same work; the pair is steadier than one.
            self._verify_seconds = (hashed + verified) / 2
            self._decoy_hash = decoy
            return decoy

    async def register(self, username: str, password: str) -> UserRef:
        # A taken name is refused before hashing: one cheap read, so a flood of taken
        # names costs no argon2. The insert still refuses the race of two new ones.
        if await self._db.read(user_by_name, username) is not None:
            raise _taken()
        password_hash = await self.pool.run(self._hasher.hash, password)
        try:
            user_id = await self._db.write(insert_user, username, password_hash, utc_now())
        except IntegrityError:
            raise _taken() from None
        return UserRef(user_id, username)

    async def login(
        self,
        username: str,
        password: str,
        user_agent: str | None = None,
        address: str | None = None,
    ) -> Session:
        """A new session; a removed account fails exactly as an unknown name does, and
        a disabled one, given its right password, `forbidden`."""
        row = await self._db.read(user_by_name, username)
        if row is not None and row["deleted_at"] is not None:
            row = None
        stored = await self._verified(row, password, "wrong username or password")
        assert row is not None
        user = UserRef(row["id"], row["username"])
        if row["disabled_at"] is not None:
            raise forbidden("this account is disabled")
        if self._needs_rehash(stored):
            await self._rehash(user.id, stored, password)
        token = secrets.token_urlsafe(32)
        now = utc_now()
        expires_at = now + self._ttl
        token_id = await self._db.write(
            insert_token,
            user.id,
            hash_token(token),
            now,
            expires_at,
            printable(user_agent, USER_AGENT_MAX),
            printable(address, ADDRESS_MAX),
        )
        self.token_use.written(token_id)
        return Session(token, token_id, expires_at, user)

    async def verify(self, user_id: int, password: str) -> str:
        """The user's stored hash, if `password` is theirs; else `bad_credentials`,
        padded like a failed login."""
        row = await self._db.read(user_by_id, user_id)
        if row is not None and row["deleted_at"] is not None:
            row = None
        return await self._verified(row, password, "wrong password")

    async def hash_password(self, password: str) -> str:
        """A new hash at the current cost, in the pool."""
        return await self.pool.run(self._hasher.hash, password)

    async def close(self) -> None:
        """Finish the background writes (before the database closes)."""
        await self.token_use.close()

    async def _verified(self, row: RowMapping | None, password: str, failure: str) -> str:
        """Check `password` against the row's hash (the decoy's when there is no row);
        the hash when it matches, else `bad_credentials` after `_level`."""
        decoy = self._decoy_hash or await self.prepare()
        stored = row["password_hash"] if row is not None else decoy
        matches, seconds = await self.pool.run(self._check, stored, password)
        if not self._needs_rehash(stored):
            self._verify_seconds += VERIFY_ESTIMATE_WEIGHT * (seconds - self._verify_seconds)
        if row is None or not matches:
            await self._level(seconds)
            raise MessengerError(ErrorCode.BAD_CREDENTIALS, failure)
        return str(stored)

    async def authenticate(self, token: object) -> Authenticated:
        """The user a bearer token belongs to, or `unauthorized`."""
        if not isinstance(token, str) or not 16 <= len(token) <= 256 or not token.isascii():
            # Tokens are URL-safe ASCII; anything else (unpaired surrogates from a
            # mangled header included) cannot be one.
            raise MessengerError(ErrorCode.UNAUTHORIZED, "a valid token is required")
        row = await self._db.read(live_token, hash_token(token), utc_now())
        if row is None:
            raise MessengerError(ErrorCode.UNAUTHORIZED, "the token is unknown, expired or revoked")
        self.token_use.used(row["token_id"])
        return Authenticated(row["token_id"], UserRef(row["id"], row["username"]))

    async def revoke(self, token_id: int) -> None:
        await self._db.write(revoke_token, token_id, utc_now())

    async def live_tokens(self, token_ids: list[int]) -> set[int]:
        return await self._db.read(live_token_ids, token_ids, utc_now())

    async def _level(self, seconds: float) -> None:
        """Pad a failure to the time of a verify at the current cost. A hash stored at
        an older, cheaper cost (or a broken one) fails faster than the decoy of an
        unknown name: unpadded, that difference would tell which names exist. Only
        failures wait, and on the event loop, not on a hashing thread."""
        remaining = self._verify_seconds - seconds
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def _rehash(self, user_id: int, stored: str, password: str) -> None:
        """Store the password again at the current cost, the one time it is known."""
        try:
            new_hash = await self.pool.run(self._hasher.hash, password)
        except Throttled:
            return  # the pool is busy: the next login tries again
        await self._db.write(replace_password_hash, user_id, stored, new_hash)

    def _needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True

    def _timed_hash(self, password: str) -> tuple[str, float]:
        started = time.perf_counter()
        return self._hasher.hash(password), time.perf_counter() - started

    def _check(self, stored: str, password: str) -> tuple[bool, float]:
        """Whether `password` matches, and how long argon2 took (on a pool thread)."""
        started = time.perf_counter()
        matches: bool
        try:
            matches = self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            matches = False
        return matches, time.perf_counter() - started


def printable(value: str | None, most: int) -> str | None:
    """`value` without control or unprintable characters, cut to `most`; None when
    nothing is left (a header is whatever the client sent)."""
    if value is None:
        return None
    kept = "".join(char for char in value[: 4 * most] if char.isprintable())[:most].strip()
    return kept or None


def _taken() -> MessengerError:
    return MessengerError(ErrorCode.USERNAME_TAKEN, "that username is taken")
