#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: prometheus_info
short_description: Read the state of a Prometheus and its Alertmanager from their HTTP APIs
version_added: 0.1.0
description:
  - Asks Prometheus for its active scrape targets (C(/api/v1/targets)), its rule groups
    (C(/api/v1/rules)), its pending and firing alerts (C(/api/v1/alerts)) and whether its
    last config reload succeeded (C(prometheus_config_last_reload_successful)).
  - With O(alertmanager_url), asks Alertmanager for C(/api/v2/status) whether it is
    reachable, its config loaded, its receivers and version.
  - Read-only. Never changes anything, always returns C(changed=false).
  - Fails only when Prometheus does not answer; an unreachable Alertmanager is reported in
    RV(monitoring.alertmanager).
  - Judge the result with the P(hastack.ha.prometheus_problems#filter) filter.
author:
  - hastack developers
options:
  prometheus_url:
    description: Base URL of Prometheus, for example V(http://198.18.0.20:9090).
    type: str
    required: true
  alertmanager_url:
    description: Base URL of Alertmanager, for example V(http://198.18.0.20:9093).
    type: str
  timeout:
    description: Seconds to wait for each request.
    type: float
    default: 3.0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Read Prometheus and Alertmanager
  hastack.ha.prometheus_info:
    prometheus_url: http://198.18.0.20:9090
    alertmanager_url: http://198.18.0.20:9093
  register: monitoring

- name: Assert every target is up, every rule group loaded, nothing critical firing
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: >-
      {{ monitoring.monitoring | hastack.ha.prometheus_problems(
           expected_groups=['hastack.node', 'hastack.postgres'], expected_jobs=['node', 'postgres']) }}
"""

RETURN = r"""
monitoring:
  description: What Prometheus and Alertmanager report.
  returned: success
  type: dict
  contains:
    targets:
      description: Active scrape targets, sorted by job, node and instance.
      type: list
      elements: dict
      returned: always
      sample: [{"job": "node", "instance": "198.18.1.11:9100", "node": "node-a", "health": "up",
                "last_error": "", "last_scrape": "2026-11-26T22:00:00Z"}]
    rule_groups:
      description: Loaded rule groups with their rule count, alert names and unhealthy rules.
      type: list
      elements: dict
      returned: always
      sample: [{"name": "hastack.node", "file": "/etc/prometheus/rules/hastack.rules.yml",
                "rules": 4, "alerts": ["DiskSpaceLow", "HighCPUUsage"], "unhealthy": []}]
    alerts:
      description: Pending and firing alerts (name, state, severity, labels, active_at, summary).
      type: list
      elements: dict
      returned: always
    config_reload_successful:
      description: Whether Prometheus' last config reload succeeded; V(null) before its first self-scrape.
      type: bool
      returned: always
    alertmanager:
      description:
        - Alertmanager's reachability (C(reachable), C(error)), C(config_loaded), C(receivers),
          C(version), C(uptime), C(cluster_status); V(null) without O(alertmanager_url).
      type: dict
      returned: always
    elapsed_s:
      description: Seconds the requests took.
      type: float
      returned: always
"""

# Ansible wants the imports below DOCUMENTATION/EXAMPLES/RETURN (ansible-test
# "import-before-documentation"), hence E402.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.prometheus import (  # noqa: E402
    MonitoringApiError,
    fetch_monitoring,
)


def argument_spec() -> dict:
    return {
        "prometheus_url": {"type": "str", "required": True},
        "alertmanager_url": {"type": "str"},
        "timeout": {"type": "float", "default": 3.0},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        monitoring = fetch_monitoring(params["prometheus_url"], params["alertmanager_url"], params["timeout"])
    except MonitoringApiError as exc:
        module.fail_json(msg=f"prometheus_info: {exc}. Check that Prometheus runs and listens there.", changed=False)
    module.exit_json(changed=False, monitoring=monitoring)


if __name__ == "__main__":
    main()
