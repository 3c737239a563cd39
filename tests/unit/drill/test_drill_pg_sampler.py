"""The sampler against the private PostgreSQL: states, and a frozen member stalls only itself."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time

from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_sampler import (
    ClusterSampler,
    Member,
    MemberSampler,
)


def test_primary_sampled_every_interval_with_timeline(pg):
    s = MemberSampler("solo", pg.conninfo(), password=pg.password, interval_s=0.2)
    s.start()
    time.sleep(1.1)
    s.stop()
    s.join(5)
    rows = s.samples()
    assert 5 <= len(rows) <= 7
    assert {r.state for r in rows} == {"primary"}
    assert {r.timeline for r in rows} == {1}
    starts = [r.t_start for r in rows]
    assert max(b - a for a, b in itertools.pairwise(starts)) < 0.3


def test_frozen_member_stalls_only_its_own_lane(pg):
    """Lane a's backend is SIGSTOPped, lane c never answers: lane b keeps its 200 ms pace.

    Lane a times out, drops its connection (no cancel) and reconnects to a fresh
    backend; lane c (a socket that accepts and never speaks, like a SIGSTOPped
    postmaster) stays unknown for the whole run.
    """
    silent = socket.socket()  # accepts connections (kernel backlog), never speaks
    silent.bind((pg.host, 0))
    silent.listen(8)
    try:
        members = [
            Member("a", pg.host, pg.port),
            Member("b", pg.host, pg.port),
            Member("c", pg.host, silent.getsockname()[1]),
        ]
        cluster = ClusterSampler(
            members, dbname="postgres", user="postgres", password=pg.password, timeout_s=0.5
        )
        cluster.start()
        time.sleep(0.5)
        pid = pg.sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'hastack-drill-sampler-a'"
        )[0][0]
        os.kill(pid, signal.SIGSTOP)
        t_frozen = cluster.clock.now()
        try:
            time.sleep(1.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        t_thawed = cluster.clock.now()
        time.sleep(0.5)
        assert cluster.stop() == []
    finally:
        silent.close()

    lanes = cluster.samples()
    frozen = [r for r in lanes["a"] if t_frozen <= r.t_start < t_thawed]
    assert frozen[0].state == "unknown"
    assert frozen[0].t_end - frozen[0].t_start >= 0.5
    assert "no answer within 0.5 s" in frozen[0].error
    assert lanes["a"][-1].state == "primary"  # reconnected

    b_during = [r for r in lanes["b"] if t_frozen <= r.t_start < t_thawed]
    assert len(b_during) >= 6 and all(r.state == "primary" for r in b_during)

    assert lanes["c"] and all(r.state == "unknown" for r in lanes["c"])
    assert "timeout" in lanes["c"][0].error
    assert cluster.fatal() == {}


def test_refused_member_is_unknown(pg):
    s = MemberSampler("gone", pg.conninfo(port=pg.port + 1), password=pg.password)
    sample = s.sample_once()
    assert sample.state == "unknown"
    assert "refused" in sample.error
