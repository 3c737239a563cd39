"""Real replica, real promotion, real split brain: both detectors must see it.

A standby of the private server is promoted while the old primary keeps
running: two writable servers. The sampler sees the standby as ``replica``
(timeline 1) first, then both as ``primary``; the writer, following the
multi-host conninfo, acknowledges on A, then B (timeline 2), then A again.
"""

from __future__ import annotations

import time

from ansible_collections.hastack.ha.plugins.module_utils.drill import analysis
from ansible_collections.hastack.ha.plugins.module_utils.drill.clock import Clock
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_sampler import (
    ClusterSampler,
    Member,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_writer import PgWriter

TERMINATE_WRITER = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE application_name = 'hastack-drill-writer'"
)


def _acks(writer: PgWriter, n: int) -> None:
    """Write until ``n`` more acknowledgements (reconnecting as needed)."""
    got = 0
    for _ in range(200):
        if writer.write_once().outcome == "ack":
            got += 1
            if got == n:
                return
        time.sleep(0.02)
    raise AssertionError(f"no {n} acknowledgements: {writer.attempts()[-3:]}")


def test_promoted_standby_beside_live_primary_is_split_brain(pg, pg_standby):
    a, b = pg, pg_standby
    clock = Clock.start()
    sampler = ClusterSampler(
        [Member("a", a.host, a.port), Member("b", b.host, b.port)],
        dbname="postgres",
        user="postgres",
        password=a.password,
        timeout_s=0.5,
        clock=clock,
    )
    writer = PgWriter(
        f"host={a.host},{b.host} port={a.port},{b.port} dbname=postgres user=postgres "
        "target_session_attrs=read-write connect_timeout=2",
        "split-brain",
        password=a.password,
        clock=clock,
    )
    sampler.start()
    try:
        _acks(writer, 5)  # on A: B is a standby
        time.sleep(0.6)
        b.promote()  # B: timeline 2, A still primary on timeline 1
        time.sleep(0.8)
        a.stop("fast")  # the writer fails over to B
        _acks(writer, 5)
        a.start()
        b.sql(TERMINATE_WRITER)  # the writer reconnects: first host, A, still writable
        _acks(writer, 5)
        time.sleep(0.6)
    finally:
        sampler.stop()

    samples = {m: [s.as_dict() for s in rows] for m, rows in sampler.samples().items()}
    attempts = [x.as_dict() for x in writer.attempts()]

    b_states = [(s["state"], s["timeline"]) for s in samples["b"] if s["state"] != "unknown"]
    assert b_states[0] == ("replica", 1)
    assert b_states[-1] == ("primary", 2)

    servers = [r["server"] for r in analysis.ack_runs(attempts)]
    assert servers == [a.host, b.host, a.host]

    by_samples = analysis.split_brain_from_samples(samples)
    assert by_samples and by_samples[0]["members"] == ["a", "b"]
    kinds = {e["kind"] for e in analysis.split_brain_from_acks(attempts)}
    assert kinds == {"interleave", "timeline_regression"}
