#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: eks_addon
short_description: Install, update or remove one EKS add-on
version_added: 0.1.0
description:
  - Brings one EKS add-on (for example C(vpc-cni), C(coredns), C(kube-proxy),
    C(aws-ebs-csi-driver)) to the wanted state with C(CreateAddon), C(UpdateAddon) and
    C(DeleteAddon), and waits until it is C(ACTIVE) (or gone). A rerun with the same options
    makes no call that changes anything and reports C(changed=false).
  - Options left out (O(version), O(service_account_role_arn), O(configuration_values)) are
    left to EKS on install and left as they are on an existing add-on.
  - An add-on that ends C(CREATE_FAILED), C(UPDATE_FAILED) or C(DEGRADED) fails the task with
    EKS' health issues (for example a CoreDNS without nodes to run on).
  - Neither amazon.aws nor community.aws has a module for EKS add-ons.
  - Region, endpoint and credentials are amazon.aws' common options.
author: hastack developers
options:
  cluster_name:
    description: Name of the EKS cluster.
    type: str
    required: true
  name:
    description: Add-on name as EKS lists it (C(DescribeAddonVersions)).
    type: str
    required: true
  state:
    description: Whether the add-on is installed.
    type: str
    choices: [present, absent]
    default: present
  version:
    description: Add-on version (for example C(v1.20.4-eksbuild.2)); left out, EKS picks its default on install.
    type: str
  service_account_role_arn:
    description: IAM role for the add-on's service account (IRSA); left out, the add-on uses the node role.
    type: str
  configuration_values:
    description: Add-on configuration as a JSON string (compared as JSON, not as text).
    type: str
  resolve_conflicts:
    description: What EKS does with fields changed outside the add-on (C(OVERWRITE) takes the add-on's values).
    type: str
    choices: [OVERWRITE, NONE, PRESERVE]
    default: OVERWRITE
  tags:
    description: AWS tags of the add-on (the whole set; others are removed).
    type: dict
    default: {}
  wait:
    description: Wait until the add-on is ACTIVE (or deleted).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait.
    type: int
    default: 1200
  wait_delay:
    description: Seconds between two polls while waiting.
    type: int
    default: 10
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - Supports check mode (only describe calls; RV(actions) lists what would be done).
"""

EXAMPLES = r"""
- name: The EBS CSI driver (the node role carries AmazonEBSCSIDriverPolicy)
  hastack.ha.eks_addon:
    cluster_name: prod
    name: aws-ebs-csi-driver
    region: eu-west-1

- name: Pin CoreDNS and give it two replicas per zone's worth of nodes
  hastack.ha.eks_addon:
    cluster_name: prod
    name: coredns
    version: v1.11.4-eksbuild.2
    configuration_values: '{"replicaCount": 3}'
    region: eu-west-1
"""

RETURN = r"""
actions:
  description: What was (or in check mode would be) done, for example C(create), C(update addonVersion), C(delete).
  returned: always
  type: list
  elements: str
  sample: [create]
addon:
  description: The add-on as C(DescribeAddon) returns it after the change (empty when absent).
  returned: always
  type: dict
  sample: {addonName: coredns, addonVersion: v1.11.4-eksbuild.2, status: ACTIVE}
"""

import contextlib  # noqa: E402

from ansible.module_utils.common.text.converters import to_native  # noqa: E402
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.eks import (  # noqa: E402
    AddonSpec,
    EksError,
    ensure_addon,
    plain,
    remove_addon,
)

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    import botocore


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
            cluster_name=dict(type="str", required=True),
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            version=dict(type="str"),
            service_account_role_arn=dict(type="str"),
            configuration_values=dict(type="str"),
            resolve_conflicts=dict(type="str", choices=["OVERWRITE", "NONE", "PRESERVE"], default="OVERWRITE"),
            tags=dict(type="dict", default={}),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=1200),
            wait_delay=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    client = module.client("eks")
    wait = {"wait": p["wait"], "timeout": p["wait_timeout"], "delay": p["wait_delay"]}
    try:
        if p["state"] == "absent":
            changed = remove_addon(client, p["cluster_name"], p["name"], module.check_mode, **wait)
            module.exit_json(changed=changed, actions=["delete"] if changed else [], addon={})
        spec = AddonSpec(
            cluster=p["cluster_name"],
            name=p["name"],
            version=p["version"],
            service_account_role_arn=p["service_account_role_arn"],
            configuration_values=p["configuration_values"],
            resolve_conflicts=p["resolve_conflicts"],
            tags={str(k): str(v) for k, v in p["tags"].items()},
        )
        plan, after = ensure_addon(client, spec, module.check_mode, **wait)
    except EksError as exc:
        module.fail_json(msg=str(exc))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        module.fail_json_aws(exc, msg=f"add-on {p['name']} of cluster {p['cluster_name']}: {to_native(exc)}")
    module.exit_json(changed=plan.changed, actions=plan.actions(), addon=plain(after or {}))


if __name__ == "__main__":
    main()
