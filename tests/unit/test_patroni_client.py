"""The Patroni REST client against real HTTP servers on 127.0.0.1.

Payloads in fixtures/patroni/ are Patroni 4.1.5 answers: cluster_*.json were
produced by patroni.utils.cluster_as_json, patroni_*.json follow
RestApiHandler.get_postgresql_status.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.patroni import (
    PatroniUnreachableError,
    fetch_cluster,
    normalize_cluster,
    normalize_endpoint,
    parse_int,
)

FIXTURES = Path(__file__).parent / "fixtures" / "patroni"
CLOSE = object()  # route value: close the connection without an answer, as Patroni does


def payload(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakePatroni:
    """One member's REST API: ``path -> (status, body)`` or ``CLOSE``, with an optional delay."""

    def __init__(
        self, routes: dict[str, Any], delay: float = 0.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.routes = routes
        self.delay = delay
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                if server.delay and server.release.wait(server.delay):
                    return  # stopped while "slow": the client gave up long ago
                route = server.routes.get(self.path, (404, {"error": "not found"}))
                if route is CLOSE:
                    self.close_connection = True
                    return
                status, body = route
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def member() -> Iterator[Any]:
    started: list[FakePatroni] = []

    def start(routes: dict[str, Any], delay: float = 0.0, tls: ssl.SSLContext | None = None):
        fake = FakePatroni(routes, delay, tls)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def dead_endpoint() -> str:
    """A URL on a port that was just closed: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- /cluster ---------------------------------------------------------------


def test_healthy_cluster_is_normalised(member):
    api = member({"/cluster": (200, payload("cluster_healthy.json"))})

    cluster = fetch_cluster([api.url])

    assert cluster["leader"] == "node-a"
    assert cluster["sync_standbys"] == ["node-b"]
    assert cluster["timelines"] == [3]
    assert cluster["scope"] == "hastack"
    assert cluster["source"] == api.url + "/cluster"
    assert cluster["errors"] == {}
    assert cluster["fallback"] is False
    assert cluster["paused"] is False
    by_name = {m["name"]: m for m in cluster["members"]}
    assert list(by_name) == ["node-a", "node-b", "node-c"]
    assert by_name["node-a"] == {
        "name": "node-a",
        "role": "leader",
        "state": "running",
        "host": "127.42.0.11",
        "port": 5432,
        "api_url": "http://127.42.0.11:8008/patroni",
        "timeline": 3,
        "lag": None,
        "receive_lag": None,
        "replay_lag": None,
        "lsn": None,
        "tags": {},
        "pending_restart": False,
    }
    assert by_name["node-b"]["role"] == "sync_standby"
    assert by_name["node-b"]["state"] == "streaming"
    assert (by_name["node-b"]["lag"], by_name["node-b"]["replay_lag"]) == (0, 4096)
    assert by_name["node-b"]["lsn"] == "0/4000000"
    assert by_name["node-c"]["lag"] == 8864
    assert by_name["node-c"]["tags"] == {"zone": "c"}


def test_unknown_lag_becomes_none():
    cluster = normalize_cluster(payload("cluster_member_stopped.json"), "fixture")
    stopped = next(m for m in cluster["members"] if m["name"] == "node-b")

    assert stopped["state"] == "stopped"
    assert (stopped["lag"], stopped["timeline"], stopped["lsn"]) == (None, None, None)


def test_two_timelines_and_pending_restart_are_kept():
    cluster = normalize_cluster(payload("cluster_two_timelines.json"), "fixture")

    assert cluster["timelines"] == [2, 3]
    assert cluster["leader"] == "node-b"
    old_leader = next(m for m in cluster["members"] if m["name"] == "node-a")
    assert old_leader["pending_restart"] is True


def test_pause_is_reported():
    raw = payload("cluster_healthy.json") | {"pause": True}

    assert normalize_cluster(raw, "fixture")["paused"] is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (52428800, 52428800), ("17", 17), ("unknown", None), (None, None), (True, None)],
)
def test_parse_int(value, expected):
    assert parse_int(value) == expected


# --- fallback member by member ---------------------------------------------


def test_falls_back_past_dead_and_slow_members(member, dead_endpoint):
    slow = member({"/cluster": (200, payload("cluster_healthy.json"))}, delay=5.0)
    good = member({"/cluster": (200, payload("cluster_healthy.json"))})

    started = time.monotonic()
    cluster = fetch_cluster([dead_endpoint, slow.url, good.url], timeout=0.5)
    elapsed = time.monotonic() - started

    assert cluster["source"] == good.url + "/cluster"
    assert cluster["leader"] == "node-a"
    assert set(cluster["errors"]) == {dead_endpoint + "/cluster", slow.url + "/cluster"}
    assert "connection refused" in cluster["errors"][dead_endpoint + "/cluster"]
    assert "timeout" in cluster["errors"][slow.url + "/cluster"]
    assert "0.5 s" in cluster["errors"][slow.url + "/cluster"]
    assert elapsed < 3.0, f"the slow member was not cut off by the timeout ({elapsed:.1f} s)"


def test_stops_at_first_member_that_answers(member):
    first = member({"/cluster": (200, payload("cluster_healthy.json"))})
    second = member({"/cluster": (200, payload("cluster_no_leader.json"))})

    cluster = fetch_cluster([first.url, second.url])

    assert cluster["leader"] == "node-a"
    assert second.requests == []


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (CLOSE, "connection closed without a response"),
        ((503, {"error": "x"}), "HTTP 503"),
        ((200, b"<html>proxy login</html>"), "not JSON"),
        ((200, {"state": "running"}), "no 'members' list"),
    ],
    ids=["closed", "http-503", "not-json", "not-cluster"],
)
def test_bad_answer_moves_on_and_names_reason(member, route, reason):
    broken = member({"/cluster": route})
    good = member({"/cluster": (200, payload("cluster_healthy.json"))})

    cluster = fetch_cluster([broken.url, good.url])

    assert cluster["source"] == good.url + "/cluster"
    assert reason in cluster["errors"][broken.url + "/cluster"]


def test_without_cluster_anywhere_assembles_from_patroni(member, dead_endpoint):
    # Patroni closes /cluster when it cannot read the DCS; /patroni still answers.
    node_a = member({"/cluster": CLOSE, "/patroni": (200, payload("patroni_node-a_primary.json"))})
    node_b = member(
        {"/cluster": CLOSE, "/patroni": (200, payload("patroni_node-b_sync_standby.json"))}
    )

    cluster = fetch_cluster([node_a.url, node_b.url, dead_endpoint])

    assert cluster["fallback"] is True
    assert cluster["leader"] == "node-a"
    assert cluster["sync_standbys"] == ["node-b"]
    assert cluster["timelines"] == [3]
    assert cluster["scope"] == "hastack"
    assert cluster["source"] == f"{node_a.url}/patroni, {node_b.url}/patroni"
    assert [m["name"] for m in cluster["members"]] == ["node-a", "node-b"]
    replica = cluster["members"][1]
    assert (replica["role"], replica["state"], replica["lag"]) == ("sync_standby", "streaming", 0)
    assert replica["api_url"] == node_b.url + "/patroni"
    assert set(cluster["errors"]) == {
        node_a.url + "/cluster",
        node_b.url + "/cluster",
        dead_endpoint + "/cluster",
        dead_endpoint + "/patroni",
    }


def test_fallback_computes_lag_from_leader_position(member):
    node_a = member({"/patroni": (200, payload("patroni_node-a_primary.json"))})
    node_c = member({"/patroni": (200, payload("patroni_node-c_replica.json"))})

    cluster = fetch_cluster([node_a.url, node_c.url])

    replica = next(m for m in cluster["members"] if m["name"] == "node-c")
    assert replica["lag"] == 67108864 - 67100000
    assert replica["tags"] == {"zone": "c"}


def test_fallback_shows_stopped_member(member):
    node_a = member({"/patroni": (200, payload("patroni_node-a_primary.json"))})
    node_b = member({"/patroni": (200, payload("patroni_node-b_stopped.json"))})

    cluster = fetch_cluster([node_a.url, node_b.url])

    stopped = next(m for m in cluster["members"] if m["name"] == "node-b")
    assert (stopped["role"], stopped["state"], stopped["lag"]) == ("replica", "stopped", None)


def test_fallback_reveals_two_primaries(member):
    node_a = member({"/patroni": (200, payload("patroni_node-a_primary.json"))})
    node_c = member({"/patroni": (200, payload("patroni_node-c_split_primary.json"))})

    cluster = fetch_cluster([node_a.url, node_c.url])

    assert [m["role"] for m in cluster["members"]] == ["leader", "leader"]
    assert cluster["leader"] is None
    assert cluster["timelines"] == [3, 4]
    assert all(m["lag"] is None for m in cluster["members"])


def test_nobody_answers_names_every_url(dead_endpoint, member):
    slow = member({}, delay=5.0)

    with pytest.raises(PatroniUnreachableError) as caught:
        fetch_cluster([dead_endpoint, slow.url], timeout=0.3)

    errors = caught.value.errors
    assert set(errors) == {
        dead_endpoint + "/cluster",
        slow.url + "/cluster",
        dead_endpoint + "/patroni",
        slow.url + "/patroni",
    }
    message = str(caught.value)
    for url in errors:
        assert url in message
    assert "connection refused" in message
    assert "timeout" in message


# --- auth, TLS, arguments ---------------------------------------------------


def test_basic_auth_header_is_sent(member):
    api = member({"/cluster": (200, payload("cluster_healthy.json"))})

    fetch_cluster([api.url], username="patroni", password="s3cret")

    headers = api.requests[0][1]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"patroni:s3cret").decode()


def test_no_auth_header_without_username(member):
    api = member({"/cluster": (200, payload("cluster_healthy.json"))})

    fetch_cluster([api.url])

    assert "Authorization" not in api.requests[0][1]


def test_unauthorized_says_what_to_check(member):
    api = member({"/cluster": (401, {"error": "no auth header"})})

    with pytest.raises(PatroniUnreachableError) as caught:
        fetch_cluster([api.url])

    assert "HTTP 401" in caught.value.errors[api.url + "/cluster"]
    assert "check username/password" in caught.value.errors[api.url + "/cluster"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_member(member, tls_files):
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return member({"/cluster": (200, payload("cluster_healthy.json"))}, tls=context)


def test_tls_unknown_ca_is_refused_with_advice(tls_member):
    with pytest.raises(PatroniUnreachableError) as caught:
        fetch_cluster([tls_member.url])

    reason = caught.value.errors[tls_member.url + "/cluster"]
    assert "certificate verification failed" in reason
    assert "ca_file" in reason


def test_tls_with_ca_file(tls_member, tls_files):
    cluster = fetch_cluster([tls_member.url], ca_file=str(tls_files[0]))

    assert cluster["leader"] == "node-a"


def test_tls_without_validation(tls_member):
    cluster = fetch_cluster([tls_member.url], validate_certs=False)

    assert cluster["leader"] == "node-a"


def test_unreadable_ca_file_is_an_argument_error(tmp_path):
    with pytest.raises(ValueError, match="ca_file"):
        fetch_cluster(["https://127.0.0.1:1"], ca_file=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.42.0.11:8008", "http://127.42.0.11:8008"),
        ("http://127.42.0.11:8008/", "http://127.42.0.11:8008"),
        ("http://127.42.0.11:8008/patroni", "http://127.42.0.11:8008"),
        (" https://pg-0:8008/api/ ", "https://pg-0:8008/api"),
    ],
)
def test_normalize_endpoint(endpoint, expected):
    assert normalize_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["127.42.0.11:8008", "ftp://x:21", "http://"])
def test_bad_endpoint_is_refused(endpoint):
    with pytest.raises(ValueError, match="not an http"):
        fetch_cluster([endpoint])


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"endpoints": []}, "endpoints is empty"), ({"timeout": 0}, "timeout")]
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fetch_cluster(**({"endpoints": ["http://127.0.0.1:1"]} | kwargs))
