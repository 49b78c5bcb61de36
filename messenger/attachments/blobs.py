"""Where attachment bytes live: a `BlobStore` keeps blobs by their SHA-256, written as
a stream and made visible only once complete, and reads any byte range back as a
stream, so that a 25 MiB file is never held whole in memory.

Two stores: `DirectoryStore` (the default; one file per blob, written to a temporary
name, fsynced, then renamed, so a crash leaves no half file under a blob's name) and
`DatabaseStore` (chunks in a table, for nodes that share a database and no
filesystem). An S3-compatible store would implement the same three operations with a
multipart upload whose completion is the commit; see docs/attachments.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from messenger.config import Settings
from messenger.store.attachments import (
    blob_part_keys_older_than,
    delete_blob_parts,
    keep_blob_parts,
    read_blob_parts,
    write_blob_part,
)
from messenger.store.db import Database

# Bytes per read of a blob, and per chunk of the database store.
CHUNK = 256 * 1024


@dataclass(frozen=True)
class Written:
    """A complete blob: its SHA-256 and size, and what the store still needs done in
    the transaction that records it (the database store names its parts there, so
    that recording and collecting a blob cannot cross)."""

    sha256: str
    size: int
    in_transaction: Callable[[Connection], None]


def _nothing(_conn: Connection) -> None:
    return None


class BlobWriter(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> Written:
        """Make the blob complete under its SHA-256 (see `Written`)."""
        ...

    async def abort(self) -> None:
        """Forget what was written (a refused or cut upload)."""
        ...


class BlobStore(Protocol):
    def writer(self) -> BlobWriter: ...

    def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the blob, in chunks."""
        ...

    def forget(self, conn: Connection, shas: list[str]) -> None:
        """What goes in the transaction that forgets these blobs (the database
        store's parts: recording and collecting a blob then cannot cross)."""
        ...

    async def delete(self, sha256: str) -> None:
        """Remove a forgotten blob's bytes that the transaction did not."""
        ...

    async def sweep_unfinished(self, older_than: float) -> int:
        """Remove what uploads cut by a crash left behind; how many."""
        ...

    async def stored(self, older_than: float) -> list[str]:
        """The blobs the store holds that are older than `older_than` seconds (the
        collector compares them with SQL: a crash between placing a blob and
        recording it leaves one that no row names)."""
        ...


def open_blob_store(settings: Settings, db: Database) -> BlobStore:
    """The store `MESSENGER_BLOB_STORE` names; the directory defaults to one next to
    the SQLite file (`<file>.blobs`), or `./messenger-blobs` with PostgreSQL."""
    if settings.blob_store == "database":
        return DatabaseStore(db)
    if settings.blob_dir:
        return DirectoryStore(Path(settings.blob_dir))
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return DirectoryStore(Path(f"{url.database}.blobs"))
    return DirectoryStore(Path("messenger-blobs"))


# -- a directory ------------------------------------------------------------------------


class DirectoryStore:
    """Blobs as files `<root>/<aa>/<sha256>`; uploads in progress under `<root>/tmp`.
    File I/O runs on threads."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._tmp = root / "tmp"

    def path_of(self, sha256: str) -> Path:
        return self._root / sha256[:2] / sha256

    def writer(self) -> BlobWriter:
        return _FileWriter(self)

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self.path_of(sha256), "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = end - start
            while left > 0:
                data = await asyncio.to_thread(handle.read, min(CHUNK, left))
                if not data:
                    return
                left -= len(data)
                yield data
        finally:
            await asyncio.to_thread(handle.close)

    def forget(self, conn: Connection, shas: list[str]) -> None:
        return None  # files are removed after the transaction (`delete`)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(_unlink, self.path_of(sha256))

    async def sweep_unfinished(self, older_than: float) -> int:
        return await asyncio.to_thread(self._sweep, time.time() - older_than)

    async def stored(self, older_than: float) -> list[str]:
        return await asyncio.to_thread(self._stored, time.time() - older_than)

    def _stored(self, before: float) -> list[str]:
        found: list[str] = []
        if not self._root.is_dir():
            return found
        for shard in self._root.iterdir():
            if shard.name == "tmp" or not shard.is_dir():
                continue
            found += [p.name for p in shard.iterdir() if p.stat().st_mtime < before]
        return found

    def _sweep(self, before: float) -> int:
        if not self._tmp.is_dir():
            return 0
        swept = 0
        for path in self._tmp.iterdir():
            if path.stat().st_mtime < before:
                _unlink(path)
                swept += 1
        return swept

    def _commit(self, handle: IO[bytes], temporary: Path, sha256: str) -> None:
        """fsync the file, rename it to its blob's name (or drop it if that blob is
        there already), fsync the directory: the name appears only complete."""
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        final = self.path_of(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            _unlink(temporary)
            return
        os.replace(temporary, final)
        _fsync_directory(final.parent)


class _FileWriter:
    def __init__(self, store: DirectoryStore) -> None:
        self._store = store
        self._hash = hashlib.sha256()
        self._size = 0
        self._path = store._tmp / uuid.uuid4().hex
        self._handle: IO[bytes] | None = None
        self._pending = bytearray()

    async def write(self, data: bytes) -> None:
        """Gathered into CHUNK-sized writes: one thread hop (and hash update) per
        CHUNK rather than per network read."""
        self._pending += data
        if len(self._pending) >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        if self._handle is None:
            self._handle = await asyncio.to_thread(self._open)
        data, self._pending = bytes(self._pending), bytearray()
        if data:
            await asyncio.to_thread(self._write, self._handle, data)

    def _open(self) -> IO[bytes]:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        return open(self._path, "wb")

    def _write(self, handle: IO[bytes], data: bytes) -> None:
        handle.write(data)
        self._hash.update(data)
        self._size += len(data)

    async def commit(self) -> Written:
        await self._flush()
        assert self._handle is not None
        sha256 = self._hash.hexdigest()
        await asyncio.to_thread(self._store._commit, self._handle, self._path, sha256)
        return Written(sha256, self._size, _nothing)

    async def abort(self) -> None:
        if self._handle is not None:
            await asyncio.to_thread(self._handle.close)
        await asyncio.to_thread(_unlink, self._path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the database -----------------------------------------------------------------------


class DatabaseStore:
    """Blobs as chunks of CHUNK bytes in `blob_parts`, keyed by the blob's SHA-256
    once complete and by an upload key before: a cut upload leaves parts under a key
    no blob has, which `sweep_unfinished` removes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def writer(self) -> BlobWriter:
        return _PartsWriter(self._db)

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        first, last = start // CHUNK, (end - 1) // CHUNK
        for seq in range(first, last + 1):
            parts = await self._db.read(read_blob_parts, sha256, seq, seq)
            if not parts:
                return
            data = parts[0]
            low = start - seq * CHUNK if seq == first else 0
            high = end - seq * CHUNK if seq == last else len(data)
            yield data[low:high]

    def forget(self, conn: Connection, shas: list[str]) -> None:
        delete_blob_parts(conn, shas)

    async def delete(self, sha256: str) -> None:
        return None  # its parts went with the transaction that forgot it (`forget`)

    async def stored(self, older_than: float) -> list[str]:
        return []  # parts are named in the transaction that records them: none stray

    async def sweep_unfinished(self, older_than: float) -> int:
        keys = await self._db.read(blob_part_keys_older_than, older_than)
        await self._db.write(delete_blob_parts, keys)
        return len(keys)


class _PartsWriter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._key = "upload-" + uuid.uuid4().hex
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._seq = 0

    async def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= CHUNK:
            await self._flush(bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]

    async def _flush(self, data: bytes) -> None:
        await self._db.write(write_blob_part, self._key, self._seq, data)
        self._seq += 1

    async def commit(self) -> Written:
        if self._buffer or self._seq == 0:
            await self._flush(bytes(self._buffer))
            self._buffer.clear()
        sha256, key = self._hash.hexdigest(), self._key

        def name_parts(conn: Connection) -> None:
            keep_blob_parts(conn, key, sha256)

        return Written(sha256, self._size, name_parts)

    async def abort(self) -> None:
        await self._db.write(delete_blob_parts, [self._key])
