"""`messenger serve | db upgrade | user add|list|disable|enable|reset-password|delete | chat`:
parse the command line, then hand over."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import getpass
import logging
import signal
import sys
from collections.abc import Sequence

from messenger.config import ConfigError, Settings
from messenger.errors import MessengerError
from messenger.logs import configure_logging
from messenger.runtime import run_on_event_loop, running_loop_kind, tune_for_serving

log = logging.getLogger("messenger")

# After the sockets are closed, how long open HTTP requests may take to finish.
SHUTDOWN_SECONDS = 5.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="messenger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a server node")
    serve.add_argument("--host", help="address to listen on (MESSENGER_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (MESSENGER_PORT, 8080)")
    _database_flag(serve)
    serve.add_argument("--redis-url", help="Redis for several nodes (MESSENGER_REDIS_URL)")
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not upgrade the database first"
    )
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="log line format (MESSENGER_LOG_FORMAT)"
    )

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="run the migrations to the newest")
    _database_flag(upgrade)

    user = commands.add_parser("user", help="user accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    from messenger import user_admin

    user_admin.add_arguments(user_commands)
    for command in user_commands.choices.values():
        _database_flag(command)

    from messenger import chat

    chat.add_arguments(commands.add_parser("chat", help="a terminal chat client"))
    return parser


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL (MESSENGER_DATABASE_URL, sqlite+aiosqlite:///./messenger.db)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "chat":
        from messenger import chat

        return chat.main(args)
    try:
        settings = Settings.from_env(
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            database_url=args.database_url,
            redis_url=getattr(args, "redis_url", None),
            log_format=getattr(args, "log_format", None),
            migrate=False if getattr(args, "no_migrate", False) else None,
        )
    except ConfigError as exc:
        print(f"messenger: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    if args.command == "serve":
        return serve(settings)
    if args.command == "db":
        _upgrade(settings)
        return 0
    if args.user_command == "add":
        return add_user(settings, args.name, args.password_stdin)
    from messenger import user_admin

    return user_admin.run(settings, args)


def _upgrade(settings: Settings) -> None:
    from messenger.store.migrate import upgrade

    upgrade(settings.database_url)


def serve(settings: Settings) -> int:
    from messenger.transport.listener import raise_descriptor_limit

    # A fatal signal (SIGBUS when SQLite's memory-mapped -shm file is truncated under
    # it, SIGSEGV) kills the process before any log line could be written: this
    # writes the signal and every thread's stack to stderr first.
    faulthandler.enable(all_threads=True)
    before, after = raise_descriptor_limit()
    if after != before:
        log.info("file descriptors: soft limit raised from %d to %d", before, after)
    else:
        log.info("file descriptors: soft limit %d", after)
    if settings.migrate:
        _upgrade(settings)
    run_on_event_loop(_serve(settings), settings.event_loop)
    return 0


async def _serve(settings: Settings) -> None:
    from messenger.node import Node
    from messenger.transport.listener import Listener

    node = Node(settings)
    listener = Listener(node.app, settings, node.metrics, shutdown_timeout=SHUTDOWN_SECONDS)
    await listener.setup()
    await node.start()
    tune_for_serving()
    await listener.listen(settings.host, settings.port)
    log.info(
        "listening on http://%s:%d (event loop: %s)",
        settings.host,
        settings.port,
        running_loop_kind(),
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: answering the sends already taken, then closing")
    listener.stop_accepting()
    await node.stop()
    await listener.close()
    log.info("stopped")


def add_user(settings: Settings, name: str, password_stdin: bool) -> int:
    from messenger import protocol
    from messenger.auth import Accounts, password_hasher
    from messenger.hashing import HashPool
    from messenger.store.db import open_database

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("messenger: the passwords differ", file=sys.stderr)
            return 1

    async def create() -> str:
        db = open_database(settings.database_url, settings.sqlite_synchronous)
        # The same bounded pool as a node's: one hash, never on the event loop.
        pool = HashPool(settings.hash_workers, settings.hash_queue)
        try:
            username = protocol.normalize_username(name)
            protocol.check_password(password)
            hasher = password_hasher(settings.argon2_time_cost, settings.argon2_memory_kib)
            accounts = Accounts(db, settings.token_ttl, hasher, pool)
            return (await accounts.register(username, password)).username
        finally:
            pool.close()
            await db.dispose()

    _upgrade(settings)
    try:
        username = asyncio.run(create())
    except MessengerError as exc:
        print(f"messenger: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    print(f"created user {username}")
    return 0
