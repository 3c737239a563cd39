#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zone_drill_report
short_description: Report a zone-outage drill - every service of the stack on one timeline
version_added: "0.1.0"
description:
  - Reads what C(playbooks/drill_zone.yml) recorded while one zone was down - the
    recordings of M(hastack.ha.pg_drill_recorder) and M(hastack.ha.redis_drill_recorder),
    the requests of C(tools/app_load.py record), and the notifications of the lab's alert
    receiver - and judges them together.
  - Each recording is judged by the drill engine's rules with that service's limits (write
    gap, acknowledged writes lost, split brain, rejoin), as M(hastack.ha.drill_report) does.
  - The app may fail (5xx or no answer) only inside the failover window - from the
    disruption until the stack is healthy on the other zones plus O(app.settle_s).
  - The stack's own limits (O(thresholds)) - seconds until every surviving service is healthy,
    seconds until every member of the zone rejoined, app failures outside the window; and
    the verify run on the surviving zones (C(context.verify) must be C(pass)).
  - Alerts - every O(alerts.expected) alert must be notified for every node of the zone and
    resolved; no other alert about those nodes may be notified (the NodeDown inhibition);
    nothing may still fire at the end (O(alerts.firing_at_end)).
  - Writes C(<report_dir>/zone-<zone>-<mode>-<UTC start>.json), C(.md) and C(.png) (one lane
    per service, one for the alerts).
author:
  - hastack developers
requirements:
  - matplotlib (Agg backend; no display needed)
attributes:
  check_mode:
    support: partial
    details: Computes and returns everything but writes no file.
  diff_mode:
    support: none
options:
  zone:
    description: The zone that was broken.
    type: str
    required: true
  mode:
    description: How it was broken (C(kill), C(partition), C(drain) on Kubernetes).
    type: str
    required: true
  t0_wall:
    description: Wall-clock time (Unix seconds) the drill started; every time in the report counts from it.
    type: float
    required: true
  report_dir:
    description: Directory for the three files (created if missing).
    type: path
    required: true
  services:
    description:
      - Per service (C(postgres), C(redis)) a dict with C(raw) (path of the recorder's raw
        JSON), C(thresholds) and C(context), as for M(hastack.ha.drill_report).
    type: dict
    default: {}
  app:
    description:
      - C(load) (path of the JSON C(tools/app_load.py record) wrote), C(settle_s) (seconds
        after the stack is healthy that the app may still fail - breaker recovery, load balancer rise)
        and C(write_grace_s) (seconds after PostgreSQL's write gap that a write may still fail).
    type: dict
  alerts:
    description:
      - C(notifications) (path of the receiver's JSON lines), C(since) (wall-clock seconds;
        earlier lines are ignored), C(zone_nodes), C(expected) (alert names) and
        C(firing_at_end) (label sets of the alerts Alertmanager still had active at the end),
        C(may_outlive) (alert names over windows longer than the drill - error budget burn
        rates, latency - listed but not required to resolve), C(slo) (the fast-burn alert - C(alert),
        C(budget), C(factor), C(short_window_s), C(long_window_s), C(for_s), C(lag_s) - whose firing
        is checked against the drill's own load) and C(until) (wall clock, the drill's end).
    type: dict
  context:
    description:
      - What the playbook measured. Required - C(disrupt_start) (wall clock). Read -
        C(disrupt_end), C(healthy_at) (service -> wall clock), C(rejoin_s) (service -> seconds),
        C(verify) (C(pass) or what failed). Anything else is listed as is.
    type: dict
    required: true
  thresholds:
    description:
      - The stack's limits; C(null) is measured, not checked. C(max_healthy_s),
        C(max_rejoin_s), C(max_app_failures_outside_window), C(max_app_failed_read_ratio) (failed
        reads / reads), C(max_app_failed_writes_outside_write_gap). Any other key fails the task.
    type: dict
    default: {}
  events:
    description: Events to add to the recorders' (C(event), C(t_wall), C(target), C(kind)).
    type: list
    elements: dict
    default: []
  fail_on_violation:
    description: Fail the task when a limit is crossed.
    type: bool
    default: true
seealso:
  - module: hastack.ha.drill_report
"""

EXAMPLES = r"""
- name: Report the zone drill
  hastack.ha.zone_drill_report:
    zone: a
    mode: kill
    t0_wall: "{{ drill_t0 }}"
    report_dir: reports
    services:
      postgres: {raw: "{{ work }}/postgres.json", thresholds: {max_write_gap_s: 23, max_lost_writes: 0}}
      redis: {raw: "{{ work }}/redis.json", thresholds: {max_write_gap_s: 8, max_lost_writes: 0}}
    app: {load: "{{ work }}/app.json", settle_s: 10}
    alerts:
      notifications: /var/lib/prometheus/alert-receiver/notifications.jsonl
      since: "{{ drill_t0 }}"
      zone_nodes: [node-a]
      expected: [NodeDown]
    context:
      disrupt_start: "{{ t_kill }}"
      disrupt_end: "{{ t_heal }}"
      healthy_at: {postgres: "{{ t_pg }}", redis: "{{ t_redis }}", app: "{{ t_app }}"}
      rejoin_s: {postgres: 25.1, redis: 9.8, app: 4.2}
      verify: pass
    thresholds: {max_healthy_s: 23, max_rejoin_s: 60, max_app_failures_outside_window: 0}
  delegate_to: localhost
"""

RETURN = r"""
verdict:
  description: C(pass) when no limit is crossed, else C(fail).
  returned: always
  type: str
violations:
  description: Each crossed limit, with the service (or C(stack), C(alerts)) and a message.
  returned: always
  type: list
  elements: dict
stack:
  description:
    - C(healthy_s), C(healthy_by_service_s), C(rejoin_s), C(rejoin_by_service_s),
      C(app_failures_outside_window), C(verify).
  returned: always
  type: dict
services:
  description:
    - Per service its verdict and metrics (those of M(hastack.ha.drill_report); for C(app),
      requests and failures).
  returned: always
  type: dict
alerts:
  description:
    - C(notified) (alert, where, severity, fired_t, resolved_t), C(missing), C(not_inhibited),
      C(unresolved), C(still_firing).
  returned: when O(alerts) is given
  type: dict
files:
  description: Paths of the report files (in check mode, where they would be).
  returned: always
  type: dict
"""

import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.drill.report import (  # noqa: E402
    finish_module,
    report_basename,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.zone_report import (  # noqa: E402
    build_zone_report,
    write_zone_report,
)


def _read_json(module: AnsibleModule, path: str, what: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError) as ex:
        module.fail_json(msg=f"cannot read {what} {path}: {ex}")
    if not isinstance(data, dict):
        module.fail_json(msg=f"{path} is not {what} (not a JSON object)")
    return data


def _read_notifications(module: AnsibleModule, path: str, since: float) -> list[dict]:
    if not os.path.exists(path):
        return []
    out = []
    try:
        with open(path) as fh:
            for line in fh:
                if line.strip():
                    record = json.loads(line)
                    if float(record.get("received_at", 0)) >= since:
                        out.append(record)
    except (OSError, ValueError) as ex:
        module.fail_json(msg=f"cannot read the alert receiver's notifications {path}: {ex}")
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "zone": {"type": "str", "required": True},
            "mode": {"type": "str", "required": True},
            "t0_wall": {"type": "float", "required": True},
            "report_dir": {"type": "path", "required": True},
            "services": {"type": "dict", "default": {}},
            "app": {"type": "dict"},
            "alerts": {"type": "dict"},
            "context": {"type": "dict", "required": True},
            "thresholds": {"type": "dict", "default": {}},
            "events": {"type": "list", "elements": "dict", "default": []},
            "fail_on_violation": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    services, raws = {}, {}
    for name, spec in p["services"].items():
        if not isinstance(spec, dict) or not spec.get("raw"):
            module.fail_json(msg=f"services.{name} needs 'raw' (the path of the recorder's raw JSON)")
        raw = _read_json(module, spec["raw"], f"the {name} recording")
        if "writer" not in raw:
            module.fail_json(msg=f"{spec['raw']} is not a drill recorder's recording (no 'writer' key)")
        raws[name] = raw
        services[name] = {"raw": raw, "thresholds": spec.get("thresholds") or {}, "context": spec.get("context") or {}}
    load = None
    app = None
    if p["app"]:
        load = _read_json(module, p["app"].get("load", ""), "the app load recording")
        app = {
            "load": load,
            "settle_s": p["app"].get("settle_s", 0),
            "write_grace_s": p["app"].get("write_grace_s", 0),
        }
    alerts = None
    if p["alerts"]:
        a = p["alerts"]
        alerts = {
            "notifications": _read_notifications(module, a.get("notifications", ""), float(a.get("since") or 0)),
            "zone_nodes": a.get("zone_nodes") or [],
            "expected": a.get("expected") or [],
            "firing_at_end": a.get("firing_at_end") or [],
            "may_outlive": a.get("may_outlive") or [],
            "slo": a.get("slo"),
            "until": a.get("until"),
        }
    try:
        report = build_zone_report(
            zone=p["zone"],
            mode=p["mode"],
            t0_wall=p["t0_wall"],
            services=services,
            app=app,
            alerts=alerts,
            context=p["context"],
            thresholds=p["thresholds"],
            events=p["events"],
        )
    except ValueError as ex:
        module.fail_json(msg=f"zone_drill_report: {ex}")

    if module.check_mode:
        base = os.path.join(p["report_dir"], report_basename(report))
        files = {ext: f"{base}.{ext}" for ext in ("json", "md", "png")}
    else:
        try:
            files = write_zone_report(report, raws, load, p["t0_wall"], p["report_dir"])
        except ImportError as ex:
            module.fail_json(msg=missing_required_lib("matplotlib"), exception=str(ex))
        except OSError as ex:
            module.fail_json(msg=f"cannot write the report into {p['report_dir']}: {ex}")

    finish_module(
        module, report, files, "zone drill", stack=report["stack"], services=report["services"], alerts=report["alerts"]
    )


if __name__ == "__main__":
    main()
