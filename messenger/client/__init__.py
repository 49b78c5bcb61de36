"""The Python SDK of messenger: `Client` for the socket, helpers for accounts.

It imports only the standard library, aiohttp, python-socketio and
`messenger.protocol` / `messenger.errors`, so it can ship without the server.
See docs/client.md.
"""

from messenger.client.api import conversations, login, logout, messages_page, register
from messenger.client.core import Client
from messenger.client.state import Outgoing
from messenger.client.types import Event, Message, MessengerClientError, NewMessage, Receipt

__all__ = [
    "Client",
    "Event",
    "Message",
    "MessengerClientError",
    "NewMessage",
    "Outgoing",
    "Receipt",
    "conversations",
    "login",
    "logout",
    "messages_page",
    "register",
]
