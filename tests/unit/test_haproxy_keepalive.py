"""The role's haproxy.cfg on loopback: no request fails on a connection that is closing.

A real HAProxy (Debian's package) runs the app_backend role's template with its
defaults, in front of a small HTTP server on loopback. Two races lost a read in
the zone drill (issue 17: RemoteProtocolError, no 5xx, long after the failover):

- client side: HAProxy closed an idle client connection after 5 s, httpx's
  own idle expiry, so httpx could send a request on a connection HAProxy was
  closing. HAProxy must keep an idle connection clearly longer than httpx.
- server side: the instance (uvicorn, 5 s) closed an idle connection just as
  HAProxy sent a request on it. HAProxy then closes the client's connection
  without an answer. The backend below does that on purpose (it closes every
  connection's second request unanswered); an idempotent request must be
  sent again on a new connection, a POST must not.

The statistical reproduction (an httpx client idling about 5 s between
requests, before and after) is in docs/drills.md.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest
import yaml
from closing_backend import ClosingBackend

ROLE = Path(__file__).resolve().parents[2] / "roles" / "app_backend"
TEMPLATE = ROLE / "templates" / "etc" / "haproxy" / "haproxy.cfg.j2"
HTTPX_KEEPALIVE_EXPIRY_S = 5.0  # httpx.Limits() default

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy missing (Debian package haproxy)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(**overrides: Any) -> str:
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(overrides)
    values.update(
        ansible_managed="rendered by tests/unit/test_haproxy_keepalive.py",
        _app_backend_lb_config_marker="HAProxy in front of the app instances",
    )
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(**values)


@pytest.fixture
def lb(tmp_path: Path) -> Iterator[tuple[str, ClosingBackend]]:
    backend = ClosingBackend()
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        render(
            app_backend_lb_address="127.0.0.1",
            app_backend_lb_port=port,
            app_backend_lb_stats_port=free_port(),
            _app_backend_lb_socket=str(tmp_path / "admin.sock"),
            _app_backend_servers={"app-1": f"127.0.0.1:{backend.port}"},
        )
    )
    subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], check=True, timeout=10)
    proc = subprocess.Popen(["haproxy", "-W", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:  # until the health check (GET /ready) has put the server in
            try:
                if httpx.get(url + "/up", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "HAProxy did not serve within 10 s"
            time.sleep(0.2)
        yield url, backend
    finally:
        proc.terminate()
        proc.wait(10)
        backend.close()


def get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n".encode())
    sock.settimeout(5)
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def test_an_idle_client_connection_outlives_httpx_expiry(lb: tuple[str, ClosingBackend]) -> None:
    """httpx drops a connection idle for 5 s; HAProxy must not close it first."""
    url, _ = lb
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert get(sock, "/first").startswith(b"HTTP/1.1 200")
        time.sleep(HTTPX_KEEPALIVE_EXPIRY_S + 0.5)
        answer = get(sock, "/after-idle")
    assert answer.startswith(b"HTTP/1.1 "), (
        f"HAProxy closed a client connection idle for {HTTPX_KEEPALIVE_EXPIRY_S + 0.5} s: a client whose "
        "idle expiry is 5 s (httpx) races it; raise app_backend_lb_keepalive_s"
    )


def test_a_read_on_a_server_connection_that_closes_is_sent_again(lb: tuple[str, ClosingBackend]) -> None:
    url, backend = lb
    statuses: list[int | str] = []
    with httpx.Client(base_url=url, timeout=5) as client:
        for method, path in (("GET", "/items/1"), ("GET", "/items/2"), ("PUT", "/items/3"), ("GET", "/items/4")):
            try:
                statuses.append(client.request(method, path, content=b"{}" if method == "PUT" else None).status_code)
            except httpx.HTTPError as exc:
                statuses.append(type(exc).__name__)
    assert statuses == [200, 200, 200, 200], (
        f"statuses {statuses}: the instance closed a reused connection as the request arrived "
        f"(dropped {dict(backend.dropped)}), and HAProxy did not send the idempotent request again"
    )
    assert backend.dropped, "the backend never saw a reused connection: the test did not test the race"


def test_a_post_on_a_server_connection_that_closes_is_not_sent_again(lb: tuple[str, ClosingBackend]) -> None:
    url, backend = lb
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/items/1").status_code == 200
        with contextlib.suppress(httpx.HTTPError):  # HAProxy closes the connection unanswered
            client.post("/items", content=b"{}")
    assert backend.dropped["POST /items"] == 1 and backend.answered["POST /items"] == 0, (
        f"answered {dict(backend.answered)}, dropped {dict(backend.dropped)}: a POST must reach the app at most once"
    )
