# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""EKS managed node groups and add-ons through a boto3 ``eks`` client.

What ``community.aws`` does not do (or not safely) for the eks_multi_az role:
re-applying a node group's wanted state to an existing group (scaling,
labels, update config, tags; its ``eks_nodegroup`` fails on a rerun when the
API omits ``updateConfig``, cannot pass ``AL2023_*`` AMI types and does not
see changed label values) and managing add-ons at all.

Three layers, each usable alone:

- ``*_plan``: pure functions from the described object (``None`` when it does
  not exist) and the wanted spec to the calls that would make them equal;
  fields EKS cannot change in place are reported, never silently replaced;
- ``ensure_*`` / ``remove_*``: run a plan with a client (nothing but describe
  calls in check mode) and wait for the object to settle;
- ``wait_for``: polling with a deadline on ``time.monotonic()``.

The client is passed in, so the caller decides region, endpoint and
credentials (the modules take them from amazon.aws' common options).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# What EKS reports for a node group created without updateConfig (and what an
# emulator that does not store the field means by leaving it out).
DEFAULT_UPDATE_CONFIG = {"maxUnavailable": 1}

# Node group fields that EKS cannot change on an existing group: a new value
# needs a new group (and a migration of the pods), which this code never does.
NODEGROUP_IMMUTABLE = {
    "nodeRole": "node_role",
    "subnets": "subnets",
    "instanceTypes": "instance_types",
    "amiType": "ami_type",
    "diskSize": "disk_size",
    "capacityType": "capacity_type",
}
SETTLED_OK = {"ACTIVE"}
SETTLED_FAILED = {"CREATE_FAILED", "DELETE_FAILED", "DEGRADED", "UPDATE_FAILED"}


class EksError(Exception):
    """An EKS object could not be brought to the wanted state; the text says which and why."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError (empty for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def wait_for(
    probe: Callable[[], Any],
    done: Callable[[Any], bool],
    what: str,
    timeout: float,
    delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Call ``probe`` until ``done(result)``; raise EksError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() + delay > deadline:
            raise EksError(f"{what}: not settled after {timeout:.0f} s (last state: {_status(result)})")
        sleep(delay)


def plain(obj: Any) -> Any:
    """A describe result with its datetimes as ISO strings (module results are JSON)."""
    return json.loads(json.dumps(obj, default=lambda value: value.isoformat()))


def _status(obj: dict[str, Any] | None) -> str:
    return "absent" if obj is None else str(obj.get("status", "unknown"))


def _settled(what: str) -> Callable[[dict[str, Any] | None], bool]:
    def check(obj: dict[str, Any] | None) -> bool:
        status = _status(obj)
        if status in SETTLED_FAILED:
            health = (obj or {}).get("health", {}).get("issues", [])
            raise EksError(f"{what} is {status}: {health or 'no health issues reported'}")
        return status in SETTLED_OK

    return check


def tags_plan(current: dict[str, str], wanted: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(tags to add or change, tag keys to remove) so that current becomes wanted."""
    add = {key: value for key, value in wanted.items() if current.get(key) != value}
    remove = sorted(key for key in current if key not in wanted)
    return add, remove


def apply_tags(client: Any, arn: str, add: dict[str, str], remove: list[str]) -> None:
    if remove:
        client.untag_resource(resourceArn=arn, tagKeys=remove)
    if add:
        client.tag_resource(resourceArn=arn, tags=add)


# --- managed node groups ------------------------------------------------------


@dataclass
class NodegroupSpec:
    """The wanted state of one managed node group (module options, EKS names)."""

    cluster: str
    name: str
    node_role: str
    subnets: list[str]
    min_size: int
    max_size: int
    desired_size: int | None = None
    instance_types: list[str] = field(default_factory=lambda: ["t3.large"])
    ami_type: str = "AL2023_x86_64_STANDARD"
    disk_size: int = 50
    capacity_type: str = "ON_DEMAND"
    labels: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    max_unavailable: int = 1

    def scaling(self, current_desired: int | None) -> dict[str, int]:
        """scalingConfig; without desired_size the current (else min) size, kept within min..max."""
        desired = self.desired_size
        if desired is None:
            desired = self.min_size if current_desired is None else current_desired
            desired = max(self.min_size, min(self.max_size, desired))
        return {"minSize": self.min_size, "maxSize": self.max_size, "desiredSize": desired}

    def create_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {
            "clusterName": self.cluster,
            "nodegroupName": self.name,
            "nodeRole": self.node_role,
            "subnets": list(self.subnets),
            "scalingConfig": self.scaling(None),
            "instanceTypes": list(self.instance_types),
            "amiType": self.ami_type,
            "diskSize": self.disk_size,
            "capacityType": self.capacity_type,
            "updateConfig": {"maxUnavailable": self.max_unavailable},
        }
        if self.labels:
            request["labels"] = dict(self.labels)
        if self.tags:
            request["tags"] = dict(self.tags)
        return request


@dataclass
class Plan:
    """What ensure_* would do: API calls by name, and fields that cannot change."""

    create: dict[str, Any] | None = None
    update: dict[str, Any] = field(default_factory=dict)
    tags_add: dict[str, str] = field(default_factory=dict)
    tags_remove: list[str] = field(default_factory=list)
    immutable: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.create or self.update or self.tags_add or self.tags_remove)

    def actions(self) -> list[str]:
        done = []
        if self.create:
            done.append("create")
        done += [f"update {key}" for key in sorted(self.update) if key != "resolveConflicts"]
        if self.tags_add or self.tags_remove:
            done.append("tag")
        return done


def _same(key: str, current: Any, wanted: Any) -> bool:
    if key in ("subnets", "instanceTypes"):
        return sorted(current or []) == sorted(wanted or [])
    return current == wanted


def nodegroup_plan(current: dict[str, Any] | None, spec: NodegroupSpec) -> Plan:
    """Calls that turn ``current`` (describe_nodegroup()['nodegroup'] or None) into ``spec``."""
    if current is None:
        return Plan(create=spec.create_request())
    wanted = spec.create_request()
    plan = Plan()
    for key, option in NODEGROUP_IMMUTABLE.items():
        if key in current and not _same(key, current[key], wanted[key]):
            plan.immutable.append(f"{option}: is {current[key]!r}, wanted {wanted[key]!r}")
    scaling = spec.scaling(current.get("scalingConfig", {}).get("desiredSize"))
    current_scaling = {key: current.get("scalingConfig", {}).get(key) for key in scaling}
    if current_scaling != scaling:
        plan.update["scalingConfig"] = scaling
    labels_now = current.get("labels") or {}
    add, remove = tags_plan(labels_now, spec.labels)
    if add or remove:
        plan.update["labels"] = {k: v for k, v in (("addOrUpdateLabels", add), ("removeLabels", remove)) if v}
    update_config = {"maxUnavailable": spec.max_unavailable}
    if (current.get("updateConfig") or DEFAULT_UPDATE_CONFIG) != update_config:
        plan.update["updateConfig"] = update_config
    plan.tags_add, plan.tags_remove = tags_plan(current.get("tags") or {}, spec.tags)
    return plan


def describe_nodegroup(client: Any, cluster: str, name: str) -> dict[str, Any] | None:
    try:
        return client.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def ensure_nodegroup(
    client: Any,
    spec: NodegroupSpec,
    check_mode: bool = False,
    wait: bool = True,
    timeout: float = 1800,
    delay: float = 15,
) -> tuple[Plan, dict[str, Any] | None]:
    """Create the node group or update it in place; (plan, node group as described after)."""
    what = f"node group {spec.name} of cluster {spec.cluster}"
    current = describe_nodegroup(client, spec.cluster, spec.name)
    plan = nodegroup_plan(current, spec)
    if plan.immutable:
        raise EksError(
            f"{what}: cannot change in place: {'; '.join(plan.immutable)}. "
            "Create a node group under a new name, move the pods, then remove the old one."
        )
    if check_mode or not plan.changed:
        return plan, current
    if current is not None and current.get("status") != "ACTIVE":
        current = wait_for(
            lambda: describe_nodegroup(client, spec.cluster, spec.name), _settled(what), what, timeout, delay
        )
    if plan.create:
        client.create_nodegroup(**plan.create)
    elif plan.update:
        client.update_nodegroup_config(clusterName=spec.cluster, nodegroupName=spec.name, **plan.update)
    if current is not None:
        apply_tags(client, current["nodegroupArn"], plan.tags_add, plan.tags_remove)
    probe = lambda: describe_nodegroup(client, spec.cluster, spec.name)  # noqa: E731
    after = wait_for(probe, _settled(what), what, timeout, delay) if wait else probe()
    return plan, after


def remove_nodegroup(
    client: Any, cluster: str, name: str, check_mode: bool = False, wait: bool = True,
    timeout: float = 1800, delay: float = 15,
) -> bool:  # fmt: skip
    """Delete the node group if it exists; True when a delete was (or would be) requested."""
    current = describe_nodegroup(client, cluster, name)
    if current is None:
        return False
    if check_mode:
        return True
    if current.get("status") != "DELETING":
        client.delete_nodegroup(clusterName=cluster, nodegroupName=name)
    if wait:
        what = f"deleting node group {name} of cluster {cluster}"
        wait_for(lambda: describe_nodegroup(client, cluster, name), lambda ng: ng is None, what, timeout, delay)
    return True


# --- add-ons ------------------------------------------------------------------


@dataclass
class AddonSpec:
    """The wanted state of one EKS add-on; None leaves a field to EKS (or as it is)."""

    cluster: str
    name: str
    version: str | None = None
    service_account_role_arn: str | None = None
    configuration_values: str | None = None
    resolve_conflicts: str = "OVERWRITE"
    tags: dict[str, str] = field(default_factory=dict)


def _json_equal(left: str | None, right: str | None) -> bool:
    try:
        return json.loads(left or "{}") == json.loads(right or "{}")
    except ValueError:
        return (left or "") == (right or "")


def addon_plan(current: dict[str, Any] | None, spec: AddonSpec) -> Plan:
    """Calls that turn ``current`` (describe_addon()['addon'] or None) into ``spec``."""
    optional = {
        "addonVersion": spec.version,
        "serviceAccountRoleArn": spec.service_account_role_arn,
        "configurationValues": spec.configuration_values,
    }
    if current is None:
        create = {"clusterName": spec.cluster, "addonName": spec.name, "resolveConflicts": spec.resolve_conflicts}
        create.update({key: value for key, value in optional.items() if value is not None})
        if spec.tags:
            create["tags"] = dict(spec.tags)
        return Plan(create=create)
    plan = Plan()
    for key, value in optional.items():
        if value is None:
            continue
        same = _json_equal(current.get(key), value) if key == "configurationValues" else current.get(key) == value
        if not same:
            plan.update[key] = value
    if plan.update:
        plan.update["resolveConflicts"] = spec.resolve_conflicts
    plan.tags_add, plan.tags_remove = tags_plan(current.get("tags") or {}, spec.tags)
    return plan


def describe_addon(client: Any, cluster: str, name: str) -> dict[str, Any] | None:
    try:
        return client.describe_addon(clusterName=cluster, addonName=name)["addon"]
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def ensure_addon(
    client: Any,
    spec: AddonSpec,
    check_mode: bool = False,
    wait: bool = True,
    timeout: float = 1200,
    delay: float = 10,
) -> tuple[Plan, dict[str, Any] | None]:
    """Install the add-on or update it in place; (plan, add-on as described after)."""
    what = f"add-on {spec.name} of cluster {spec.cluster}"
    current = describe_addon(client, spec.cluster, spec.name)
    plan = addon_plan(current, spec)
    if check_mode or not plan.changed:
        return plan, current
    if plan.create:
        client.create_addon(**plan.create)
    elif plan.update:
        client.update_addon(clusterName=spec.cluster, addonName=spec.name, **plan.update)
    if current is not None:
        apply_tags(client, current["addonArn"], plan.tags_add, plan.tags_remove)
    probe = lambda: describe_addon(client, spec.cluster, spec.name)  # noqa: E731
    after = wait_for(probe, _settled(what), what, timeout, delay) if wait else probe()
    return plan, after


def remove_addon(
    client: Any, cluster: str, name: str, check_mode: bool = False, wait: bool = True,
    timeout: float = 1200, delay: float = 10,
) -> bool:  # fmt: skip
    """Delete the add-on if it exists; True when a delete was (or would be) requested."""
    current = describe_addon(client, cluster, name)
    if current is None:
        return False
    if check_mode:
        return True
    if current.get("status") != "DELETING":
        client.delete_addon(clusterName=cluster, addonName=name)
    if wait:
        what = f"deleting add-on {name} of cluster {cluster}"
        wait_for(lambda: describe_addon(client, cluster, name), lambda addon: addon is None, what, timeout, delay)
    return True
