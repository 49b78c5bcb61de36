"""Attachments (docs/attachments.md): uploads stored first, bound to the message that
carries them, readable only by who may read that message, never orphaned; on SQLite
and PostgreSQL, with the directory and the database blob stores."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import signal
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from PIL import Image

from messenger.attachments.blobs import DirectoryStore
from messenger.config import Settings
from tests.processes import ServeGroup
from tests.support import (
    Account,
    Device,
    Http,
    RunningServer,
    connect_synced,
    sql,
    start_server,
)

STORES = ["directory", "database"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(settings: Settings, store: str, tmp_path: Path) -> Settings:
    return dataclasses.replace(
        settings,
        blob_store=store,
        blob_dir=str(tmp_path / "blobs"),
        max_attachment=2 * 1024 * 1024,
        attachment_quota=5 * 1024 * 1024,
    )


def png(width: int = 640, height: int = 480, exif_gps: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), (200, 30, 30))
    out = io.BytesIO()
    if exif_gps:
        exif = Image.Exif()
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPSInfo
        image.save(out, format="JPEG", exif=exif)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


async def upload(
    http: Http, account: Account, data: bytes, content_type: str, name: str = "f.bin"
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{http.url}/api/v1/attachments",
            params={"name": name},
            data=data,
            headers={"Authorization": f"Bearer {account.token}", "Content-Type": content_type},
        ) as response:
            return response.status, await response.json()


async def fetch(
    http: Http, account: Account, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, CIMultiDict[str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{http.url}{path}",
            headers={"Authorization": f"Bearer {account.token}", **(headers or {})},
        ) as response:
            return response.status, await response.read(), response.headers.copy()


async def send(device: Device, to: str, body: str, client_id: str, ids: list[int]) -> Any:
    payload = {"to": to, "body": body, "client_id": client_id, "attachments": ids}
    return await device.call("send", payload)


async def test_upload_send_and_download(http: Http) -> None:
    """An upload is the uploader's until a send carries it; then both parties, and
    only they, can fetch it, whole or by range, with its ETag."""
    ann, bob, carl = (
        await http.account("ann"),
        await http.account("bob"),
        await http.account("carl"),
    )
    data = bytes(range(256)) * 1000
    status, made = await upload(http, ann, data, "application/pdf", "report.pdf")
    assert status == 201, made
    assert made["sha256"] == hashlib.sha256(data).hexdigest() and made["size"] == len(data)
    path = f"/api/v1/attachments/{made['id']}"
    assert (await fetch(http, bob, path))[0] == 404  # not sent yet
    device, _ = await connect_synced(http.url, ann)
    sent = await send(device, bob.username, "", "a-1", [made["id"]])
    assert sent["ok"], sent
    shown = sent["message"]["attachments"]
    assert shown == [
        {
            "id": made["id"],
            "name": "report.pdf",
            "size": len(data),
            "content_type": "application/pdf",
            "thumbnail": False,
        }
    ]
    for who in (ann, bob):
        status, body, headers = await fetch(http, who, path)
        assert (status, body) == (200, data)
        assert headers["ETag"] == f'"{made["sha256"]}"'
        assert headers["Content-Disposition"].startswith("attachment;")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in headers["Content-Security-Policy"]
    assert (await fetch(http, carl, path))[0] == 404
    status, part, headers = await fetch(http, bob, path, {"Range": "bytes=10-19"})
    assert (status, part) == (206, data[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    status, tail, _ = await fetch(http, bob, path, {"Range": "bytes=-5"})
    assert (status, tail) == (206, data[-5:])
    assert (await fetch(http, bob, path, {"Range": f"bytes={len(data)}-"}))[0] == 416
    assert (await fetch(http, bob, path, {"If-None-Match": headers["ETag"]}))[0] == 304
    # The history shows it too, and a repeat of the send answers the same.
    again = await send(device, bob.username, "", "a-1", [made["id"]])
    assert again["message"]["attachments"] == shown
    await device.disconnect()


async def test_images_get_a_thumbnail_without_metadata(http: Http) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    status, made = await upload(http, ann, png(exif_gps=True), "image/jpeg", "photo.jpg")
    assert status == 201 and (made["width"], made["height"]) == (640, 480), made
    device, _ = await connect_synced(http.url, ann)
    sent = await send(device, bob.username, "look", "a-2", [made["id"]])
    assert sent["message"]["attachments"][0]["thumbnail"] is True
    status, thumb, headers = await fetch(http, bob, f"/api/v1/attachments/{made['id']}/thumbnail")
    assert status == 200 and headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(thumb)) as image:
        assert max(image.size) == 320
        assert not image.getexif()
    status, _, headers = await fetch(http, bob, f"/api/v1/attachments/{made['id']}")
    assert status == 200 and headers["Content-Disposition"].startswith("inline;")
    await device.disconnect()


async def test_spoofed_types_bombs_and_limits(http: Http, settings: Settings) -> None:
    ann = await http.account("ann")
    status, body = await upload(http, ann, b"<script>alert(1)</script>" * 10, "image/png")
    assert (status, body["error"]["code"]) == (400, "invalid")
    status, body = await upload(http, ann, png(), "image/jpeg")
    assert (status, body["error"]["code"]) == (400, "invalid")
    bomb = png(12_000, 12_000)  # 144 Mpx of one colour: a small file
    status, made = await upload(http, ann, bomb, "image/png", "bomb.png")
    assert status == 201, made  # kept, without a size or thumbnail to decode
    assert "width" not in made
    status, body = await upload(http, ann, b"x" * (settings.max_attachment + 1), "text/plain")
    assert (status, body["error"]["code"]) == (413, "too_large")
    for bad_name in ("../../etc/passwd", "a\x00b", "x" * 300):
        status, body = await upload(http, ann, b"hi", "text/plain", bad_name)
        assert (status, body["error"]["code"]) == (400, "invalid"), bad_name
    # The quota: pending and sent uploads of one user.
    big = b"q" * (settings.max_attachment - 10)
    results = [await upload(http, ann, big + bytes([i]), "text/plain") for i in range(4)]
    assert [status for status, _ in results][-1] == 413


async def test_sends_take_only_the_senders_pending_uploads(http: Http) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    _, mine = await upload(http, ann, b"mine", "text/plain")
    _, theirs = await upload(http, bob, b"theirs", "text/plain")
    device, _ = await connect_synced(http.url, ann)
    refused = await send(device, bob.username, "x", "s-1", [theirs["id"]])
    assert refused["error"]["code"] == "not_found", refused
    assert (await send(device, bob.username, "x", "s-2", [mine["id"]]))["ok"]
    again = await send(device, bob.username, "x", "s-3", [mine["id"]])  # already sent
    assert again["error"]["code"] == "not_found", again
    for bad in ([0], ["1"], list(range(1, 12)), [mine["id"], mine["id"]]):
        answer = await send(device, bob.username, "x", "s-4", bad)
        assert answer["error"]["code"] in ("invalid", "too_large"), (bad, answer)
    empty = await device.call("send", {"to": bob.username, "body": "", "client_id": "s-5"})
    assert empty["error"]["code"] == "invalid"
    await device.disconnect()


async def test_a_delete_for_everyone_takes_the_files_with_it(
    http: Http, server: RunningServer
) -> None:
    ann, bob = await http.account("ann"), await http.account("bob")
    data = b"secret file " * 100
    _, made = await upload(http, ann, data, "text/plain")
    device, _ = await connect_synced(http.url, ann)
    sent = await send(device, bob.username, "see", "d-1", [made["id"]])
    gone = await device.call("delete", {"id": sent["message"]["id"], "for": "everyone"})
    assert gone["ok"] and gone["message"]["attachments"] == [], gone
    for who in (ann, bob):
        assert (await fetch(http, who, f"/api/v1/attachments/{made['id']}"))[0] == 404
    collector = server.node.collector
    assert collector is not None
    _, removed = await collector.collect(grace=timedelta(0))
    assert removed >= 1
    await device.disconnect()


async def test_uploads_no_send_took_are_collected(
    http: Http, server: RunningServer, settings: Settings
) -> None:
    """Past MESSENGER_UPLOAD_TTL an upload is gone, and then its blob; a sent one and
    its blob stay, however old."""
    ann, bob = await http.account("ann"), await http.account("bob")
    _, waiting = await upload(http, ann, b"never sent", "text/plain")
    _, carried = await upload(http, ann, b"sent", "text/plain")
    device, _ = await connect_synced(http.url, ann)
    assert (await send(device, bob.username, "x", "c-1", [carried["id"]]))["ok"]
    expired, removed = await server.node.collector.collect(grace=timedelta(0), ttl=timedelta(0))
    assert (expired, removed) == (1, 1)
    assert (await fetch(http, ann, f"/api/v1/attachments/{waiting['id']}"))[0] == 404
    status, body, _ = await fetch(http, bob, f"/api/v1/attachments/{carried['id']}")
    assert (status, body) == (200, b"sent")
    status, metrics = await http.request("GET", "/metrics")
    assert "messenger_blobs_collected_total 1.0" in metrics
    await device.disconnect()


async def test_the_same_bytes_are_stored_once_and_kept_while_named(
    http: Http, server: RunningServer
) -> None:
    """Two uploads of the same bytes share one blob; collecting the first's (expired)
    upload keeps the blob the second still names."""
    ann, bob = await http.account("ann"), await http.account("bob")
    _, first = await upload(http, ann, b"same bytes", "text/plain")
    _, second = await upload(http, bob, b"same bytes", "text/plain")
    assert first["sha256"] == second["sha256"]
    await sql_delete_attachment(server, first["id"])
    _, removed = await server.node.collector.collect(grace=timedelta(0))
    assert removed == 0
    status, body, _ = await fetch(http, bob, f"/api/v1/attachments/{second['id']}")
    assert (status, body) == (200, b"same bytes")


async def sql_delete_attachment(server: RunningServer, attachment_id: int) -> None:
    await sql(server.settings.database_url, f"DELETE FROM attachments WHERE id = {attachment_id}")


@pytest.mark.parametrize("store", ["database"])
@pytest.mark.parametrize("backend", ["postgresql"])
async def test_two_nodes_share_the_database_store(settings: Settings) -> None:
    """Uploaded on one node, sent on it, fetched on the other: the database store is
    for nodes that share a database and no filesystem."""
    first, second = await start_server(settings), await start_server(settings)
    try:
        http_a, http_b = Http(first.url), Http(second.url)
        ann, bob = await http_a.account("ann"), await http_a.account("bob")
        data = bytes(range(256)) * 2000  # two parts of the store
        _, made = await upload(http_a, ann, data, "application/octet-stream")
        device, _ = await connect_synced(second.url, ann)
        assert (await send(device, bob.username, "x", "n-1", [made["id"]]))["ok"]
        status, body, _ = await fetch(http_b, bob, f"/api/v1/attachments/{made['id']}")
        assert (status, body) == (200, data)
        status, part, _ = await fetch(
            http_b, bob, f"/api/v1/attachments/{made['id']}", {"Range": "bytes=262140-262150"}
        )
        assert (status, part) == (206, data[262140:262151])
        await device.disconnect()
    finally:
        await second.stop()
        await first.stop()


async def test_a_cut_upload_leaves_no_file(http: Http, server: RunningServer) -> None:
    """A client that stops half-way through its upload leaves no blob, no row and,
    once swept, no temporary file."""
    ann = await http.account("ann")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(http.url.rsplit(":", 1)[1]))
    head = (
        "POST /api/v1/attachments?name=cut.bin HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {ann.token}\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: 1000000\r\n\r\n"
    )
    writer.write(head.encode() + b"x" * 300_000)
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await asyncio.sleep(0.3)
    rows = await sql(server.settings.database_url, "SELECT count(*) FROM attachments")
    assert rows == [(0,)]
    swept = await server.node.blob_store.sweep_unfinished(0)
    blobs = await sql(server.settings.database_url, "SELECT count(*) FROM blobs")
    assert blobs == [(0,)]
    assert swept <= 1
    del reader


async def test_a_streamed_upload_is_cut_where_it_passes_the_limit(
    http: Http, server: RunningServer, settings: Settings
) -> None:
    """Without a Content-Length (chunked), the body is read only until it passes
    MESSENGER_MAX_ATTACHMENT: 413, and nothing is kept."""
    ann = await http.account("ann")
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(200):
            sent += 64 * 1024
            yield b"z" * (64 * 1024)

    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(
                f"{http.url}/api/v1/attachments",
                data=body(),
                headers={"Authorization": f"Bearer {ann.token}"},
            ) as response:
                assert response.status == 413
                assert (await response.json())["error"]["code"] == "too_large"
        except aiohttp.ClientError:
            pass  # the server may close the connection before the client finished
    assert sent < 200 * 64 * 1024, "the server read the whole body"
    rows = await sql(server.settings.database_url, "SELECT count(*) FROM attachments")
    assert rows == [(0,)]


@pytest.mark.parametrize("store", ["directory"])
async def test_a_blob_no_row_records_is_removed(http: Http, server: RunningServer) -> None:
    """A crash after a blob's file was placed and before its row was committed leaves
    a file SQL does not know: the collector's walk removes it, and keeps the others."""
    ann = await http.account("ann")
    _, kept = await upload(http, ann, b"recorded", "text/plain")
    store = server.node.blob_store
    assert isinstance(store, DirectoryStore)
    stray = store.path_of("ab" + "0" * 62)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"placed, never recorded")
    await server.node.collector.collect(grace=timedelta(0))
    assert not stray.exists()
    assert store.path_of(kept["sha256"]).exists()


async def test_kill_9_during_an_upload_leaves_no_half_file(
    processes: ServeGroup, database_url: str
) -> None:
    """The server dies with an upload half-way: after the restart no attachment and no
    blob exist, and only a temporary file (swept later) holds the half."""
    server = await processes(database_url).start()  # the directory store
    blob_dir = Path(server.env["MESSENGER_BLOB_DIR"])
    ann = await Http(server.url).account("ann")
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        (
            "POST /api/v1/attachments?name=half.bin HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {ann.token}\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: 4000000\r\n\r\n"
        ).encode()
        + b"h" * 1_000_000
    )
    await writer.drain()
    await asyncio.sleep(0.5)
    server.send_signal(signal.SIGKILL)
    assert await server.wait_exit(10) == -signal.SIGKILL
    writer.close()
    await server.start()
    assert await sql(database_url, "SELECT count(*) FROM attachments") == [(0,)]
    assert await sql(database_url, "SELECT count(*) FROM blobs") == [(0,)]
    named = await asyncio.to_thread(named_files, blob_dir)
    assert named == [], named


def named_files(blob_dir: Path) -> list[Path]:
    """Files under a directory store's blob names (not its temporary directory)."""
    return [p for p in blob_dir.rglob("*") if p.is_file() and p.parent.name != "tmp"]
