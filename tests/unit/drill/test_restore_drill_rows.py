"""The restore drill's rows (module_utils/restore_drill.py) on a real PostgreSQL.

The private server of tests/unit/drill/conftest.py stands in for both the
live primary and the "restored" instance: on the live server every row is
there, so the check must flag the rows written after the target; with them
deleted it must pass. The real restore is tests/integration/test_80_backups.py.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.restore_drill import (
    TABLE,
    check_rows,
    judge_rows,
    write_rows,
)


def test_target_time_falls_between_the_two_batches(pg):
    result = write_rows(pg.conninfo(), pg.password, rows_before=5, rows_after=4, gap_s=0.3)
    assert result.before_ids == [1, 2, 3, 4, 5] and result.after_ids == [6, 7, 8, 9]
    rows = pg.sql(
        f"SELECT batch, min(written_at), max(written_at) FROM {TABLE} WHERE run_id = %s GROUP BY batch",
        (result.run_id,),
    )
    spans = {batch: (lo, hi) for batch, lo, hi in rows}
    target = datetime.fromisoformat(result.target_time)
    assert spans["before"][1] < target < spans["after"][0]
    assert (target - spans["before"][1]).total_seconds() >= 0.3
    assert (spans["after"][0] - target).total_seconds() >= 0.3
    assert result.database_size_bytes > 1_000_000
    assert result.server_version.startswith("15")


def test_check_flags_rows_written_after_the_target(pg):
    result = write_rows(pg.conninfo(), pg.password, rows_before=3, rows_after=2, gap_s=0.1)
    verdict = check_rows(pg.conninfo(), pg.password, result.run_id, result.before_ids, result.after_ids)
    assert verdict["ok"] is False
    assert verdict["present_after"] == [4, 5]
    assert "2 row(s) committed after the target are present" in verdict["problems"][0]


def test_check_passes_when_exactly_the_rows_before_the_target_are_there(pg):
    result = write_rows(pg.conninfo(), pg.password, rows_before=3, rows_after=2, gap_s=0.1)
    pg.sql(f"DELETE FROM {TABLE} WHERE run_id = %s AND batch = 'after'", (result.run_id,))
    verdict = check_rows(pg.conninfo(), pg.password, result.run_id, result.before_ids, result.after_ids)
    assert verdict == {
        "present": 3,
        "missing_before": [],
        "present_after": [],
        "in_recovery": False,
        "ok": True,
        "problems": [],
    }


def test_check_flags_missing_rows_of_an_instance_without_the_table(pg):
    pg.sql("CREATE DATABASE restore_drill_empty")
    try:
        verdict = check_rows(pg.conninfo(dbname="restore_drill_empty"), pg.password, "nope", [1, 2], [3])
    finally:
        pg.sql("DROP DATABASE restore_drill_empty")
    assert verdict["ok"] is False and verdict["missing_before"] == [1, 2]


def test_write_refuses_a_standby(pg, pg_standby):
    with pytest.raises(RuntimeError, match="is a standby"):
        write_rows(pg_standby.conninfo(), pg.password, rows_before=1, rows_after=1, gap_s=0.1)


def test_judge_rows_flags_recovery_not_finished():
    verdict = judge_rows([1, 2], [1, 2], [3], in_recovery=True)
    assert verdict["ok"] is False
    assert verdict["problems"] == ["the restored instance is still in recovery (not promoted at the target)"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows_before": 0}, "rows_before and rows_after must be >= 1"),
        ({"rows_after": -1}, "rows_before and rows_after must be >= 1"),
        ({"gap_s": 0}, "gap_s must be > 0"),
    ],
)
def test_write_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_rows("host=127.77.0.1 port=1", None, **kwargs)
