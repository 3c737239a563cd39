#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_sentinel_info
short_description: Read the state of a Redis deployment managed by Sentinel
version_added: 0.1.0
description:
  - Asks every given sentinel about one monitored master (C(SENTINEL MASTER), C(SENTINEL CKQUORUM),
    C(SENTINEL REPLICAS), C(SENTINEL SENTINELS), C(INFO sentinel)) and every given Redis for its
    replication state (C(ROLE), C(INFO replication)), and returns all of it as one plain
    dictionary.
  - Read-only; never changes anything, also not in check mode.
  - Speaks RESP2 over a plain socket (Python standard library only), so it runs on any managed
    host without redis-py. Every connection and every command has a timeout.
  - A member that does not answer is reported in its entry (RV(info.sentinels[].error),
    RV(info.redis[].error)) and in RV(info.errors); the module fails only when no member at all
    answers. Turn the result into verdicts with the P(hastack.ha.redis_problems#filter) filter.
author: hastack developers
options:
  master_name:
    description: Name under which the sentinels monitor the master (C(sentinel monitor <name> ...)).
    type: str
    required: true
  sentinels:
    description: The sentinels to ask.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: Address or host name of the sentinel.
        type: str
        required: true
      port:
        description: Sentinel port.
        type: int
        default: 26379
      name:
        description: Name shown in the result and in problems (for example the inventory host name).
        type: str
  redis:
    description: The Redis servers to ask.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description:
          - Address or host name of the Redis server, in the form the sentinels report it
            (C(replica-announce-ip)), so that the result can match them.
        type: str
        required: true
      port:
        description: Redis port.
        type: int
        default: 6379
      name:
        description: Name shown in the result and in problems.
        type: str
  password:
    description: Redis password (C(requirepass), or the password of O(username)).
    type: str
  username:
    description: Redis ACL user; without it C(AUTH <password>) authenticates the default user.
    type: str
  sentinel_password:
    description: Password of the sentinels (their C(requirepass)).
    type: str
  sentinel_username:
    description: Sentinel ACL user.
    type: str
  timeout:
    description: Seconds allowed for connecting to one member and for each command.
    type: float
    default: 2.0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Addresses in the result are C(host:port) as the sentinels and C(ROLE) report them; give the
    Redis O(redis[].host) in the same form (the lab sets C(replica-announce-ip) to each node's
    address).
"""

EXAMPLES = r"""
- name: Ask the sentinels and the Redis servers
  hastack.ha.redis_sentinel_info:
    master_name: hastack
    sentinels:
      - {name: node-a, host: 198.18.1.11}
      - {name: node-b, host: 198.18.2.12}
      - {name: node-c, host: 198.18.3.13}
    redis:
      - {name: node-a, host: 198.18.1.11}
      - {name: node-b, host: 198.18.2.12}
      - {name: node-c, host: 198.18.3.13}
    password: "{{ redis_sentinel_password }}"
    sentinel_password: "{{ redis_sentinel_sentinel_password }}"
    timeout: 2
  register: redis_state

- name: Assert the deployment is healthy
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "Redis/Sentinel: {{ problems | join('; ') }}"
  vars:
    problems: "{{ redis_state.info | hastack.ha.redis_problems(expected_replicas=2, expected_sentinels=3) }}"
"""

RETURN = r"""
info:
  description: What every member said.
  returned: success
  type: dict
  contains:
    master_name:
      description: The monitored master's name.
      type: str
      sample: hastack
    master:
      description:
        - C(host:port) of the master that every answering sentinel names; V(null) when no sentinel
          answers or they disagree.
      type: str
      sample: 198.18.1.11:6379
    masters:
      description: Addresses of the Redis servers whose C(ROLE) is C(master).
      type: list
      elements: str
      sample: [198.18.1.11:6379]
    errors:
      description: Each member that failed or does not monitor the master, and why.
      type: dict
      sample: {"198.18.3.13:26379": "connection refused: is it running and listening on this address?"}
    sentinels:
      description: One entry per sentinel, in the order given.
      type: list
      elements: dict
      contains:
        name:
          description: O(sentinels[].name), else the address.
          type: str
        address:
          description: C(host:port).
          type: str
        reachable:
          description: It answered (after authentication).
          type: bool
        error:
          description: Why it did not answer, or why it does not monitor the master; V(null) if fine.
          type: str
        tilt:
          description: The sentinel is in TILT mode (it does not act).
          type: bool
        monitors:
          description: It monitors O(master_name).
          type: bool
        master:
          description:
            - C(SENTINEL MASTER) normalised - C(address), C(ip), C(port), C(flags) (list),
              C(num_slaves), C(num_other_sentinels), C(quorum), C(down_after_milliseconds),
              C(failover_timeout), C(parallel_syncs), C(config_epoch), C(role_reported),
              C(last_ok_ping_reply_ms), C(failover_state).
          type: dict
        ckquorum:
          description: C(SENTINEL CKQUORUM) - C(ok) (bool) and the sentinel's C(message).
          type: dict
          sample: {"ok": true, "message": "OK 3 usable Sentinels. Quorum and failover authorization can be reached"}
        replicas:
          description:
            - C(SENTINEL REPLICAS) - C(address), C(flags), C(master_link_status) (C(ok) or C(err)),
              C(master_address), C(repl_offset), C(priority).
          type: list
          elements: dict
        sentinels:
          description: C(SENTINEL SENTINELS) (the other sentinels it knows) - C(address), C(runid), C(flags).
          type: list
          elements: dict
    redis:
      description: One entry per Redis server, in the order given.
      type: list
      elements: dict
      contains:
        name:
          description: O(redis[].name), else the address.
          type: str
        address:
          description: C(host:port).
          type: str
        reachable:
          description: It answered (after authentication).
          type: bool
        error:
          description: Why it did not answer; V(null) if it did.
          type: str
        role:
          description: C(master), C(slave) (a replica) or whatever C(ROLE) says.
          type: str
        master_address:
          description: For a replica, C(host:port) of the master it replicates.
          type: str
        master_link_status:
          description: For a replica, C(up) or C(down) (C(INFO replication)).
          type: str
        link_state:
          description: For a replica, the state C(ROLE) reports (C(connected), C(connect), C(sync), ...).
          type: str
        offset:
          description: Replication offset.
          type: int
        connected_replicas:
          description: C(connected_slaves) of C(INFO replication).
          type: int
        min_replicas_good:
          description: Replicas that count for C(min-replicas-to-write); V(null) when that guard is off.
          type: int
        replicas:
          description: For a master, its replicas from C(INFO replication) - C(address), C(state), C(offset), C(lag).
          type: list
          elements: dict
"""

# Ansible wants the imports below DOCUMENTATION/EXAMPLES/RETURN (ansible-test
# "import-before-documentation"), hence E402.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.redis_sentinel import (  # noqa: E402
    Credentials,
    Endpoint,
    fetch_info,
)


def argument_spec() -> dict:
    def endpoints(port: int) -> dict:
        return {
            "type": "list",
            "elements": "dict",
            "default": [],
            "options": {
                "host": {"type": "str", "required": True},
                "port": {"type": "int", "default": port},
                "name": {"type": "str"},
            },
        }

    return {
        "master_name": {"type": "str", "required": True},
        "sentinels": endpoints(26379),
        "redis": endpoints(6379),
        "password": {"type": "str", "no_log": True},
        "username": {"type": "str"},
        "sentinel_password": {"type": "str", "no_log": True},
        "sentinel_username": {"type": "str"},
        "timeout": {"type": "float", "default": 2.0},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        info = fetch_info(
            params["master_name"],
            [Endpoint(e["host"], e["port"], e["name"]) for e in params["sentinels"]],
            [Endpoint(e["host"], e["port"], e["name"]) for e in params["redis"]],
            Credentials(params["password"], params["username"]),
            Credentials(params["sentinel_password"], params["sentinel_username"]),
            timeout=params["timeout"],
        )
    except ValueError as exc:
        module.fail_json(msg=f"redis_sentinel_info: {exc}", changed=False)
    members = info["sentinels"] + info["redis"]
    if not any(m["reachable"] for m in members):
        listing = "; ".join(f"{address}: {reason}" for address, reason in info["errors"].items())
        module.fail_json(
            msg=f"redis_sentinel_info: no sentinel and no Redis answered ({listing}). "
            "Check that they run, listen on these addresses, and that the passwords are right.",
            errors=info["errors"],
            changed=False,
        )
    module.exit_json(changed=False, info=info)


if __name__ == "__main__":
    main()
