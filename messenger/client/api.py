"""The HTTP side of the protocol: accounts, sessions, settings and push subscriptions
(PROTOCOL.md section 2, 3.8 and 3.9).

Plain functions over aiohttp, because logging in happens once, before any socket.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from messenger.client.types import (
    Message,
    MessengerClientError,
    PushSubscription,
    SearchPage,
    parse_search_page,
    parse_subscription,
)

API = "/api/v1"
SEARCH = f"{API}/search"
SETTINGS = f"{API}/users/me/settings"
SUBSCRIPTIONS = f"{API}/push/subscriptions"


async def _request(
    method: str, url: str, path: str, json: Any = None, token: str | None = None
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, url.rstrip("/") + path, json=json, headers=headers) as resp,
        ):
            body: Any = None
            if resp.content_type == "application/json":
                body = await resp.json()
            if resp.status >= 400:
                raise MessengerClientError.from_answer(body)
            return body
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MessengerClientError("unavailable", f"cannot reach {url}: {exc}") from exc


async def register(url: str, username: str, password: str) -> str:
    """Create an account; returns the username as stored (lower-case)."""
    body = await _request("POST", url, f"{API}/users", {"username": username, "password": password})
    return str(body["user"]["username"])


async def login(url: str, username: str, password: str) -> str:
    """Open a session; returns its bearer token (for `Client` and `logout`)."""
    body = await _request(
        "POST", url, f"{API}/sessions", {"username": username, "password": password}
    )
    return str(body["token"])


async def logout(url: str, token: str) -> None:
    """End the session: the token stops working and its sockets are disconnected."""
    await _request("DELETE", url, f"{API}/sessions/current", token=token)


async def conversations(url: str, token: str) -> list[dict[str, Any]]:
    """The user's conversations, newest first: `{"with", "last_message", "unread"}`."""
    body = await _request("GET", url, f"{API}/conversations", token=token)
    result: list[dict[str, Any]] = body["conversations"]
    return result


async def messages_page(
    url: str, token: str, with_: str, before: int | None = None, limit: int = 50
) -> tuple[list[Message], bool]:
    """One history page over HTTP (ascending by id) and whether older ones exist."""
    query = f"?limit={limit}" + (f"&before={before}" if before is not None else "")
    path = f"{API}/conversations/{quote(with_, safe='')}/messages{query}"
    body = await _request("GET", url, path, token=token)
    return [Message.from_dict(m) for m in body["messages"]], bool(body["has_more"])


async def read_receipts(url: str, token: str) -> bool:
    """Whether the user's reads are told to senders (PROTOCOL.md 3.8)."""
    body = await _request("GET", url, SETTINGS, token=token)
    return bool(body["read_receipts"])


async def set_read_receipts(url: str, token: str, on: bool) -> bool:
    """Make the user's reading public or private; returns the setting as stored.

    Applies to reads made from now on: reads already told stay told, and reads made
    while private stay private (3.8).
    """
    body = await _request("PUT", url, SETTINGS, {"read_receipts": on}, token=token)
    return bool(body["read_receipts"])


async def subscribe_webhook(
    url: str, token: str, webhook_url: str, label: str | None = None, preview: bool = False
) -> PushSubscription:
    """Have the server POST a signed push to `webhook_url` while the user is offline
    (PROTOCOL.md 3.9); returns the subscription with its `secret`.

    Keep the secret now: it is shown this once, and the receiver needs it to check
    each request's `Messenger-Signature`. Subscribing a URL the user already has moves
    it to this session and gives it a new secret (the old one stops signing).
    `preview` adds the sender and the first 100 characters of the newest message to
    each push; off, a push carries no content. Raises `invalid` for a URL the server
    refuses (not https://, or a host that is not public unless the operator allows it
    in MESSENGER_PUSH_ALLOW_HTTP) and `too_large` past 20 subscriptions.
    """
    request: dict[str, Any] = {"kind": "webhook", "url": webhook_url, "preview": preview}
    if label is not None:
        request["label"] = label
    body = await _request("POST", url, SUBSCRIPTIONS, request, token=token)
    return parse_subscription(body)


async def push_subscriptions(url: str, token: str) -> list[PushSubscription]:
    """The user's push subscriptions, from every session (without secrets)."""
    body = await _request("GET", url, SUBSCRIPTIONS, token=token)
    found = body.get("subscriptions") if isinstance(body, dict) else None
    if not isinstance(found, list):
        raise MessengerClientError("internal", f"unexpected answer {body!r:.200}")
    return [parse_subscription(item) for item in found]


async def unsubscribe(url: str, token: str, subscription_id: int) -> None:
    """Stop pushes to one of the user's subscriptions (made by any of their sessions);
    raises `not_found` if it is not theirs or already gone."""
    await _request("DELETE", url, f"{SUBSCRIPTIONS}/{int(subscription_id)}", token=token)


def search_query(
    query: str, with_: str | None, before: int | None, limit: int | None
) -> dict[str, Any]:
    """The search request's fields, as the socket event takes them (`query`, `with`,
    `before`, `limit`; absent ones left out for the server's defaults)."""
    fields: dict[str, Any] = {"query": query}
    if with_ is not None:
        fields["with"] = with_
    if before is not None:
        fields["before"] = int(before)
    if limit is not None:
        fields["limit"] = int(limit)
    return fields


async def search(
    url: str,
    token: str,
    query: str,
    with_: str | None = None,
    before: int | None = None,
    limit: int | None = None,
) -> SearchPage:
    """One page of the user's messages matching `query`, newest first, over HTTP
    (`Client.search` uses the socket when it has one). Raises `invalid` for a query
    the server refuses, `not_found` for an unknown `with_`."""
    fields = search_query(query, with_, before, limit)
    fields["q"] = fields.pop("query")
    body = await _request("GET", url, f"{SEARCH}?{urlencode(fields, quote_via=quote)}", token=token)
    return parse_search_page(body)
