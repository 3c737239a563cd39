"""The recorder end to end against the private PostgreSQL, then the report on its output."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.drill import report
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_sampler import Member
from ansible_collections.hastack.ha.plugins.module_utils.drill.recorder import (
    RAW_FORMAT,
    RecorderConfig,
    RecorderError,
    record,
    summarize,
)


def _config(pg, tmp_path, **kw) -> RecorderConfig:
    base = {
        "conninfo": f"host={pg.host} port={pg.port}",
        "password": pg.password,
        "members": [Member("pg", pg.host, pg.port), Member("gone", pg.host, pg.port + 1)],
        "run_id": f"rec-{uuid.uuid4().hex[:8]}",
        "output": str(tmp_path / "out" / "raw.json"),
        "stop_file": str(tmp_path / "stop"),
        "events_file": str(tmp_path / "events.jsonl"),
        "max_duration_s": 20,
        "readback_timeout_s": 5,
    }
    base.update(kw)
    return RecorderConfig(**base)


def test_records_until_stop_file_with_events(pg, tmp_path):
    config = _config(pg, tmp_path)
    events = tmp_path / "events.jsonl"

    def playbook() -> None:
        time.sleep(0.5)
        line = {"t_wall": time.time(), "event": "disrupt_start", "target": "pg", "kind": "noop"}
        events.write_text(json.dumps(line) + "\n")
        time.sleep(0.5)
        with events.open("a") as fh:
            fh.write('{"event": "disrupt_end", "target": "pg"}\n{"event": "half')
        time.sleep(0.3)
        with events.open("a") as fh:
            fh.write(' a line"}\nnot json\n')
        time.sleep(0.3)
        (tmp_path / "stop").touch()

    t0 = time.monotonic()
    threading.Thread(target=playbook, daemon=True).start()
    raw = record(config)
    assert time.monotonic() - t0 < 5

    on_disk = json.loads((tmp_path / "out" / "raw.json").read_text())
    assert on_disk == raw
    assert raw["format"] == RAW_FORMAT
    assert set(raw) == {
        "format", "run_id", "started_at", "anchor", "config", "writer",
        "samples", "sampler", "events", "stop", "readback",
    }  # fmt: skip
    assert "password" not in raw["config"]["conninfo"]
    assert pg.password not in json.dumps(raw)
    assert "target_session_attrs=read-write" in raw["config"]["conninfo"]
    assert raw["stop"]["reason"] == "stop_file"
    assert 1.4 < raw["stop"]["t"] < 2.5

    attempts = raw["writer"]["attempts"]
    assert len(attempts) > 50
    assert {a["outcome"] for a in attempts} == {"ack"}
    assert raw["readback"]["ok"] is True
    assert raw["readback"]["server"] == pg.host
    assert set(raw["readback"]["ids"]) == {a["id"] for a in attempts}

    assert {s["state"] for s in raw["samples"]["pg"]} == {"primary"}
    assert {s["state"] for s in raw["samples"]["gone"]} == {"unknown"}

    names = [e["event"] for e in raw["events"]]
    assert names == ["disrupt_start", "disrupt_end", "half a line", "unparsed"]
    start, end = raw["events"][0], raw["events"][1]
    assert 0.4 < start["t"] < 0.8  # from its t_wall
    assert 0.9 < end["t"] < 1.3  # when it was read (no t_wall)
    assert end["t_wall"] == pytest.approx(raw["anchor"]["wall"] + end["t"], abs=1e-3)

    summary = summarize(raw)
    assert summary["writes"]["ack"] == len(attempts)
    assert summary["readback"]["acked_missing"] == 0

    doc = report.build_report(raw, "noop", {"max_lost_writes": 0, "allow_split_brain": False})
    assert doc["verdict"] == "pass"
    assert doc["metrics"]["old_leader"] == doc["metrics"]["new_leader"] == "pg"
    assert doc["metrics"]["disruptions"][0]["target"] == "pg"
    files = report.write_report(doc, raw, str(tmp_path / "report"))
    assert (tmp_path / "report").joinpath(files["png"].rsplit("/", 1)[1]).stat().st_size > 10_000


def test_stops_by_itself_after_max_duration(pg, tmp_path):
    raw = record(_config(pg, tmp_path, max_duration_s=1.0, members=[]))
    assert raw["stop"]["reason"] == "max_duration"
    assert 1.0 <= raw["stop"]["t"] < 1.3


def test_refuses_to_start_when_stop_file_exists(pg, tmp_path):
    (tmp_path / "stop").touch()
    with pytest.raises(RecorderError, match="exists before the drill started"):
        record(_config(pg, tmp_path))
    assert not (tmp_path / "out").exists()


def test_refuses_to_start_without_a_writable_cluster(pg, tmp_path):
    config = _config(pg, tmp_path, conninfo=f"host={pg.host} port={pg.port + 1}")
    config.readback_timeout_s = 1
    with pytest.raises(RecorderError, match=r"did not take writes within 1 s.*refused"):
        record(config)
