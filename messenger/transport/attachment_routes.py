"""The HTTP side of attachments: the upload streamed from the request body, and the
download streamed to the response, with `Range`, `ETag` and the headers that keep a
browser from running what it fetches (docs/attachments.md)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from messenger.attachments.service import (
    Attachments,
    Download,
    check_content_type,
    check_name,
)
from messenger.auth import Authenticated
from messenger.errors import not_found
from messenger.protocol import parse_path_id

# Bytes per read of an upload's body.
READ_CHUNK = 64 * 1024
RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# Digits of a byte position worth reading: past these, a number is beyond any size
# (and Python refuses to turn thousands of digits into an int).
DIGITS_MAX = 18
# What a fetched file may do in a browser: nothing (no script, no plugin, no form).
SANDBOX = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"

Authenticate = Callable[[web.Request], Awaitable[Authenticated]]


class AttachmentRoutes:
    def __init__(self, attachments: Attachments, authenticate: Authenticate) -> None:
        self._attachments = attachments
        self._authenticate = authenticate

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/attachments", self.upload),
            web.get("/api/v1/attachments/{id}", self.download),
            web.get("/api/v1/attachments/{id}/thumbnail", self.thumbnail),
        ]

    async def upload(self, request: web.Request) -> web.Response:
        who = await self._authenticate(request)
        name = check_name(request.query.get("name"))
        content_type = check_content_type(request.headers.get("Content-Type"))
        made = await self._attachments.upload(
            who.user, name, content_type, request.content_length, _chunks(request)
        )
        return web.json_response(made, status=201)

    async def download(self, request: web.Request) -> web.StreamResponse:
        return await self._send(request, thumbnail=False)

    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        return await self._send(request, thumbnail=True)

    async def _send(self, request: web.Request, thumbnail: bool) -> web.StreamResponse:
        who = await self._authenticate(request)
        attachment_id = parse_path_id(request.match_info["id"])
        if attachment_id is None:
            raise not_found("no such attachment")
        found = await self._attachments.download(who.user, attachment_id, thumbnail)
        size = found.size
        etag = f'"{found.sha256}"'
        headers = _headers(found, etag)
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        span = _range(request.headers.get("Range"), size)
        if span is None:
            headers["Content-Range"] = f"bytes */{size}"
            return web.Response(status=416, headers=headers)
        start, end = span
        response = web.StreamResponse(status=206 if end - start < size else 200, headers=headers)
        response.content_length = end - start
        if response.status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        await response.prepare(request)
        if request.method != "HEAD":
            async for chunk in self._attachments.read(found.sha256, start, end):
                await response.write(chunk)
        await response.write_eof()
        return response


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        yield chunk


def _headers(found: Download, etag: str) -> dict[str, str]:
    disposition = "inline" if found.inline else "attachment"
    return {
        "Content-Type": found.content_type if found.inline else "application/octet-stream",
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(found.name, safe='')}",
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=86400",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": SANDBOX,
    }


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """The [start, end) to send for a `Range` header (one range; anything else gets
    the whole body, as RFC 9110 allows); None when it cannot be satisfied."""
    if header is None:
        return 0, size
    match = RANGE.fullmatch(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return 0, size
    first, last = match.group(1), match.group(2)
    if not first:  # the last N bytes; more digits than any size: all of them
        length = int(last) if len(last) <= DIGITS_MAX else size
        if length == 0:
            return None
        return max(0, size - length), size
    if len(first) > DIGITS_MAX:
        return None  # a start past any size
    start = int(first)
    end = size if not last or len(last) > DIGITS_MAX else min(int(last) + 1, size)
    if start >= size or end <= start:
        return None
    return start, end
