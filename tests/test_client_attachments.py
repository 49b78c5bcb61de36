"""Attachments through the Python SDK against a real server: uploads from bytes and
from disk, sends that carry them (through the durable outbox, across a restart),
downloads to disk checked byte for byte, and the old state files that still work."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from messenger.client import (
    Attachment,
    Client,
    MessengerClientError,
    download,
    upload,
)
from messenger.config import Settings
from tests.support import Device, Http, RunningServer, Servers, accounts, port_of
from tests.test_client import Recorder, eventually, history_rows, opened

MIB = 1024 * 1024
MAX_ATTACHMENT = 20 * MIB


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(
        settings,
        blob_store="directory",
        blob_dir=str(tmp_path / "blobs"),
        max_attachment=MAX_ATTACHMENT,
        attachment_quota=200 * MIB,
    )


def png(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_blobs(settings: Settings) -> list[str]:
    """The names of the blobs the directory store holds (uploads in progress aside)."""
    root = Path(settings.blob_dir)
    return sorted(p.name for p in root.glob("??/*") if p.is_file())


def queued(state: Path) -> list[tuple[str, str, Any]]:
    """The outbox as the state file holds it: client_id, body, attachments (raw)."""
    try:
        with contextlib.closing(sqlite3.connect(state)) as db:
            query = "SELECT client_id, body, attachments FROM outbox ORDER BY seq"
            return list(db.execute(query))
    except sqlite3.OperationalError:
        return []


async def test_upload_send_receive_and_download(
    server: RunningServer, http: Http, tmp_path: Path
) -> None:
    """Bytes and a file from disk go up, one send carries both, the other side gets
    them typed in its Message and downloads them: the same bytes, the same SHA-256."""
    ann, bob, carl = await accounts(http, "ann", "bob", "carl")
    report = os.urandom(300_000)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png())
    saved = tmp_path / "bob"
    saved.mkdir()
    async with opened(server.url, ann) as a, opened(server.url, bob) as b:
        got = Recorder(b)
        made_report = await a.upload(report, "application/pdf", "report.pdf")
        made_photo = await a.upload(photo, "image/png")
        assert made_report == {
            "id": made_report["id"],
            "name": "report.pdf",
            "size": len(report),
            "content_type": "application/pdf",
            "sha256": sha256(report),
        }
        assert made_photo["name"] == "photo.png"
        assert made_photo["sha256"] == sha256(photo.read_bytes())
        assert (made_photo.get("width"), made_photo.get("height")) == (640, 480)

        ids = [made_report["id"], made_photo["id"]]
        sent = await a.send(bob.username, "the report, and a photo", attachments=ids)
        expected = (
            Attachment(ids[0], "report.pdf", len(report), "application/pdf"),
            Attachment(ids[1], "photo.png", photo.stat().st_size, "image/png", 640, 480, True),
        )
        assert sent.attachments == expected
        await eventually(lambda: any(e.message.id == sent.id for e in got.messages))
        [message] = [e.message for e in got.messages if e.message.id == sent.id]
        assert (message.body, message.attachments) == ("the report, and a photo", expected)
        [page] = [page async for page in b.history(ann.username)]
        assert page[-1].attachments == expected

        originals = [(report, made_report), (photo.read_bytes(), made_photo)]
        for attachment, (original, made) in zip(message.attachments, originals, strict=True):
            done = await b.download(attachment.id, saved / attachment.name)
            assert done.path.read_bytes() == original
            assert done.size == attachment.size == len(original)
            assert done.sha256 == made["sha256"] == sha256(original)
        thumb = await b.download_thumbnail(ids[1], saved / "thumb.png")
        with Image.open(thumb.path) as image:
            assert (image.format, max(image.size)) == ("PNG", 320)
        with pytest.raises(MessengerClientError) as none:
            await b.download_thumbnail(ids[0], saved / "none.png")
        assert none.value.code == "not_found"

    # A third user gets not_found, and no file (not even a partial one) is left.
    elsewhere = tmp_path / "carl"
    elsewhere.mkdir()
    with pytest.raises(MessengerClientError) as refused:
        await download(server.url, carl.token, ids[0], elsewhere / "stolen.pdf")
    assert refused.value.code == "not_found"
    assert list(elsewhere.iterdir()) == []


async def test_refusals_come_at_once_and_are_not_retried(
    server: RunningServer, http: Http, tmp_path: Path
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:  # sparse: no memory or disk spent on it
        handle.truncate(MAX_ATTACHMENT + 1)
    async with opened(server.url, ann) as a:
        async with asyncio.timeout(10):  # an open client retries only what may pass later
            with pytest.raises(MessengerClientError) as too_large:
                await a.upload(big, "application/octet-stream")
            assert too_large.value.code == "too_large"
            with pytest.raises(MessengerClientError) as spoofed:
                await a.upload(b"<svg onload=alert(1)>", "image/png", "x.png")
            assert spoofed.value.code == "invalid"
            with pytest.raises(FileNotFoundError):
                await a.upload(tmp_path / "missing.txt", "text/plain")
            theirs = await upload(server.url, bob.token, b"bob's", "text/plain")
            with pytest.raises(MessengerClientError) as not_ours:
                await a.send(bob.username, "", attachments=[theirs["id"]])
            assert not_ours.value.code == "not_found"
            assert await a.pending() == []  # a refused send leaves the outbox
    # Not opened, or without a server: one plain attempt.
    with pytest.raises(MessengerClientError) as down:
        await upload(f"http://127.0.0.1:{port_of(server.url) + 1}", ann.token, b"x", "text/plain")
    assert down.value.code == "unavailable"


async def test_an_upload_waits_through_an_outage_and_a_retry_is_stored_once(
    servers: Servers, tmp_path: Path
) -> None:
    server = await servers.start()
    [ann] = await accounts(Http(server.url), "ann")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"the same bytes, twice\n" * 1000)
    async with opened(server.url, ann) as client:
        first = await client.upload(notes, "text/plain")
        await servers.stop(server)
        await eventually(lambda: not client.connected)
        doomed = asyncio.create_task(client.upload(notes, "text/plain"))
        await asyncio.sleep(0.5)
        assert not doomed.done()  # retrying, not failed
    with pytest.raises(MessengerClientError) as closed:
        await doomed
    assert closed.value.code == "closed"

    # The "restarted" application uploads again, while the server is still down.
    async with Client(server.url, ann.token, reconnect_delay=0.05) as client:
        uploading = asyncio.create_task(client.upload(notes, "text/plain"))
        await asyncio.sleep(0.5)
        assert not uploading.done()
        server = await servers.start(port_of(server.url))
        again = await asyncio.wait_for(uploading, 15)
    assert again["id"] != first["id"]
    assert again["sha256"] == first["sha256"] == sha256(notes.read_bytes())
    assert stored_blobs(server.settings) == [first["sha256"]]  # one copy on the server


async def test_a_queued_send_with_attachments_survives_a_restart_once(
    servers: Servers, tmp_path: Path
) -> None:
    server = await servers.start()
    ann, bob = await accounts(Http(server.url), "ann", "bob")
    state = tmp_path / "ann.state"
    data = os.urandom(50_000)
    async with opened(server.url, ann, state) as client:
        made = await client.upload(data, "application/octet-stream", "data.bin")
        await servers.stop(server)
        await eventually(lambda: not client.connected)
        sending = asyncio.create_task(client.send(bob.username, "", attachments=[made["id"]]))
        await eventually(lambda: queued(state) != [])
    with pytest.raises(MessengerClientError) as closed:
        await sending
    assert closed.value.code == "closed"
    [(client_id, body, attachments)] = queued(state)
    assert (body, json.loads(attachments)) == ("", [made["id"]])

    server = await servers.start(port_of(server.url))
    # Suppose the first attempt had reached the server and only its answer was lost.
    device = await Device(server.url).connect(ann.token)
    payload = {"to": bob.username, "body": "", "client_id": client_id, "attachments": [made["id"]]}
    assert (await device.call("send", payload))["ok"]
    await device.disconnect()

    async with opened(server.url, ann, state) as client:
        await eventually(lambda: queued(state) == [])
    rows = await history_rows(server.url, bob, ann.username)
    assert [(r["client_id"], [a["id"] for a in r["attachments"]]) for r in rows] == [
        (client_id, [made["id"]])
    ]
    done = await download(server.url, bob.token, made["id"], tmp_path / "got.bin")
    assert (done.path.read_bytes(), done.sha256) == (data, made["sha256"])


async def test_a_state_file_from_before_attachments_keeps_its_outbox(
    server: RunningServer, http: Http, tmp_path: Path
) -> None:
    """A state file of the previous SDK (replies and edits, no attachments) with a
    message queued in it: opened by this one, the message goes out, and sends with
    attachments queue in the same file."""
    ann, bob = await accounts(http, "ann", "bob")
    state = tmp_path / "old.state"
    with contextlib.closing(sqlite3.connect(state)) as db:
        db.executescript(
            f"""
            CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                client_id TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL,
                body TEXT NOT NULL, queued_at REAL NOT NULL,
                reply_to INTEGER, edit_of INTEGER);
            CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO outbox (client_id, recipient, body, queued_at)
                VALUES ('old-1', '{bob.username}', 'queued by the old SDK', 0);
            """
        )
    async with opened(server.url, ann, state) as client:
        await eventually(lambda: queued(state) == [])
        made = await client.upload(b"new", "text/plain", "new.txt")
        sent = await client.send(bob.username, "with a file", attachments=[made["id"]])
    assert [a.name for a in sent.attachments] == ["new.txt"]
    rows = await history_rows(server.url, bob, ann.username)
    assert [(r["client_id"], r["body"]) for r in rows] == [
        ("old-1", "queued by the old SDK"),
        (sent.client_id, "with a file"),
    ]


@pytest.mark.parametrize("backend", ["sqlite"])  # memory, not the database, is measured
async def test_files_stream_from_and_to_disk(
    server: RunningServer, http: Http, tmp_path: Path
) -> None:
    """A 16 MiB file goes up and comes down without ever being held whole (this
    process runs the server too, so the bound covers both sides)."""
    ann, bob = await accounts(http, "ann", "bob")
    big = tmp_path / "video.bin"
    chunk = os.urandom(MIB)
    with big.open("wb") as handle:
        for i in range(16):
            handle.write(bytes([i]) + chunk[1:])
    digest = hashlib.sha256()
    with big.open("rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    async with opened(server.url, ann) as a:
        tracemalloc.start()
        try:
            made = await a.upload(big, "video/mp4")
            sent = await a.send(bob.username, "", attachments=[made["id"]])
            done = await download(server.url, bob.token, made["id"], tmp_path / "copy.bin")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert made["sha256"] == done.sha256 == digest.hexdigest()
    assert done.size == sent.attachments[0].size == 16 * MIB
    assert peak < 4 * MIB, f"peak {peak / MIB:.1f} MiB"
