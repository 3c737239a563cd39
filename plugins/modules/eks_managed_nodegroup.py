#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: eks_managed_nodegroup
short_description: Create, update in place (scale) or delete one EKS managed node group
version_added: 0.1.0
description:
  - Brings one managed node group to the wanted state and keeps it there on every run. An
    existing group is compared field by field and updated with one C(UpdateNodegroupConfig)
    call (scaling, labels, update config) plus C(TagResource)/C(UntagResource); a rerun with
    the same options makes no call that changes anything and reports C(changed=false).
  - Fields EKS cannot change on an existing group (role, subnets, instance types, AMI type,
    disk size, capacity type) are never replaced behind your back; the module fails and names
    them.
  - Written because C(community.aws.eks_nodegroup) fails on a rerun when the API leaves out
    C(updateConfig), does not accept the C(AL2023_*) AMI types, and misses changed label values.
  - Waits until the group is C(ACTIVE) (or gone, for O(state=absent)); a group that ends
    C(CREATE_FAILED) or C(DEGRADED) fails the task with EKS' health issues.
  - Region, endpoint and credentials are amazon.aws' common options (O(region),
    O(endpoint_url), environment variables such as E(AWS_REGION), E(AWS_ENDPOINT_URL)).
author: hastack developers
options:
  cluster_name:
    description: Name of the EKS cluster.
    type: str
    required: true
  name:
    description: Name of the node group.
    type: str
    required: true
  state:
    description: Whether the node group exists.
    type: str
    choices: [present, absent]
    default: present
  node_role:
    description: ARN of the IAM role of the nodes. Required with O(state=present).
    type: str
  subnets:
    description: Subnet IDs the nodes start in (one subnet = one availability zone). Required with O(state=present).
    type: list
    elements: str
  min_size:
    description: Minimum number of nodes.
    type: int
    default: 1
  max_size:
    description: Maximum number of nodes.
    type: int
    default: 3
  desired_size:
    description:
      - Number of nodes wanted now. Left out, a new group starts with O(min_size) nodes and an
        existing group keeps its current size (moved into O(min_size)..O(max_size)), so that a
        cluster-autoscaler owns the size between runs.
    type: int
  instance_types:
    description: EC2 instance types.
    type: list
    elements: str
    default: [t3.large]
  ami_type:
    description: EKS AMI type (for example C(AL2023_x86_64_STANDARD), C(BOTTLEROCKET_x86_64)).
    type: str
    default: AL2023_x86_64_STANDARD
  disk_size:
    description: Root volume size in GiB.
    type: int
    default: 50
  capacity_type:
    description: On-demand or spot capacity.
    type: str
    choices: [ON_DEMAND, SPOT]
    default: ON_DEMAND
  labels:
    description: Kubernetes labels of the nodes (the whole set; others are removed).
    type: dict
    default: {}
  max_unavailable:
    description: Nodes replaced at once during a version update.
    type: int
    default: 1
  tags:
    description: AWS tags of the node group (the whole set; others are removed).
    type: dict
    default: {}
  wait:
    description: Wait until the group is ACTIVE (or deleted).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait.
    type: int
    default: 1800
  wait_delay:
    description: Seconds between two polls while waiting.
    type: int
    default: 15
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - Supports check mode (only describe calls; RV(actions) lists what would be done).
  - Node group version updates (C(UpdateNodegroupVersion)) are not handled.
"""

EXAMPLES = r"""
- name: One node group in zone a, three nodes now
  hastack.ha.eks_managed_nodegroup:
    cluster_name: prod
    name: prod-eu-west-1a
    node_role: arn:aws:iam::123456789012:role/prod-eks-node
    subnets: [subnet-0a1b2c3d]
    min_size: 1
    desired_size: 3
    max_size: 6
    labels:
      topology.kubernetes.io/zone: eu-west-1a
    region: eu-west-1

- name: Remove it
  hastack.ha.eks_managed_nodegroup:
    cluster_name: prod
    name: prod-eu-west-1a
    state: absent
    region: eu-west-1
"""

RETURN = r"""
actions:
  description: What was (or in check mode would be) done, for example C(create), C(update scalingConfig), C(delete).
  returned: always
  type: list
  elements: str
  sample: [update scalingConfig]
nodegroup:
  description: The node group as C(DescribeNodegroup) returns it after the change (empty when absent).
  returned: always
  type: dict
  sample: {nodegroupName: prod-eu-west-1a, status: ACTIVE, scalingConfig: {minSize: 1, maxSize: 6, desiredSize: 3}}
"""

import contextlib  # noqa: E402

from ansible.module_utils.common.text.converters import to_native  # noqa: E402
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.eks import (  # noqa: E402
    EksError,
    NodegroupSpec,
    ensure_nodegroup,
    plain,
    remove_nodegroup,
)

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    import botocore


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
            cluster_name=dict(type="str", required=True),
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            node_role=dict(type="str"),
            subnets=dict(type="list", elements="str"),
            min_size=dict(type="int", default=1),
            max_size=dict(type="int", default=3),
            desired_size=dict(type="int"),
            instance_types=dict(type="list", elements="str", default=["t3.large"]),
            ami_type=dict(type="str", default="AL2023_x86_64_STANDARD"),
            disk_size=dict(type="int", default=50),
            capacity_type=dict(type="str", choices=["ON_DEMAND", "SPOT"], default="ON_DEMAND"),
            labels=dict(type="dict", default={}),
            max_unavailable=dict(type="int", default=1),
            tags=dict(type="dict", default={}),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=1800),
            wait_delay=dict(type="int", default=15),
        ),
        required_if=[("state", "present", ("node_role", "subnets"))],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "present" and not (
        1 <= p["min_size"] <= p["max_size"] and p["min_size"] <= (p["desired_size"] or p["min_size"]) <= p["max_size"]
    ):
        module.fail_json(
            msg=f"node group {p['name']}: sizes min={p['min_size']} desired={p['desired_size']} max={p['max_size']}; "
            "rule: 1 <= min_size <= desired_size <= max_size"
        )
    client = module.client("eks")
    wait = {"wait": p["wait"], "timeout": p["wait_timeout"], "delay": p["wait_delay"]}
    try:
        if p["state"] == "absent":
            changed = remove_nodegroup(client, p["cluster_name"], p["name"], module.check_mode, **wait)
            module.exit_json(changed=changed, actions=["delete"] if changed else [], nodegroup={})
        spec = NodegroupSpec(
            cluster=p["cluster_name"],
            name=p["name"],
            node_role=p["node_role"],
            subnets=p["subnets"],
            min_size=p["min_size"],
            max_size=p["max_size"],
            desired_size=p["desired_size"],
            instance_types=p["instance_types"],
            ami_type=p["ami_type"],
            disk_size=p["disk_size"],
            capacity_type=p["capacity_type"],
            labels={str(k): str(v) for k, v in p["labels"].items()},
            tags={str(k): str(v) for k, v in p["tags"].items()},
            max_unavailable=p["max_unavailable"],
        )
        plan, after = ensure_nodegroup(client, spec, module.check_mode, **wait)
    except EksError as exc:
        module.fail_json(msg=str(exc))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        module.fail_json_aws(exc, msg=f"node group {p['name']} of cluster {p['cluster_name']}: {to_native(exc)}")
    module.exit_json(changed=plan.changed, actions=plan.actions(), nodegroup=plain(after or {}))


if __name__ == "__main__":
    main()
