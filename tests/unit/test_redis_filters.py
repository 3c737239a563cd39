"""hastack.ha.redis_problems / redis_health_table / redis_current_master on real payloads.

fixtures/redis/info_*.json are what hastack.ha.redis_sentinel_info returned from
the molecule deployment (3 x Redis 7.0 + Sentinel on 127.45.0.11-13) while
capture_fixtures.py broke it for real: a replica stopped, one and two sentinels
stopped, a replica promoted by hand (two masters), a replica chained to another,
one sentinel monitoring another member, the master stopped (before and after
Sentinel's failover), and the old master rejoined.

Every check is shown twice: it reports its seeded fault, and it stays silent on
the healthy deployment with the same arguments.
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
from ansible_collections.hastack.ha.plugins.filter.redis import (
    FilterModule,
    check_master_agreement,
    check_master_replicas,
    check_masters,
    check_redis_answer,
    check_replicas,
    check_sentinel_peers,
    check_sentinel_replicas,
    check_sentinel_state,
    check_sentinels_answer,
    redis_current_master,
    redis_health_table,
    redis_problems,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "redis"
A, B, C = "127.45.0.11:6379", "127.45.0.12:6379", "127.45.0.13:6379"


def info(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"info_{name}.json").read_text())


def healthy_with(change: Callable[[dict[str, Any]], None]) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        result = copy.deepcopy(info("healthy"))
        change(result)
        return result

    return build


def fixture(name: str) -> Callable[[], dict[str, Any]]:
    return lambda: info(name)


def _tilt(i: dict[str, Any]) -> None:
    i["sentinels"][1]["tilt"] = True


def _not_monitoring(i: dict[str, Any]) -> None:
    s = i["sentinels"][2]
    s.update(monitors=False, master=None, ckquorum=None, replicas=[], sentinels=[])
    s["error"] = "does not monitor master 'hsred' (ERR No such master with that name)"


def _nobody_monitors(i: dict[str, Any]) -> None:
    for s in i["sentinels"]:
        s.update(monitors=False, master=None, ckquorum=None, replicas=[], sentinels=[], error="does not monitor")
    i["master"] = None


def _master_demoted(i: dict[str, Any]) -> None:
    a = i["redis"][0]
    a.update(role="slave", master_address=B, master_link_status="up", link_state="connected", replicas=[])
    i["masters"] = []


def _foreign_master(i: dict[str, Any]) -> None:
    for s in i["sentinels"]:
        s["master"]["address"] = "10.9.9.9:6379"
    i["master"] = "10.9.9.9:6379"


# --- every problem: caught on its fault -----------------------------------------

FAULTS = [
    pytest.param(
        fixture("sentinel_stopped"), {},
        ["sentinel node-c (127.45.0.13:26379): unreachable: connection refused",
         "sentinels node-a (127.45.0.11:26379), node-b (127.45.0.12:26379): sees 1 healthy other sentinel, expected 2 "
         "(node-c (127.45.0.13:26379): s_down,disconnected)"],
        id="sentinel-unreachable-and-missed-by-peers",
    ),
    pytest.param(
        fixture("two_sentinels_stopped"), {},
        ["sentinels node-b (127.45.0.12:26379), node-c (127.45.0.13:26379): unreachable",
         "sentinel node-a (127.45.0.11:26379): CKQUORUM failed: NOQUORUM 1 usable Sentinels"],
        id="ckquorum-not-ok",
    ),
    pytest.param(
        fixture("sentinels_disagree"), {},
        ["sentinels disagree on the master: node-a, node-b name node-a (127.45.0.11:6379); "
         "node-c name node-b (127.45.0.12:6379)"],
        id="sentinels-disagree",
    ),
    pytest.param(
        fixture("master_down"), {},
        ["master node-a (127.45.0.11:6379) (named by the sentinels) is unreachable: connection refused",
         "sentinel node-b (127.45.0.12:26379): master node-a (127.45.0.11:6379) flagged "
         "s_down,o_down,disconnected,failover_in_progress",
         "replica node-b (127.45.0.12:6379): master_link_status down (link to node-a (127.45.0.11:6379) connect)",
         "replica node-c (127.45.0.13:6379): master_link_status down"],
        id="master-unreachable-replicas-unlinked",
    ),
    pytest.param(
        fixture("replica_stopped"), {},
        ["redis node-c (127.45.0.13:6379): unreachable: connection refused",
         "sentinels node-a (127.45.0.11:26379), node-b (127.45.0.12:26379), node-c (127.45.0.13:26379): "
         "sees 1 healthy replica of node-a (127.45.0.11:6379), expected 2 "
         "(node-c (127.45.0.13:6379): s_down, disconnected)",
         "master node-a (127.45.0.11:6379): 1 replica online, expected 2 (node-b (127.45.0.12:6379))"],
        id="replica-down",
    ),
    pytest.param(
        fixture("two_masters"), {},
        ["2 masters: node-a (127.45.0.11:6379), node-b (127.45.0.12:6379)",
         "master node-b (127.45.0.12:6379): 0 replicas online, expected 2"],
        id="two-masters",
    ),
    pytest.param(
        fixture("replica_follows_replica"), {},
        ["replica node-b (127.45.0.12:6379): replicates node-c (127.45.0.13:6379), "
         "but the sentinels name node-a (127.45.0.11:6379)"],
        id="replica-of-the-wrong-master",
    ),
    pytest.param(
        fixture("after_failover"), {},
        ["redis node-a (127.45.0.11:6379): unreachable",
         "master node-c (127.45.0.13:6379): 1 replica online, expected 2 (node-b (127.45.0.12:6379))"],
        id="old-master-still-down-after-failover",
    ),
    pytest.param(
        healthy_with(_tilt), {}, ["sentinel node-b (127.45.0.12:26379): in TILT mode"], id="tilt",
    ),
    pytest.param(
        healthy_with(_not_monitoring), {},
        ["sentinel node-c (127.45.0.13:26379): does not monitor master 'hsred' (ERR No such master with that name)"],
        id="sentinel-not-monitoring",
    ),
    pytest.param(
        healthy_with(_nobody_monitors), {}, ["no sentinel answers for master 'hsred': nobody can fail over"],
        id="no-sentinel-monitors",
    ),
    pytest.param(
        healthy_with(_master_demoted), {},
        ["node-a (127.45.0.11:6379): the sentinels name it master but its role is slave",
         "no Redis reports role master"],
        id="sentinels-master-is-a-replica",
    ),
    pytest.param(
        healthy_with(_foreign_master), {},
        ["the sentinels name 10.9.9.9:6379 master, which is none of the Redis servers given"],
        id="master-not-among-the-given",
    ),
    pytest.param(
        fixture("healthy"), {"expected_sentinels": 5},
        ["expected 5 sentinels, 3 given to redis_sentinel_info",
         "sentinels node-a (127.45.0.11:26379), node-b (127.45.0.12:26379), node-c (127.45.0.13:26379): "
         "sees 2 healthy other sentinels, expected 4"],
        id="wrong-sentinel-count",
    ),
    pytest.param(
        fixture("healthy"), {"expected_replicas": 3},
        ["expected 4 Redis servers (1 master + replicas), 3 given to redis_sentinel_info",
         "master node-a (127.45.0.11:6379): 2 replicas online, expected 3",
         "sees 2 healthy replicas of node-a (127.45.0.11:6379), expected 3"],
        id="wrong-replica-count",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("build", "kwargs", "expected"), FAULTS)
def test_fault_is_reported(build, kwargs, expected):
    problems = redis_problems(build(), **kwargs)
    for text in expected:
        assert any(text in p for p in problems), f"{text!r} not in {problems}"


@pytest.mark.parametrize("name", ["healthy", "old_master_rejoined"])
def test_healthy_deployments_have_no_problems(name):
    assert redis_problems(info(name)) == []
    assert redis_problems(info(name), expected_replicas=2, expected_sentinels=3) == []


# --- the single checks, each on its fault and on the healthy payload ------------


def labels(i: dict[str, Any]) -> dict[str, str]:
    return {r["address"]: f"{r['name']} ({r['address']})" for r in i["redis"]}


CHECKS: list[tuple[str, Callable[[dict[str, Any]], list[str]]]] = [
    ("sentinel_stopped", lambda i: check_sentinels_answer(i["sentinels"], "hsred")),
    ("sentinels_disagree", lambda i: check_master_agreement(i["sentinels"], labels(i))),
    ("master_down", lambda i: check_sentinel_state(i["sentinels"], labels(i))),
    ("two_sentinels_stopped", lambda i: check_sentinel_state(i["sentinels"], labels(i))),
    ("sentinel_stopped", lambda i: check_sentinel_peers(i["sentinels"], 3, {})),
    ("replica_stopped", lambda i: check_sentinel_replicas(i["sentinels"], 2, labels(i))),
    ("replica_stopped", lambda i: check_redis_answer(i["redis"], i["master"])),
    ("two_masters", lambda i: check_masters(i["redis"], i["master"])),
    ("replica_follows_replica", lambda i: check_replicas(i["redis"], i["master"], labels(i))),
    ("master_down", lambda i: check_replicas(i["redis"], i["master"], labels(i))),
    ("replica_stopped", lambda i: check_master_replicas(i["redis"], 2, labels(i))),
]


@pytest.mark.parametrize(("name", "check"), CHECKS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CHECKS)])
def test_each_check_catches_its_fault_and_passes_healthy(name, check):
    assert check(info(name)), f"{name}: check found nothing"
    assert check(info("healthy")) == []


def test_master_down_vote_of_a_peer_is_not_a_problem():
    # after the failover the peers still carry "master_down" (their vote); that is not a fault
    after = info("after_failover")
    flags = [f for s in after["sentinels"] for p in s["sentinels"] for f in p["flags"]]
    assert "master_down" in flags
    assert check_sentinel_peers(after["sentinels"], 3, {}) == []


# --- the current master (what the role acts on) --------------------------------


@pytest.mark.parametrize(
    ("build", "address", "source", "settled"),
    [
        (fixture("healthy"), A, "sentinels", True),
        (fixture("after_failover"), C, "sentinels", True),
        (fixture("old_master_rejoined"), C, "sentinels", True),
        (fixture("two_masters"), A, "sentinels", True),
        (fixture("two_sentinels_stopped"), A, "sentinels", True),
        (fixture("master_down"), A, "sentinels", False),
        (fixture("sentinels_disagree"), None, "sentinels", False),
        (healthy_with(_master_demoted), A, "sentinels", False),
        (healthy_with(_nobody_monitors), A, "replicas", True),
    ],
    ids=["healthy", "after-failover", "rejoined", "two-masters", "one-sentinel-left", "master-down",
         "sentinels-disagree", "named-master-is-a-replica", "no-sentinel-yet"],
)  # fmt: skip
def test_current_master(build, address, source, settled):
    choice = redis_current_master(build(), "127.45.0.12:6379")
    assert (choice["address"], choice["source"], choice["settled"]) == (address, source, settled), choice
    if address:
        host, port = address.split(":")
        assert (choice["host"], choice["port"]) == (host, int(port))


def test_current_master_of_a_fresh_deployment_is_the_initial_one():
    fresh = info("healthy")
    _nobody_monitors(fresh)
    for r in fresh["redis"]:
        r.update(role="master", master_address=None, master_link_status=None, replicas=[])
    choice = redis_current_master(fresh, B)
    assert (choice["address"], choice["source"], choice["settled"]) == (B, "initial", True)


def test_current_master_waits_when_replicas_follow_different_masters():
    split = info("replica_follows_replica")
    _nobody_monitors(split)
    choice = redis_current_master(split, A)
    assert choice["settled"] is False
    assert choice["address"] is None
    assert f"replicas follow {A}, {C}" in choice["reason"]


def test_current_master_rejects_a_bad_initial_address():
    with pytest.raises(AnsibleFilterError, match="is not host:port"):
        redis_current_master(info("healthy"), "node-a")


# --- the table ----------------------------------------------------------------------


def test_health_table_of_the_healthy_deployment():
    lines = redis_health_table(info("healthy"))

    assert lines[0].split() == ["REDIS", "ADDRESS", "ROLE", "LINK", "MASTER", "REPLICAS", "OFFSET"]
    assert lines[1].split()[:6] == ["node-a", A, "master", "-", "-", "2"]
    assert lines[2].split()[:5] == ["node-b", B, "slave", "up", "node-a"]
    assert lines[4] == ""
    assert lines[5].split() == ["SENTINEL", "ADDRESS", "MASTER", "FLAGS", "REPLICAS", "SENTINELS", "CKQUORUM"]
    assert lines[6].split() == ["node-a", "127.45.0.11:26379", "node-a", "master", "2/2", "3/3", "OK"]
    assert len(lines) == 9


def test_health_table_shows_what_is_broken():
    down = redis_health_table(info("master_down"))
    stopped = redis_health_table(info("two_sentinels_stopped"))

    assert down[1].split() == ["node-a", A, "unreachable", "-", "-", "-", "-"]
    assert down[7].split()[:5] == [
        "node-b", "127.45.0.12:26379", "node-a", "s_down,o_down,master,disconnected,failover_in_progress", "0/2"
    ]  # fmt: skip
    assert stopped[7].split() == ["node-b", "127.45.0.12:26379", "unreachable", "-", "-", "-", "-"]
    assert stopped[6].split()[-1] == "NOQUORUM"


# --- input errors -------------------------------------------------------------------


def test_whole_registered_result_gets_a_hint():
    with pytest.raises(AnsibleFilterError, match=r"pass the registered result's 'info' key"):
        redis_problems({"changed": False, "info": info("healthy")})


@pytest.mark.parametrize("value", [None, [], "text", {"sentinels": []}])
def test_non_info_input_is_rejected(value):
    for function in (redis_problems, redis_health_table):
        with pytest.raises(AnsibleFilterError, match=r"expected the dict returned by hastack\.ha\.redis_sentinel_info"):
            function(value)


@pytest.mark.parametrize("bad", [-1, "two", True, None])
def test_bad_expected_counts_are_rejected(bad):
    with pytest.raises(AnsibleFilterError, match="expected_replicas must be an integer >= 0"):
        redis_problems(info("healthy"), expected_replicas=bad)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"redis_problems", "redis_health_table", "redis_current_master"}


# --- through Ansible: FQCN resolution and the sidecar docs --------------------------


def test_filters_run_under_ansible(tmp_path):
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"state": info("replica_stopped")}))
    expression = "{{ state | hastack.ha.redis_problems + (state | hastack.ha.redis_health_table) }}"
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local",
         "-i", "localhost,", "-m", "ansible.builtin.debug", "-a", f"msg={expression}",
         "-e", f"@{variables}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stdout + run.stderr
    assert "master node-a (127.45.0.11:6379): 1 replica online, expected 2" in run.stdout
    assert "node-c  127.45.0.13:6379  unreachable" in run.stdout


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("filter", "hastack.ha.redis_problems"),
        ("filter", "hastack.ha.redis_health_table"),
        ("filter", "hastack.ha.redis_current_master"),
        ("module", "hastack.ha.redis_sentinel_info"),
    ],
)
def test_documentation_loads(kind, name):
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-t", kind, "--json", name],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(run.stdout)[name]
    assert doc["doc"]["short_description"]
    assert doc["examples"]
    assert doc["return"]
