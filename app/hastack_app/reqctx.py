"""The request id of the request being served, for logs and SQL comments.

The observe middleware (main.py) sets it for each request: the client's
``X-Request-Id`` when it is usable (``accept``), else a new one. It lives in a
``ContextVar``, so every task the request awaits sees its own id and
concurrent requests never see each other's.

``sql_comment()`` turns it into a comment to prepend to a query, so a slow
statement in ``pg_stat_activity`` or the PostgreSQL log leads to its access
log line::

    await conn.execute(sql_comment() + "SELECT ...", params)
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token

HEADER = "X-Request-Id"
MAX_LENGTH = 64
# printable ASCII without the space: what proxies and log tools pass through unchanged
_ACCEPTED = re.compile(rf"[\x21-\x7e]{{1,{MAX_LENGTH}}}")
# what may go into a SQL comment: no '*' or '/' (so no "*/" or nested "/*"),
# no quote or backslash, no control character
_SQL_SAFE = re.compile(r"[^A-Za-z0-9._:+=@,-]")

_request_id: ContextVar[str | None] = ContextVar("hastack_app_request_id", default=None)


def accept(incoming: str | None) -> str:
    """The client's id when it is 1-64 printable ASCII characters, else a new one (32 hex digits)."""
    if incoming is not None and _ACCEPTED.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def set_request_id(request_id: str) -> Token[str | None]:
    return _request_id.set(request_id)


def reset(token: Token[str | None]) -> None:
    _request_id.reset(token)


def request_id() -> str | None:
    """The id of the request this task serves; None outside a request."""
    return _request_id.get()


def sql_comment() -> str:
    """``/* request_id=<id> */ `` (with a trailing space) for the current
    request, or "" outside one. Characters that could end the comment or
    confuse a log parser (``*``, ``/``, quotes, backslash, control characters,
    spaces) are replaced by ``_``."""
    rid = _request_id.get()
    if not rid:
        return ""
    return f"/* request_id={_SQL_SAFE.sub('_', rid[:MAX_LENGTH])} */ "
