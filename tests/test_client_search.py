"""The SDK's search (issue 26) against a real server, on SQLite and PostgreSQL: pages
over the socket and over HTTP, `search_all` bounded by `max_results`, snippets split
into hits, edits and deletes showing through, and bad queries refused."""

from __future__ import annotations

from typing import Any

import pytest

from messenger.client import (
    Client,
    MessengerClientError,
    SearchPage,
    search,
)
from tests.support import Http, RunningServer, accounts
from tests.test_client import opened


def ids(page: SearchPage) -> list[int]:
    return [result.message.id for result in page.results]


async def test_search_finds_both_directions_newest_first_over_socket_and_http(
    server: RunningServer, http: Http
) -> None:
    ann, bob, carol = await accounts(http, "ann", "bob", "carol")
    async with (
        opened(server.url, ann) as a,
        opened(server.url, bob) as b,
        opened(server.url, carol) as c,
    ):
        cafe = await b.send(ann.username, "Lunch at the café tomorrow?")
        sure = await a.send(bob.username, "sure, lunch sounds good")
        chinese = await b.send(ann.username, "说好了一起吃午饭")
        other = await c.send(ann.username, "lunch with carol?")
        await a.send(bob.username, "the report is ready")
        odd = await b.send(ann.username, "odd \x02 marker\x03 lunch")

        page = await a.search("lunch")
        assert ids(page) == [odd.id, other.id, sure.id, cafe.id]
        assert (page.has_more, page.next_before) == (False, None)
        by_id = {r.message.id: r for r in page.results}
        # The results are Messages as they are now; a short body is its own snippet.
        assert by_id[cafe.id].message.sender == bob.username
        assert by_id[sure.id].message.recipient == bob.username
        assert by_id[cafe.id].snippet.hits == ["Lunch"]
        assert by_id[cafe.id].snippet.text == "Lunch at the café tomorrow?"
        # The body's own markers come back as U+FFFD: every marker is a hit's.
        assert by_id[odd.id].snippet.parts == [("odd \ufffd marker\ufffd ", False), ("lunch", True)]

        assert ids(await a.search("lunch", with_=bob.username)) == [odd.id, sure.id, cafe.id]
        assert ids(await a.search("CAFE")) == [cafe.id]  # case and accents ignored
        assert (await a.search("CAFE")).results[0].snippet.hits == ["café"]
        assert ids(await a.search("unch", with_=carol.username)) == [other.id]  # inside words
        assert ids(await a.search("一起吃")) == [chinese.id]  # no spaces needed
        assert ids(await a.search("lu", with_=bob.username)) == [odd.id, sure.id, cafe.id]
        assert ids(await a.search("nc")) == []  # short terms only at the start of a word
        assert ids(await a.search("lunch tomorrow")) == [cafe.id]  # every term
        assert ids(await a.search("lunch dinner")) == []
        # bob sees his own side of the same conversation; carol's is not his.
        assert ids(await b.search("lunch")) == [odd.id, sure.id, cafe.id]

        # Over HTTP the same page: the module function, and a Client never opened.
        over_http = await search(server.url, ann.token, "lunch", with_=bob.username)
        assert ids(over_http) == [odd.id, sure.id, cafe.id]
        assert over_http.results[0].snippet.hits == ["lunch"]
        idle = Client(server.url, ann.token)
        assert not idle.connected
        assert ids(await idle.search("lunch", limit=2)) == [odd.id, other.id]


async def test_pages_follow_before_and_search_all_stops_at_max_results(
    server: RunningServer, http: Http
) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    async with opened(server.url, ann) as a:
        sent = [await a.send(bob.username, f"note number {i}") for i in range(7)]
        newest_first = [m.id for m in reversed(sent)]

        first = await a.search("note", limit=3)
        assert ids(first) == newest_first[:3]
        assert (first.has_more, first.next_before) == (True, newest_first[2])
        second = await a.search("note", before=first.next_before, limit=3)
        assert ids(second) == newest_first[3:6]
        third = await a.search("note", before=second.next_before, limit=3)
        assert (ids(third), third.has_more, third.next_before) == (newest_first[6:], False, None)

        bounded = [r.message.id async for r in a.search_all("note", max_results=5, page_size=2)]
        assert bounded == newest_first[:5]
        everything = [r.message.id async for r in a.search_all("note", page_size=2)]
        assert everything == newest_first
        scoped = a.search_all("note", with_=bob.username, max_results=100)
        assert [r.message.id async for r in scoped] == newest_first
        assert [r async for r in a.search_all("note", max_results=0)] == []
        assert [r async for r in a.search_all("nothing like it")] == []


async def test_edits_and_deletes_show_through(server: RunningServer, http: Http) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    async with opened(server.url, ann) as a, opened(server.url, bob) as b:
        edited = await a.send(bob.username, "meet at the station")
        gone = await a.send(bob.username, "meet at the harbour")
        hidden = await b.send(ann.username, "meet at the museum")
        await a.edit(edited.id, "meet at the airport")
        await a.delete(gone.id, for_everyone=True)
        await a.delete(hidden.id, for_everyone=False)

        assert ids(await a.search("station")) == []
        [found] = (await a.search("airport")).results
        assert (found.message.id, found.message.body) == (edited.id, "meet at the airport")
        assert found.message.edited_at is not None
        assert ids(await a.search("harbour")) == ids(await b.search("harbour")) == []
        # Deleted for ann only: bob still finds it.
        assert ids(await a.search("meet")) == [edited.id]
        assert ids(await b.search("meet")) == [hidden.id, edited.id]


async def test_bad_searches_are_refused_with_their_codes(server: RunningServer, http: Http) -> None:
    ann, bob = await accounts(http, "ann", "bob")
    async with opened(server.url, ann) as a:
        await a.send(bob.username, "something to find")
        cases: list[tuple[str, dict[str, Any]]] = [
            ("", {}),
            ("   ", {}),
            ("x" * 257, {}),
            (" ".join(f"w{i}" for i in range(17)), {}),
            ("find", {"limit": 0}),
            ("find", {"limit": 51}),
            ("find", {"with_": ann.username}),
        ]
        for query, kwargs in cases:
            for over in ("socket", "http"):
                with pytest.raises(MessengerClientError) as refused:
                    if over == "socket":
                        await a.search(query, **kwargs)
                    else:
                        await search(server.url, ann.token, query, **kwargs)
                assert refused.value.code == "invalid", (query[:20], kwargs, over)
        with pytest.raises(MessengerClientError) as unknown:
            await a.search("find", with_="nobody@example.com")
        assert unknown.value.code == "not_found"
        with pytest.raises(MessengerClientError) as unknown_http:
            await search(server.url, ann.token, "find", with_="nobody@example.com")
        assert unknown_http.value.code == "not_found"
        # The search still works after refusals; a bad token does not.
        assert len((await a.search("find")).results) == 1
    with pytest.raises(MessengerClientError) as refused:
        await search(server.url, "not a token", "find")
    assert refused.value.code == "unauthorized"
