#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_restore_drill_rows
short_description: Write the rows of a restore drill around a target time, or check them in a restored instance
version_added: 0.2.0
description:
  - O(action=write) writes O(rows_before) rows to the primary, takes the target time T from the
    server's clock, waits, and writes O(rows_after) more rows; each row is its own committed
    transaction. It also returns the database size and the archiver's state (the age of the last
    archived WAL segment bounds the data a restore can miss, the RPO).
  - O(action=check) reads the rows of O(run_id) from a (restored) instance and fails unless every
    row written before T is there, none written after T is, and the instance is out of recovery.
  - Used by C(playbooks/drill_restore.yml).
author:
  - hastack developers
options:
  action:
    description: What to do.
    type: str
    choices: [write, check]
    required: true
  conninfo:
    description:
      - libpq connection string; for O(action=write) a multi-host one with
        C(target_session_attrs=read-write) finds the primary.
    type: str
    required: true
  password:
    description: Password of the user in O(conninfo).
    type: str
  rows_before:
    description: Rows written before the target time.
    type: int
    default: 50
  rows_after:
    description: Rows written after the target time.
    type: int
    default: 50
  gap_s:
    description: Seconds between the last row before T and T, and between T and the first row after it.
    type: float
    default: 1.5
  run_id:
    description: The run whose rows to check (O(action=check)), as returned by O(action=write).
    type: str
  before_ids:
    description: Ids written before the target (O(action=check)).
    type: list
    elements: int
  after_ids:
    description: Ids written after the target (O(action=check)).
    type: list
    elements: int
  timeout:
    description: Seconds for connecting and for each statement.
    type: float
    default: 10
requirements:
  - psycopg 3 on the host that runs the module
"""

EXAMPLES = r"""
- name: Write the drill's rows
  hastack.ha.pg_restore_drill_rows:
    action: write
    conninfo: >-
      host=198.18.1.11,198.18.2.12,198.18.3.13 port=5432 dbname=postgres
      user=postgres target_session_attrs=read-write
    password: "{{ patroni_postgres_superuser_password }}"
  register: rows

- name: Check them in the restored instance
  hastack.ha.pg_restore_drill_rows:
    action: check
    conninfo: host=198.18.1.11 port=5433 dbname=postgres user=postgres
    password: "{{ patroni_postgres_superuser_password }}"
    run_id: "{{ rows.run_id }}"
    before_ids: "{{ rows.before_ids }}"
    after_ids: "{{ rows.after_ids }}"
"""

RETURN = r"""
run_id:
  description: Id of the drill's rows (O(action=write)).
  returned: action is write
  type: str
target_time:
  description: The target time T, UTC, as PostgreSQL and pgBackRest parse it.
  returned: action is write
  type: str
  sample: "2026-11-26 22:30:01.123456+00"
before_ids:
  description: Ids written before T.
  returned: action is write
  type: list
after_ids:
  description: Ids written after T.
  returned: action is write
  type: list
database_size_bytes:
  description: Sum of every database's size on the primary.
  returned: action is write
  type: int
last_archived_wal:
  description: Last WAL segment the primary archived when the drill started.
  returned: action is write
  type: str
last_archived_age_s:
  description: Its age in seconds when the drill started (the RPO bound observed).
  returned: action is write
  type: float
archive_failed_count:
  description: Failed archive attempts since the statistics were reset.
  returned: action is write
  type: int
check:
  description: O(action=check) verdict (present, missing_before, present_after, in_recovery, ok, problems).
  returned: action is check
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.restore_drill import (  # noqa: E402
    PSYCOPG_IMPORT_ERROR,
    check_rows,
    write_rows,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "choices": ["write", "check"], "required": True},
            "conninfo": {"type": "str", "required": True},
            "password": {"type": "str", "no_log": True},
            "rows_before": {"type": "int", "default": 50},
            "rows_after": {"type": "int", "default": 50},
            "gap_s": {"type": "float", "default": 1.5},
            "run_id": {"type": "str"},
            "before_ids": {"type": "list", "elements": "int"},
            "after_ids": {"type": "list", "elements": "int"},
            "timeout": {"type": "float", "default": 10},
        },
        required_if=[("action", "check", ("run_id", "before_ids", "after_ids"))],
        supports_check_mode=False,
    )
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg="psycopg 3 is required", exception=PSYCOPG_IMPORT_ERROR)
    p = module.params
    try:
        if p["action"] == "write":
            result = write_rows(
                p["conninfo"],
                p["password"],
                rows_before=p["rows_before"],
                rows_after=p["rows_after"],
                gap_s=p["gap_s"],
                timeout_s=p["timeout"],
            )
            module.exit_json(changed=True, **result.as_dict())
        verdict = check_rows(
            p["conninfo"], p["password"], p["run_id"], p["before_ids"], p["after_ids"], timeout_s=p["timeout"]
        )
    except Exception as ex:  # report any database or argument error as the module's failure
        module.fail_json(msg=f"restore drill rows ({p['action']}): {type(ex).__name__}: {ex}")
    if not verdict["ok"]:
        module.fail_json(msg="restored instance is wrong: " + "; ".join(verdict["problems"]), check=verdict)
    module.exit_json(changed=False, check=verdict)


if __name__ == "__main__":
    main()
