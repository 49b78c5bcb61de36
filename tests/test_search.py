"""Search (docs/protocol.md 3.10): the caller's own messages, case and accents ignored,
CJK text and parts of words found, deleted and edited text never found and gone from
the files (G10); against a real server on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from urllib.parse import urlencode

import pytest
from alembic import command
from sqlalchemy.engine import make_url

from messenger.config import Settings
from messenger.store import search as search_store
from messenger.store.migrate import alembic_config, upgrade
from messenger.text_search import HIT_END, HIT_START
from tests.processes import ServeGroup
from tests.support import (
    Device,
    Http,
    RunningServer,
    Scene,
    Servers,
    database_files,
    sql,
    start_server,
    two_way_scene,
)


@pytest.fixture(params=["scan", "index"])
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """SQLite searches a small scope by reading it, a large one through FTS5: "index"
    makes every scope large, so both ways are tested on the same small data."""
    if request.param == "index":
        monkeypatch.setattr(search_store, "SCAN_MAX", 0)
    return str(request.param)


async def search(device: Device, query: str, **extra: Any) -> dict[str, Any]:
    answer = await device.call("search", {"query": query, **extra})
    assert answer["ok"], answer
    return dict(answer)


def found_bodies(answer: dict[str, Any]) -> list[str]:
    return [result["message"]["body"] for result in answer["results"]]


async def send_all(device: Device, to: str, bodies: list[str], prefix: str) -> list[int]:
    ids = []
    for index, body in enumerate(bodies):
        answer = await device.send(to, body, f"{prefix}-{index}")
        assert answer["ok"], answer
        ids.append(answer["message"]["id"])
    return ids


async def index_now(server: RunningServer) -> None:
    """Run the indexer's round (SQLite; nothing to do on PostgreSQL)."""
    if server.node.db.is_sqlite:
        await server.node.search_indexer.run()


CORPUS = [
    "Meet me at the Café Noir tomorrow",
    "東京タワーの近くで会いましょう",
    "the quarterly report is ready",
    "NAÏVE question about ÆRØSKØBING",
    "see you at 10:30 in room B-12",
    "バスに乗ります",
    "ハスの花が咲いた",
]


@pytest.mark.parametrize("indexed", [False, True], ids=["unindexed", "indexed"])
async def test_finds_words_parts_accents_and_cjk(
    scene: Scene, server: RunningServer, indexed: bool, strategy: str
) -> None:
    """A message is found as soon as its send is answered (before the SQLite indexer
    ran) and the same way after; case and accents do not matter, three characters or
    more are found anywhere, CJK text without spaces included."""
    await send_all(scene.a, scene.bob.username, CORPUS, "c")
    if indexed:
        await index_now(server)
    cases = {
        "cafe": [CORPUS[0]],
        "CAFÉ noir": [CORPUS[0]],
        "タワー": [CORPUS[1]],
        "京タワ": [CORPUS[1]],
        "arter": [CORPUS[2]],
        "naive aerosk": [CORPUS[3]],
        "naive ærøsk": [CORPUS[3]],
        "roskobing": [CORPUS[3]],
        "re": [CORPUS[2]],  # short: the start of a word ("report", "ready")
        "10:30": [CORPUS[4]],
        "b-12": [CORPUS[4]],
        "report cafe": [],
        "バスに": [CORPUS[5]],  # voicing is part of the letter: バ is not ハ
        "ハスの": [CORPUS[6]],
        "nothing-like-this": [],
    }
    for device in (scene.a, scene.b):  # both sides of the conversation
        for query, expected in cases.items():
            assert found_bodies(await search(device, query)) == expected, query


async def test_short_terms_only_at_word_starts(scene: Scene, strategy: str) -> None:
    """A term under three characters is found at the start of a word only."""
    await send_all(scene.a, scene.bob.username, ["an apple", "banana", "東京"], "s")
    assert found_bodies(await search(scene.b, "an")) == ["an apple", "hello ann"]
    assert found_bodies(await search(scene.b, "ap")) == ["an apple"]
    assert found_bodies(await search(scene.b, "東京")) == ["東京"]
    assert found_bodies(await search(scene.b, "京")) == []


async def test_snippet_marks_hits_and_neutralises_markers(scene: Scene) -> None:
    """Hits are wrapped in U+0002/U+0003; a body's own marker characters are replaced,
    and a long body is cut around its first hit with ellipses."""
    hostile = f"<b>bold</b> {HIT_START}fake{HIT_END} needle"
    long_body = "x" * 300 + " needle " + "y" * 300
    await send_all(scene.a, scene.bob.username, [hostile, long_body], "n")
    answer = await search(scene.b, "needle")
    long_snippet, hostile_snippet = (r["snippet"] for r in answer["results"])
    assert hostile_snippet == f"<b>bold</b> \ufffdfake\ufffd {HIT_START}needle{HIT_END}"
    assert long_snippet.startswith("\u2026") and long_snippet.endswith("\u2026")
    assert f"{HIT_START}needle{HIT_END}" in long_snippet and len(long_snippet) < 140
    accented = await search(scene.b, "NEEDLE")
    assert accented["results"][1]["snippet"] == hostile_snippet


async def test_never_another_users_conversation(
    scene: Scene, server: RunningServer, http: Http, strategy: str
) -> None:
    """Only the caller's own conversations are searched; `with` narrows to one."""
    carl, dave = await asyncio.gather(http.account("carl"), http.account("dave"))
    c = await Device(server.url).connect(carl.token)
    await c.wait_synced()
    await send_all(c, dave.username, ["secret plans of carl"], "x")
    await send_all(c, scene.ann.username, ["plans for ann"], "y")
    await send_all(scene.b, scene.ann.username, ["plans from bob"], "z")
    await index_now(server)
    assert found_bodies(await search(scene.a, "plans")) == ["plans from bob", "plans for ann"]
    assert found_bodies(await search(scene.b, "plans")) == ["plans from bob"]
    only_carl = await search(scene.a, "plans", **{"with": carl.username})
    assert found_bodies(only_carl) == ["plans for ann"]
    assert found_bodies(await search(c, "secret")) == ["secret plans of carl"]
    assert found_bodies(await search(scene.a, "secret")) == []
    await c.disconnect()


async def test_deleted_and_edited_text_is_never_found(scene: Scene, server: RunningServer) -> None:
    """Deleted for everyone: found by nobody; deleted for me: not by me, still by the
    other party; edited: the new text is found, the old one not; before and after the
    indexer took the change."""
    ids = await send_all(
        scene.a,
        scene.bob.username,
        ["alpha doomed", "alpha hidden", "alpha before edit"],
        "d",
    )
    await index_now(server)
    everyone = await scene.a.call("delete", {"id": ids[0], "for": "everyone"})
    me = await scene.b.call("delete", {"id": ids[1], "for": "me"})
    edited = await scene.a.call("edit", {"id": ids[2], "body": "omega after", "client_id": "e"})
    assert everyone["ok"] and me["ok"] and edited["ok"], (everyone, me, edited)
    for _ in range(2):
        assert found_bodies(await search(scene.b, "alpha")) == []
        assert found_bodies(await search(scene.a, "alpha")) == ["alpha hidden"]
        assert found_bodies(await search(scene.a, "doomed")) == []
        assert found_bodies(await search(scene.b, "omega")) == ["omega after"]
        assert found_bodies(await search(scene.b, "before")) == []
        await index_now(server)


async def test_pages_newest_first_over_socket_and_http(
    scene: Scene, server: RunningServer, http: Http, strategy: str
) -> None:
    """`limit` and `before` page newest first; `has_more` tells; HTTP answers alike."""
    ids = await send_all(scene.a, scene.bob.username, [f"page item {i}" for i in range(7)], "p")
    await index_now(server)
    more = await send_all(scene.a, scene.bob.username, ["page item late"], "q")
    seen: list[int] = []
    before: int | None = None
    while True:
        extra: dict[str, Any] = {"limit": 3}
        if before is not None:
            extra["before"] = before
        answer = await search(scene.b, "page item", **extra)
        seen += [r["message"]["id"] for r in answer["results"]]
        if not answer["has_more"]:
            break
        before = seen[-1]
    assert seen == sorted(ids + more, reverse=True)
    query = urlencode({"q": "page item", "limit": 3, "before": ids[3]})
    status, body = await http.request("GET", f"/api/v1/search?{query}", token=scene.bob.token)
    assert status == 200, body
    assert [r["message"]["id"] for r in body["results"]] == ids[2::-1]
    assert body["has_more"] is False


BAD_SEARCHES: list[Any] = [
    None,
    [],
    {},
    {"query": ""},
    {"query": "   "},
    {"query": "- ?"},
    {"query": 5},
    {"query": "x" * 257},
    {"query": " ".join(f"w{i}x" for i in range(17))},
    {"query": "ok", "limit": 0},
    {"query": "ok", "limit": 51},
    {"query": "ok", "limit": True},
    {"query": "ok", "before": -1},
    {"query": "ok", "with": 7},
    {"query": "bad\x00nul"},
]


async def test_bad_searches_are_invalid(scene: Scene, http: Http) -> None:
    for payload in BAD_SEARCHES:
        answer = await scene.a.call("search", payload)
        assert answer["error"]["code"] == "invalid", (payload, answer)
    yourself = await scene.a.call("search", {"query": "ok", "with": scene.ann.username})
    assert yourself["error"]["code"] == "invalid"
    nobody = await scene.a.call("search", {"query": "ok", "with": "nobody-here"})
    assert nobody["error"]["code"] == "not_found"
    for query in ("", "q=", "q=ok&limit=0", "q=ok&before=x"):
        status, body = await http.request("GET", f"/api/v1/search?{query}", token=scene.ann.token)
        assert status == 400 and body["error"]["code"] == "invalid", (query, body)
    status, body = await http.request("GET", "/api/v1/search?q=ok")
    assert status == 401, body


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_two_nodes_find_what_the_other_committed(servers: Servers) -> None:
    """Several nodes share PostgreSQL: a send, an edit and a delete answered by one
    node are what a search on the other finds at once (the index is SQL's)."""
    a, b = await servers.start(), await servers.start()
    ann, bob = await asyncio.gather(Http(a.url).account("ann"), Http(b.url).account("bob"))
    on_a = await Device(a.url).connect(ann.token)
    on_b = await Device(b.url).connect(bob.token)
    await asyncio.gather(on_a.wait_synced(), on_b.wait_synced())
    ids = await send_all(on_a, bob.username, ["quartz before", "quartz doomed"], "n")
    assert found_bodies(await search(on_b, "quartz")) == ["quartz doomed", "quartz before"]
    edited = await on_a.call("edit", {"id": ids[0], "body": "onyx after", "client_id": "e"})
    deleted = await on_a.call("delete", {"id": ids[1], "for": "everyone"})
    assert edited["ok"] and deleted["ok"], (edited, deleted)
    assert found_bodies(await search(on_b, "quartz")) == []
    assert found_bodies(await search(on_b, "onyx")) == ["onyx after"]
    await on_a.disconnect()
    await on_b.disconnect()


# -- gone from the files (G10) --------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_removed_text_leaves_the_index_files(
    scene: Scene, server: RunningServer, database_url: str
) -> None:
    """G10 for the index: text deleted or edited away after FTS5 took it is out of the
    database file and its WAL once the indexer's merge and checkpoint ran; the words of
    the text are not searchable either way."""
    deleted, edited = "zqsearchdeleted4711", "zqsearchedited9044"
    filler = [f"filler message number {i} with words" for i in range(300)]
    await send_all(scene.a, scene.bob.username, filler[:150], "f")
    doomed = await scene.a.send(scene.bob.username, f"before {deleted} after", "g-1")
    changed = await scene.a.send(scene.bob.username, f"keep {edited} keep", "g-2")
    await send_all(scene.a, scene.bob.username, filler[150:], "h")
    await index_now(server)
    await server.node.db.erase_freed_text()
    blobs = [p.read_bytes() for p in database_files(database_url)]
    assert any(deleted.encode() in b for b in blobs), "the text never reached the files"
    assert (await scene.a.call("delete", {"id": doomed["message"]["id"], "for": "everyone"}))["ok"]
    answer = await scene.a.call(
        "edit", {"id": changed["message"]["id"], "body": "keep new keep", "client_id": "e"}
    )
    assert answer["ok"], answer

    def gone() -> bool:
        blobs = [p.read_bytes() for p in database_files(database_url)]
        return not any(
            t.encode() in b or t[2:12].encode() in b for b in blobs for t in (deleted, edited)
        )

    for _ in range(100):
        if gone():
            break
        await asyncio.sleep(0.1)
    assert gone(), "deleted or edited text is still in the database files"
    assert found_bodies(await search(scene.b, "zqsearch")) == []
    assert found_bodies(await search(scene.b, "filler number")) != []


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_graceful_stop_removes_text_from_the_index(
    settings: Settings, database_url: str, http: Http
) -> None:
    """A delete just before a graceful stop: the stop's own indexer round takes the
    text out of FTS5 and the files, though no round ran after the delete."""
    slow = dataclasses.replace(settings, resync_interval=3600)  # no rounds but the stop's
    running = await start_server(slow)
    scene = await two_way_scene(running, Http(running.url))
    secret = "zqstopsecret5521"
    sent = await scene.a.send(scene.bob.username, f"say {secret}", "s-1")
    await index_now(running)
    assert (await scene.a.call("delete", {"id": sent["message"]["id"], "for": "everyone"}))["ok"]
    await scene.close()
    await running.stop()
    blobs = [p.read_bytes() for p in database_files(database_url)]
    assert not any(secret.encode() in b for b in blobs)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_kill_9_before_the_indexer_ran_still_removes_the_text(
    processes: ServeGroup, database_url: str
) -> None:
    """kill -9 right after an acknowledged delete of indexed text: what the indexer
    owes (the retired text, the merge) is in SQL, so the next life's first round takes
    the text out of FTS5 and the files."""
    server = processes(database_url, env={"MESSENGER_RESYNC_INTERVAL": "3600"})
    await server.start()  # its only round is the one at start
    http = Http(server.url)
    ann, bob = await asyncio.gather(http.account("ann"), http.account("bob"))
    secret = "zqkilledsecret3310"
    device = await Device(server.url).connect(ann.token)
    await device.wait_synced()
    sent = await device.send(bob.username, f"the {secret} is here", "k-1")
    await send_all(device, bob.username, [f"filler {i}" for i in range(50)], "k")
    await device.disconnect()
    await server.kill()
    await server.start()  # this life's first round indexes the message
    for _ in range(100):
        if (await sql(database_url, "SELECT watermark FROM search_state"))[0][0] >= sent["message"][
            "id"
        ]:
            break
        await asyncio.sleep(0.05)
    device = await Device(server.url).connect(ann.token)
    await device.wait_synced()
    assert (await device.call("delete", {"id": sent["message"]["id"], "for": "everyone"}))["ok"]
    await server.kill()
    assert await sql(database_url, "SELECT count(*) FROM search_retired") == [(1,)]
    await server.start()

    def gone() -> bool:
        return not any(secret.encode() in p.read_bytes() for p in database_files(database_url))

    for _ in range(100):
        if gone():
            break
        await asyncio.sleep(0.1)
    assert gone(), "the deleted text is still in the database files after a restart"
    assert await sql(database_url, "SELECT purge_pending FROM search_state") == [(0,)]


# -- migration ----------------------------------------------------------------------------


async def test_migration_indexes_existing_messages(settings: Settings, database_url: str) -> None:
    """Messages stored before migration 0006 are found after it (the SQLite backfill,
    PostgreSQL's concurrent index build), and the downgrade runs."""
    running = await start_server(settings)
    scene = await two_way_scene(running, Http(running.url))
    await send_all(scene.a, scene.bob.username, ["older than the index", "東京の古い話"], "m")
    await scene.close()
    await running.stop()
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0005")
    upgrade(database_url)
    again = await start_server(settings)
    try:
        device = await Device(again.url).connect(scene.bob.token)
        await device.wait_synced()
        assert found_bodies(await search(device, "older")) == ["older than the index"]
        assert found_bodies(await search(device, "古い")) == []  # short: word start only
        assert found_bodies(await search(device, "の古い")) == ["東京の古い話"]
        await device.disconnect()
    finally:
        await again.stop()
    if make_url(database_url).get_backend_name() == "sqlite":
        rows = await sql(database_url, "SELECT watermark FROM search_state")
        assert rows[0][0] > 0


async def test_a_page_stays_within_the_answer_bound(scene: Scene, server: RunningServer) -> None:
    """Long matching bodies: a page stops before the answer byte bound, `has_more` on.
    (Characters outside the BMP are 12 bytes each as JSON escapes.)"""
    body = "bound " + "\U0001f600" * (server.settings.max_body - 10)
    count = server.settings.max_answer_bytes // (12 * server.settings.max_body) + 2
    await send_all(scene.a, scene.bob.username, [body] * count, "b")
    answer = await search(scene.b, "bound", limit=50)
    assert 1 <= len(answer["results"]) < count and answer["has_more"] is True
