#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: drill_report
short_description: Analyse a drill recording, write its report, check the thresholds
version_added: "0.1.0"
description:
  - Reads the raw JSON written by M(hastack.ha.pg_drill_recorder) and measures
    the longest gap between two acknowledged writes, the acknowledged writes
    missing from the final primary, split brain (two members writable over
    consecutive samples at once, or acknowledgements from two servers
    interleaving without a newer timeline), unknown writes, errors, and the
    leader changes.
  - Writes C(<report_dir>/<drill>-<UTC start>.json) (metrics, thresholds,
    violations, verdict, raw summary), C(.md) (a table for humans) and C(.png)
    (a timeline of acknowledged writes by server, errors and unknowns, member
    states, the disruption windows and leader changes).
  - Fails, listing every violation, when a threshold is crossed, unless
    O(fail_on_violation=false). A metric that could not be measured (read-back
    failed, rejoin not timed) violates its threshold.
author:
  - hastack developers
requirements:
  - matplotlib (Agg backend; no display needed)
attributes:
  check_mode:
    support: partial
    details: Computes and returns metrics and violations but writes no file.
  diff_mode:
    support: none
options:
  raw:
    description: Path of the raw JSON written by M(hastack.ha.pg_drill_recorder).
    type: path
    required: true
  drill:
    description: Scenario name, used in the file names and titles (for example C(leader-kill)).
    type: str
    required: true
  report_dir:
    description: Directory for the three files (created if missing).
    type: path
    required: true
  thresholds:
    description:
      - Limits to check; a key set to C(null) is not checked.
      - C(max_write_gap_s) (seconds), C(max_lost_writes) (count),
        C(allow_split_brain) (boolean, normally C(false)), C(max_rejoin_s)
        (seconds, compared with O(context.rejoin_s)), C(max_unknown_writes) (count),
        C(max_other_lost_writes) (count, over O(writers)), C(max_leader_changes) (count).
      - Any other key fails the task.
    type: dict
    default: {}
  context:
    description:
      - Facts the playbook measured, shown in the report and kept in its JSON.
      - C(rejoin_s) (seconds until the disrupted member streamed again) is
        checked against C(max_rejoin_s); C(old_leader) and C(new_leader), when
        given, replace the names derived from the acknowledgements; anything
        else (timelines, Patroni settings, alert names) is listed as is.
    type: dict
    default: {}
  events:
    description:
      - Events to add to those the recorder read from its events file, each a
        dict with C(event), C(t_wall) (epoch seconds or ISO 8601), and
        optionally C(target) and C(kind).
      - C(disrupt_start)/C(disrupt_end) with the same C(target) make a shaded
        disruption window.
    type: list
    elements: dict
    default: []
  writers:
    description:
      - Recordings of other writers of the same drill (name -> path of their
        M(hastack.ha.pg_drill_recorder) output), for example one running inside
        the cut-off zone. Their attempts are moved onto the main recording's
        time base by the two wall-clock anchors.
      - Each is reported under C(metrics.other_writers.<name>), its lost writes
        sum into C(other_lost_writes) (threshold C(max_other_lost_writes)),
        and writes its old leader acknowledged after the main writer's new
        leader did count as split brain.
    type: dict
    default: {}
  fail_on_violation:
    description: Fail the task when a threshold is crossed.
    type: bool
    default: true
seealso:
  - module: hastack.ha.pg_drill_recorder
"""

EXAMPLES = r"""
- name: Report the leader-kill drill and check it against the inventory's limits
  hastack.ha.drill_report:
    raw: "{{ drill_dir }}/raw.json"
    drill: leader-kill
    report_dir: "{{ playbook_dir }}/../reports/drills"
    thresholds:
      max_write_gap_s: "{{ drill_max_write_gap_s }}"
      max_lost_writes: 0
      allow_split_brain: false
      max_rejoin_s: 120
    context:
      old_leader: "{{ leader_before }}"
      new_leader: "{{ leader_after }}"
      rejoin_s: "{{ rejoin_seconds }}"
      timeline_before: "{{ timeline_before }}"
      timeline_after: "{{ timeline_after }}"
    events:
      - {event: heal, t_wall: "{{ heal_epoch }}", target: node-a}
  delegate_to: localhost
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ playbook_dir }}/../.venv/bin/python"
  register: drill_result

- name: Report without failing (exploratory run)
  hastack.ha.drill_report:
    raw: /tmp/drill/raw.json
    drill: freeze-node-b
    report_dir: /tmp/drill/report
    thresholds: {max_write_gap_s: 30}
    fail_on_violation: false
"""

RETURN = r"""
verdict:
  description: C(pass) when no threshold is crossed, else C(fail).
  returned: success or threshold violation
  type: str
  sample: pass
violations:
  description: Each crossed threshold with the metric, its value and the limit.
  returned: success or threshold violation
  type: list
  elements: dict
  sample:
    - threshold: max_write_gap_s
      metric: write_gap_s
      value: 31.2
      limit: 30
      message: write_gap_s = 31.2 > 30
files:
  description: Paths of the report files (in check mode, where they would be).
  returned: success or threshold violation
  type: dict
  sample:
    json: reports/drills/leader-kill-20250102T030405Z.json
    md: reports/drills/leader-kill-20250102T030405Z.md
    png: reports/drills/leader-kill-20250102T030405Z.png
metrics:
  description:
    - Everything measured. Main keys - C(write_gap_s) and C(write_gap)
      (from_t, to_t, ids, open_ended), C(lost_writes) and C(lost_ids),
      C(unknown_writes) and C(unknown_ids), C(split_brain) with
      C(split_brain_samples) and C(split_brain_acks), C(writes) (counts by
      outcome, C(unknown_committed)), C(errors) (by message), C(servers) (first
      and last ack per server), C(leader_changes), C(leader_change_count),
      C(commit_latency) (ms, all and sent while disrupted), C(other_writers),
      C(other_lost_writes), C(old_leader), C(new_leader),
      C(member_windows), C(disruptions), C(events), C(answering_again_s),
      C(rejoin_s), C(readback).
    - Times are seconds since the start of the recording.
  returned: success or threshold violation
  type: dict
  sample:
    write_gap_s: 20.41
    lost_writes: 0
    unknown_writes: 1
    split_brain: false
    old_leader: node-a
    new_leader: node-b
    rejoin_s: 34.2
"""

import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.drill.report import (  # noqa: E402
    build_report,
    finish_module,
    report_basename,
    write_report,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "raw": {"type": "path", "required": True},
            "drill": {"type": "str", "required": True},
            "report_dir": {"type": "path", "required": True},
            "thresholds": {"type": "dict", "default": {}},
            "context": {"type": "dict", "default": {}},
            "events": {"type": "list", "elements": "dict", "default": []},
            "writers": {"type": "dict", "default": {}},
            "fail_on_violation": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        with open(p["raw"]) as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as ex:
        module.fail_json(msg=f"cannot read the drill recording {p['raw']}: {ex}")
    if not isinstance(raw, dict) or "writer" not in raw:
        module.fail_json(msg=f"{p['raw']} is not a recording of hastack.ha.pg_drill_recorder (no 'writer' key)")

    writers = {}
    for name, path in p["writers"].items():
        try:
            with open(path) as fh:
                writers[name] = json.load(fh)
        except (OSError, ValueError) as ex:
            module.fail_json(msg=f"cannot read writer {name}'s recording {path}: {ex}")
        if not isinstance(writers[name], dict) or "writer" not in writers[name]:
            module.fail_json(msg=f"writers.{name}: {path} is not a recording of hastack.ha.pg_drill_recorder")

    try:
        report = build_report(
            raw, p["drill"], p["thresholds"], p["context"], p["events"], raw_path=p["raw"], writers=writers
        )
    except ValueError as ex:
        module.fail_json(msg=f"drill_report: {ex}")

    if module.check_mode:
        base = os.path.join(p["report_dir"], report_basename(report))
        files = {ext: f"{base}.{ext}" for ext in ("json", "md", "png")}
    else:
        try:
            files = write_report(report, raw, p["report_dir"])
        except ImportError as ex:
            module.fail_json(msg=missing_required_lib("matplotlib"), exception=str(ex))
        except OSError as ex:
            module.fail_json(msg=f"cannot write the report into {p['report_dir']}: {ex}")

    finish_module(module, report, files, f"drill {p['drill']}", metrics=report["metrics"])


if __name__ == "__main__":
    main()
