"""hastack.ha.patroni_cluster_info run in-process against real HTTP servers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.hastack.ha.plugins.modules import patroni_cluster_info

FIXTURES = Path(__file__).parent / "fixtures" / "patroni"


def serve(routes: dict[str, bytes]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return httpd


@pytest.fixture
def healthy_api() -> Iterator[str]:
    httpd = serve({"/cluster": (FIXTURES / "cluster_healthy.json").read_bytes()})
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dead_endpoints() -> list[str]:
    urls = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
    return urls


def run_module(capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        patroni_cluster_info.main()
    return json.loads(capsys.readouterr().out)


def test_returns_cluster_unchanged(capsys, healthy_api):
    result = run_module(capsys, {"endpoints": [healthy_api]})

    assert not result.get("failed"), result
    assert result["changed"] is False
    cluster = result["cluster"]
    assert cluster["leader"] == "node-a"
    assert cluster["sync_standbys"] == ["node-b"]
    assert cluster["timelines"] == [3]
    assert cluster["source"] == healthy_api + "/cluster"
    assert [m["name"] for m in cluster["members"]] == ["node-a", "node-b", "node-c"]
    assert set(cluster) == {
        "leader", "members", "sync_standbys", "timelines", "source",
        "errors", "scope", "paused", "fallback",
    }  # fmt: skip


def test_runs_in_check_mode(capsys, healthy_api):
    result = run_module(capsys, {"endpoints": [healthy_api], "_ansible_check_mode": True})

    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["cluster"]["leader"] == "node-a"


def test_dead_members_are_listed_but_do_not_fail(capsys, healthy_api, dead_endpoints):
    result = run_module(capsys, {"endpoints": [*dead_endpoints, healthy_api], "timeout": 0.5})

    assert not result.get("failed"), result
    assert set(result["cluster"]["errors"]) == {url + "/cluster" for url in dead_endpoints}


def test_fails_when_nobody_answers_and_names_each_endpoint(capsys, dead_endpoints):
    result = run_module(capsys, {"endpoints": dead_endpoints, "timeout": 0.5})

    assert result["failed"] is True
    assert result["changed"] is False
    for url in dead_endpoints:
        assert f"{url}/cluster: connection refused" in result["msg"]
        assert f"{url}/patroni: connection refused" in result["msg"]
    assert len(result["errors"]) == 4


def test_bad_endpoint_fails_with_example(capsys):
    result = run_module(capsys, {"endpoints": ["198.18.1.11:8008"]})

    assert result["failed"] is True
    assert "'198.18.1.11:8008' is not an http(s) URL" in result["msg"]
    assert "http://198.18.1.11:8008" in result["msg"]


def test_endpoints_are_required(capsys):
    result = run_module(capsys, {})

    assert result["failed"] is True
    assert "endpoints" in result["msg"]


def test_password_is_not_logged(capsys, healthy_api):
    result = run_module(
        capsys, {"endpoints": [healthy_api], "username": "patroni", "password": "s3cret-pw"}
    )

    assert not result.get("failed"), result
    assert result["invocation"]["module_args"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert "s3cret-pw" not in json.dumps(result)


def test_module_runs_under_ansible(healthy_api):
    """The real packaging path: AnsiballZ must ship the module_utils client with the module."""
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local",
         "-i", "localhost,", "-m", "hastack.ha.patroni_cluster_info",
         "-a", json.dumps({"endpoints": [healthy_api]}), "--check",
         "-e", f"ansible_python_interpreter={sys.executable}"],
        cwd=repo, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.split("=>", 1)[1])
    assert result["changed"] is False
    assert result["cluster"]["leader"] == "node-a"
