#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: patroni_cluster_info
short_description: Read the state of a Patroni cluster from its REST API
version_added: 0.1.0
description:
  - Asks each given member for C(GET /cluster), in order, and returns the first answer,
    normalised into one plain dictionary (leader, members with role, state, timeline and
    lag, synchronous standbys, timelines).
  - If no member answers C(/cluster) (Patroni closes that request when it cannot read the
    DCS), asks every member for C(GET /patroni) and assembles what those answers tell;
    RV(cluster.fallback) is then C(true).
  - Read-only. Never changes anything, always returns C(changed=false).
  - Fails only when no member answers at all; the message names each endpoint and why.
  - Talks to the REST API directly, ignoring C(http_proxy) and similar variables.
  - Judge the result with the P(hastack.ha.patroni_problems#filter) filter.
author:
  - hastack developers
options:
  endpoints:
    description:
      - Patroni REST API base URLs of the members, tried in this order,
        for example V(http://198.18.1.11:8008).
      - A trailing C(/patroni), as in the C(api_url) Patroni reports, is accepted.
    type: list
    elements: str
    required: true
  timeout:
    description:
      - Seconds to wait for each connection and each read, per request.
      - The worst case is about 2 x O(timeout) x the number of endpoints.
    type: float
    default: 2.0
  username:
    description:
      - User for HTTP basic auth (C(restapi.authentication.username)), sent with every request.
      - Patroni 4.1.5 checks it only on unsafe endpoints, not on the C(GET /cluster) and
        C(GET /patroni) used here; give it when something in front of the API asks for it.
    type: str
  password:
    description:
      - Password for HTTP basic auth.
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of C(https) endpoints.
    type: bool
    default: true
  ca_file:
    description:
      - PEM file of the CA that signed the REST API certificates.
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - C(/cluster) has one leader at most (there is one leader key); only the
    C(/patroni) fallback, which asks every member, can show two members that
    both think they are primary.
  - A member whose Patroni is down disappears from C(/cluster) once its member
    key expires (C(ttl)); compare the member count with the expected one.
  - O(endpoints) are tried in the order given. Each endpoint that fails is listed
    in RV(cluster.errors) even when a later one answered.
"""

EXAMPLES = r"""
- name: Read the Patroni cluster
  hastack.ha.patroni_cluster_info:
    endpoints:
      - http://198.18.1.11:8008
      - http://198.18.2.12:8008
      - http://198.18.3.13:8008
  register: patroni

- name: Assert the Patroni cluster is healthy
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "Patroni cluster {{ patroni.cluster.scope }}: {{ problems | join('; ') }}"
  vars:
    problems: >-
      {{ patroni.cluster | hastack.ha.patroni_problems(expected_members=3,
         expected_names=['node-a', 'node-b', 'node-c'], max_lag_bytes=1048576) }}

- name: Wait until a synchronous standby is assigned (after bootstrap or failover)
  hastack.ha.patroni_cluster_info:
    endpoints: "{{ groups['patroni'] | map('extract', hostvars, 'patroni_api_url') | list }}"
    username: "{{ patroni_restapi_username }}"
    password: "{{ patroni_restapi_password }}"
    timeout: 3
  register: patroni
  until: patroni.cluster.sync_standbys | length > 0
  retries: 30
  delay: 2

- name: Print the health table
  ansible.builtin.debug:
    msg: "{{ patroni.cluster | hastack.ha.patroni_health_table }}"

- name: Read a TLS-protected REST API
  hastack.ha.patroni_cluster_info:
    endpoints: [https://pg-0.example.internal:8008]
    ca_file: /etc/patroni/ca.pem
"""

RETURN = r"""
cluster:
  description: The cluster, normalised.
  returned: success
  type: dict
  contains:
    leader:
      description:
        - Name of the member with role C(leader) or C(standby_leader).
        - V(null) when there is none, and when more than one member claims it
          (possible only in the C(/patroni) fallback).
      type: str
      returned: always
      sample: node-a
    members:
      description: Members, sorted by name.
      type: list
      elements: dict
      returned: always
      contains:
        name:
          description: Member name (C(name) in patroni.yml).
          type: str
          sample: node-b
        role:
          description:
            - One of V(leader), V(standby_leader), V(sync_standby), V(quorum_standby), V(replica).
          type: str
          sample: sync_standby
        state:
          description:
            - V(running) for the leader; for other members their replication state
              (V(streaming), V(in archive recovery)) when PostgreSQL runs, else the
              PostgreSQL state (V(running), V(starting), V(stopped), V(crashed),
              V(start failed), V(creating replica), ...).
          type: str
          sample: streaming
        host:
          description: PostgreSQL host; V(null) in the fallback.
          type: str
          sample: 198.18.2.12
        port:
          description: PostgreSQL port; V(null) in the fallback.
          type: int
          sample: 5432
        api_url:
          description: REST API URL of the member, ending in C(/patroni).
          type: str
          sample: http://198.18.2.12:8008/patroni
        timeline:
          description: PostgreSQL timeline; V(null) when Patroni does not know it (stopped member).
          type: int
          sample: 3
        lag:
          description:
            - Bytes between the leader's last WAL position stored in the DCS and this
              member's WAL position. V(null) for the leader and where Patroni reports
              V(unknown).
          type: int
          sample: 0
        receive_lag:
          description: Lag of the received WAL, bytes; V(null) if unknown.
          type: int
          sample: 0
        replay_lag:
          description: Lag of the replayed WAL, bytes; V(null) if unknown.
          type: int
          sample: 4096
        lsn:
          description: WAL position as Patroni prints it; V(null) if unknown or the leader.
          type: str
          sample: 0/4000000
        tags:
          description: Patroni tags of the member.
          type: dict
          sample: {zone: c}
        pending_restart:
          description: PostgreSQL needs a restart to apply changed parameters.
          type: bool
          sample: false
    sync_standbys:
      description: Names of members with role V(sync_standby) or V(quorum_standby).
      type: list
      elements: str
      returned: always
      sample: [node-b]
    timelines:
      description: Distinct timelines of the members, sorted.
      type: list
      elements: int
      returned: always
      sample: [3]
    source:
      description:
        - URL that answered C(/cluster); in the fallback, the C(/patroni) URLs that
          answered, comma-separated.
      type: str
      returned: always
      sample: http://198.18.1.11:8008/cluster
    errors:
      description: Each URL that failed, and why.
      type: dict
      returned: always
      sample:
        "http://198.18.1.11:8008/cluster": >-
          connection refused: is Patroni running and listening on this address?
    scope:
      description: Cluster name (C(scope) in patroni.yml), V(null) if unknown.
      type: str
      returned: always
      sample: hastack
    paused:
      description: The cluster is in maintenance mode; Patroni will not fail over.
      type: bool
      returned: always
      sample: false
    fallback:
      description: No member answered C(/cluster); the result was assembled from C(/patroni).
      type: bool
      returned: always
      sample: false
errors:
  description: Each URL that failed, and why.
  returned: failure
  type: dict
  sample: {"http://198.18.3.13:8008/cluster": "no answer within 2.0 s (timeout)"}
"""

# Ansible wants the imports below DOCUMENTATION/EXAMPLES/RETURN (ansible-test
# "import-before-documentation"), hence E402.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.patroni import (  # noqa: E402
    PatroniUnreachableError,
    fetch_cluster,
)


def argument_spec() -> dict:
    return {
        "endpoints": {"type": "list", "elements": "str", "required": True},
        "timeout": {"type": "float", "default": 2.0},
        "username": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_file": {"type": "path"},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        cluster = fetch_cluster(
            params["endpoints"],
            timeout=params["timeout"],
            username=params["username"],
            password=params["password"],
            validate_certs=params["validate_certs"],
            ca_file=params["ca_file"],
        )
    except ValueError as exc:
        module.fail_json(msg=f"patroni_cluster_info: {exc}", changed=False)
    except PatroniUnreachableError as exc:
        module.fail_json(msg=f"patroni_cluster_info: {exc}", errors=exc.errors, changed=False)
    module.exit_json(changed=False, cluster=cluster)


if __name__ == "__main__":
    main()
