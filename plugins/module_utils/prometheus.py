# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Small read-only client for the Prometheus and Alertmanager HTTP APIs (stdlib only).

``fetch_monitoring`` asks Prometheus for its active targets, rule groups,
alerts and whether its last config reload succeeded, and (optionally)
Alertmanager for its status, and returns one plain dict: the shape the
``hastack.ha.prometheus_problems`` filter reads.

API formats: Prometheus 2.42 ``/api/v1/targets``, ``/api/v1/rules``,
``/api/v1/alerts``, ``/api/v1/query``; Alertmanager 0.25 ``/api/v2/status``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_TIMEOUT = 3.0


class MonitoringApiError(Exception):
    """One request to Prometheus or Alertmanager failed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


def get_json(url: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """GET ``url`` and decode its JSON body, or raise MonitoringApiError naming the URL."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise MonitoringApiError(url, f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MonitoringApiError(url, f"unreachable ({reason})") from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MonitoringApiError(url, f"answer is not JSON: {exc}") from exc


def prometheus_data(base_url: str, path: str, timeout: float, **params: str) -> Any:
    """The ``data`` of a Prometheus API answer whose ``status`` is ``success``."""
    url = base_url.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    answer = get_json(url, timeout)
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise MonitoringApiError(url, f"status {answer.get('status') if isinstance(answer, dict) else answer!r}")
    return answer.get("data")


def summarize_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    for target in data.get("activeTargets") or []:
        labels = target.get("labels") or {}
        targets.append(
            {
                "job": labels.get("job", target.get("scrapePool", "")),
                "instance": labels.get("instance", ""),
                "node": labels.get("node", ""),
                "health": target.get("health", "unknown"),
                "last_error": target.get("lastError", ""),
                "last_scrape": target.get("lastScrape", ""),
            }
        )
    return sorted(targets, key=lambda t: (t["job"], t["node"], t["instance"]))


def summarize_rules(data: dict[str, Any]) -> list[dict[str, Any]]:
    groups = []
    for group in data.get("groups") or []:
        rules = group.get("rules") or []
        groups.append(
            {
                "name": group.get("name", ""),
                "file": group.get("file", ""),
                "rules": len(rules),
                "alerts": sorted(r.get("name", "") for r in rules if r.get("type") == "alerting"),
                "unhealthy": [
                    {"name": r.get("name", ""), "health": r.get("health", ""), "error": r.get("lastError", "")}
                    for r in rules
                    if r.get("health") not in ("ok", "unknown")
                ],
            }
        )
    return groups


def summarize_alerts(data: dict[str, Any]) -> list[dict[str, Any]]:
    alerts = []
    for alert in data.get("alerts") or []:
        labels = alert.get("labels") or {}
        alerts.append(
            {
                "name": labels.get("alertname", ""),
                "state": alert.get("state", ""),
                "severity": labels.get("severity", ""),
                "labels": labels,
                "active_at": alert.get("activeAt", ""),
                "summary": (alert.get("annotations") or {}).get("summary", ""),
            }
        )
    return sorted(alerts, key=lambda a: (a["name"], json.dumps(a["labels"], sort_keys=True)))


def reload_successful(base_url: str, timeout: float) -> bool | None:
    """Prometheus' own prometheus_config_last_reload_successful (None if it has no sample)."""
    data = prometheus_data(base_url, "/api/v1/query", timeout, query="prometheus_config_last_reload_successful")
    result = (data or {}).get("result") or []
    if not result:
        return None
    return all(float(sample["value"][1]) == 1 for sample in result)


def fetch_alertmanager(base_url: str, timeout: float) -> dict[str, Any]:
    """Reachability and config of an Alertmanager (``/api/v2/status``)."""
    url = base_url.rstrip("/") + "/api/v2/status"
    try:
        status = get_json(url, timeout)
    except MonitoringApiError as exc:
        return {"url": base_url, "reachable": False, "error": str(exc), "config_loaded": False}
    original = ((status or {}).get("config") or {}).get("original") or ""
    return {
        "url": base_url,
        "reachable": True,
        "error": "",
        "config_loaded": bool(original.strip()),
        "receivers": sorted(_receiver_names(original)),
        "uptime": (status or {}).get("uptime", ""),
        "version": ((status or {}).get("versionInfo") or {}).get("version", ""),
        "cluster_status": ((status or {}).get("cluster") or {}).get("status", ""),
    }


def _receiver_names(config_text: str) -> set[str]:
    """Names of the receivers in Alertmanager's config as it reports it (YAML)."""
    names = set()
    in_receivers = False
    for line in config_text.splitlines():
        if not line.startswith(" ") and line.rstrip(":") == "receivers":
            in_receivers = True
            continue
        if in_receivers and line and not line.startswith((" ", "-")):
            in_receivers = False
        if in_receivers and line.lstrip().startswith("- name:"):
            names.add(line.split(":", 1)[1].strip().strip("'\""))
    return names


def fetch_monitoring(
    prometheus_url: str,
    alertmanager_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Everything the verification needs from one Prometheus (and its Alertmanager)."""
    started = time.monotonic()
    result: dict[str, Any] = {
        "prometheus_url": prometheus_url,
        "targets": summarize_targets(prometheus_data(prometheus_url, "/api/v1/targets", timeout, state="active")),
        "rule_groups": summarize_rules(prometheus_data(prometheus_url, "/api/v1/rules", timeout)),
        "alerts": summarize_alerts(prometheus_data(prometheus_url, "/api/v1/alerts", timeout)),
        "config_reload_successful": reload_successful(prometheus_url, timeout),
    }
    result["alertmanager"] = fetch_alertmanager(alertmanager_url, timeout) if alertmanager_url else None
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    return result
