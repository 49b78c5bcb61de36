"""The Python SDK of messenger: `Client` for the socket, helpers for accounts.

It imports only the standard library, aiohttp, python-socketio and
`messenger.protocol` / `messenger.errors`, so it can ship without the server.
See docs/client.md.
"""

from messenger.client.api import (
    conversations,
    login,
    logout,
    messages_page,
    push_subscriptions,
    read_receipts,
    register,
    set_read_receipts,
    subscribe_webhook,
    unsubscribe,
)
from messenger.client.core import Client
from messenger.client.state import Outgoing
from messenger.client.types import (
    TYPING_SHOWN_FOR,
    Event,
    Message,
    MessageUpdated,
    MessengerClientError,
    NewMessage,
    PushSubscription,
    Receipt,
    ReplyRef,
    Typing,
)

__all__ = [
    "TYPING_SHOWN_FOR",
    "Client",
    "Event",
    "Message",
    "MessageUpdated",
    "MessengerClientError",
    "NewMessage",
    "Outgoing",
    "PushSubscription",
    "Receipt",
    "ReplyRef",
    "Typing",
    "conversations",
    "login",
    "logout",
    "messages_page",
    "push_subscriptions",
    "read_receipts",
    "register",
    "set_read_receipts",
    "subscribe_webhook",
    "unsubscribe",
]
