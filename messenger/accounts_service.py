"""Account and session controls (docs/protocol.md 2): a password change, the live
sessions and the end of one, the removal of an account, its data export, and the
operator's versions of these (`messenger user`).

Whatever ends sessions does it in one transaction (tokens revoked or removed, their
push subscriptions with them), then drops their sockets on every node through
`disconnect` (the node's `Notifier.revoke`); a node that misses that wake-up drops
them at its next maintenance tick, which checks every connection's token in SQL.
The operator's commands run without a node: they rely on that tick alone.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from messenger.account_export import export_document
from messenger.auth import Accounts, Authenticated
from messenger.errors import ErrorCode, MessengerError, not_found
from messenger.ratelimit import RateLimiter, Throttled
from messenger.store.accounts import (
    change_password,
    end_session,
    live_sessions,
    remove_account,
    remove_by_name,
    reset_password,
    set_disabled,
)
from messenger.store.db import Database
from messenger.wire import SessionInfo, format_time, utc_now

log = logging.getLogger(__name__)

# Sessions listed at most (the newest).
SESSIONS_MAX = 100
# Password checks of a signed-in user (a change, a removal): like logins, a burst per
# user then one every 5 s, so a stolen token cannot guess the password quickly.
ATTEMPT_RATE = 0.2
# How long a second export of the same user is told to wait.
EXPORT_RETRY_SECONDS = 10.0

Disconnect = Callable[[int], Awaitable[None]]


async def _nothing_to_drop(_token_id: int) -> None:
    """Without a node (the operator's commands) no socket is here to drop."""


class AccountService:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        disconnect: Disconnect = _nothing_to_drop,
        attempts_burst: int = 10,
    ) -> None:
        self._db = db
        self._accounts = accounts
        self._disconnect = disconnect
        self._attempts = RateLimiter(ATTEMPT_RATE if attempts_burst else 0, attempts_burst)
        # Users with an export under way on this node: one at a time each.
        self._exporting: set[int] = set()

    # -- the user's own ------------------------------------------------------------------

    async def change_password(self, who: Authenticated, current: str, new: str) -> None:
        """Replace the password and end every other session of the user; the calling
        one stays."""
        stored = await self._check_password(who, current)
        new_hash = await self._accounts.hash_password(new)
        ended = await self._db.write(
            change_password, who.user.id, stored, new_hash, utc_now(), who.token_id
        )
        if ended is None:  # changed (or removed) meanwhile: this one no longer holds
            raise MessengerError(ErrorCode.BAD_CREDENTIALS, "wrong password")
        await self._drop(ended)
        log.info("password changed user=%s sessions_ended=%d", who.user.username, len(ended))

    async def sessions(self, who: Authenticated) -> list[SessionInfo]:
        """The user's live sessions, newest first, at most SESSIONS_MAX."""
        rows = await self._db.read(live_sessions, who.user.id, utc_now(), SESSIONS_MAX)
        return [
            {
                "id": row["id"],
                "created_at": format_time(row["created_at"]),
                "last_used_at": format_time(row["last_used_at"]),
                "user_agent": row["user_agent"],
                "address": row["address"],
                "current": row["id"] == who.token_id,
            }
            for row in rows
        ]

    async def end_session(self, who: Authenticated, token_id: int) -> None:
        """End one of the user's live sessions as a logout would; `not_found` for any
        id that is not one (another user's too: nothing is revealed)."""
        if not await self._db.write(end_session, who.user.id, token_id, utc_now()):
            raise not_found("no such session")
        await self._disconnect(token_id)
        log.info("session ended user=%s session=%d", who.user.username, token_id)

    async def remove(self, who: Authenticated, password: str) -> None:
        """Remove the caller's account (docs/protocol.md 2, "Removing an account")."""
        await self._check_password(who, password)
        ended = await self._db.write(remove_account, who.user.id, utc_now())
        await self._drop(ended or [])
        log.info("account removed user=%s", who.user.username)

    @asynccontextmanager
    async def export(self, who: Authenticated) -> AsyncIterator[AsyncIterator[str]]:
        """The user's data export in pieces (`account_export`), for the `with` block;
        `rate_limited` while another of theirs runs on this node. The first piece is
        read on entering, so a failure to start is an ordinary error answer."""
        user_id = who.user.id
        if user_id in self._exporting:
            raise Throttled(
                ErrorCode.RATE_LIMITED, "an export of yours is under way", EXPORT_RETRY_SECONDS
            )
        self._exporting.add(user_id)
        pieces: AsyncGenerator[str, None] | None = None
        try:
            pieces = export_document(self._db, who.user, await self.sessions(who))
            chained = _chain(await anext(pieces), pieces)
            try:
                yield chained
            finally:
                await chained.aclose()
        finally:
            self._exporting.discard(user_id)
            if pieces is not None:
                await pieces.aclose()

    # -- the operator's ----------------------------------------------------------------

    async def disable(self, username: str) -> int:
        """Refuse the account's logins and end its sessions; how many ended."""
        return await self._operate(set_disabled, username, True)

    async def enable(self, username: str) -> None:
        await self._operate(set_disabled, username, False)

    async def reset_password(self, username: str, password: str) -> int:
        """A new password; every session ends. How many ended."""
        new_hash = await self._accounts.hash_password(password)
        return await self._operate(reset_password, username, new_hash)

    async def remove_by_name(self, username: str) -> int:
        """Remove an account as its user would; how many sessions ended."""
        return await self._operate(remove_by_name, username)

    async def _operate(self, change: Callable[..., list[int] | None], *args: object) -> int:
        ended = await self._db.write(change, *args, utc_now())
        if ended is None:
            raise not_found(f"no user {args[0]!r}")
        await self._drop(ended)
        return len(ended)

    # -- helpers ---------------------------------------------------------------------

    async def _check_password(self, who: Authenticated, password: str) -> str:
        """The stored hash if `password` is the user's; counted like a login."""
        if not self._attempts.allow(who.user.id):
            log.info("password check rate limited user=%s", who.user.username)
            raise Throttled(
                ErrorCode.RATE_LIMITED,
                "too many password attempts; wait a while",
                self._attempts.wait(who.user.id),
            )
        return await self._accounts.verify(who.user.id, password)

    async def _drop(self, token_ids: list[int]) -> None:
        for token_id in token_ids:
            await self._disconnect(token_id)


async def _chain(first: str, rest: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    yield first
    async for piece in rest:
        yield piece
