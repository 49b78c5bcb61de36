"""The push worker's pure rules: backoff and removal after failures, `Retry-After`,
and which URLs and addresses a push may go to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from messenger.errors import MessengerError
from messenger.push.addresses import check_url, is_public, literal_refused
from messenger.push.work import BACKOFF_MOST, FAILURES_MOST, Job, failed
from messenger.push.worker import retry_after_seconds

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def job(failures: int) -> Job:
    return Job(1, "webpush", "https://push.example/x", "k", "a", None, 1, "bob", 5, 5, failures)


def test_backoff_doubles_to_its_cap_and_honours_retry_after() -> None:
    waits = []
    for failures in range(FAILURES_MOST - 1):
        later = failed(job(failures), NOW, None)
        assert later is not None and later["failures"] == failures + 1
        waits.append((later["due_at"] - NOW).total_seconds())
    assert waits[:4] == [2.0, 4.0, 8.0, 16.0]
    assert max(waits) == BACKOFF_MOST
    later = failed(job(0), NOW, 120.0)
    assert later is not None and later["due_at"] == NOW + timedelta(seconds=120)
    assert failed(job(FAILURES_MOST - 1), NOW, None) is None  # the subscription goes


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("30") == 30.0
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds("soon") is None
    in_a_minute = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds = retry_after_seconds(in_a_minute)
    assert seconds is not None and 50 <= seconds <= 61


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://push.example/x",
        "ftp://push.example/x",
        "https://user@push.example/x",
        "https:///x",
        "https://push.example:99999/x",
        "https://push.example/x#frag",
        "https://push.example/" + "x" * 2048,
        42,
    ],
)
def test_push_urls_must_be_plain_https(url: object) -> None:
    with pytest.raises(MessengerError):
        check_url(url, ())


def test_listed_hosts_may_use_http() -> None:
    assert check_url("http://gateway.lan:8080/hook", ("gateway.lan",))
    assert check_url("https://push.example/x", ())


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://127.0.0.1/hook", True),
        ("https://[::1]:8443/hook", True),
        ("https://10.0.0.7/hook", True),
        ("https://93.184.216.34/hook", False),
        ("https://push.example/hook", False),  # a name: the resolver checks it
        ("http://127.0.0.1:9000/hook", False),  # listed
    ],
)
def test_address_literals_are_checked_at_delivery(url: str, refused: bool) -> None:
    assert literal_refused(url, ("127.0.0.1",) if ":9000" in url else ()) is refused
