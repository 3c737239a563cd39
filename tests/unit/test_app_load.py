"""tools/app_load.py: an idempotent request whose kept-alive connection closes unanswered is sent once more."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import httpx
import pytest
from closing_backend import ClosingBackend

TOOL = Path(__file__).resolve().parents[2] / "tools" / "app_load.py"
spec = importlib.util.spec_from_file_location("app_load", TOOL)
app_load = importlib.util.module_from_spec(spec)
sys.modules["app_load"] = app_load  # dataclasses look their module up
spec.loader.exec_module(app_load)


@pytest.fixture
def backend():
    server = ClosingBackend()
    yield server
    server.close()


async def twice(url: str, method: str) -> tuple[int, bool]:
    """A GET that keeps its connection alive, then ``method`` on that connection."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        assert (await client.get("/first")).status_code == 200
        response, retried = await app_load.send(client, method, "/items/1", content=b"{}")
        return response.status_code, retried


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_idempotent_request_is_sent_again_once(backend, method):
    assert asyncio.run(twice(f"http://127.0.0.1:{backend.port}", method)) == (200, True)
    assert backend.dropped[f"{method} /items/1"] == 1 and backend.answered[f"{method} /items/1"] == 1


def test_a_post_is_not_sent_again(backend):
    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(twice(f"http://127.0.0.1:{backend.port}", "POST"))
    assert backend.dropped["POST /items/1"] == 1 and backend.answered["POST /items/1"] == 0


def test_the_summary_counts_the_retries():
    samples = [app_load.Sample(0.0, "read", 0.01, 200), app_load.Sample(0.1, "read", 0.02, 200, retried=True)]
    assert app_load.summarize(samples)["retried"] == 1
