"""The account over HTTP: password, sessions, removal and the export of everything.

Plain functions like `api.py` (whose request helper they share); `Client` wraps them
with its URL and token. The export is streamed to disk, so an account with years of
messages costs a chunk of memory, not its size.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import aiohttp

from messenger.client.api import API, _request
from messenger.client.files import remove_partial, write_body
from messenger.client.types import (
    Exported,
    MessengerClientError,
    Session,
    parse_session,
)

PASSWORD = f"{API}/users/me/password"
ME = f"{API}/users/me"
SESSIONS = f"{API}/sessions"
EXPORT = f"{API}/users/me/export"
# No total limit: a large export takes as long as it takes. A stalled one does not.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)


async def change_password(url: str, token: str, current: str, new: str) -> None:
    """Replace the password. Every other session of the user ends (their sockets are
    dropped); `token` stays valid. Raises `bad_credentials` for a wrong `current`,
    `invalid` for a `new` the server refuses (8 to 256 characters)."""
    await _request("PUT", url, PASSWORD, {"current": current, "new": new}, token=token)


async def sessions(url: str, token: str) -> list[Session]:
    """The user's live sessions, newest first; `current` marks the one of `token`."""
    body = await _request("GET", url, SESSIONS, token=token)
    found = body.get("sessions") if isinstance(body, dict) else None
    if not isinstance(found, list):
        raise MessengerClientError("internal", f"unexpected answer {body!r:.200}")
    return [parse_session(item) for item in found]


async def end_session(url: str, token: str, session_id: int) -> None:
    """End one of the user's sessions (its token stops working, its sockets are
    dropped); `not_found` if it is not a live session of theirs. Ending the session
    of `token` itself is a logout."""
    await _request("DELETE", url, f"{SESSIONS}/{int(session_id)}", token=token)


async def delete_account(url: str, token: str, password: str) -> None:
    """Remove the account for good: its sessions end (this one too) and its name can
    never be registered again; the people it talked with keep their conversations.
    Raises `bad_credentials` for a wrong password."""
    await _request("DELETE", url, ME, {"password": password}, token=token)


async def export(url: str, token: str, path: str | os.PathLike[str]) -> Exported:
    """Write everything the server keeps about the user (JSON: the account, sessions,
    push subscriptions, blocks, attachments and every message) to `path`.

    Streamed to a temporary file beside `path` (readable by the owner only, as the
    export is private) and renamed once complete, so `path` never holds half an export;
    an existing file there is replaced.
    """
    target = Path(path)
    headers = {"Authorization": f"Bearer {token}"}
    fd, name = await asyncio.to_thread(
        tempfile.mkstemp, prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    partial = Path(name)
    os.close(fd)  # reopened by `write_body`, keeping the owner-only mode
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.get(url.rstrip("/") + EXPORT, headers=headers) as resp,
        ):
            if resp.status != 200:
                json = resp.content_type == "application/json"
                raise MessengerClientError.from_answer(await resp.json() if json else None)
            size, _ = await write_body(resp, partial)
    except (aiohttp.ClientError, TimeoutError) as exc:
        await asyncio.to_thread(remove_partial, partial)
        raise MessengerClientError("unavailable", f"cannot reach {url}: {exc}") from exc
    except BaseException:
        await asyncio.to_thread(remove_partial, partial)
        raise
    await asyncio.to_thread(os.replace, partial, target)
    return Exported(target, size)
