"""playbooks/kubernetes.yml renders (and applies) every role that has a Kubernetes form, in a working order."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_the_playbook_covers_every_role_with_a_kubernetes_form_in_apply_order():
    plays = yaml.safe_load((REPO / "playbooks" / "kubernetes.yml").read_text())
    listed = plays[0]["vars"]["kubernetes_roles"]
    with_form = sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/tasks/kubernetes.yml"))
    assert sorted(listed) == with_form, (
        f"playbooks/kubernetes.yml lists {listed}; roles with tasks/kubernetes.yml: {with_form}"
    )
    # the app's database role and database come from patroni_postgres's roles Job
    assert listed.index("patroni_postgres") < listed.index("app_backend")
