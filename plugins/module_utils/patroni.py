# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Small read-only client for the Patroni REST API (stdlib only).

``fetch_cluster`` asks each member endpoint for ``GET /cluster`` in order and
returns the first answer. If no member answers ``/cluster`` (Patroni closes the
connection of ``/cluster`` when it cannot read the DCS), it asks every member
for ``GET /patroni`` and assembles what those answers tell. Either way the
result is one plain dict (see ``fetch_cluster``), the same shape the
``hastack.ha.patroni_*`` filters read.

Payload formats follow Patroni 4.1.5: ``patroni.utils.cluster_as_json`` (plus
``scope``) for ``/cluster``, ``RestApiHandler.get_postgresql_status`` for
``/patroni``.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 2.0
LEADER_ROLES = ("leader", "standby_leader")
SYNC_ROLES = ("sync_standby", "quorum_standby")

# /patroni reports the PostgreSQL role (patroni.postgresql.misc.PostgresqlRole);
# /cluster reports the cluster role. Map the former onto the latter.
_STATUS_ROLE_TO_CLUSTER_ROLE = {
    "primary": "leader",
    "master": "leader",
    "promoted": "leader",
    "standby_leader": "standby_leader",
}


class PatroniApiError(Exception):
    """One request to one Patroni endpoint failed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class PatroniUnreachableError(Exception):
    """No endpoint answered, neither ``/cluster`` nor ``/patroni``."""

    def __init__(self, errors: dict[str, str]) -> None:
        listing = "; ".join(f"{url}: {reason}" for url, reason in errors.items())
        super().__init__(
            f"no Patroni member answered ({listing}). Check that Patroni runs on these "
            "members and that the endpoints are its REST API (restapi.connect_address)."
        )
        self.errors = errors


@dataclass(frozen=True)
class ApiSettings:
    """How to talk to the Patroni REST API."""

    timeout: float = DEFAULT_TIMEOUT
    username: str | None = None
    password: str | None = None
    validate_certs: bool = True
    ca_file: str | None = None


# --- HTTP -------------------------------------------------------------------


def normalize_endpoint(endpoint: str) -> str:
    """Return ``scheme://host:port`` for a member endpoint.

    Accepts a trailing slash and a trailing ``/patroni`` (the form of
    ``api_url`` in ``/cluster``). Raises ``ValueError`` for anything that is
    not an http(s) URL.
    """
    text = str(endpoint).strip()
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(
            f"endpoint {endpoint!r} is not an http(s) URL of a Patroni REST API, "
            "expected e.g. 'http://198.18.1.11:8008'"
        )
    path = parsed.path.rstrip("/")
    if path.endswith("/patroni"):
        path = path[: -len("/patroni")]
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def build_opener(settings: ApiSettings) -> urllib.request.OpenerDirector:
    """An opener that ignores proxy variables and applies the TLS settings."""
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"ca_file {settings.ca_file!r}: cannot load CA certificates ({exc}); give a readable PEM file"
        ) from exc
    if not settings.validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # The REST API is cluster-internal: never send it through an HTTP proxy.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))


def _auth_header(settings: ApiSettings) -> dict[str, str]:
    if not settings.username:
        return {}
    pair = f"{settings.username}:{settings.password or ''}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def _describe_url_error(exc: urllib.error.URLError, settings: ApiSettings) -> str:
    reason = exc.reason
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed ({reason.verify_message}): set ca_file "
            "to the CA that signed Patroni's certificate, or validate_certs=false"
        )
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused: is Patroni running and listening on this address?"
    if isinstance(reason, TimeoutError):
        return f"no answer within {settings.timeout} s (timeout)"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host ({reason})"
    return f"cannot connect ({reason})"


def _describe_http_error(exc: urllib.error.HTTPError) -> str:
    text = f"HTTP {exc.code} {exc.reason}"
    if exc.code in (401, 403):
        return text + ": check username/password (restapi.authentication)"
    return text


def get_json(url: str, settings: ApiSettings, opener: urllib.request.OpenerDirector | None = None) -> Any:
    """``GET url`` and decode JSON. Raises ``PatroniApiError`` naming the reason."""
    opener = opener or build_opener(settings)
    request = urllib.request.Request(url, headers={"Accept": "application/json", **_auth_header(settings)})
    try:
        with opener.open(request, timeout=settings.timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise PatroniApiError(url, _describe_http_error(exc)) from exc
    except urllib.error.URLError as exc:
        raise PatroniApiError(url, _describe_url_error(exc, settings)) from exc
    except TimeoutError as exc:
        raise PatroniApiError(url, f"no answer within {settings.timeout} s (timeout)") from exc
    except http.client.RemoteDisconnected as exc:
        raise PatroniApiError(
            url,
            "connection closed without a response (Patroni does this when the "
            "request fails, e.g. /cluster while the DCS is unreachable)",
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise PatroniApiError(url, f"request failed ({type(exc).__name__}: {exc})") from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        raise PatroniApiError(url, f"answer is not JSON ({exc}): {body[:80]!r}") from exc


# --- normalisation ----------------------------------------------------------


def parse_int(value: Any) -> int | None:
    """An int (lag in bytes, timeline, port), or None where Patroni says 'unknown' or nothing."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None


def _lsn_text(value: Any) -> str | None:
    return None if value in (None, "unknown") else str(value)


def normalize_member(raw: dict[str, Any]) -> dict[str, Any]:
    """One member of ``/cluster`` in the normalised form."""
    return {
        "name": raw.get("name"),
        "role": raw.get("role"),
        "state": raw.get("state"),
        "host": raw.get("host"),
        "port": parse_int(raw.get("port")),
        "api_url": raw.get("api_url"),
        "timeline": parse_int(raw.get("timeline")),
        "lag": parse_int(raw.get("lag")),
        "receive_lag": parse_int(raw.get("receive_lag")),
        "replay_lag": parse_int(raw.get("replay_lag")),
        "lsn": _lsn_text(raw.get("lsn")),
        "tags": dict(raw.get("tags") or {}),
        "pending_restart": bool(raw.get("pending_restart", False)),
    }


def _summarise(
    members: list[dict[str, Any]],
    source: str,
    scope: str | None,
    paused: bool,
    fallback: bool,
) -> dict[str, Any]:
    members = sorted(members, key=lambda m: str(m["name"]))
    leaders = [m["name"] for m in members if m["role"] in LEADER_ROLES]
    return {
        "leader": leaders[0] if len(leaders) == 1 else None,
        "members": members,
        "sync_standbys": [m["name"] for m in members if m["role"] in SYNC_ROLES],
        "timelines": sorted({m["timeline"] for m in members if m["timeline"] is not None}),
        "source": source,
        "errors": {},
        "scope": scope,
        "paused": paused,
        "fallback": fallback,
    }


def normalize_cluster(payload: Any, source: str) -> dict[str, Any]:
    """Normalise a ``GET /cluster`` answer. Raises ``PatroniApiError`` if it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("members"), list):
        raise PatroniApiError(source, "answer has no 'members' list: not a Patroni /cluster answer")
    members = [normalize_member(m) for m in payload["members"] if isinstance(m, dict)]
    return _summarise(
        members,
        source=source,
        scope=payload.get("scope"),
        paused=bool(payload.get("pause", False)),
        fallback=False,
    )


def _status_role(status: dict[str, Any]) -> str:
    pg_role = str(status.get("role") or "")
    if pg_role in _STATUS_ROLE_TO_CLUSTER_ROLE:
        return _STATUS_ROLE_TO_CLUSTER_ROLE[pg_role]
    if status.get("sync_standby"):
        return "sync_standby"
    if status.get("quorum_standby"):
        return "quorum_standby"
    return "replica"


def _replica_position(status: dict[str, Any]) -> int | None:
    xlog = status.get("xlog") or {}
    positions = [parse_int(xlog.get(key)) for key in ("received_location", "replayed_location")]
    known = [p for p in positions if p is not None]
    return max(known) if known else None


def member_from_status(endpoint: str, status: dict[str, Any]) -> dict[str, Any]:
    """A member in the normalised form, built from one ``GET /patroni`` answer.

    ``host``/``port`` (PostgreSQL address) and ``lag`` are not in ``/patroni``:
    they are None here; ``assemble_from_statuses`` fills in ``lag``.
    """
    role = _status_role(status)
    # As in cluster_as_json: the leader shows its PostgreSQL state, every other
    # member its replication state when it has one.
    state = status.get("state")
    if role != "leader":
        state = status.get("replication_state") or state
    patroni = status.get("patroni") or {}
    return {
        "name": patroni.get("name") or endpoint,
        "role": role,
        "state": state,
        "host": None,
        "port": None,
        "api_url": endpoint + "/patroni",
        "timeline": parse_int(status.get("timeline")),
        "lag": None,
        "receive_lag": None,
        "replay_lag": None,
        "lsn": None,
        "tags": dict(status.get("tags") or {}),
        "pending_restart": bool(status.get("pending_restart", False)),
    }


def assemble_from_statuses(statuses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Normalised cluster from ``{endpoint: GET /patroni answer}``.

    Lag is computed against the leader's ``xlog.location`` when exactly one
    member reports itself primary; otherwise it stays None (unknown).
    """
    leader_positions = [
        parse_int((st.get("xlog") or {}).get("location")) for st in statuses.values() if _status_role(st) == "leader"
    ]
    leader_lsn = leader_positions[0] if len(leader_positions) == 1 else None
    members = []
    for endpoint, status in statuses.items():
        member = member_from_status(endpoint, status)
        position = _replica_position(status)
        if member["role"] not in LEADER_ROLES and leader_lsn is not None and position is not None:
            member["lag"] = max(leader_lsn - position, 0)
        members.append(member)
    scopes = [(st.get("patroni") or {}).get("scope") for st in statuses.values()]
    return _summarise(
        members,
        source=", ".join(ep + "/patroni" for ep in statuses),
        scope=next((s for s in scopes if s), None),
        paused=any(bool(st.get("pause")) for st in statuses.values()),
        fallback=True,
    )


# --- the entry point --------------------------------------------------------


def fetch_cluster(
    endpoints: list[str],
    timeout: float = DEFAULT_TIMEOUT,
    username: str | None = None,
    password: str | None = None,
    validate_certs: bool = True,
    ca_file: str | None = None,
) -> dict[str, Any]:
    """The cluster as seen by the first member that answers ``GET /cluster``.

    Returns ``{"leader", "members", "sync_standbys", "timelines", "source",
    "errors", "scope", "paused", "fallback"}``; ``errors`` maps each URL that
    failed to the reason. Raises ``ValueError`` for bad arguments and
    ``PatroniUnreachableError`` when neither ``/cluster`` nor ``/patroni``
    answers on any endpoint.
    """
    if not endpoints:
        raise ValueError("endpoints is empty: give at least one Patroni REST API URL")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    bases = [normalize_endpoint(e) for e in endpoints]
    settings = ApiSettings(timeout, username, password, validate_certs, ca_file)
    opener = build_opener(settings)
    errors: dict[str, str] = {}

    for base in bases:
        url = base + "/cluster"
        try:
            result = normalize_cluster(get_json(url, settings, opener), url)
        except PatroniApiError as exc:
            errors[exc.url] = exc.reason
            continue
        result["errors"] = errors
        return result

    statuses: dict[str, dict[str, Any]] = {}
    for base in bases:
        url = base + "/patroni"
        try:
            status = get_json(url, settings, opener)
        except PatroniApiError as exc:
            errors[exc.url] = exc.reason
            continue
        if not isinstance(status, dict):
            errors[url] = "answer is not a JSON object: not a Patroni /patroni answer"
            continue
        statuses[base] = status
    if not statuses:
        raise PatroniUnreachableError(errors)
    result = assemble_from_statuses(statuses)
    result["errors"] = errors
    return result
