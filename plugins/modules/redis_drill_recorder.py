#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_drill_recorder
short_description: Record what a Redis failover drill does to writers
version_added: "0.1.0"
description:
  - Writes one id every O(interval_ms) (C(RPUSH hastack:drill:<run_id> <id>)) to the
    master the sentinels name, the way a Sentinel-aware client does it (redis-py's
    C(Sentinel.master_for)) - C(SENTINEL GET-MASTER-ADDR-BY-NAME), connect, C(ROLE)
    must say master, write - discovering the master again after any error, and
    records every attempt as C(ack), C(error) or C(unknown), with the address of
    the master that acknowledged.
  - A write that gets no answer within O(write_timeout_s), or whose connection
    breaks while it waits, is C(unknown), never acknowledged. An error reply
    (C(READONLY), C(NOREPLICAS), ...) or a failed connection is C(error).
  - Samples every Redis on its own connection every O(sample_interval_ms), one
    thread per member - C(ROLE), and for a master C(INFO replication) - as
    C(primary) (a master that takes writes), C(replica), or C(unknown) (no answer,
    or a master that refuses writes for want of C(min-replicas-to-write) good
    replicas).
  - Runs until O(stop_file) exists or O(max_duration_s) has passed, then reads
    back the run's list from the master the sentinels name (retrying for up to
    O(readback_timeout_s)) and writes everything to O(output) as JSON, in the
    format of M(hastack.ha.pg_drill_recorder), for M(hastack.ha.drill_report).
  - Meant to run as an async task (C(async) at least O(max_duration_s) + 90,
    C(poll 0)) on the controller while other tasks disrupt the deployment.
    Standard library only (no redis-py).
  - Fails at once if O(stop_file) already exists, or if no master is reachable
    through the sentinels within O(readback_timeout_s) at the start.
author:
  - hastack developers
attributes:
  check_mode:
    support: none
    details: It writes to Redis; there is nothing to predict.
  diff_mode:
    support: none
options:
  master_name:
    description: Name under which the sentinels monitor the master.
    type: str
    required: true
  sentinels:
    description: The sentinels to ask for the master, in this order (the one that answered last first).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the sentinel (for messages).
        type: str
      host:
        description: Address of the sentinel.
        type: str
        required: true
      port:
        description: Sentinel port.
        type: int
        default: 26379
  members:
    description:
      - The Redis servers to sample, each on its own connection.
      - C(host) must be the address the sentinels announce, so acknowledgements can
        be named after their member.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Member name (for example the inventory host name).
        type: str
        required: true
      host:
        description: Address of the member.
        type: str
        required: true
      port:
        description: Redis port.
        type: int
        default: 6379
  password:
    description: Redis password (C(requirepass), or the password of O(username)).
    type: str
  username:
    description: Redis ACL user; without it C(AUTH <password>) authenticates the default user.
    type: str
  sentinel_password:
    description: Password of the sentinels.
    type: str
  run_id:
    description: Identifies this run's list (C(hastack:drill:<run_id>)); use a new one per run.
    type: str
    required: true
  interval_ms:
    description: Time between two write attempts.
    type: int
    default: 20
  sample_interval_ms:
    description: Time between two samples of a member.
    type: int
    default: 200
  write_timeout_s:
    description:
      - Client-side bound on connecting to the master and on one write. Past it the
        connection is dropped and the write counted as C(unknown).
    type: float
    default: 1
  sample_timeout_s:
    description: Client-side bound on one sample.
    type: float
    default: 1
  sentinel_timeout_s:
    description: Client-side bound on asking one sentinel for the master.
    type: float
    default: 0.5
  stop_file:
    description: The recording stops once this file exists. Must not exist at the start.
    type: path
    required: true
  max_duration_s:
    description: Safety bound; the recording stops by itself after this long.
    type: float
    default: 600
  events_file:
    description:
      - JSON-lines file the playbook appends events to while the recorder runs, as
        for M(hastack.ha.pg_drill_recorder).
    type: path
  output:
    description: Where to write the raw JSON (the directory is created).
    type: path
    required: true
  readback_timeout_s:
    description: How long to keep trying, at the start and for the read-back at the end.
    type: float
    default: 30
notes:
  - C(writer.attempts[].timeline) and C(samples.<member>[].timeline) are always
    C(null) (Redis has no timeline), so the report's split-brain check by
    acknowledgements flags any return to an earlier master.
seealso:
  - module: hastack.ha.pg_drill_recorder
  - module: hastack.ha.drill_report
"""

EXAMPLES = r"""
- name: Record writes and member states during the drill
  hastack.ha.redis_drill_recorder:
    master_name: hastack
    sentinels:
      - {name: node-a, host: 198.18.1.11}
      - {name: node-b, host: 198.18.2.12}
      - {name: node-c, host: 198.18.3.13}
    members:
      - {name: node-a, host: 198.18.1.11}
      - {name: node-b, host: 198.18.2.12}
      - {name: node-c, host: 198.18.3.13}
    password: "{{ redis_sentinel_password }}"
    sentinel_password: "{{ redis_sentinel_sentinel_password }}"
    run_id: "{{ drill_run_id }}"
    stop_file: "{{ drill_dir }}/stop"
    events_file: "{{ drill_dir }}/events.jsonl"
    output: "{{ drill_dir }}/raw.json"
  async: 900
  poll: 0
  register: drill_recorder
  delegate_to: localhost
"""

RETURN = r"""
output:
  description: Path of the raw JSON written.
  returned: success
  type: str
  sample: /work/main/reports/raw/kill-20261126T210000Z/raw.json
run_id:
  description: The run id.
  returned: success
  type: str
  sample: kill-20261126T210000Z
stop_reason:
  description: Why the recording stopped (C(stop_file), C(max_duration) or C(writer_failed)).
  returned: success
  type: str
  sample: stop_file
duration_s:
  description: Seconds from the start of the recording to the stop request.
  returned: success
  type: float
  sample: 31.2
writes:
  description: Write attempts by outcome.
  returned: success
  type: dict
  sample: {attempted: 1500, ack: 1200, error: 299, unknown: 1}
samples:
  description: Number of samples per member.
  returned: success
  type: dict
  sample: {node-a: 150, node-b: 155, node-c: 155}
events:
  description: Number of events read from O(events_file).
  returned: success
  type: int
  sample: 4
readback:
  description:
    - The read-back from the final master. C(acked_missing) is the number of
      acknowledged ids it lacks (the drill's "lost writes"); C(null) when the
      read-back failed.
  returned: success
  type: dict
  sample: {ok: true, server: 198.18.2.12, ids: 1201, error: null, acked_missing: 0}
writer_fatal:
  description: The writer's unexpected exception, if any (then the task fails).
  returned: always
  type: str
  sample: null
sampler_fatal:
  description: Unexpected exceptions of sampler lanes, by member.
  returned: success
  type: dict
  sample: {}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.drill.recorder import (  # noqa: E402
    RecorderError,
    summarize,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.redis_recorder import (  # noqa: E402
    RedisRecorderConfig,
    record,
)
from ansible_collections.hastack.ha.plugins.module_utils.redis_sentinel import Endpoint  # noqa: E402


def _endpoints(port: int, name_required: bool) -> dict:
    return {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": name_required},
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "default": port},
        },
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "master_name": {"type": "str", "required": True},
            "sentinels": _endpoints(26379, False),
            "members": _endpoints(6379, True),
            "password": {"type": "str", "no_log": True},
            "username": {"type": "str"},
            "sentinel_password": {"type": "str", "no_log": True},
            "run_id": {"type": "str", "required": True},
            "interval_ms": {"type": "int", "default": 20},
            "sample_interval_ms": {"type": "int", "default": 200},
            "write_timeout_s": {"type": "float", "default": 1.0},
            "sample_timeout_s": {"type": "float", "default": 1.0},
            "sentinel_timeout_s": {"type": "float", "default": 0.5},
            "stop_file": {"type": "path", "required": True},
            "max_duration_s": {"type": "float", "default": 600.0},
            "events_file": {"type": "path"},
            "output": {"type": "path", "required": True},
            "readback_timeout_s": {"type": "float", "default": 30.0},
        },
        supports_check_mode=False,
    )
    p = module.params
    for name in ("interval_ms", "sample_interval_ms"):
        if p[name] <= 0:
            module.fail_json(msg=f"{name} must be > 0, got {p[name]}")
    for name in ("write_timeout_s", "sample_timeout_s", "sentinel_timeout_s", "max_duration_s", "readback_timeout_s"):
        if p[name] <= 0:
            module.fail_json(msg=f"{name} must be > 0, got {p[name]}")
    if not p["sentinels"]:
        module.fail_json(msg="sentinels is empty: give at least one sentinel to ask for the master")

    config = RedisRecorderConfig(
        master_name=p["master_name"],
        sentinels=[Endpoint(s["host"], s["port"], s["name"]) for s in p["sentinels"]],
        members=[Endpoint(m["host"], m["port"], m["name"]) for m in p["members"]],
        password=p["password"],
        username=p["username"],
        sentinel_password=p["sentinel_password"],
        run_id=p["run_id"],
        interval_s=p["interval_ms"] / 1000,
        sample_interval_s=p["sample_interval_ms"] / 1000,
        write_timeout_s=p["write_timeout_s"],
        sample_timeout_s=p["sample_timeout_s"],
        sentinel_timeout_s=p["sentinel_timeout_s"],
        stop_file=p["stop_file"],
        max_duration_s=p["max_duration_s"],
        events_file=p["events_file"],
        output=p["output"],
        readback_timeout_s=p["readback_timeout_s"],
    )
    try:
        raw = record(config)
    except RecorderError as ex:
        module.fail_json(msg=str(ex), run_id=p["run_id"])
    except OSError as ex:
        module.fail_json(
            msg=f"drill recorder failed: {ex}; nothing usable was written to {p['output']}",
            run_id=p["run_id"],
        )

    result = summarize(raw)
    result["output"] = p["output"]
    if not raw["readback"]["ok"]:
        module.warn(
            f"could not read the ids back from a master: {raw['readback']['error']}; "
            "lost writes cannot be measured for this run"
        )
    for member, error in raw["sampler"]["fatal"].items():
        module.warn(f"sampler of {member} stopped early: {error}")
    if raw["writer"]["fatal"]:
        module.fail_json(
            msg=f"the drill writer crashed: {raw['writer']['fatal']} (partial data in {p['output']})",
            changed=True,
            **result,
        )
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
