"""The Python SDK of messenger: `Client` for the socket, helpers for accounts.

It imports only the standard library, aiohttp, python-socketio and
`messenger.protocol` / `messenger.errors`, so it can ship without the server.
See docs/client.md.
"""

from messenger.client.accounts import (
    change_password,
    delete_account,
    end_session,
    export,
    sessions,
)
from messenger.client.api import (
    conversations,
    login,
    logout,
    messages_page,
    push_subscriptions,
    read_receipts,
    register,
    search,
    set_read_receipts,
    subscribe_webhook,
    unsubscribe,
)
from messenger.client.core import Client
from messenger.client.files import download, download_thumbnail, upload
from messenger.client.snippets import Snippet, split_snippet
from messenger.client.state import Outgoing
from messenger.client.types import (
    TYPING_SHOWN_FOR,
    Attachment,
    Downloaded,
    Event,
    Exported,
    Message,
    MessageUpdated,
    MessengerClientError,
    NewMessage,
    PushSubscription,
    Receipt,
    ReplyRef,
    SearchPage,
    SearchResult,
    Session,
    Typing,
    Uploaded,
)

__all__ = [
    "TYPING_SHOWN_FOR",
    "Attachment",
    "Client",
    "Downloaded",
    "Event",
    "Exported",
    "Message",
    "MessageUpdated",
    "MessengerClientError",
    "NewMessage",
    "Outgoing",
    "PushSubscription",
    "Receipt",
    "ReplyRef",
    "SearchPage",
    "SearchResult",
    "Session",
    "Snippet",
    "Typing",
    "Uploaded",
    "change_password",
    "conversations",
    "delete_account",
    "download",
    "download_thumbnail",
    "end_session",
    "export",
    "login",
    "logout",
    "messages_page",
    "push_subscriptions",
    "read_receipts",
    "register",
    "search",
    "sessions",
    "set_read_receipts",
    "split_snippet",
    "subscribe_webhook",
    "unsubscribe",
    "upload",
]
