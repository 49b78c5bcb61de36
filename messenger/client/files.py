"""Attachments over HTTP (docs/attachments.md): uploads streamed from disk, downloads
streamed to disk, so a file of any size costs the application a chunk of memory.

Plain functions like `api.py`: `Client.upload` and friends wrap them with the client's
URL and token (and, for uploads, retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path
from typing import IO, Any

import aiohttp

from messenger.client.api import API
from messenger.client.types import (
    Downloaded,
    MessengerClientError,
    Uploaded,
    parse_uploaded,
)

ATTACHMENTS = f"{API}/attachments"
# Bytes read from the response per write to the file.
CHUNK = 64 * 1024
# No total limit: a large file takes as long as it takes. A stalled one does not.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
# The suffix of a download in progress, renamed to its name once complete and checked.
PARTIAL = ".part"


async def upload(
    url: str,
    token: str,
    source: str | os.PathLike[str] | bytes,
    content_type: str,
    name: str | None = None,
) -> Uploaded:
    """Upload a file (a path, streamed from disk) or bytes; returns the server's
    answer, whose `id` a `send` can carry.

    `name` is what the other side sees, by default the file's own name ("file" for
    bytes). The same bytes uploaded again (a retry whose first answer was lost, after
    a restart say) get a new id but share one stored copy on the server. A file that
    cannot be opened raises its `OSError`.
    """
    query = {} if name is None else {"name": name}
    if name is None and not isinstance(source, bytes):
        query["name"] = Path(source).name
    if isinstance(source, bytes):
        return parse_uploaded(await _post(url, token, query, source, content_type))
    # aiohttp reads an open file in chunks, on a thread, and sends its Content-Length
    # (so a server refuses an oversized file at once, not after reading all of it).
    handle: IO[bytes] = await asyncio.to_thread(open, source, "rb")
    try:
        return parse_uploaded(await _post(url, token, query, handle, content_type))
    finally:
        handle.close()


async def _post(
    url: str, token: str, query: dict[str, str], body: bytes | IO[bytes], content_type: str
) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.post(
                url.rstrip("/") + ATTACHMENTS, params=query, data=body, headers=headers
            ) as resp,
        ):
            answer = await resp.json() if resp.content_type == "application/json" else None
            if resp.status >= 400:
                raise MessengerClientError.from_answer(answer)
            return answer
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MessengerClientError("unavailable", f"cannot reach {url}: {exc}") from exc


async def download(
    url: str, token: str, attachment_id: int, path: str | os.PathLike[str]
) -> Downloaded:
    """Write attachment `attachment_id` to `path`; returns what was written.

    The bytes go to `<path>.part` first and are checked against the SHA-256 the server
    names in its ETag; only a complete, matching file is renamed to `path`, so `path`
    never holds half a file or the wrong one (an existing file there is replaced).
    Raises `not_found` for an attachment the user may not see, exactly as for one
    that does not exist.
    """
    return await _download(url, token, f"{ATTACHMENTS}/{int(attachment_id)}", Path(path))


async def download_thumbnail(
    url: str, token: str, attachment_id: int, path: str | os.PathLike[str]
) -> Downloaded:
    """Write the PNG thumbnail (at most 320 pixels a side) of an image attachment to
    `path`, like `download`; `not_found` when it has none (`Attachment.thumbnail`)."""
    where = f"{ATTACHMENTS}/{int(attachment_id)}/thumbnail"
    return await _download(url, token, where, Path(path))


async def _download(url: str, token: str, where: str, path: Path) -> Downloaded:
    partial = path.with_name(path.name + PARTIAL)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.get(url.rstrip("/") + where, headers=headers) as resp,
        ):
            if resp.status != 200:
                answer = await resp.json() if resp.content_type == "application/json" else None
                raise MessengerClientError.from_answer(answer)
            expected = resp.headers.get("ETag", "").removeprefix("W/").strip('"')
            size, digest = await write_body(resp, partial)
    except (aiohttp.ClientError, TimeoutError) as exc:
        await asyncio.to_thread(remove_partial, partial)
        raise MessengerClientError("unavailable", f"cannot reach {url}: {exc}") from exc
    except BaseException:
        await asyncio.to_thread(remove_partial, partial)
        raise
    if expected and digest != expected:
        await asyncio.to_thread(remove_partial, partial)
        raise MessengerClientError(
            "internal", f"the download does not match its SHA-256 ({digest} != {expected})"
        )
    await asyncio.to_thread(os.replace, partial, path)
    return Downloaded(path, size, digest)


async def write_body(resp: aiohttp.ClientResponse, partial: Path) -> tuple[int, str]:
    """Stream the body into `partial` (file calls on a thread; an existing file keeps
    its permissions), flushed to disk; its size and SHA-256. Downloads and the account
    export write through here."""
    digest = hashlib.sha256()
    size = 0
    handle = await asyncio.to_thread(open, partial, "wb")
    try:
        async for chunk in resp.content.iter_chunked(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            await asyncio.to_thread(handle.write, chunk)
        await asyncio.to_thread(_flush, handle)
    finally:
        handle.close()
    return size, digest.hexdigest()


def _flush(handle: IO[bytes]) -> None:
    """On disk before the rename makes it the file: a crash leaves a `.part`, never a
    short file under the name."""
    handle.flush()
    os.fsync(handle.fileno())


def remove_partial(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
