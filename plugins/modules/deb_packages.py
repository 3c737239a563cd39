#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deb_packages
short_description: Install Debian packages, asking dpkg first so that a no-op costs milliseconds
version_added: 0.1.0
description:
  - Asks C(dpkg-query) which of O(name) are installed. When every one is, returns
    C(changed=false) at once, without opening the apt cache.
  - Hands only the missing ones to M(ansible.builtin.apt) (C(state=present)) and returns its
    result. A name with a version, release, wildcard or path always goes to apt, which alone
    can tell whether what is installed matches it.
  - Without C(dpkg-query) (not a Debian family host), every name goes to the apt module, which
    then fails with its own message.
  - Runs as an action on the controller; this file documents it.
  - "Why it exists, measured on the lab: each role's M(ansible.builtin.apt) call took 2.5-4 s per
    host even when nothing was missing (it opens the apt cache), about 80 s of every
    idempotent C(site.yml) run."
author:
  - hastack developers
options:
  name:
    description: The packages that must be installed.
    type: list
    elements: str
    required: true
  cache_valid_time:
    description: Passed to M(ansible.builtin.apt) when something is missing.
    type: int
    default: 3600
  lock_timeout:
    description: Passed to M(ansible.builtin.apt) when something is missing.
    type: int
    default: 300
attributes:
  action:
    support: full
  check_mode:
    support: full
    details: Checking costs the same; installing is the apt module's check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Install Redis and Sentinel
  hastack.ha.deb_packages:
    name: [redis-server, redis-sentinel, redis-tools]
  throttle: 1  # the lab's nodes share one dpkg
"""

RETURN = r"""
missing:
  description: The names that dpkg did not report installed (and were handed to apt).
  type: list
  elements: str
  returned: always
  sample: [redis-sentinel]
"""

if __name__ == "__main__":
    import json
    import sys

    print(json.dumps({"failed": True, "msg": "hastack.ha.deb_packages runs as an action plugin, not as a module."}))
    sys.exit(1)
