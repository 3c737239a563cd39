"""The Redis drill writer, sampler and recorder against a real master, replica and Sentinel.

The servers run on 127.77.2.1-3 (see fixtures/redis/redis_drill_lab.py); the
sentinel fails over 1.5 s after the master stops answering.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.drill.analysis import analyse
from ansible_collections.hastack.ha.plugins.module_utils.drill.recorder import summarize
from ansible_collections.hastack.ha.plugins.module_utils.drill.redis_recorder import (
    RedisRecorderConfig,
    record,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.redis_sampler import (
    RedisClusterSampler,
    classify,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.redis_writer import (
    RedisWriter,
    SentinelTarget,
    discover_master,
    read_back_ids,
)
from ansible_collections.hastack.ha.plugins.module_utils.redis_sentinel import (
    Credentials,
    Endpoint,
    RedisError,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures" / "redis"))
from redis_drill_lab import MASTER_HOST, REPLICA_HOST, RedisDrillLab, redis_drill_lab
from redis_unit_lab import REDIS_SERVER

pytestmark = pytest.mark.skipif(not REDIS_SERVER.exists(), reason=f"Redis is not installed ({REDIS_SERVER} missing)")


@pytest.fixture(scope="module")
def lab() -> Iterator[RedisDrillLab]:
    with redis_drill_lab() as running:
        yield running


def target(lab: RedisDrillLab) -> SentinelTarget:
    return SentinelTarget(
        (Endpoint(*lab.address("sentinel"), name="s1"),),
        lab.master_name,
        Credentials(lab.password),
        Credentials(lab.sentinel_password),
    )


def members(lab: RedisDrillLab) -> list[Endpoint]:
    return [
        Endpoint(*lab.address("master"), name="m"),
        Endpoint(*lab.address("replica"), name="r"),
    ]


def run_writer(writer: RedisWriter, seconds: float) -> None:
    writer.start()
    time.sleep(seconds)
    writer.stop()
    writer.join(10)
    assert not writer.is_alive()
    assert writer.fatal is None


# --- pure ------------------------------------------------------------------


def test_classify_states():
    assert classify({"role": "slave"}, {}, 1) == ("replica", None)
    assert classify({"role": "master"}, {"min_slaves_good_slaves": "1"}, 1) == ("primary", None)
    assert classify({"role": "master"}, {}, None) == ("primary", None)
    assert classify({"role": "master"}, {"min_slaves_good_slaves": "0"}, 0) == ("primary", None)
    state, error = classify({"role": "master"}, {"min_slaves_good_slaves": "0"}, 1)
    assert state == "unknown" and "refusing writes" in error
    assert classify({"role": "sentinel"}, {}, None)[0] == "unknown"


def test_discover_names_every_sentinel_that_failed():
    dead = SentinelTarget((Endpoint("127.77.2.9", 1, name="gone"),), "x")
    with pytest.raises(RedisError, match="sentinel gone: connection refused"):
        discover_master(dead, 0.5)


# --- against the servers ------------------------------------------------------


def test_acks_are_read_back_from_the_master(lab):
    writer = RedisWriter(target(lab), "acks", interval_s=0.01)
    run_writer(writer, 1.0)
    attempts = writer.attempts()
    acked = [a.id for a in attempts if a.outcome == "ack"]
    assert len(acked) > 30
    assert {a.outcome for a in attempts} == {"ack"}
    assert {a.server for a in attempts} == {MASTER_HOST}
    ids, server = read_back_ids(target(lab), "acks")
    assert server == MASTER_HOST
    assert ids == sorted(acked)


def test_a_write_without_answer_is_unknown(lab):
    writer = RedisWriter(target(lab), "frozen", interval_s=0.01, write_timeout_s=0.3)
    writer.start()
    time.sleep(0.3)
    lab.signal("master", signal.SIGSTOP)
    try:
        time.sleep(0.8)  # shorter than down-after (1.5 s): no failover
    finally:
        lab.signal("master", signal.SIGCONT)
    time.sleep(0.5)
    writer.stop()
    writer.join(10)
    attempts = writer.attempts()
    unknown = [a for a in attempts if a.outcome == "unknown"]
    assert unknown, [a.as_dict() for a in attempts]
    assert "timeout" in unknown[0].error
    assert attempts[-1].outcome == "ack"
    ids, _ = read_back_ids(target(lab), "frozen")
    assert {a.id for a in attempts if a.outcome == "ack"} <= set(ids)
    # a refused write never shows up: only acknowledged or unknown ids are in the list
    assert set(ids) <= {a.id for a in attempts if a.outcome in ("ack", "unknown")}


def test_sampler_tells_master_replica_fenced_and_gone(lab):
    sampler = RedisClusterSampler(members(lab), Credentials(lab.password), timeout_s=0.5)
    master, replica = sampler.samplers
    assert master.sample_once().state == "primary"
    assert replica.sample_once().state == "replica"

    lab.ask("master", "CONFIG", "SET", "min-replicas-to-write", "2")
    try:
        fenced = RedisClusterSampler(members(lab), Credentials(lab.password)).samplers[0]
        deadline = time.monotonic() + 5
        sample = fenced.sample_once()
        while sample.state == "primary" and time.monotonic() < deadline:
            time.sleep(0.2)
            sample = fenced.sample_once()
        assert sample.state == "unknown"
        assert "refusing writes: 1 good replica(s) < min-replicas-to-write 2" in sample.error
        fenced._drop()
    finally:
        lab.ask("master", "CONFIG", "SET", "min-replicas-to-write", "0")

    gone = RedisClusterSampler([Endpoint("127.77.2.9", 1, name="gone")], Credentials(lab.password)).samplers[0]
    sample = gone.sample_once()
    assert sample.state == "unknown" and "refused" in sample.error
    master._drop()
    replica._drop()


def test_master_killed_mid_run_gives_errors_and_a_gap_not_lost_acks(tmp_path):
    """The whole recorder through a real failover; the analysis reads its raw JSON unchanged."""
    with redis_drill_lab(down_after_ms=1500) as lab:
        config = RedisRecorderConfig(
            master_name=lab.master_name,
            sentinels=[Endpoint(*lab.address("sentinel"), name="s1")],
            members=members(lab),
            run_id="kill",
            output=str(tmp_path / "raw.json"),
            stop_file=str(tmp_path / "stop"),
            events_file=str(tmp_path / "events.jsonl"),
            password=lab.password,
            sentinel_password=lab.sentinel_password,
            write_timeout_s=0.5,
            readback_timeout_s=10,
        )
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(raw=record(config)), daemon=True)
        thread.start()
        time.sleep(1.0)
        (tmp_path / "events.jsonl").write_text(
            f'{{"t_wall": {time.time()}, "event": "disrupt_start", "target": "m"}}\n'
        )
        lab.processes["master"].kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = lab.ask("sentinel", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", lab.master_name)
            if REPLICA_HOST.encode() in reply:
                break
            time.sleep(0.2)
        time.sleep(1.5)
        (tmp_path / "stop").touch()
        thread.join(60)
        assert not thread.is_alive()

    raw = result["raw"]
    assert raw["format"] == "hastack.drill.raw/1"
    assert raw["readback"]["ok"] and raw["readback"]["server"] == REPLICA_HOST
    assert summarize(raw)["readback"]["acked_missing"] == 0

    metrics = analyse(raw)
    assert metrics["lost_writes"] == 0
    assert metrics["writes"]["error"] > 0
    assert 1.5 <= metrics["write_gap_s"] < 15
    assert [(c["from"], c["to"]) for c in metrics["leader_changes"]] == [("m", "r")]
    assert metrics["split_brain"] is False
    assert metrics["disruptions"][0]["target"] == "m"
    lanes = metrics["member_windows"]
    assert lanes["m"][0]["state"] == "primary" and lanes["m"][-1]["state"] == "unknown"
    assert lanes["r"][0]["state"] == "replica" and lanes["r"][-1]["state"] == "primary"


class WrongSentinel:
    """A fake sentinel on 127.77.2.4 that names ``address`` as the master (after any AUTH)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.listener = socket.socket()
        self.listener.bind(("127.77.2.4", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.asked = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    while b"GET-MASTER-ADDR-BY-NAME" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                        if data.startswith(b"*2\r\n$4\r\nAUTH") and data.count(b"\r\n") >= 5:
                            conn.sendall(b"+OK\r\n")
                            data = b""
                    if b"GET-MASTER-ADDR-BY-NAME" in data:
                        self.asked += 1
                        host, port = self.address[0].encode(), str(self.address[1]).encode()
                        conn.sendall(b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(host), host, len(port), port))

    def close(self) -> None:
        self.listener.close()


def test_a_sentinel_naming_a_replica_is_skipped_next_time(lab):
    """The sentinel that named a master that failed is asked last on the next discovery."""
    wrong = WrongSentinel(lab.address("replica"))
    try:
        tgt = SentinelTarget(
            (Endpoint("127.77.2.4", wrong.port, name="wrong"), Endpoint(*lab.address("sentinel"), name="s1")),
            lab.master_name,
            Credentials(lab.password),
            Credentials(lab.sentinel_password),
        )
        writer = RedisWriter(tgt, "rotate", interval_s=0.01)
        first = writer.write_once()
        assert first.outcome == "error" and first.phase == "connect"
        assert "the sentinels name it master but it says slave" in first.error
        second = writer.write_once()
        assert second.outcome == "ack" and second.server == MASTER_HOST
        assert writer.write_once().outcome == "ack"
        assert wrong.asked == 1
        writer._drop()
    finally:
        wrong.close()
