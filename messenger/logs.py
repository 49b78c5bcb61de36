"""Logging setup: one line per event worth knowing, as text or as JSON for machines.

Bodies and tokens are never logged (the modules log names, ids and codes only). The
libraries do not promise as much: aiohttp logs a malformed request line or header
line as it came, `Authorization: Bearer ...` included. So every record, whichever
logger made it, has its message, arguments and traceback text redacted before any
handler sees it: bearer tokens, `Authorization` values, `token`/`password` values (as
`key=value`, `"key": "value"` and `'key': 'value'`) and passwords in URLs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

REDACTED = "[redacted]"

# Names whose values are secrets: token, access_token, password, new_password, ...
# (a whole word, so `token_id` or `token_ttl` stay readable).
_KEY = r"\b\w*?(?:token|password|passwd|secret)\b"
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: <anything>, to the end of the line (a quote may be in the value).
    (re.compile(r"(\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\r\n]+", re.I), r"\1" + REDACTED),
    # Bearer <token> anywhere else (a header list, an error message).
    (re.compile(r"(\bbearer\s+)(?!\[redacted\])[^\s\"']+", re.I), r"\1" + REDACTED),
    # "token": "value", 'password': 'value' (JSON, Python reprs), quotes escaped inside.
    (
        re.compile(rf"([\"']?{_KEY}[\"']?\s*[:=]\s*)([\"'])(?:\\.|(?!\2).)*\2", re.I),
        r"\1\2" + REDACTED + r"\2",
    ),
    # token=value, password: value (query strings, forms, free text).
    (
        re.compile(rf"({_KEY}\s*[:=]\s*)(?![\"'\[{{\s])[^\s&,;}}\]\"']+", re.I),
        r"\1" + REDACTED,
    ),
    # scheme://user:password@host (database and Redis URLs).
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.I), r"\1" + REDACTED + "@"),
)
# A cheap first look: most records mention none of these.
_MAYBE_SECRET = re.compile(r"token|passw|secret|bearer|authorization|://", re.I)


def redact(text: str) -> str:
    """`text` with every secret it shows replaced by REDACTED."""
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place: its message is formatted once, here, and redacted;
    its traceback is formatted and redacted into `exc_text`, which formatters use."""
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: show both, redacted
        message = f"{record.msg!r} % {record.args!r}"
    record.msg = redact(message)
    record.args = ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactSecrets(logging.Filter):
    """A filter that redacts each record it sees (and lets it through)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed: Callable[..., logging.LogRecord] | None = None


def install_redaction() -> None:
    """Redact every record this process makes, whichever logger and handler.

    Installed in the record factory rather than on one handler: a filter on a handler
    sees only that handler's records, and one on a logger only the records made on
    that very logger, not those of its children (`aiohttp.server`)."""
    global _installed
    current = logging.getLogRecordFactory()
    if current is _installed:
        return
    redactor = RedactSecrets()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        redactor.filter(record)
        return record

    _installed = factory
    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    install_redaction()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Quiet libraries that log every packet or every query at INFO.
    for noisy in ("aiohttp.access", "socketio", "engineio", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
