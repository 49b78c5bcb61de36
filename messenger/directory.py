"""Usernames <-> user ids, cached: users are never renamed or deleted, so an entry
never goes stale, and the hot paths (every `send`, every replayed event) skip a query.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from messenger.errors import invalid, not_found
from messenger.store.db import Database
from messenger.store.users import usernames, users_by_names
from messenger.wire import UserRef

CACHE_SIZE = 100_000


class Directory:
    def __init__(self, db: Database, size: int = CACHE_SIZE) -> None:
        self._db = db
        self._size = size
        self._by_name: OrderedDict[str, UserRef] = OrderedDict()
        self._by_id: OrderedDict[int, UserRef] = OrderedDict()

    def remember(self, user: UserRef) -> None:
        for cache, key in ((self._by_name, user.username), (self._by_id, user.id)):
            cache[key] = user  # type: ignore[index]
            cache.move_to_end(key)  # type: ignore[arg-type]
            if len(cache) > self._size:
                cache.popitem(last=False)

    async def resolve(self, username: str) -> UserRef:
        """The user with this (normalized) name, or `not_found`."""
        found = await self.resolve_many([username])
        if username not in found:
            raise not_found(f"no user {username!r}")
        return found[username]

    async def other_user(self, user: UserRef, username: str) -> UserRef:
        """The user named, who must be someone else than `user` (`invalid` if not):
        the other party of a send, a history, a search, a block."""
        if username == user.username:
            raise invalid("that is you: name another user")
        return await self.resolve(username)

    async def resolve_many(self, names: Iterable[str]) -> dict[str, UserRef]:
        """The existing users among `names`; unknown names are left out."""
        names = list(names)
        found = {name: self._by_name[name] for name in names if name in self._by_name}
        missing = [name for name in names if name not in found]
        if missing:
            for row in await self._db.read(users_by_names, missing):
                user = UserRef(row["id"], row["username"])
                self.remember(user)
                found[user.username] = user
        return found

    async def names(self, ids: Iterable[int]) -> dict[int, str]:
        wanted = set(ids)
        found = {uid: self._by_id[uid].username for uid in wanted if uid in self._by_id}
        missing = wanted - found.keys()
        if missing:
            for uid, name in (await self._db.read(usernames, missing)).items():
                self.remember(UserRef(uid, name))
                found[uid] = name
        return found
