# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Small read-only client for Redis and Redis Sentinel (RESP2 over a socket, stdlib only).

Stdlib only, so the module that ships it works on any managed host without
redis-py. Three layers:

- ``RespConnection``: one TCP connection, ``AUTH`` on connect, ``command()``
  sends one command and decodes the reply (every read and write has a timeout);
- parsers for the answers of ``SENTINEL MASTER/REPLICAS/SENTINELS``, ``ROLE``
  and ``INFO`` (formats of Redis 7.0);
- ``sentinel_view`` / ``redis_view`` (one member each, never raise for a dead
  member) and ``fetch_info`` (all members plus the master the sentinels agree
  on): the plain dict the ``hastack.ha.redis_*`` filters read.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 2.0
DEFAULT_REDIS_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
_MAX_LINE = 64 * 1024
_MAX_BULK = 64 * 1024 * 1024


class RedisError(Exception):
    """Talking to one Redis or Sentinel endpoint failed."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


class RedisReplyError(RedisError):
    """The server answered with an error reply (``-ERR ...``, ``-NOQUORUM ...``)."""

    def __init__(self, address: str, reply: str) -> None:
        super().__init__(address, reply)
        self.reply = reply
        self.code = reply.split(" ", 1)[0] if reply else ""


class RedisAuthError(RedisReplyError):
    """The server refused the credentials, or wants some and got none."""


class ErrorReply(str):
    """An error nested in an array reply (kept as a value, not raised)."""


@dataclass(frozen=True)
class Endpoint:
    """One member: a display name and where it listens."""

    host: str
    port: int
    name: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def label(self) -> str:
        return self.name or self.address


# --- RESP2 --------------------------------------------------------------------


def encode_command(*args: Any) -> bytes:
    """A command as a RESP array of bulk strings."""
    if not args:
        raise ValueError("a Redis command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespConnection:
    """One connection to one Redis or Sentinel, RESP2, with a timeout on every call."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = DEFAULT_TIMEOUT,
        password: str | None = None,
        username: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.password = password
        self.username = username
        self.address = f"{host}:{self.port}"
        self._sock: socket.socket | None = None
        self._file: Any = None

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> RespConnection:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except ConnectionRefusedError as exc:
            raise RedisError(self.address, "connection refused: is it running and listening on this address?") from exc
        except TimeoutError as exc:
            raise RedisError(self.address, f"no connection within {self.timeout} s (timeout)") from exc
        except socket.gaierror as exc:
            raise RedisError(self.address, f"cannot resolve host ({exc})") from exc
        except OSError as exc:
            raise RedisError(self.address, f"cannot connect ({exc})") from exc
        self._sock.settimeout(self.timeout)
        self._file = self._sock.makefile("rb")
        if self.password:
            args = ["AUTH", self.username, self.password] if self.username else ["AUTH", self.password]
            try:
                self.command(*args)
            except RedisReplyError as exc:
                self.close()
                raise RedisAuthError(self.address, f"authentication failed ({exc.reply}): check the password") from exc

    def close(self) -> None:
        for closer in (self._file, self._sock):
            if closer is not None:
                with contextlib.suppress(OSError):
                    closer.close()
        self._file = None
        self._sock = None

    # -- commands ------------------------------------------------------------
    def command(self, *args: Any) -> Any:
        """Send one command; return the decoded reply. Raises ``RedisError`` subclasses."""
        if self._sock is None:
            raise RedisError(self.address, "not connected")
        try:
            self._sock.sendall(encode_command(*args))
            reply = self._read_reply()
        except TimeoutError as exc:
            self.close()
            raise RedisError(self.address, f"no answer to {args[0]} within {self.timeout} s (timeout)") from exc
        except OSError as exc:
            self.close()
            raise RedisError(self.address, f"connection lost during {args[0]} ({exc})") from exc
        if isinstance(reply, ErrorReply):
            if reply.startswith(("NOAUTH", "WRONGPASS")):
                raise RedisAuthError(self.address, str(reply))
            raise RedisReplyError(self.address, str(reply))
        return reply

    def _readline(self) -> bytes:
        line = self._file.readline(_MAX_LINE)
        if not line:
            raise RedisError(self.address, "connection closed by the server")
        if not line.endswith(b"\r\n"):
            raise RedisError(self.address, f"protocol error: line too long or cut: {line[:40]!r}")
        return line[:-2]

    def _read_reply(self) -> Any:
        line = self._readline()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode(errors="replace")
        if kind == b"-":
            return ErrorReply(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            if length > _MAX_BULK:
                raise RedisError(self.address, f"protocol error: bulk of {length} bytes")
            data = self._file.read(length + 2)
            if data is None or len(data) != length + 2:
                raise RedisError(self.address, "connection closed in the middle of a reply")
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [self._read_reply() for _ in range(count)]
        raise RedisError(self.address, f"protocol error: unexpected reply {line[:40]!r} (is this Redis?)")


# --- parsers --------------------------------------------------------------------


def parse_int(value: Any) -> int | None:
    """An int, or None for anything that is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def pairs(reply: Any) -> dict[str, Any]:
    """A flat ``[key, value, key, value, ...]`` reply as a dict."""
    if not isinstance(reply, list) or len(reply) % 2:
        raise ValueError(f"expected a flat list of key/value pairs, got {reply!r:.80}")
    return {str(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` text as ``{field: value}`` (section headers and blank lines dropped)."""
    fields: dict[str, str] = {}
    for raw in str(text).splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key] = value
    return fields


def parse_info_record(value: str) -> dict[str, str]:
    """``ip=127.0.0.1,port=6379,state=online`` as a dict."""
    record: dict[str, str] = {}
    for item in str(value).split(","):
        if "=" in item:
            key, val = item.split("=", 1)
            record[key] = val
    return record


def _flags(value: Any) -> list[str]:
    return [f for f in str(value or "").split(",") if f]


def normalize_sentinel_master(raw: dict[str, Any]) -> dict[str, Any]:
    """``SENTINEL MASTER <name>`` answer, normalised."""
    ip, port = raw.get("ip"), parse_int(raw.get("port"))
    return {
        "name": raw.get("name"),
        "ip": ip,
        "port": port,
        "address": f"{ip}:{port}" if ip is not None and port is not None else None,
        "flags": _flags(raw.get("flags")),
        "num_slaves": parse_int(raw.get("num-slaves")),
        "num_other_sentinels": parse_int(raw.get("num-other-sentinels")),
        "quorum": parse_int(raw.get("quorum")),
        "down_after_milliseconds": parse_int(raw.get("down-after-milliseconds")),
        "failover_timeout": parse_int(raw.get("failover-timeout")),
        "parallel_syncs": parse_int(raw.get("parallel-syncs")),
        "config_epoch": parse_int(raw.get("config-epoch")),
        "role_reported": raw.get("role-reported"),
        "last_ok_ping_reply_ms": parse_int(raw.get("last-ok-ping-reply")),
        "failover_state": raw.get("failover-state"),
    }


def normalize_sentinel_replica(raw: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``SENTINEL REPLICAS <name>``, normalised."""
    ip, port = raw.get("ip"), parse_int(raw.get("port"))
    master_host, master_port = raw.get("master-host"), parse_int(raw.get("master-port"))
    return {
        "ip": ip,
        "port": port,
        "address": f"{ip}:{port}",
        "flags": _flags(raw.get("flags")),
        "master_link_status": raw.get("master-link-status"),
        "master_address": f"{master_host}:{master_port}" if master_host is not None else None,
        "repl_offset": parse_int(raw.get("slave-repl-offset")),
        "priority": parse_int(raw.get("slave-priority")),
    }


def normalize_sentinel_peer(raw: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``SENTINEL SENTINELS <name>``, normalised."""
    ip, port = raw.get("ip"), parse_int(raw.get("port"))
    return {
        "ip": ip,
        "port": port,
        "address": f"{ip}:{port}",
        "runid": raw.get("runid"),
        "flags": _flags(raw.get("flags")),
    }


def parse_role(reply: Any) -> dict[str, Any]:
    """``ROLE`` answer: role, and the master (of a replica) or the replicas (of a master)."""
    if not isinstance(reply, list) or not reply:
        raise ValueError(f"unexpected ROLE answer {reply!r:.80}")
    role = str(reply[0])
    result: dict[str, Any] = {"role": role, "master_address": None, "link_state": None, "offset": None, "replicas": []}
    if role == "master" and len(reply) >= 3:
        result["offset"] = parse_int(reply[1])
        result["replicas"] = [
            {"address": f"{r[0]}:{r[1]}", "offset": parse_int(r[2])}
            for r in reply[2] or []
            if isinstance(r, list) and len(r) >= 3
        ]
    elif role == "slave" and len(reply) >= 5:
        result["master_address"] = f"{reply[1]}:{parse_int(reply[2])}"
        result["link_state"] = str(reply[3])
        result["offset"] = parse_int(reply[4])
    return result


# --- one member -----------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    password: str | None = None
    username: str | None = None


def _member(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "name": endpoint.label,
        "host": endpoint.host,
        "port": endpoint.port,
        "address": endpoint.address,
        "reachable": False,
        "error": None,
    }


def sentinel_view(
    endpoint: Endpoint, master_name: str, credentials: Credentials, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """What one sentinel says about ``master_name``. Never raises for a dead or confused sentinel.

    ``reachable`` is true when the sentinel answered; ``monitors`` when it also
    knows ``master_name``. ``error`` says why not.
    """
    view = _member(endpoint) | {
        "monitors": False,
        "master": None,
        "ckquorum": None,
        "replicas": [],
        "sentinels": [],
        "tilt": None,
    }
    try:
        with RespConnection(endpoint.host, endpoint.port, timeout, credentials.password, credentials.username) as conn:
            view["reachable"] = True
            info = parse_info(conn.command("INFO", "sentinel"))
            view["tilt"] = info.get("sentinel_tilt") == "1"
            try:
                master = normalize_sentinel_master(pairs(conn.command("SENTINEL", "MASTER", master_name)))
            except RedisReplyError as exc:
                view["error"] = f"does not monitor master '{master_name}' ({exc.reply})"
                return view
            view["monitors"] = True
            view["master"] = master
            try:
                message = conn.command("SENTINEL", "CKQUORUM", master_name)
                view["ckquorum"] = {"ok": True, "message": str(message)}
            except RedisReplyError as exc:
                view["ckquorum"] = {"ok": False, "message": exc.reply}
            view["replicas"] = [
                normalize_sentinel_replica(pairs(r)) for r in conn.command("SENTINEL", "REPLICAS", master_name) or []
            ]
            view["sentinels"] = [
                normalize_sentinel_peer(pairs(s)) for s in conn.command("SENTINEL", "SENTINELS", master_name) or []
            ]
    except RedisAuthError as exc:
        view["reachable"] = False
        view["error"] = f"{exc.reason} (sentinel password)"
    except RedisError as exc:
        view["reachable"] = False
        view["error"] = exc.reason
    except ValueError as exc:
        view["reachable"] = False
        view["error"] = f"unexpected answer: {exc}"
    return view


def redis_view(endpoint: Endpoint, credentials: Credentials, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """``ROLE`` and ``INFO replication`` of one Redis. Never raises for a dead Redis."""
    view = _member(endpoint) | {
        "role": None,
        "master_address": None,
        "master_link_status": None,
        "link_state": None,
        "offset": None,
        "connected_replicas": None,
        "replicas": [],
        "min_replicas_good": None,
    }
    try:
        with RespConnection(endpoint.host, endpoint.port, timeout, credentials.password, credentials.username) as conn:
            view["reachable"] = True
            role = parse_role(conn.command("ROLE"))
            info = parse_info(conn.command("INFO", "replication"))
    except RedisAuthError as exc:
        view["error"] = f"{exc.reason} (Redis password)"
        return view
    except RedisError as exc:
        # also an error reply such as LOADING: it does not serve yet
        view["reachable"] = False
        view["error"] = exc.reason
        return view
    except ValueError as exc:
        view["reachable"] = False
        view["error"] = f"unexpected answer: {exc}"
        return view
    view.update(role)
    view["master_link_status"] = info.get("master_link_status")
    view["connected_replicas"] = parse_int(info.get("connected_slaves"))
    view["min_replicas_good"] = parse_int(info.get("min_slaves_good_slaves"))
    replicas = []
    for key in sorted(k for k in info if k.startswith("slave") and k[5:].isdigit()):
        record = parse_info_record(info[key])
        port = parse_int(record.get("port"))
        replicas.append(
            {
                "address": f"{record.get('ip')}:{port}",
                "state": record.get("state"),
                "offset": parse_int(record.get("offset")),
                "lag": parse_int(record.get("lag")),
            }
        )
    if replicas or view["role"] == "master":
        view["replicas"] = replicas
    return view


# --- the whole deployment -------------------------------------------------------


def agreed_master(sentinels: Iterable[dict[str, Any]]) -> str | None:
    """The master address every sentinel that answers names, if they all name the same one."""
    named = {s["master"]["address"] for s in sentinels if s.get("master") and s["master"].get("address")}
    return named.pop() if len(named) == 1 else None


def fetch_info(
    master_name: str,
    sentinels: list[Endpoint],
    redis: list[Endpoint],
    redis_credentials: Credentials,
    sentinel_credentials: Credentials,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Ask every sentinel and every Redis.

    Returns ``{"master_name", "master" (the address every answering sentinel
    names, else None), "masters" (addresses of the Redis that report role
    master), "sentinels", "redis", "errors" ({address: reason})}``. Raises
    ``ValueError`` for bad arguments; never raises for unreachable members.
    """
    if not master_name:
        raise ValueError("master_name is empty: give the name the sentinels monitor")
    if not sentinels and not redis:
        raise ValueError("no endpoints: give at least one sentinel or one Redis")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    sentinel_views = [sentinel_view(e, master_name, sentinel_credentials, timeout) for e in sentinels]
    redis_views = [redis_view(e, redis_credentials, timeout) for e in redis]
    errors = {v["address"]: v["error"] for v in sentinel_views + redis_views if v["error"]}
    return {
        "master_name": master_name,
        "master": agreed_master(sentinel_views),
        "masters": [v["address"] for v in redis_views if v["role"] == "master"],
        "sentinels": sentinel_views,
        "redis": redis_views,
        "errors": errors,
    }
