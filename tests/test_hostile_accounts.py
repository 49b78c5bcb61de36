"""Accounts under attack, against real servers: registration floods (per address and
on the whole node, `X-Forwarded-For` only from a trusted proxy), taken names that must
cost no hashing, a login flood bounded by the hashing pool (503 `unavailable`, memory
held to the pool's threads), the login limits' order (one address cannot lock accounts
out), rehashing at a raised argon2 cost with failures that take as long for an old
account as for an unknown name, and JSON nested too deeply to decode."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp

from messenger.config import Settings
from messenger.transport.rest import (
    MAX_REQUEST_BYTES,
    REGISTER_GLOBAL_BURST_FACTOR,
    REGISTER_GLOBAL_RATE,
)
from tests.faults.tools import rss_kb
from tests.support import PASSWORD, RunningServer, sql, start_server, unique_name

USERS, SESSIONS = "/api/v1/users", "/api/v1/sessions"
# The loopback address the tests connect from, as a proxy the server may trust.
PROXY = "127.0.0.1"
MIB = 1024


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"]["code"])
        return None

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body!r})"


async def post(
    session: aiohttp.ClientSession,
    url: str,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    forwarded_for: str | None = None,
) -> Answer:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with session.post(url + path, json=body, data=data, headers=headers) as response:
        if response.content_type == "application/json":
            answer: Any = await response.json()
        else:
            answer = await response.text()
        return Answer(response.status, dict(response.headers), answer)


def credentials(username: str, password: str = PASSWORD) -> dict[str, str]:
    return {"username": username, "password": password}


def client() -> aiohttp.ClientSession:
    # No cap on connections: a flood is many requests at once.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


def assert_throttled(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status and answer.code == code, answer
    assert int(answer.headers["Retry-After"]) >= 1, answer.headers


# -- registration ---------------------------------------------------------------------


async def test_registration_is_limited_per_address(settings: Settings) -> None:
    """One address registers a burst of `register_burst` accounts, then 429
    `rate_limited` with a Retry-After of about the minute one more takes; a malformed
    body is still 400 `invalid` (checked first), and nothing refused is stored."""
    running = await start_server(settings.replace(register_burst=3))
    try:
        async with client() as http:
            made = [
                await post(http, running.url, USERS, credentials(unique_name("reg")))
                for _ in range(3)
            ]
            assert [answer.status for answer in made] == [201] * 3, made
            refused = unique_name("refused")
            limited = await post(http, running.url, USERS, credentials(refused))
            assert_throttled(limited, 429, "rate_limited")
            assert 30 <= int(limited.headers["Retry-After"]) <= 60, limited.headers
            bad = await post(http, running.url, USERS, {"username": "ab"})
            assert bad.status == 400 and bad.code == "invalid", bad
        rows = await sql(
            settings.database_url, f"SELECT count(*) FROM users WHERE username = '{refused}'"
        )
        assert rows == [(0,)]
    finally:
        await running.stop()


async def test_registration_is_limited_on_the_whole_node(settings: Settings) -> None:
    """Many addresses (behind a trusted proxy), each within its own limit, together get
    the node's burst of registrations and a few a second more, then 429."""
    burst = 2
    # Room in the hashing pool for every registration the limits let through at once.
    running = await start_server(
        settings.replace(register_burst=burst, trusted_proxies=(PROXY,), hash_queue=64)
    )
    try:
        attempts = 60
        started = time.monotonic()
        async with client() as http:
            answers = await asyncio.gather(
                *(
                    post(
                        http,
                        running.url,
                        USERS,
                        credentials(unique_name("many")),
                        forwarded_for=f"203.0.113.{i + 1}",
                    )
                    for i in range(attempts)
                )
            )
        elapsed = time.monotonic() - started
        made = [answer for answer in answers if answer.status == 201]
        limited = [answer for answer in answers if answer.status == 429]
        assert len(made) + len(limited) == attempts, answers
        most = REGISTER_GLOBAL_BURST_FACTOR * burst + REGISTER_GLOBAL_RATE * elapsed + 1
        assert REGISTER_GLOBAL_BURST_FACTOR * burst <= len(made) <= most, (len(made), elapsed)
        for answer in limited:
            assert_throttled(answer, 429, "rate_limited")
    finally:
        await running.stop()


async def test_forwarded_for_counts_only_from_a_trusted_proxy(settings: Settings) -> None:
    """Behind a trusted proxy each forwarded client has its own registration budget
    (and a forged entry on the left changes nothing); from anyone else the header is
    ignored, so it cannot buy a fresh budget per request."""
    limited = settings.replace(register_burst=1)
    trusted = await start_server(limited.replace(trusted_proxies=(PROXY,)))
    try:
        async with client() as http:

            async def register(forwarded_for: str) -> Answer:
                return await post(
                    http,
                    trusted.url,
                    USERS,
                    credentials(unique_name("fwd")),
                    forwarded_for=forwarded_for,
                )

            assert (await register("198.51.100.1")).status == 201
            assert_throttled(await register("198.51.100.1"), 429, "rate_limited")
            assert_throttled(await register("192.0.2.77, 198.51.100.1"), 429, "rate_limited")
            assert (await register("198.51.100.2")).status == 201
    finally:
        await trusted.stop()
    untrusted = await start_server(limited.replace(trusted_proxies=("10.255.0.1",)))
    try:
        async with client() as http:
            first = await post(
                http,
                untrusted.url,
                USERS,
                credentials(unique_name("fwd")),
                forwarded_for="198.51.100.3",
            )
            assert first.status == 201, first
            other = await post(
                http,
                untrusted.url,
                USERS,
                credentials(unique_name("fwd")),
                forwarded_for="198.51.100.4",
            )
            assert_throttled(other, 429, "rate_limited")
    finally:
        await untrusted.stop()


async def test_taken_name_flood_costs_no_hashing(settings: Settings) -> None:
    """Registering a taken name (in any case) is answered 409 from one read, before
    any argon2 work: a flood of them leaves the hashing pool idle."""
    running = await start_server(settings.replace(argon2_memory_kib=16 * MIB))
    try:
        pool = running.node.hash_pool
        name = unique_name("taken")
        async with client() as http:
            first = await post(http, running.url, USERS, credentials(name))
            assert first.status == 201, first
            before = pool.completed
            answers = await asyncio.gather(
                *(
                    post(http, running.url, USERS, credentials(name.upper(), f"guess {i:04}"))
                    for i in range(60)
                )
            )
        assert {(answer.status, answer.code) for answer in answers} == {(409, "username_taken")}
        assert pool.completed == before and pool.refused == 0, (pool.completed, before)
    finally:
        await running.stop()


# -- the hashing pool ------------------------------------------------------------------


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Samples this process's RSS (the server runs in it) until the block ends; the
    list holds the highest seen (KiB)."""
    peak = [rss_kb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], rss_kb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


async def test_login_flood_is_bounded_by_the_hashing_pool(settings: Settings) -> None:
    """A flood of concurrent logins from one client: the pool runs `hash_workers`
    verifies at once with `hash_queue` waiting, and answers the rest 503 `unavailable`
    with Retry-After at once; memory grows by about the workers' argon2 memory, not
    the flood's; afterwards a normal login succeeds."""
    memory_kib = 32 * MIB
    running = await start_server(
        settings.replace(argon2_memory_kib=memory_kib, hash_workers=1, hash_queue=2, login_burst=0)
    )
    try:
        pool = running.node.hash_pool
        name = unique_name("flood")
        async with client() as http:
            made = await post(http, running.url, USERS, credentials(name))
            assert made.status == 201, made
            # Warm: one login, so the worker thread's argon2 memory is counted in the
            # baseline.
            assert (await post(http, running.url, SESSIONS, credentials(name))).status == 201
            baseline = rss_kb()
            with peak_rss() as peak:
                answers = await asyncio.gather(
                    *(
                        post(
                            http,
                            running.url,
                            SESSIONS,
                            credentials(name if i % 2 else unique_name("ghost"), "wrong pass"),
                        )
                        for i in range(80)
                    )
                )
            outcomes = sorted({(answer.status, answer.code) for answer in answers})
            assert outcomes == [(401, "bad_credentials"), (503, "unavailable")], answers
            for answer in answers:
                if answer.status == 503:
                    assert_throttled(answer, 503, "unavailable")
            assert pool.refused >= 1 and pool.in_flight == 0
            growth_mib = (peak[0] - baseline) / MIB
            # One worker's argon2 memory, and room for the flood's sockets and buffers.
            assert growth_mib <= 2 * memory_kib / MIB + 24, growth_mib
            again = await post(http, running.url, SESSIONS, credentials(name))
            assert again.status == 201, again
    finally:
        await running.stop()


# -- login limits ---------------------------------------------------------------------


async def test_one_address_over_its_limit_cannot_lock_accounts_out(settings: Settings) -> None:
    """An address past its own login limit is refused before any username is charged:
    its tries at someone's name do not lock that account for its owner elsewhere."""
    running = await start_server(settings.replace(login_burst=5, trusted_proxies=(PROXY,)))
    attacker, owner = "203.0.113.66", "198.51.100.9"
    try:
        victim = unique_name("victim")
        async with client() as http:
            made = await post(http, running.url, USERS, credentials(victim))
            assert made.status == 201, made
            # The attacker spends its address burst (five times the name burst).
            for _ in range(26):
                await post(
                    http,
                    running.url,
                    SESSIONS,
                    credentials(unique_name("guess"), "wrong pass"),
                    forwarded_for=attacker,
                )
            tries = [
                await post(
                    http,
                    running.url,
                    SESSIONS,
                    credentials(victim, f"wrong pass {i}"),
                    forwarded_for=attacker,
                )
                for i in range(30)
            ]
            own = await post(http, running.url, SESSIONS, credentials(victim), forwarded_for=owner)
            assert own.status == 201, own
            # The address refills at one a second: a few of its tries may reach the
            # name, fewer than the name's burst of five.
            limited = [answer for answer in tries if answer.status == 429]
            assert len(limited) >= 26, tries
            for answer in limited:
                assert_throttled(answer, 429, "rate_limited")
    finally:
        await running.stop()


# -- rehash and level failure times -----------------------------------------------------


async def failure_seconds(http: aiohttp.ClientSession, url: str, username: str) -> float:
    started = time.perf_counter()
    answer = await post(http, url, SESSIONS, credentials(username, "wrong password"))
    elapsed = time.perf_counter() - started
    assert answer.status == 401 and answer.code == "bad_credentials", answer
    return elapsed


async def test_raised_cost_rehashes_and_failures_take_equally_long(settings: Settings) -> None:
    """After the argon2 cost is raised, a wrong password for an account hashed at the
    old (cheaper) cost takes as long as one for an unknown name or an account at the
    current cost (failures are padded to a current-cost verify); its right password
    logs in and stores a new hash at the current cost."""
    old_cost = settings.replace(argon2_time_cost=1, argon2_memory_kib=1 * MIB)
    first = await start_server(old_cost)
    old = unique_name("old")
    try:
        async with client() as http:
            assert (await post(http, first.url, USERS, credentials(old))).status == 201
    finally:
        await first.stop()

    raised = settings.replace(argon2_time_cost=1, argon2_memory_kib=32 * MIB, login_burst=0)
    running = await start_server(raised)
    try:
        async with client() as http:
            current = unique_name("current")
            assert (await post(http, running.url, USERS, credentials(current))).status == 201
            times: dict[str, list[float]] = {"old": [], "unknown": [], "current": []}
            for _ in range(9):
                times["old"].append(await failure_seconds(http, running.url, old))
                times["unknown"].append(
                    await failure_seconds(http, running.url, unique_name("ghost"))
                )
                times["current"].append(await failure_seconds(http, running.url, current))
            medians = {kind: statistics.median(values) for kind, values in times.items()}
            for kind in ("old", "current"):
                ratio = medians[kind] / medians["unknown"]
                assert 0.5 <= ratio <= 2.0, (kind, medians, times)

            (stored,) = await sql(
                raised.database_url, f"SELECT password_hash FROM users WHERE username = '{old}'"
            )
            assert "m=1024," in stored[0], stored
            assert (await post(http, running.url, SESSIONS, credentials(old))).status == 201
            (rehashed,) = await sql(
                raised.database_url, f"SELECT password_hash FROM users WHERE username = '{old}'"
            )
            assert "m=32768,t=1," in rehashed[0], rehashed
            assert (await post(http, running.url, SESSIONS, credentials(old))).status == 201
    finally:
        await running.stop()


# -- nested JSON ------------------------------------------------------------------------


async def test_deeply_nested_json_is_invalid_not_internal(server: RunningServer) -> None:
    """A body nested deeper than the decoder goes is 400 `invalid` on every route that
    reads JSON, and one over the size limit 413 `too_large`; never 500."""
    nested = [b"[" * 60_000, b'{"a":' * 12_000, b'{"a": [' * 8_000]
    async with client() as http:
        for path in (USERS, SESSIONS):
            for body in nested:
                assert len(body) <= MAX_REQUEST_BYTES
                answer = await post(http, server.url, path, data=body)
                assert answer.status == 400 and answer.code == "invalid", (path, body[:8], answer)
            huge = await post(http, server.url, path, data=b"[" * 100_000)
            assert huge.status == 413 and huge.code == "too_large", huge
        # The server is fine afterwards.
        name = unique_name("after")
        assert (await post(http, server.url, USERS, credentials(name))).status == 201
