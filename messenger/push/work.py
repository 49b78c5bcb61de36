"""What the pusher decides inside its claim transaction, and what it writes after the
sends: plain data in, plain data out, like the writer's batch.

A subscription is looked at when its user's stream moved or its `due_at` came. If
undelivered messages wait that no push told of, a push is due once the oldest is
`delay` old and the user was last seen `delay` ago; before that, `due_at` says when
to look again. If none wait but the last push said something was unread and now
nothing is, a push says `unread: 0` (read elsewhere). A push due is leased to this
pusher for `LEASE`, so that no other node's pusher takes it meanwhile, and a pusher
killed mid-push leaves it to be taken again when the lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping

from messenger.store.push import (
    LEASE,
    candidates,
    newest_waiting,
    unread_count,
    update_subscriptions,
    waiting_since,
)

# Subscriptions looked at per claim.
CLAIM_LIMIT = 200
# Retries: 2 s doubling up to 30 minutes; after this many failures in a row the
# subscription is removed.
BACKOFF_FIRST = 2.0
BACKOFF_MOST = 1800.0
FAILURES_MOST = 16


@dataclass(frozen=True)
class Job:
    """One push to make."""

    sub_id: int
    kind: str
    url: str
    p256dh: str | None
    auth: str | None
    secret: str | None
    user_id: int
    username: str
    head: int
    # Stream position of the newest message told of (`pushed_seq` after success).
    newest_seq: int
    failures: int
    payload: dict[str, Any] = field(default_factory=dict)
    # Says `unread: 0` after everything was read elsewhere: it goes whether the user
    # is online or not (their other devices clear the notification).
    clearing: bool = False


@dataclass(frozen=True)
class Claimed:
    jobs: list[Job]
    # The claim looked at CLAIM_LIMIT subscriptions: more may be waiting.
    more: bool


def claim(conn: Connection, now: datetime, delay: timedelta, skip_locked: bool) -> Claimed:
    """Look at the subscriptions that need it; lease and return the pushes due."""
    jobs: list[Job] = []
    changes: list[tuple[int, dict[str, Any]]] = []
    rows = candidates(conn, now, CLAIM_LIMIT, skip_locked)
    for row in rows:
        job, values = _decide(conn, row, now, delay)
        if job is not None:
            jobs.append(job)
            values = {"lease_until": now + LEASE}
        changes.append((row["id"], values))
    update_subscriptions(conn, changes)
    return Claimed(jobs, more=len(rows) == CLAIM_LIMIT)


def _decide(
    conn: Connection, row: RowMapping, now: datetime, delay: timedelta
) -> tuple[Job | None, dict[str, Any]]:
    user_id, head = row["user_id"], row["stream_seq"]
    looked = {"seen_seq": head, "due_at": None}
    waiting = waiting_since(conn, user_id, row["pushed_seq"])
    if waiting["count"]:
        ready_at = waiting["oldest"] + delay
        if row["last_seen"] is not None:
            ready_at = max(ready_at, row["last_seen"] + delay)
        if ready_at > now:
            return None, {**looked, "due_at": ready_at}
        unread = unread_count(conn, user_id)
        payload: dict[str, Any] = {"cursor": head, "unread": unread}
        if row["preview"]:
            newest = newest_waiting(conn, user_id, waiting["newest_seq"])
            if newest is not None:
                payload |= {"from": newest["sender"], "excerpt": newest["excerpt"]}
        return _job(row, waiting["newest_seq"], payload), {}
    if row["last_unread"] > 0 and unread_count(conn, user_id) == 0:
        return _job(row, row["pushed_seq"], {"cursor": head, "unread": 0}, clearing=True), {}
    return None, looked


def _job(row: RowMapping, newest_seq: int, payload: dict[str, Any], clearing: bool = False) -> Job:
    if row["kind"] == "webhook":
        payload = {**payload, "user": row["username"], "subscription": row["id"]}
    return Job(
        sub_id=row["id"],
        kind=row["kind"],
        url=row["endpoint"],
        p256dh=row["p256dh"],
        auth=row["auth"],
        secret=row["secret"],
        user_id=row["user_id"],
        username=row["username"],
        head=row["stream_seq"],
        newest_seq=newest_seq,
        failures=row["failures"],
        payload=payload,
        clearing=clearing,
    )


# -- after the sends ------------------------------------------------------------------


def sent(job: Job) -> dict[str, Any]:
    """What a subscription remembers after a push it made."""
    return {
        "pushed_seq": job.newest_seq,
        "seen_seq": job.head,
        "last_unread": job.payload["unread"],
        "failures": 0,
        "due_at": None,
        "lease_until": None,
    }


def postponed(job: Job, now: datetime, delay: timedelta) -> dict[str, Any]:
    """A push not made because the user is online: look again after `delay`."""
    return {"seen_seq": job.head, "due_at": now + delay, "lease_until": None}


def failed(job: Job, now: datetime, retry_after: float | None) -> dict[str, Any] | None:
    """When to try again after a failure; None when the subscription is to go."""
    failures = job.failures + 1
    if failures >= FAILURES_MOST:
        return None
    wait = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MOST)
    if retry_after is not None:
        wait = max(wait, min(retry_after, BACKOFF_MOST))
    return {"failures": failures, "due_at": now + timedelta(seconds=wait), "lease_until": None}
