"""`messenger user list | disable | enable | reset-password | delete`: the operator's
account commands (docs/deployment.md).

They work on the database directly, with no node running. What they end (every
session of a disabled, reset or removed account) is revoked in SQL; running nodes
drop those sessions' sockets at their next maintenance tick, within
`MESSENGER_RESYNC_INTERVAL` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys

from messenger import protocol
from messenger.accounts_service import AccountService
from messenger.auth import Accounts, password_hasher
from messenger.config import Settings
from messenger.errors import MessengerError
from messenger.hashing import HashPool
from messenger.store.accounts import accounts_page
from messenger.store.db import Database, open_database
from messenger.wire import format_time, utc_now

# Accounts read per page by `list`.
LIST_PAGE = 500
# Random bytes of a generated password (URL-safe base64: 24 characters).
GENERATED_BYTES = 18


def add_arguments(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands next to `user add` (`cli.build_parser` adds their database flag)."""
    commands.add_parser("list", help="list the accounts, their state and live sessions")
    for name, what in (
        ("disable", "refuse an account's logins and end its sessions"),
        ("enable", "allow a disabled account's logins again"),
    ):
        commands.add_parser(name, help=what).add_argument("name")
    reset = commands.add_parser(
        "reset-password", help="set a new password (printed unless given); every session ends"
    )
    reset.add_argument("name")
    reset.add_argument(
        "--password-stdin", action="store_true", help="read the new password from standard input"
    )
    delete = commands.add_parser(
        "delete", help="remove an account for good (its name is never reused)"
    )
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """One of the commands above, on a database migrated to the newest revision."""
    from messenger.store.migrate import upgrade

    command: str = args.user_command
    password: str | None = None
    if command == "delete" and not args.yes:
        print(
            f"messenger: removing {args.name} cannot be undone; add --yes to do it",
            file=sys.stderr,
        )
        return 1
    if command == "reset-password":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = secrets.token_urlsafe(GENERATED_BYTES)
    upgrade(settings.database_url)
    try:
        asyncio.run(_run(settings, command, getattr(args, "name", None), password))
    except MessengerError as exc:
        print(f"messenger: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    if command == "reset-password" and not args.password_stdin:
        print(f"new password: {password}")
    return 0


async def _run(settings: Settings, command: str, name: str | None, password: str | None) -> None:
    db = open_database(settings.database_url, settings.sqlite_synchronous)
    # The same bounded pool as a node's: hashes never run on the event loop.
    pool = HashPool(settings.hash_workers, settings.hash_queue)
    try:
        if command == "list":
            await _list(db)
            return
        username = protocol.normalize_username(name)
        hasher = password_hasher(settings.argon2_time_cost, settings.argon2_memory_kib)
        service = AccountService(db, Accounts(db, settings.token_ttl, hasher, pool))
        if command == "disable":
            ended = await service.disable(username)
            print(f"disabled {username}; {ended} sessions ended")
        elif command == "enable":
            await service.enable(username)
            print(f"enabled {username}")
        elif command == "reset-password":
            assert password is not None
            ended = await service.reset_password(username, protocol.check_password(password))
            print(f"reset the password of {username}; {ended} sessions ended")
        elif command == "delete":
            ended = await service.remove_by_name(username)
            print(f"removed {username}; {ended} sessions ended")
    finally:
        pool.close()
        await db.dispose()


async def _list(db: Database) -> None:
    """Every account in id order, read a page at a time, tab-separated."""
    print("name\tcreated\tstate\tsessions")
    after = 0
    while rows := await db.read(accounts_page, after, LIST_PAGE, utc_now()):
        for row in rows:
            state = (
                "removed"
                if row["deleted_at"] is not None
                else "disabled"
                if row["disabled_at"] is not None
                else "active"
            )
            created = format_time(row["created_at"])
            print(f"{row['username']}\t{created}\t{state}\t{row['sessions']}")
        after = rows[-1]["id"]
