"""`search`: full-text search over a million stored messages, on each database.

Per database: a fresh database is made at migration 0005 (before search existed),
bulk-loaded with the corpus of bench/search_corpus.py (1,000 users, each in 10
conversations), then upgraded to the search migration, timed: that is the index
build an operator's `messenger serve` runs once on an existing database, and the
database's size is taken before and after it. PostgreSQL is then ANALYZEd, as its
autovacuum would within a minute of such a change (SQLite gets nothing: it never
analyzes by itself). Then a real server starts on it, ~50 users log in, and
searches of one kind at a time go to it over HTTP (`GET /api/v1/search`) and, for
two kinds, the Socket.IO `search` event; one client alone first (the latency of a
lone query), then `clients` at once, each sending its next query when its answer
is in (a closed loop: the server is saturated, and latency includes queueing):

- a very common word (as common as "the"), and the third page of it (`before=`);
- the user's own rare word (the one answer known exactly: `planted_per_user` hits);
- 4-6 characters from inside a word; a two-character CJK word at the start of a
  sentence, and four characters from inside one (no spaces in either);
- an accented word typed without its accents (`cafe` for `café`);
- two words of one of the user's messages; one word with `with=` its conversation.

Every query comes from text that user has, so each must find something, and every
answer is checked (the caller's messages, newest first, every term in the body, the
hits marked in the snippet); answers that fail a check are counted as `bad`. Each
kind runs after a warm-up, until its queries are measured or `budget` seconds have
passed; its p50/p99 are of single requests (the third page's only, for paging), and
the server's CPU per query (plus that of every PostgreSQL process on the machine)
is taken over the concurrent run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from bench import accounts, report, servers
from bench.progress import Progress
from bench.rawclient import ProtocolError, RawClient
from bench.scenarios import Settings
from bench.search_corpus import (
    ACCENTED,
    CJK,
    CJK_ENDS,
    PLAIN,
    Corpus,
    CorpusPlan,
    Sample,
    fold,
    planted_word,
    queryable_accented,
    seed,
    username,
)
from bench.servers import Server
from bench.stats import summarize
from messenger.delivery.search_index import MERGE_PAGES
from messenger.store.migrate import alembic_config, upgrade
from messenger.store.search import change_documents, merge_step, take_out_retired

BASE_REVISION = "0005"
SEARCH_REVISION = "0006"
HIT_START, HIT_END = "\x02", "\x03"
TIMEOUT = 30.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class SearchSettings:
    """Sizes of the `search` scenario (`--search-messages`, `--search-queries`)."""

    messages: int = 1_000_000
    # Measured queries per kind and database, after `warmup` unmeasured ones, from
    # `clients` at once; a quarter as many before them from one client alone.
    queries: int = 200
    warmup: int = 10
    clients: int = 4
    # Seconds one kind may run on one database before it stops short.
    budget: float = 60.0
    limit: int = 20
    searchers: int = 50

    def plan(self) -> CorpusPlan:
        """1,000 users at a million messages; fewer (not under 50) for fewer messages,
        so that each user keeps about 2,000 messages in its conversations."""
        users = max(50, min(1_000, self.messages // 1_000))
        return CorpusPlan(messages=self.messages, users=users, searchers=self.searchers)


def settings_for(messages: int | None, queries: int | None, quick: bool) -> SearchSettings:
    base = SearchSettings(messages=20_000, queries=50, budget=20.0) if quick else SearchSettings()
    fields = {"messages": messages, "queries": queries}
    return SearchSettings(**{**base.__dict__, **{k: v for k, v in fields.items() if v}})


# -- the queries ---------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    kind: str
    user: int
    q: str
    with_user: str | None = None
    pages: int = 1
    exact: int | None = None  # the number of results that must come back
    socket: bool = False

    def __str__(self) -> str:
        shown = f"{username(self.user)} {self.q!r}"
        return shown + (f" with {self.with_user}" if self.with_user else "")

    def terms(self) -> list[str]:
        return [fold(term) for term in self.q.split()]


Builder = Callable[[random.Random, Corpus, int], Query | None]
QUERYABLE_ACCENTED = frozenset(queryable_accented())


def _sample(rng: random.Random, corpus: Corpus, user: int, kind: str) -> Sample | None:
    kept = corpus.samples[user].kept.get(kind, [])
    return rng.choice(kept) if kept else None


def _common(rng: random.Random, corpus: Corpus, user: int) -> Query:
    return Query("common word", user, rng.choice(corpus.vocab[:3]))


def _rare(rng: random.Random, corpus: Corpus, user: int) -> Query:
    return Query("rare word", user, planted_word(user), exact=corpus.plan.planted_per_user)


def _substring(rng: random.Random, corpus: Corpus, user: int) -> Query | None:
    sample = _sample(rng, corpus, user, PLAIN)
    words = [w for w in sample.body.words if len(w) >= 6] if sample else []
    if not words:
        return None
    word = rng.choice(words)
    size = rng.randint(4, min(6, len(word) - 2))
    start = rng.randint(1, len(word) - size - 1)  # neither its first nor last letter
    return Query("substring 4-6", user, word[start : start + size])


def _cjk_word(rng: random.Random, corpus: Corpus, user: int) -> Query | None:
    sample = _sample(rng, corpus, user, CJK)
    return Query("CJK 2 chars", user, sample.body.words[0]) if sample else None


def _cjk_phrase(rng: random.Random, corpus: Corpus, user: int) -> Query | None:
    sample = _sample(rng, corpus, user, CJK)
    if sample is None:
        return None
    text = sample.body.text.rstrip("".join(CJK_ENDS))
    starts = range(1, len(text) - 3) or range(len(text) - 3)
    if not starts:
        return None
    start = rng.choice(starts)
    return Query("CJK 4 chars", user, text[start : start + 4])


def _unaccented(rng: random.Random, corpus: Corpus, user: int) -> Query | None:
    sample = _sample(rng, corpus, user, ACCENTED)
    words = [w for w in sample.body.words if w in QUERYABLE_ACCENTED] if sample else []
    return Query("accent-free", user, fold(rng.choice(words))) if words else None


def _two_terms(rng: random.Random, corpus: Corpus, user: int) -> Query | None:
    sample = _sample(rng, corpus, user, PLAIN)
    words = sorted(set(sample.body.words)) if sample else []
    if len(words) < 2:
        return None
    return Query("two terms", user, " ".join(rng.sample(words, 2)))


def _with(rng: random.Random, corpus: Corpus, user: int) -> Query | None:
    sample = _sample(rng, corpus, user, PLAIN)
    if sample is None:
        return None
    return Query("with=", user, rng.choice(sample.body.words), with_user=username(sample.peer))


def _third_page(rng: random.Random, corpus: Corpus, user: int) -> Query:
    return Query("page 3", user, rng.choice(corpus.vocab[:3]), pages=3)


def _over_socket(builder: Builder, kind: str) -> Builder:
    def build(rng: random.Random, corpus: Corpus, user: int) -> Query | None:
        query = builder(rng, corpus, user)
        return None if query is None else Query(**{**query.__dict__, "kind": kind, "socket": True})

    return build


KINDS: tuple[Builder, ...] = (
    _common,
    _rare,
    _substring,
    _cjk_word,
    _cjk_phrase,
    _unaccented,
    _two_terms,
    _with,
    _third_page,
    _over_socket(_common, "common word, socket"),
    _over_socket(_rare, "rare word, socket"),
)


def queries_of(builder: Builder, corpus: Corpus, count: int, seed: int) -> list[Query]:
    """`count` queries of one kind, the searching users in turn."""
    rng = random.Random(seed)
    users = corpus.plan.searching_users()
    out: list[Query] = []
    for i in range(count * 4):
        if len(out) == count:
            break
        query = builder(rng, corpus, users[i % len(users)])
        if query is not None:
            out.append(query)
    return out


def check(query: Query, pages: list[Any], limit: int) -> list[str]:
    """What is wrong with the answers to one query (its pages in order), as short
    sentences; none for a right answer."""
    problems: list[str] = []
    caller, terms = username(query.user), query.terms()
    last: int | None = None
    for number, page in enumerate(pages, start=1):
        results = page.get("results") if isinstance(page, dict) else None
        if not isinstance(results, list) or not isinstance(page.get("has_more"), bool):
            return [f"page {number} is not an answer: {str(page)[:200]}"]
        if len(results) > limit:
            problems.append(f"page {number}: {len(results)} results, over the limit {limit}")
        if number < len(pages) and (len(results) < limit or not page["has_more"]):
            problems.append(f"page {number} of {len(pages)} is the last: {len(results)} results")
        for result in results:
            problems += _result_problems(result, caller, query.with_user, terms, last)
            message = result.get("message") if isinstance(result, dict) else None
            if isinstance(message, dict) and isinstance(message.get("id"), int):
                last = message["id"]
    final = pages[-1]["results"]
    if not final:
        problems.append("nothing found, though the caller has a message that matches")
    if query.exact is not None and (len(final) != query.exact or pages[-1]["has_more"]):
        problems.append(
            f"{len(final)} results (has_more {pages[-1]['has_more']}), not {query.exact}"
        )
    return problems


def _result_problems(
    result: Any, caller: str, peer: str | None, terms: list[str], before: int | None
) -> list[str]:
    message = result.get("message") if isinstance(result, dict) else None
    snippet = result.get("snippet") if isinstance(result, dict) else None
    if not isinstance(message, dict) or not isinstance(snippet, str):
        return [f"not a result: {str(result)[:200]}"]
    problems: list[str] = []
    ident, body = message.get("id"), message.get("body")
    if not isinstance(ident, int) or (before is not None and ident >= before):
        problems.append(f"message {ident} out of order (after {before})")
    parties = {message.get("from"), message.get("to")}
    if caller not in parties or (peer is not None and peer not in parties):
        problems.append(f"message {ident} is between {sorted(map(str, parties))}")
    if not isinstance(body, str) or any(term not in fold(body) for term in terms):
        problems.append(f"message {ident} lacks a term of {terms}: {str(body)[:120]!r}")
    hits = [part.split(HIT_END, 1)[0] for part in snippet.split(HIT_START)[1:]]
    if (
        not hits
        or snippet.count(HIT_START) != snippet.count(HIT_END)
        or not all(any(t in fold(h) or fold(h) in t for t in terms) for h in hits if h)
    ):
        problems.append(f"message {ident}: snippet hits do not match {terms}: {snippet!r}")
    return problems


# -- the clients ---------------------------------------------------------------------


@dataclass
class Outcome:
    ms: float
    results: int
    has_more: bool
    problems: list[str]


@dataclass
class Clients:
    """What the searching clients share: the HTTP pool (one connection per client),
    tokens, and one socket per user, opened on first use (on a session of their own:
    a held websocket would take a connection of the pool), one call at a time on
    each, dropped on any error and opened again by the next call."""

    url: str
    http: aiohttp.ClientSession
    ws_http: aiohttp.ClientSession
    tokens: dict[int, str]
    limit: int
    sockets: dict[int, tuple[RawClient, asyncio.Lock]] = field(default_factory=dict)

    async def page(self, query: Query, before: int | None) -> tuple[float, Any]:
        """One page of `query`: milliseconds from request to decoded answer, and the
        answer (HTTP's body, or the socket's answer without its `ok`)."""
        if query.socket:
            return await self._socket_page(query, before)
        params = {"q": query.q, "limit": str(self.limit)}
        if query.with_user:
            params["with"] = query.with_user
        if before is not None:
            params["before"] = str(before)
        headers = {"Authorization": f"Bearer {self.tokens[query.user]}"}
        t0 = time.perf_counter()
        async with self.http.get(f"{self.url}/api/v1/search", params=params, headers=headers) as r:
            answer = await r.json(content_type=None) if r.status == 200 else await r.text()
        ms = (time.perf_counter() - t0) * 1000
        return ms, answer if r.status == 200 else f"HTTP {r.status}: {answer[:200]}"

    async def _socket_page(self, query: Query, before: int | None) -> tuple[float, Any]:
        client, lock = self.sockets.setdefault(
            query.user, (RawClient(self.url, self.ws_http), asyncio.Lock())
        )
        payload: dict[str, Any] = {"query": query.q, "limit": self.limit}
        if query.with_user:
            payload["with"] = query.with_user
        if before is not None:
            payload["before"] = before
        async with lock:
            try:
                if not client.connected:
                    await client.connect({"token": self.tokens[query.user]})
                t0 = time.perf_counter()
                answer = await asyncio.wait_for(client.call("search", payload), TIMEOUT)
                ms = (time.perf_counter() - t0) * 1000
            except BaseException:
                del self.sockets[query.user]
                await client.close()
                raise
        if isinstance(answer, dict) and answer.get("ok") is True:
            return ms, {k: v for k, v in answer.items() if k != "ok"}
        return ms, answer

    async def close(self) -> None:
        for client, _ in self.sockets.values():
            await client.close()

    async def run(self, query: Query) -> Outcome:
        """Every page of the query; the time and size of the last one."""
        pages: list[Any] = []
        before: int | None = None
        ms = 0.0
        for _ in range(query.pages):
            ms, answer = await self.page(query, before)
            pages.append(answer)
            if not isinstance(answer, dict) or not answer.get("results"):
                break
            last = answer["results"][-1]
            before = last.get("message", {}).get("id") if isinstance(last, dict) else None
        if len(pages) < query.pages or not all(isinstance(p, dict) for p in pages):
            final = pages[-1]
            shown = final if not isinstance(final, dict) else f"{len(pages)} page(s) only"
            return Outcome(ms, 0, False, [f"{query}: failed: {str(shown)[:200]}"])
        final_results = pages[-1].get("results")
        count = len(final_results) if isinstance(final_results, list) else 0
        problems = [f"{query}: {p}" for p in check(query, pages, self.limit)]
        return Outcome(ms, count, pages[-1].get("has_more") is True, problems)


async def _drain(
    clients: Clients, queries: list[Query], workers: int, budget: float
) -> list[Outcome]:
    """Run `queries` from `workers` concurrent clients until done or `budget` seconds."""
    todo = iter(queries)
    deadline = time.monotonic() + budget
    outcomes: list[Outcome] = []

    async def worker() -> None:
        for query in todo:
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            try:
                outcomes.append(await clients.run(query))
            except (TimeoutError, aiohttp.ClientError, ProtocolError) as exc:
                ms = (time.perf_counter() - t0) * 1000
                outcomes.append(Outcome(ms, 0, False, [f"{type(exc).__name__}: {exc}"[:200]]))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return outcomes


def _row(
    db: str,
    kind: str,
    socket: bool,
    outcomes: list[Outcome],
    seconds: float,
    cpu: tuple[float, float],
) -> dict[str, Any]:
    n = len(outcomes)
    problems = [p for o in outcomes for p in o.problems]
    return {
        "db": db,
        "kind": kind,
        "transport": "socket" if socket else "http",
        "queries": n,
        **summarize([o.ms for o in outcomes]),
        "results_mean": round(statistics.fmean(o.results for o in outcomes), 1) if n else 0.0,
        "has_more_pct": round(100 * sum(o.has_more for o in outcomes) / n, 1) if n else 0.0,
        "queries_per_s": round(n / seconds, 1) if seconds > 0 else 0.0,
        "server_cpu_ms": round(1000 * cpu[0] / n, 2) if n else 0.0,
        "db_cpu_ms": round(1000 * cpu[1] / n, 2) if n else 0.0,
        "bad": sum(1 for o in outcomes if o.problems),
        "problems": problems[:5],
    }


async def _measure(
    server: Server, db: str, corpus: Corpus, tokens: dict[int, str], ss: SearchSettings
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=ss.clients)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    pg = servers.postgres_cpu_seconds if db == "postgresql" else (lambda: 0.0)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        aiohttp.ClientSession() as ws_http,
    ):
        clients = Clients(server.url, http, ws_http, tokens, ss.limit)
        try:
            for seed_, builder in enumerate(KINDS):
                alone = max(1, ss.queries // 4)
                queries = queries_of(builder, corpus, ss.warmup + alone + ss.queries, seed_)
                if not queries:
                    continue
                first = queries[0]
                await _drain(clients, queries[: ss.warmup], ss.clients, ss.budget)
                by_one = queries[ss.warmup : ss.warmup + alone]
                lone = await _drain(clients, by_one, 1, ss.budget / 4)
                cpu0, pg0, t0 = server.cpu_seconds(), pg(), time.monotonic()
                rest = queries[ss.warmup + alone :]
                outcomes = await _drain(clients, rest, ss.clients, ss.budget)
                seconds = time.monotonic() - t0
                cpu = (server.cpu_seconds() - cpu0, pg() - pg0)
                row = _row(db, first.kind, first.socket, outcomes, seconds, cpu)
                row["alone"] = summarize([o.ms for o in lone])
                row["bad"] += sum(1 for o in lone if o.problems)
                row["problems"] = [*row["problems"], *(p for o in lone for p in o.problems)][:5]
                rows.append(row)
        finally:
            await clients.close()
    return rows


# -- the databases -------------------------------------------------------------------


def _revisions(url: str) -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(url))
    return {rev.revision for rev in script.walk_revisions()}


def _size_mb(url: str) -> float:
    """The database's bytes on disk: SQLite's file after a checkpoint into it (so the
    WAL holds nothing), PostgreSQL's pg_database_size."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(path + "-wal")
        total = os.path.getsize(path) + (wal.stat().st_size if wal.exists() else 0)
        return round(total / MIB, 1)
    size = int(asyncio.run(_pg_value(url, "SELECT pg_database_size(current_database())")))
    return round(size / MIB, 1)


async def _pg_value(url: str, sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _timed(work: Callable[[], object]) -> float:
    t0 = time.monotonic()
    work()
    return round(time.monotonic() - t0, 1)


def _build(
    url: str, db: str, ss: SearchSettings, progress: Progress
) -> tuple[Corpus, dict[str, Any]]:
    """Seed at 0005, then upgrade through the search migration, timed and weighed."""
    plan = ss.plan()
    with progress.step(f"search: seed {plan.messages:,} messages at {BASE_REVISION} on {db}"):
        upgrade(url, BASE_REVISION)
        corpus = seed(url, plan)
        before = _size_mb(url)
    info: dict[str, Any] = {
        "db": db,
        "messages": plan.messages,
        "users": plan.users,
        "seed_s": round(corpus.seconds, 1),
        "size_before_mb": before,
    }
    with progress.step(f"search: upgrade to head (the search index) on {db}"):
        if SEARCH_REVISION in _revisions(url):
            info["index_build_s"] = _timed(lambda: upgrade(url, SEARCH_REVISION))
            info["size_after_mb"] = _size_mb(url)
        else:
            info["index_build_s"] = None  # not written yet: measured as no index at all
        info["later_migrations_s"] = _timed(lambda: upgrade(url, "heads"))
        if db == "postgresql":
            info["analyze_s"] = _timed(lambda: asyncio.run(_pg_value(url, "ANALYZE")))
    return corpus, info


def _one(
    s: Settings, ss: SearchSettings, db: str, progress: Progress
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with servers.database(db, s.workdir) as url:
        corpus, info = _build(url, db, ss, progress)
        with progress.step(f"search: {len(KINDS)} kinds of query on {db}"):
            with servers.running(servers.start_messenger(s.workdir, url, migrate=False)) as server:
                users = corpus.plan.searching_users()
                t0 = time.monotonic()
                peers = accounts.named_peers(server.url, [username(u) for u in users])
                info["logins_s"] = round(time.monotonic() - t0, 1)
                tokens = {u: p.auth["token"] for u, p in zip(users, peers, strict=True)}
                info["rss_mb"] = round(server.rss() / MIB, 1)
                info["load_before"] = round(os.getloadavg()[0], 2)
                rows = asyncio.run(_measure(server, db, corpus, tokens, ss))
                info["rss_after_mb"] = round(server.rss() / MIB, 1)
                info["load_after"] = round(os.getloadavg()[0], 2)
        if db == "sqlite":
            with progress.step("search: removing one text from the FTS5 index (a whole merge)"):
                info.update(_purge_cost(url))
    return info, rows


def _purge_cost(url: str) -> dict[str, Any]:
    """What G10 costs the index after one edit or delete on SQLite: the indexer takes
    the text out and merges each FTS5 table whole, in steps of `MERGE_PAGES` pages, each
    its own transaction (the writer's batches run between them). Run here on the
    database the queries used, as the indexer runs it, without a server."""
    engine = create_engine(make_url(url).set(drivername="sqlite"))
    try:
        with engine.begin() as conn:
            newest = conn.exec_driver_sql("SELECT max(message_id) FROM search_documents")
            victim = int(newest.scalar_one())
            change_documents(conn, {}, [victim])
            take_out_retired(conn)
        durations = []
        done = False
        started = time.perf_counter()
        while not done:
            step_started = time.perf_counter()
            with engine.begin() as conn:
                done = merge_step(conn, MERGE_PAGES)
            durations.append(time.perf_counter() - step_started)
        total = time.perf_counter() - started
    finally:
        engine.dispose()
    durations.sort()
    return {
        "purge_s": round(total, 2),
        "purge_steps": len(durations),
        "purge_step_p50_ms": round(durations[len(durations) // 2] * 1000, 1),
        "purge_step_max_ms": round(durations[-1] * 1000, 1),
    }


def steps(s: Settings) -> int:
    return 3 * len(s.dbs)


def search(s: Settings, ss: SearchSettings, progress: Progress) -> dict[str, Any]:
    """Seed, index and query each database in turn."""
    builds: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for db in s.dbs:
        info, measured = _one(s, ss, db, progress)
        builds.append(info)
        rows += measured
    return {"databases": builds, "queries": rows, "settings": dict(ss.__dict__)}


BUILD_COLUMNS = [
    ("db", "db"),
    ("messages", "messages"),
    ("users", "users"),
    ("seed s", "seed_s"),
    ("MB before", "size_before_mb"),
    ("index build s", "index_build_s"),
    ("MB after", "size_after_mb"),
    ("later migrations s", "later_migrations_s"),
    ("ANALYZE s", "analyze_s"),
    ("server RSS MB", "rss_after_mb"),
    ("purge s", "purge_s"),
    ("purge steps", "purge_steps"),
    ("step p50 ms", "purge_step_p50_ms"),
    ("step max ms", "purge_step_max_ms"),
    ("load before", "load_before"),
    ("load after", "load_after"),
]
QUERY_COLUMNS = [
    ("db", "db"),
    ("query", "kind"),
    ("queries", "queries"),
    ("alone p50 ms", "alone.p50_ms"),
    ("alone p99 ms", "alone.p99_ms"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("max ms", "max_ms"),
    ("results", "results_mean"),
    ("has_more %", "has_more_pct"),
    ("queries/s", "queries_per_s"),
    ("server CPU ms/query", "server_cpu_ms"),
    ("PG CPU ms/query", "db_cpu_ms"),
    ("bad", "bad"),
]


def markdown(results: dict[str, Any]) -> str:
    """The scenario's two tables (bench/report.py knows the other scenarios')."""
    found = results.get("search")
    if not found:
        return ""
    parts = [
        "### search: seed and index build\n\n" + report._table(BUILD_COLUMNS, found["databases"]),
        f"### search: one client alone, then {found['settings']['clients']} concurrent "
        f"clients; limit {found['settings']['limit']}\n\n"
        + report._table(QUERY_COLUMNS, found["queries"]),
    ]
    bad = [r for r in found["queries"] if r["bad"]]
    for row in bad:
        parts.append(
            f"**{row['db']} {row['kind']}: {row['bad']} bad**: " + "; ".join(row["problems"])
        )
    return "\n\n".join(parts) + "\n"
