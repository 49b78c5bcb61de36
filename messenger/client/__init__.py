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
from messenger.client.files import download, download_thumbnail, upload
from messenger.client.state import Outgoing
from messenger.client.types import (
    TYPING_SHOWN_FOR,
    Attachment,
    Downloaded,
    Event,
    Message,
    MessageUpdated,
    MessengerClientError,
    NewMessage,
    PushSubscription,
    Receipt,
    ReplyRef,
    Typing,
    Uploaded,
)

__all__ = [
    "TYPING_SHOWN_FOR",
    "Attachment",
    "Client",
    "Downloaded",
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
    "Uploaded",
    "conversations",
    "download",
    "download_thumbnail",
    "login",
    "logout",
    "messages_page",
    "push_subscriptions",
    "read_receipts",
    "register",
    "set_read_receipts",
    "subscribe_webhook",
    "unsubscribe",
    "upload",
]
