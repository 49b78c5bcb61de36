"""`attachments`: a 25 MiB file up and down through messenger, against a plain aiohttp
file server, and the server's memory while it streams.

Both servers run at once, as processes. messenger runs `messenger serve` on SQLite
(whatever `--db` says: the bytes go to files, the database holds a row) with the
default directory store next to the database file. The baseline is in this module
(`python -m bench.attachments --port P --dir D`): POST streams the body to a
temporary file, fsyncs it and renames it into place (messenger fsyncs an upload too
before it answers: stored first), GET answers with `web.FileResponse`. So the ratios
price what messenger adds: the SHA-256, the thread hops of its file I/O, the rows,
the authorisation, its own chunked reads.

Transfers alternate between the servers (baseline first, then messenger first, ...)
so that each side's transfers are taken seconds apart on a noisy machine; the median
transfer of each side is reported, and the server's CPU per MiB, which depends less
on the neighbours. Memory is weighed first, on fresh servers, after one 1 MiB
transfer each way: the RSS of the server process is sampled every 5 ms while the
whole file goes up, and again while it comes back down; each peak minus the RSS just
before that transfer shows whether the file passes through the server or is held in
it (a server that read the body whole showed +28 MB this way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import accounts, servers
from bench.probes import RssSampler
from bench.progress import Progress
from bench.rawclient import RawClient
from bench.scenarios import Settings
from bench.servers import Server
from messenger.config import EVENT_LOOPS
from messenger.runtime import new_event_loop

MIB = 1024 * 1024
# Bytes per read on both sides of the baseline, and per read of a download.
CHUNK = 64 * 1024
WARM_BYTES = 1 * MIB
BIG_NAME = "big.bin"
RSS_INTERVAL = 0.005
TIMEOUT = aiohttp.ClientTimeout(total=300)


# -- the baseline server ---------------------------------------------------------------


def create_app(directory: Path) -> web.Application:
    """A file server as one would write it with aiohttp and nothing else."""
    directory.mkdir(parents=True, exist_ok=True)
    app = web.Application()

    async def upload(request: web.Request) -> web.Response:
        name = request.query.get("name", "file")
        if not name or "/" in name or name.startswith("."):
            raise web.HTTPBadRequest(text="bad name")
        temporary = directory / f".tmp-{uuid.uuid4().hex}"
        handle = await asyncio.to_thread(temporary.open, "wb")
        size = 0
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                handle.write(chunk)  # into the page cache: microseconds
                size += len(chunk)
            handle.flush()
            await asyncio.to_thread(os.fsync, handle.fileno())
        finally:
            handle.close()
        os.replace(temporary, directory / name)
        return web.json_response({"name": name, "size": size}, status=201)

    async def download(request: web.Request) -> web.StreamResponse:
        path = directory / request.match_info["name"]
        if request.match_info["name"].startswith(".") or not await asyncio.to_thread(path.is_file):
            raise web.HTTPNotFound()
        return web.FileResponse(path, chunk_size=256 * 1024)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_post("/files", upload)
    app.router.add_get("/files/{name}", download)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attachments", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--dir", type=Path, required=True, help="where the files are kept")
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="messenger's default loop, so that loops are not what is compared",
    )
    args = parser.parse_args(argv)
    web.run_app(
        create_app(args.dir),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        loop=new_event_loop(args.event_loop),
    )


# -- the clients -------------------------------------------------------------------------


@dataclass
class Side:
    """One server under test, as the transfers see it."""

    name: str
    server: Server
    upload_url: str
    uploader: dict[str, str]  # request headers of who uploads
    reader: dict[str, str]  # ... and of who downloads
    send_auth: dict[str, Any] | None = None  # messenger: the uploader's Socket.IO auth
    recipient: str = ""
    download_url: str = ""
    uploads: list[tuple[float, float]] = field(default_factory=list)  # (seconds, CPU s)
    downloads: list[tuple[float, float]] = field(default_factory=list)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _upload(
    http: aiohttp.ClientSession, side: Side, path: Path, name: str
) -> tuple[dict[str, Any], float]:
    """POST the file, streamed from disk; its answer and the seconds it took."""
    headers = {**side.uploader, "Content-Type": "application/octet-stream"}
    body = await asyncio.to_thread(path.open, "rb")
    t0 = time.perf_counter()
    try:
        async with http.post(
            side.upload_url, params={"name": name}, data=body, headers=headers
        ) as resp:
            answer: dict[str, Any] = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"{side.name} upload -> {resp.status}: {answer}")
    finally:
        body.close()
    return answer, time.perf_counter() - t0


async def _download(
    http: aiohttp.ClientSession, side: Side, url: str, digest: bool = False
) -> tuple[int, str, float]:
    """GET the file, reading and dropping it; its size, SHA-256 (if asked) and seconds."""
    hasher = hashlib.sha256() if digest else None
    size = 0
    t0 = time.perf_counter()
    async with http.get(url, headers=side.reader) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{side.name} download -> {resp.status}: {await resp.text()}")
        async for chunk in resp.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if hasher is not None:
                hasher.update(chunk)
    return size, hasher.hexdigest() if hasher else "", time.perf_counter() - t0


async def _place(http: aiohttp.ClientSession, side: Side, path: Path, name: str) -> str:
    """Upload `path` and make it readable by the side's reader: on messenger a send
    carries it to the recipient. Its download URL."""
    answer, _ = await _upload(http, side, path, name)
    if side.send_auth is None:
        return f"{side.server.url}/files/{name}"
    client = RawClient(side.server.url)
    try:
        await client.connect(side.send_auth)
        payload = {
            "to": side.recipient,
            "body": "",
            "client_id": uuid.uuid4().hex,
            "attachments": [answer["id"]],
        }
        sent = await asyncio.wait_for(client.call("send", payload), 30)
    finally:
        await client.close()
    if not (isinstance(sent, dict) and sent.get("ok")):
        raise RuntimeError(f"send with an attachment -> {sent}")
    return f"{side.server.url}/api/v1/attachments/{answer['id']}"


async def _memory(
    sides: list[Side], small: Path, big: Path, size: int, sha256: str
) -> dict[str, Any]:
    """Per side: warm up with the small file, then the server's RSS peak over its RSS
    just before, while the big file goes up and while it comes down."""
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for side in sides:
            warm = await _place(http, side, small, "warm.bin")
            await _download(http, side, warm)
            await asyncio.sleep(0.5)
            before = side.server.rss()
            with RssSampler(side.server, RSS_INTERVAL) as up:
                side.download_url = await _place(http, side, big, BIG_NAME)
            after_upload = side.server.rss()
            with RssSampler(side.server, RSS_INTERVAL) as down:
                got, digest, _ = await _download(http, side, side.download_url, digest=True)
            if (got, digest) != (size, sha256):
                raise RuntimeError(f"{side.name} served other bytes than were uploaded")
            out[side.name] = {
                "rss_before_mb": round(before / MIB, 1),
                "rss_upload_mb": round((up.peak - before) / MIB, 2),
                "rss_download_mb": round((down.peak - after_upload) / MIB, 2),
                "rss_kept_mb": round((after_upload - before) / MIB, 2),
                "rss_samples": [up.samples, down.samples],
            }
    return out


def _alternating(sides: list[Side], rounds: int) -> Iterable[Side]:
    """A B, B A, A B, ...: neither side always runs first after a pause."""
    for i in range(rounds):
        yield from sides if i % 2 == 0 else reversed(sides)


async def _uploads(sides: list[Side], big: Path, size: int, rounds: int) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for side in _alternating(sides, rounds):
            cpu0 = side.server.cpu_seconds()
            answer, seconds = await _upload(http, side, big, BIG_NAME)
            side.uploads.append((seconds, side.server.cpu_seconds() - cpu0))
            if answer.get("size") != size:
                raise RuntimeError(f"{side.name} stored {answer.get('size')} of {size} bytes")


async def _downloads(sides: list[Side], size: int, rounds: int) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for side in _alternating(sides, rounds):
            cpu0 = side.server.cpu_seconds()
            got, _, seconds = await _download(http, side, side.download_url)
            side.downloads.append((seconds, side.server.cpu_seconds() - cpu0))
            if got != size:
                raise RuntimeError(f"{side.name} sent {got} of {size} bytes")


# -- the scenario ----------------------------------------------------------------------


def _random_file(path: Path, size: int) -> str:
    """Write `size` random bytes (nothing to compress or deduplicate within); their
    SHA-256."""
    hasher = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            data = os.urandom(min(MIB, left))
            hasher.update(data)
            out.write(data)
            left -= len(data)
    return hasher.hexdigest()


def _rates(runs: list[tuple[float, float]], mib: float) -> dict[str, Any]:
    """Median MiB/s of the transfers, every transfer's, and server CPU ms per MiB."""
    per = [mib / seconds for seconds, _ in runs]
    cpu = sum(c for _, c in runs)
    return {
        "mib_s": round(statistics.median(per), 1),
        "runs_mib_s": [round(r, 1) for r in per],
        "cpu_ms_per_mib": round(1000 * cpu / (mib * len(runs)), 2),
    }


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


def steps(s: Settings) -> int:
    return 4


def attachments(s: Settings, progress: Progress) -> list[dict[str, Any]]:
    """Upload and download MiB/s, messenger against the baseline, and RSS while streaming."""
    mib = float(s.attachment_mib)
    size = s.attachment_mib * MIB
    files = s.workdir / f"attachments-{uuid.uuid4().hex[:8]}"
    files.mkdir(parents=True)
    big, small = files / BIG_NAME, files / "warm.bin"
    sha256 = _random_file(big, size)
    _random_file(small, WARM_BYTES)
    env = {
        "MESSENGER_MAX_ATTACHMENT": str(max(size, 25 * MIB)),
        # Every upload of the run stays a pending attachment of one user.
        "MESSENGER_ATTACHMENT_QUOTA": str(max(1024 * MIB, (s.attachment_transfers + 4) * size)),
    }
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(servers.database("sqlite", s.workdir))
        with progress.step("attachments: servers and accounts"):
            args = ["bench.attachments", "--host", servers.HOST, "--dir", str(files / "baseline")]
            base = stack.enter_context(servers.running(servers.start("files", args, s.workdir)))
            msgr = stack.enter_context(
                servers.running(servers.start_messenger(s.workdir, url, env=env))
            )
            ann, bob = accounts.named_peers(msgr.url, ["attann", "attbob"])
        sides = [
            Side("baseline", base, f"{base.url}/files", {}, {}),
            Side(
                "messenger",
                msgr,
                f"{msgr.url}/api/v1/attachments",
                _bearer(ann.auth["token"]),
                _bearer(bob.auth["token"]),
                send_auth=ann.auth,
                recipient=bob.username,
            ),
        ]
        with progress.step(f"attachments: RSS while {s.attachment_mib} MiB goes up and down"):
            memory = asyncio.run(_memory(sides, small, big, size, sha256))
        n = s.attachment_transfers
        with progress.step(f"attachments: {n} uploads a server"):
            asyncio.run(_uploads(sides, big, size, n))
        with progress.step(f"attachments: {n} downloads a server"):
            asyncio.run(_downloads(sides, size, n))
    rows: list[dict[str, Any]] = []
    for side in sides:
        up, down = _rates(side.uploads, mib), _rates(side.downloads, mib)
        rows.append(
            {
                "target": side.name,
                "mib": s.attachment_mib,
                "transfers": n,
                "upload": up,
                "download": down,
                **memory[side.name],
            }
        )
    base_row, msgr_row = rows
    for way in ("upload", "download"):
        msgr_row[way]["ratio"] = _ratio(msgr_row[way]["mib_s"], base_row[way]["mib_s"])
        msgr_row[way]["cpu_ratio"] = _ratio(
            msgr_row[way]["cpu_ms_per_mib"], base_row[way]["cpu_ms_per_mib"]
        )
    return rows


if __name__ == "__main__":
    main()
