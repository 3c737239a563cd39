"""The writer against a real, private PostgreSQL 15 (see conftest.py)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.drill import analysis
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_writer import PgWriter

CANCEL_MESSAGES = ("canceling statement due to user request", "canceling wait for synchronous")


def _run_id() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _writer(pg, run_id: str, **kw) -> PgWriter:
    return PgWriter(
        pg.conninfo(target_session_attrs="read-write"),
        run_id,
        password=pg.password,
        **kw,
    )


def _present(pg, run_id: str) -> set[int]:
    return {
        r[0] for r in pg.sql("SELECT id FROM hastack_drill.writes WHERE run_id = %s", (run_id,))
    }


def _wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def test_acknowledged_rows_are_present(pg):
    run_id = _run_id()
    w = _writer(pg, run_id, interval_s=0.02)
    w.start()
    time.sleep(1.0)
    w.stop()
    w.join(5)
    attempts = [a.as_dict() for a in w.attempts()]
    acked = {a["id"] for a in attempts if a["outcome"] == "ack"}
    assert 35 <= len(attempts) <= 55  # one every ~20 ms
    assert len(acked) == len(attempts)
    assert {a["server"] for a in attempts} == {pg.host}
    assert {a["timeline"] for a in attempts} == {1}
    assert _present(pg, run_id) == acked
    assert analysis.write_gap(attempts)["seconds"] < 0.2


def test_server_killed_mid_run_errors_and_gap_but_no_lost_ack(pg):
    run_id = _run_id()
    w = _writer(pg, run_id, interval_s=0.02, write_timeout_s=2.0)
    w.start()
    time.sleep(0.6)
    pg.stop("immediate")
    t_down = w.clock.now()
    time.sleep(1.0)
    t_restart = w.clock.now()
    pg.start()
    t_up = w.clock.now()
    _wait_for(lambda: any(a.outcome == "ack" and a.t_start > t_up for a in w.attempts()))
    time.sleep(0.3)
    w.stop()
    w.join(10)

    attempts = [a.as_dict() for a in w.attempts()]
    counts = analysis.outcome_counts(attempts)
    gap = analysis.write_gap(attempts)
    loss = analysis.lost_writes(attempts, _present(pg, run_id))
    assert counts["error"] > 5, counts
    assert gap["seconds"] >= t_restart - t_down, gap
    assert gap["from_t"] <= t_down and gap["to_t"] >= t_restart, gap
    assert loss["lost"] == 0
    assert loss["error_committed"] == 0
    assert [a for a in attempts if a["phase"] == "connect"], "the writer did reconnect"
    assert attempts[-1]["outcome"] == "ack"


def test_timeout_is_unknown_and_sends_no_cancel(pg):
    """A blocked INSERT past write_timeout_s: unknown, connection dropped, backend NOT cancelled."""
    run_id = _run_id()
    w = _writer(pg, run_id, write_timeout_s=0.5)
    first = w.write_once()  # creates the table, connects
    assert first.outcome == "ack"
    log_before = len(pg.log_text())

    with pg.admin(autocommit=False) as locker:
        locker.execute("LOCK TABLE hastack_drill.writes IN ACCESS EXCLUSIVE MODE")
        blocked = w.write_once()
        assert blocked.outcome == "unknown"
        assert 0.5 <= blocked.t_end - blocked.t_start < 1.0
        assert "no answer within 0.5 s" in blocked.error
        # The server-side INSERT is still waiting for the lock: nobody cancelled it.
        waiting = pg.sql(
            "SELECT state, wait_event_type FROM pg_stat_activity "
            "WHERE application_name = 'hastack-drill-writer' AND query LIKE 'INSERT%'"
        )
        assert waiting == [("active", "Lock")]
        time.sleep(0.3)
        locker.commit()  # release the lock

    # ...so it goes on and commits: the write was unknown, not failed.
    _wait_for(lambda: blocked.id in _present(pg, run_id))
    assert "canceling" not in pg.log_text()[log_before:]
    again = w.write_once()
    assert again.outcome == "ack"  # reconnected


def test_commit_waiting_for_sync_standby_is_unknown_not_acknowledged(pg):
    """The case DESIGN.md warns about: a commit waiting for a synchronous standby."""
    run_id = _run_id()
    w = _writer(pg, run_id, write_timeout_s=0.5)
    assert w.write_once().outcome == "ack"
    log_before = len(pg.log_text())
    pg.set_config("synchronous_standby_names", "nobody")  # a standby that never comes
    # An idle session applies a reload only after its next command, so start a
    # new session: the write must wait for the standby, not race the SIGHUP.
    w._drop()

    stuck = w.write_once()
    assert stuck.outcome == "unknown"
    assert stuck.id not in _present(pg, run_id)  # committed locally, invisible until released

    pg.set_config("synchronous_standby_names", "")  # releases the waiting commit
    _wait_for(lambda: stuck.id in _present(pg, run_id))
    log = pg.log_text()[log_before:]
    assert not any(m in log for m in CANCEL_MESSAGES), log


def test_someone_elses_cancel_of_a_sync_commit_is_not_an_ack(pg):
    """If anything else cancels the wait, PostgreSQL returns success + WARNING: unknown."""
    run_id = _run_id()
    w = _writer(pg, run_id, write_timeout_s=10.0)
    assert w.write_once().outcome == "ack"
    pg.set_config("synchronous_standby_names", "nobody")
    w._drop()  # a new session, certain to see the setting (see above)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("a", w.write_once()))
    t.start()
    pid = _wait_for(
        lambda: pg.sql(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = 'hastack-drill-writer' AND wait_event = 'SyncRep'"
        )
    )[0][0]
    pg.sql("SELECT pg_cancel_backend(%s)", (pid,))
    t.join(10)
    attempt = result["a"]
    assert attempt.outcome == "unknown"
    assert "synchronous replication" in attempt.error
    assert attempt.id in _present(pg, run_id)  # committed locally, yet never acknowledged


@pytest.mark.parametrize("port_offset", [1])
def test_no_server_is_an_error_not_unknown(pg, port_offset):
    w = PgWriter(pg.conninfo(port=pg.port + port_offset), _run_id(), password=pg.password)
    attempt = w.write_once()
    assert attempt.outcome == "error"
    assert attempt.phase == "connect"
    assert "refused" in attempt.error
