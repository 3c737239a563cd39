#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_drill_recorder
short_description: Record what a PostgreSQL failover drill does to writers
version_added: "0.1.0"
description:
  - Writes one row every O(interval_ms) into C(hastack_drill.writes) through the
    application's libpq multi-host conninfo (the same path the application uses,
    C(target_session_attrs=read-write)), in autocommit, reconnecting after any
    error, and records every attempt as C(ack), C(error) or C(unknown).
  - Samples every member on its own connection every O(sample_interval_ms)
    (C(pg_is_in_recovery()) and the timeline), one thread per member, so a frozen
    member stalls only its own lane.
  - A write that gets no answer within O(write_timeout_s) is counted as
    C(unknown), never as acknowledged, and its connection is dropped without a
    cancel request. A cancelled commit that waits for the synchronous standby is
    reported by PostgreSQL as successful although no standby has it, so no
    C(statement_timeout), no cancel. A commit answered with the
    "canceling wait for synchronous replication" warning is C(unknown) too.
  - Runs until O(stop_file) exists or O(max_duration_s) has passed, then reads
    back every id of O(run_id) from the final primary (retrying through
    O(conninfo) for up to O(readback_timeout_s)) and writes everything to
    O(output) as JSON for M(hastack.ha.drill_report).
  - Meant to run as an async task (C(async) at least O(max_duration_s) + 90,
    C(poll 0)) on the controller (C(ansible_connection=local)) with a Python that
    has psycopg 3, while other tasks disrupt the cluster.
  - Nothing is written before the task starts. Fails at once if O(stop_file)
    already exists, or if the cluster does not take writes within
    O(readback_timeout_s) at the start.
author:
  - hastack developers
requirements:
  - psycopg >= 3.1 (with libpq)
attributes:
  check_mode:
    support: none
    details: It writes rows to the database; there is nothing to predict.
  diff_mode:
    support: none
options:
  conninfo:
    description:
      - The application's libpq conninfo, for example
        C(host=198.18.1.11,198.18.2.12,198.18.3.13 port=5432
        target_session_attrs=read-write connect_timeout=2).
      - O(dbname), O(user), C(connect_timeout=2) and C(target_session_attrs=read-write)
        are added when missing. Put no password in it; use O(password).
    type: str
    required: true
  password:
    description:
      - Password of O(user). Omit to let libpq use C(PGPASSWORD) or a C(.pgpass) file.
    type: str
  members:
    description:
      - The cluster members to sample, each on its own single-host connection.
      - C(host) must be the address the server reports in C(inet_server_addr()),
        so acknowledgements can be named after their member.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Member name (for example the Patroni member name).
        type: str
        required: true
      host:
        description: Address of the member.
        type: str
        required: true
      port:
        description: Port of the member.
        type: int
        default: 5432
  dbname:
    description: Database to write to and to sample.
    type: str
    default: postgres
  user:
    description: Role to connect as (needs C(CREATE) on the database the first time).
    type: str
    default: postgres
  run_id:
    description:
      - Identifies this run's rows in C(hastack_drill.writes); use a new one per run.
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
      - Client-side bound on one INSERT. Past it the connection is dropped
        (never cancelled) and the write counted as C(unknown).
    type: float
    default: 3
  sample_timeout_s:
    description: Client-side bound on one sample query.
    type: float
    default: 1
  connect_timeout_s:
    description:
      - C(connect_timeout) per host, added to the conninfo when it has none and
        used for the members. psycopg enforces at least 2 s.
    type: int
    default: 2
  stop_file:
    description:
      - The recording stops once this file exists. Must not exist at the start.
    type: path
    required: true
  max_duration_s:
    description:
      - Safety bound; the recording stops by itself after this long even if
        O(stop_file) never appears (C(stop.reason=max_duration) in the output).
    type: float
    default: 600
  events_file:
    description:
      - >-
        JSON-lines file the playbook appends events to while the recorder runs,
        one object per line, for example
        C({"t_wall": 1732646400.123, "event": "disrupt_start", "target": "node-a",
        "kind": "kill"}).
      - C(t_wall) is epoch seconds or ISO 8601 (without a zone it is local time);
        without it the event gets the time the recorder read the line (within 0.1 s).
      - C(disrupt_start)/C(disrupt_end) pairs with the same C(target) become the
        shaded disruption windows of the report; other events are marked on the timeline.
      - It may not exist yet when the recorder starts.
    type: path
  output:
    description: Where to write the raw JSON (the directory is created).
    type: path
    required: true
  readback_timeout_s:
    description:
      - How long to keep trying, at the start, to create the table, and at the
        end, to read back the ids from the final primary.
    type: float
    default: 30
notes:
  - The raw JSON holds every attempt (C(writer.attempts)), every sample
    (C(samples.<member>)), the events, C(stop) and C(readback.ids); times are
    monotonic seconds since C(anchor), and C(anchor.wall + t) is epoch seconds.
seealso:
  - module: hastack.ha.drill_report
"""

EXAMPLES = r"""
- name: Record writes and member states during the drill
  hastack.ha.pg_drill_recorder:
    conninfo: "host=198.18.1.11,198.18.2.12,198.18.3.13 port=5432 target_session_attrs=read-write"
    password: "{{ patroni_postgres_superuser_password }}"
    members:
      - {name: node-a, host: 198.18.1.11}
      - {name: node-b, host: 198.18.2.12}
      - {name: node-c, host: 198.18.3.13}
    run_id: "{{ drill_run_id }}"
    stop_file: "{{ drill_dir }}/stop"
    events_file: "{{ drill_dir }}/events.jsonl"
    output: "{{ drill_dir }}/raw.json"
    max_duration_s: 600
  async: 900
  poll: 0
  register: drill_recorder
  delegate_to: localhost
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ playbook_dir }}/../.venv/bin/python"

- name: Note the start of the disruption
  ansible.builtin.lineinfile:
    path: "{{ drill_dir }}/events.jsonl"
    line: "{{ drill_event | to_json }}"
    create: true
    mode: "0644"
  delegate_to: localhost
  vars:
    drill_event:
      t_wall: "{{ now().timestamp() }}"
      event: disrupt_start
      target: node-a
      kind: kill

# ... disrupt, heal, wait until every member streams again ...

- name: Stop the recorder
  ansible.builtin.file:
    path: "{{ drill_dir }}/stop"
    state: touch
    mode: "0644"
  delegate_to: localhost

- name: Wait for the recorder to finish
  ansible.builtin.async_status:
    jid: "{{ drill_recorder.ansible_job_id }}"
  register: drill_recorded
  until: drill_recorded.finished
  retries: 60
  delay: 2
  delegate_to: localhost
"""

RETURN = r"""
output:
  description: Path of the raw JSON written.
  returned: success
  type: str
  sample: /work/main/reports/drills/leader-kill/raw.json
run_id:
  description: The run id.
  returned: success
  type: str
  sample: leader-kill-20250102T030405
stop_reason:
  description: Why the recording stopped (C(stop_file), C(max_duration) or C(writer_failed)).
  returned: success
  type: str
  sample: stop_file
duration_s:
  description: Seconds from the start of the recording to the stop request.
  returned: success
  type: float
  sample: 61.42
writes:
  description: Write attempts by outcome.
  returned: success
  type: dict
  sample: {attempted: 2950, ack: 1920, error: 1029, unknown: 1}
samples:
  description: Number of samples per member.
  returned: success
  type: dict
  sample: {node-a: 270, node-b: 301, node-c: 301}
events:
  description: Number of events read from O(events_file).
  returned: success
  type: int
  sample: 4
readback:
  description:
    - The read-back from the final primary. C(acked_missing) is the number of
      acknowledged ids it lacks (the drill's "lost writes"); C(null) when the
      read-back failed.
  returned: success
  type: dict
  sample: {ok: true, server: 198.18.2.12, ids: 1921, error: null, acked_missing: 0}
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.drill import pgio  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_sampler import (  # noqa: E402
    Member,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.recorder import (  # noqa: E402
    RecorderConfig,
    RecorderError,
    record,
    summarize,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "conninfo": {"type": "str", "required": True},
            "password": {"type": "str", "no_log": True},
            "members": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "host": {"type": "str", "required": True},
                    "port": {"type": "int", "default": 5432},
                },
            },
            "dbname": {"type": "str", "default": "postgres"},
            "user": {"type": "str", "default": "postgres"},
            "run_id": {"type": "str", "required": True},
            "interval_ms": {"type": "int", "default": 20},
            "sample_interval_ms": {"type": "int", "default": 200},
            "write_timeout_s": {"type": "float", "default": 3.0},
            "sample_timeout_s": {"type": "float", "default": 1.0},
            "connect_timeout_s": {"type": "int", "default": 2},
            "stop_file": {"type": "path", "required": True},
            "max_duration_s": {"type": "float", "default": 600.0},
            "events_file": {"type": "path"},
            "output": {"type": "path", "required": True},
            "readback_timeout_s": {"type": "float", "default": 30.0},
        },
        supports_check_mode=False,
    )
    if pgio.PSYCOPG_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=pgio.PSYCOPG_IMPORT_ERROR)

    p = module.params
    for name in ("interval_ms", "sample_interval_ms"):
        if p[name] <= 0:
            module.fail_json(msg=f"{name} must be > 0, got {p[name]}")
    for name in ("write_timeout_s", "sample_timeout_s", "max_duration_s", "readback_timeout_s"):
        if p[name] <= 0:
            module.fail_json(msg=f"{name} must be > 0, got {p[name]}")

    config = RecorderConfig(
        conninfo=p["conninfo"],
        password=p["password"],
        members=[Member(m["name"], m["host"], m["port"]) for m in p["members"]],
        dbname=p["dbname"],
        user=p["user"],
        run_id=p["run_id"],
        interval_s=p["interval_ms"] / 1000,
        sample_interval_s=p["sample_interval_ms"] / 1000,
        write_timeout_s=p["write_timeout_s"],
        sample_timeout_s=p["sample_timeout_s"],
        connect_timeout_s=p["connect_timeout_s"],
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
    except (OSError, pgio.psycopg.Error) as ex:
        module.fail_json(
            msg=f"drill recorder failed: {pgio.short_error(ex)}; nothing usable was written to {p['output']}",
            run_id=p["run_id"],
        )

    result = summarize(raw)
    result["output"] = p["output"]
    if not raw["readback"]["ok"]:
        module.warn(
            f"could not read the ids back from a primary: {raw['readback']['error']}; "
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
