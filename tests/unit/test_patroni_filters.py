"""hastack.ha.patroni_problems / patroni_health_table on realistic Patroni 4.1.5 payloads.

Every check is shown twice: it reports the seeded fault, and it stays silent on
the healthy cluster with the same arguments.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hastack.ha.plugins.filter.patroni import (
    FilterModule,
    patroni_health_table,
    patroni_problems,
)
from ansible_collections.hastack.ha.plugins.module_utils.patroni import (
    assemble_from_statuses,
    normalize_cluster,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "patroni"
NAMES = ["node-a", "node-b", "node-c"]


def raw(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def cluster(name: str) -> dict[str, Any]:
    """A /cluster fixture, normalised as patroni_cluster_info returns it."""
    return normalize_cluster(raw(f"cluster_{name}.json"), f"fixture {name}")


def split_brain() -> dict[str, Any]:
    """node-a and node-c both primary, as seen member by member through /patroni."""
    return assemble_from_statuses(
        {
            "http://127.42.0.11:8008": raw("patroni_node-a_primary.json"),
            "http://127.42.0.12:8008": raw("patroni_node-b_sync_standby.json"),
            "http://127.42.0.13:8008": raw("patroni_node-c_split_primary.json"),
        }
    )


def healthy_with(change: Callable[[dict[str, Any]], None]) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        result = copy.deepcopy(cluster("healthy"))
        change(result)
        return result

    return build


def member(c: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in c["members"] if m["name"] == name)


def drop_node_c(c: dict[str, Any]) -> None:
    c["members"] = [m for m in c["members"] if m["name"] != "node-c"]


def leader_stopped(c: dict[str, Any]) -> None:
    member(c, "node-a")["state"] = "stopped"


def replica_in_archive_recovery(c: dict[str, Any]) -> None:
    member(c, "node-c")["state"] = "in archive recovery"


def pause(c: dict[str, Any]) -> None:
    c["paused"] = True


def pending_restart(c: dict[str, Any]) -> None:
    member(c, "node-b")["pending_restart"] = True


def lag_at_limit(c: dict[str, Any]) -> None:
    member(c, "node-c")["lag"] = 1048576


def lag_over_limit(c: dict[str, Any]) -> None:
    member(c, "node-c")["lag"] = 1048577


def extra_member(c: dict[str, Any]) -> None:
    c["members"].append(dict(member(c, "node-c"), name="node-x"))


# --- the healthy cluster ----------------------------------------------------


def test_healthy_cluster_has_no_problems():
    assert patroni_problems(cluster("healthy"), expected_names=NAMES) == []


def test_healthy_cluster_has_no_problems_with_strict_options():
    assert patroni_problems(cluster("healthy"), allow_pending_restart=False) == []


# --- every fault: caught, exactly, and silent on healthy --------------------

FAULTS = [
    # (id, cluster builder, filter kwargs, exact expected problems)
    ("no-leader", lambda: cluster("no_leader"), {"expected_names": NAMES, "require_sync": False},
     ["expected 3 members, found 2 (missing: node-a)", "no leader"]),
    ("two-leaders", split_brain, {"single_timeline": False},
     ["2 leaders: node-a, node-c", "node-b: lag unknown"]),  # no single leader to measure from
    ("member-stopped", lambda: cluster("member_stopped"), {},
     ["node-b: state 'stopped', expected 'streaming'",
      "node-b: lag unknown"]),
    ("leader-stopped", healthy_with(leader_stopped), {},
     ["node-a: state 'stopped', expected 'running'"]),
    ("archive-recovery", healthy_with(replica_in_archive_recovery), {},
     ["node-c: state 'in archive recovery', expected 'streaming'"]),
    ("lag-high", lambda: cluster("lag_high"), {},
     ["node-c: lag 52428800 B > 1048576 B"]),
    ("lag-one-over", healthy_with(lag_over_limit), {},
     ["node-c: lag 1048577 B > 1048576 B"]),
    ("lag-unknown", lambda: cluster("lag_unknown"), {},
     ["node-c: state 'starting', expected 'streaming'",
      "node-c: lag unknown"]),
    ("no-sync", lambda: cluster("no_sync"), {},
     ["no synchronous standby (synchronous_mode on)"]),
    ("too-few-sync", lambda: cluster("healthy"), {"expected_sync_count": 2},
     ["expected 2 synchronous standbys, found 1: node-b"]),
    ("two-timelines", lambda: cluster("two_timelines"), {"max_lag_bytes": 10**9},
     ["node-a: state 'running', expected 'streaming'",
      "members on different timelines: node-a=2, node-b=3, node-c=3"]),
    ("member-missing-named", healthy_with(drop_node_c), {"expected_names": NAMES},
     ["expected 3 members, found 2 (missing: node-c)"]),
    ("member-missing-count", healthy_with(drop_node_c), {},
     ["expected 3 members, found 2: node-a, node-b"]),
    ("member-unexpected", healthy_with(extra_member), {"expected_names": NAMES},
     ["expected 3 members, found 4 (unexpected: node-x)"]),
    ("paused", healthy_with(pause), {},
     ["cluster is paused (maintenance mode): Patroni will not fail over"]),
    ("pending-restart", healthy_with(pending_restart), {"allow_pending_restart": False},
     ["node-b: pending restart (changed parameters need a PostgreSQL restart)"]),
]  # fmt: skip


@pytest.mark.parametrize(("build", "kwargs", "expected"), [f[1:] for f in FAULTS],
                         ids=[f[0] for f in FAULTS])  # fmt: skip
def test_fault_is_reported(build, kwargs, expected):
    assert patroni_problems(build(), **kwargs) == expected


@pytest.mark.parametrize("kwargs", [f[2] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_same_check_is_silent_on_healthy(kwargs):
    healthy = cluster("healthy")
    if kwargs.get("expected_sync_count", 1) > 1:
        # The healthy fixture has one sync standby; add a second so only the count differs.
        member(healthy, "node-c")["role"] = "sync_standby"
        healthy["sync_standbys"] = ["node-b", "node-c"]

    assert patroni_problems(healthy, **kwargs) == []


def test_lag_at_the_limit_is_fine():
    assert patroni_problems(healthy_with(lag_at_limit)()) == []


# --- switches turn their check off -----------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("no_sync", {"require_sync": False}),
        ("no_sync", {"expected_sync_count": 0}),
        ("lag_high", {"max_lag_bytes": 52428800}),
    ],
)
def test_switch_silences_its_check(name, kwargs):
    assert patroni_problems(cluster(name)) != []
    assert patroni_problems(cluster(name), **kwargs) == []


def test_single_timeline_off_silences_timeline_check():
    kwargs = {"max_lag_bytes": 10**9}
    problems = patroni_problems(cluster("two_timelines"), single_timeline=False, **kwargs)

    assert problems == ["node-a: state 'running', expected 'streaming'"]


def test_pending_restart_allowed_by_default():
    assert patroni_problems(healthy_with(pending_restart)()) == []


def test_standby_leader_counts_as_leader():
    standby_cluster = cluster("healthy")
    leader = member(standby_cluster, "node-a")
    leader["role"], leader["state"] = "standby_leader", "streaming"
    standby_cluster["sync_standbys"] = []

    assert patroni_problems(standby_cluster, require_sync=False) == []


# --- bad input ----------------------------------------------------------------


def test_whole_registered_result_is_refused_with_hint():
    registered = {"changed": False, "cluster": cluster("healthy")}

    with pytest.raises(AnsibleFilterError, match=r"patroni\.cluster"):
        patroni_problems(registered)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"expected_members": "three"}, "expected_members must be an integer"),
        ({"max_lag_bytes": -1}, "max_lag_bytes must be an integer"),
        ({"expected_names": "node-a"}, "expected_names must be a list"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(AnsibleFilterError, match=match):
        patroni_problems(cluster("healthy"), **kwargs)


def test_numbers_given_as_strings_are_accepted():
    assert patroni_problems(cluster("healthy"), expected_members="3", max_lag_bytes="1048576") == []


# --- health table -----------------------------------------------------------


def test_health_table_of_healthy_cluster():
    assert patroni_health_table(cluster("healthy")) == [
        "MEMBER  ROLE          STATE      TL  LAG",
        "node-a  leader        running    3   -",
        "node-b  sync_standby  streaming  3   0 B",
        "node-c  replica       streaming  3   8864 B",
    ]


def test_health_table_shows_unknowns():
    lines = patroni_health_table(cluster("member_stopped"))

    assert lines[2] == "node-b  replica       stopped    -   unknown"


def test_health_table_refuses_wrong_input():
    with pytest.raises(AnsibleFilterError, match="patroni_health_table"):
        patroni_health_table([])


# --- as Ansible sees them -----------------------------------------------------


def test_filters_are_exported():
    assert set(FilterModule().filters()) == {"patroni_problems", "patroni_health_table"}


def test_filters_resolve_by_fqcn_in_ansible(tmp_path):
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"c": cluster("lag_high")}))
    expression = (
        "{{ (c | hastack.ha.patroni_problems(expected_names=['node-a', 'node-b', 'node-c']))"
        " + (c | hastack.ha.patroni_health_table) }}"
    )

    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local",
         "-i", "localhost,", "-m", "ansible.builtin.debug", "-a", f"msg={expression}",
         "-e", f"@{variables}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stdout + run.stderr
    assert "node-c: lag 52428800 B > 1048576 B" in run.stdout
    assert "node-c  replica       streaming  3   52428800 B" in run.stdout
