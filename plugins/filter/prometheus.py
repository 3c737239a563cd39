# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Verdict over what ``hastack.ha.prometheus_info`` returns.

Pure function: no I/O. Documented in the sidecar file ``prometheus_problems.yml``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ansible.errors import AnsibleFilterError

FIRING_ALLOWED = ("Watchdog",)


def _where(target: dict[str, Any]) -> str:
    node = f" on {target['node']}" if target.get("node") else ""
    return f"{target.get('job', '?')}{node} ({target.get('instance', '?')})"


def prometheus_problems(
    monitoring: Any,
    expected_groups: Iterable[str] = (),
    expected_jobs: Iterable[str] = (),
    severities: Iterable[str] = ("critical",),
    allowed_firing: Iterable[str] = FIRING_ALLOWED,
    require_alertmanager: bool = True,
    down_nodes: Iterable[str] = (),
) -> list[str]:
    """One line per problem; empty when every target is up, every expected group
    loaded and healthy, nothing of the given severities fires (bar allowed_firing),
    the last reload succeeded and Alertmanager answers with a loaded config.

    ``down_nodes``: nodes known to be down (verify.yml's verify_hosts_down, during
    an outage): their targets may be down and alerts about them may fire."""
    if not isinstance(monitoring, dict) or "targets" not in monitoring:
        raise AnsibleFilterError(
            "prometheus_problems: expected the 'monitoring' key of hastack.ha.prometheus_info's "
            f"result, got {type(monitoring).__name__}"
        )
    if isinstance(down_nodes, str) or not all(isinstance(n, str) for n in down_nodes):
        raise AnsibleFilterError(f"prometheus_problems: down_nodes must be a list of node names, got {down_nodes!r}")
    down = set(down_nodes)
    problems: list[str] = []
    targets = monitoring.get("targets") or []
    for target in targets:
        if target.get("health") != "up" and target.get("node") not in down:
            error = f": {target['last_error']}" if target.get("last_error") else ""
            problems.append(f"target {_where(target)} is {target.get('health', 'unknown')}{error}")
    jobs = {t.get("job") for t in targets}
    for job in expected_jobs:
        if job not in jobs:
            problems.append(f"no scrape target of job {job} (expected from the inventory)")

    groups = {g.get("name"): g for g in monitoring.get("rule_groups") or []}
    for name in expected_groups:
        if name not in groups:
            problems.append(f"rule group {name} is not loaded")
    for group in groups.values():
        for rule in group.get("unhealthy") or []:
            problems.append(
                f"rule {rule.get('name')} of group {group.get('name')} is {rule.get('health')}: {rule.get('error')}"
            )

    wanted = set(severities)
    allowed = set(allowed_firing)
    for alert in monitoring.get("alerts") or []:
        labels = alert.get("labels") or {}
        if labels.get("node") in down:
            continue
        if alert.get("state") == "firing" and alert.get("severity") in wanted and alert.get("name") not in allowed:
            where = ", ".join(f"{k}={labels[k]}" for k in ("node", "instance", "scope", "cluster") if k in labels)
            problems.append(
                f"{alert.get('severity')} alert {alert.get('name')} firing"
                + (f" ({where})" if where else "")
                + (f": {alert['summary']}" if alert.get("summary") else "")
            )

    if monitoring.get("config_reload_successful") is False:
        problems.append("Prometheus' last config reload failed: it runs an older config (see its log)")

    alertmanager = monitoring.get("alertmanager")
    if require_alertmanager:
        if not alertmanager:
            problems.append("Alertmanager was not asked (give prometheus_info an alertmanager_url)")
        elif not alertmanager.get("reachable"):
            problems.append(f"Alertmanager is unreachable: {alertmanager.get('error')}")
        elif not alertmanager.get("config_loaded"):
            problems.append(f"Alertmanager at {alertmanager.get('url')} reports no loaded config")
    return problems


class FilterModule:
    """Prometheus/Alertmanager health verdicts."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"prometheus_problems": prometheus_problems}
