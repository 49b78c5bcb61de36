"""Hypothesis against a model of the message lifecycle (docs/protocol.md 3.6, G11):
random sequences of edits, deletes for me and for everyone, reactions and un-reactions
by both users, on a few messages, against a real server on SQLite and PostgreSQL.

Properties: every answer is the one the rules give (ok, `forbidden`, `not_found`);
afterwards each user's history shows each message as the model says; a device
that replays the whole stream from cursor 0 ends with exactly that state (G11); and
`search` finds each message by its current text exactly when the model says it is
there (3.10), by its first text only while it still holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, note
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from messenger.store import search as search_store
from messenger.text_search import fold, matches, split_query
from tests.support import Account, Device, Http, Scene
from tests.test_fuzz import FUZZ_SETTINGS, Bridge, fuzz, report

EMOJIS = ("👍", "🎉", "❤️")
KINDS = ("edit", "delete_me", "delete_everyone", "react", "unreact")
MESSAGES = 3


@dataclass
class Model:
    """What the rules say one message is, after the operations so far."""

    sender: str
    body: str
    deleted: bool = False
    hidden_for: set[str] = field(default_factory=set)
    reactions: dict[str, set[str]] = field(default_factory=dict)

    def apply(self, actor: str, kind: str, emoji: str, body: str) -> str:
        """The answer's outcome: "ok" or the error code; changes the model."""
        if actor in self.hidden_for:
            return "ok" if kind == "delete_me" else "not_found"
        if kind == "delete_me":
            self.hidden_for.add(actor)
            return "ok"
        if kind == "delete_everyone":
            if actor != self.sender:
                return "forbidden"
            self.deleted, self.reactions = True, {}
            return "ok"
        if self.deleted:
            return "not_found"
        if kind == "edit":
            if actor != self.sender:
                return "forbidden"
            self.body = body
            return "ok"
        users = self.reactions.setdefault(emoji, set())
        (users.add if kind == "react" else users.discard)(actor)
        if not users:
            del self.reactions[emoji]
        return "ok"

    def shown(self, viewer: str) -> dict[str, Any] | None:
        """What the viewer's history shows, or None when it is not there."""
        if viewer in self.hidden_for:
            return None
        return {
            "body": None if self.deleted else self.body,
            "deleted": self.deleted,
            "reactions": {} if self.deleted else self.reactions,
        }


def state_of(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "body": message["body"],
        "deleted": message["deleted"],
        "reactions": {emoji: set(users) for emoji, users in message["reactions"].items()},
    }


operations = st.lists(
    st.tuples(
        st.sampled_from(("ann", "bob")),
        st.sampled_from(KINDS),
        st.integers(0, MESSAGES - 1),
        st.sampled_from(EMOJIS),
        st.text("abcxyz é😀", min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=12,
)


async def history(url: str, reader: Account, peer: str) -> dict[int, dict[str, Any]]:
    status, body = await Http(url).request(
        "GET", f"/api/v1/conversations/{quote(peer)}/messages?limit=100", token=reader.token
    )
    assert status == 200, body
    return {m["id"]: m for m in body["messages"]}


async def replayed(url: str, account: Account) -> dict[int, dict[str, Any]]:
    """Each message as a device that replays the whole stream ends with it."""
    device = await Device(url).connect(account.token, cursor=0)
    await device.wait_synced(timeout=20)
    state: dict[int, dict[str, Any]] = {}
    for name, data in device.events:
        if name in ("new_message", "message_updated"):
            state[data["message"]["id"]] = data["message"]
    await device.disconnect()
    return state


async def test_fuzz_lifecycle_against_a_model(
    scene: Scene, backend: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's search through FTS5 (as for a large history), its indexer running every
    # half second: the model meets the index, its unindexed tail and retired texts.
    monkeypatch.setattr(search_store, "SCAN_MAX", 0)
    devices = {"ann": scene.a, "bob": scene.b}
    accounts = {"ann": scene.ann, "bob": scene.bob}
    names = {"ann": scene.ann.username, "bob": scene.bob.username}
    serial = count()

    def run(bridge: Bridge) -> None:
        @hsettings(FUZZ_SETTINGS, max_examples=25)
        @given(operations)
        def prop(ops: list[tuple[str, str, int, str, str]]) -> None:
            ids, models = [], []
            for i in range(MESSAGES):
                sent = bridge.run(scene.a.send(names["bob"], f"m{i}", f"lf-{next(serial)}"))
                ids.append(sent["message"]["id"])
                models.append(Model(sender=names["ann"], body=f"m{i}"))
            for actor, kind, index, emoji, body in ops:
                bridge.cases += 1
                note(f"{actor} {kind} m{index} {emoji} {body!r}")
                expected = models[index].apply(names[actor], kind, emoji, body)
                command, payload = _command(kind, ids[index], emoji, body, next(serial))
                answer = bridge.run(devices[actor].call(command, payload))
                outcome = "ok" if answer["ok"] else answer["error"]["code"]
                assert outcome == expected, (actor, kind, index, answer)
            for viewer in ("ann", "bob"):
                peer = names["bob" if viewer == "ann" else "ann"]
                shown = bridge.run(history(scene.server.url, accounts[viewer], peer))
                streamed = bridge.run(replayed(scene.server.url, accounts[viewer]))
                for message_id, model in zip(ids, models, strict=True):
                    want = model.shown(names[viewer])
                    if want is None:
                        assert message_id not in shown, (viewer, message_id)
                        assert streamed[message_id].get("hidden") is True
                        continue
                    assert state_of(shown[message_id]) == want, (viewer, message_id)
                    assert state_of(streamed[message_id]) == want, (viewer, message_id)
                for message_id, model in zip(ids, models, strict=True):
                    visible = model.shown(names[viewer]) is not None and not model.deleted
                    for query in {model.body, f"m{ids.index(message_id)}"}:
                        terms = split_query(query)
                        if terms is None:
                            continue
                        want_found = visible and matches(fold(model.body), terms)
                        found = bridge.run(
                            devices[viewer].call(
                                "search",
                                {"query": query, "with": peer, "before": message_id + 1},
                            )
                        )
                        assert found["ok"], found
                        first = [r["message"]["id"] for r in found["results"][:1]]
                        assert (first == [message_id]) == want_found, (viewer, query, found)

        prop()

    cases = await fuzz(run)
    report(capsys, "lifecycle model", cases, backend)


def _command(kind: str, message_id: int, emoji: str, body: str, n: int) -> tuple[str, Any]:
    if kind == "edit":
        return "edit", {"id": message_id, "body": body, "client_id": f"le-{n}"}
    if kind.startswith("delete"):
        return "delete", {"id": message_id, "for": kind.removeprefix("delete_")}
    return kind, {"id": message_id, "emoji": emoji}
