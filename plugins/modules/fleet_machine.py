#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleet_machine
short_description: One machine of the lab fleet, a Debian host booted with systemd-nspawn
version_added: 0.2.0
description:
  - Runs on the box that hosts the fleet (delegate to it). A machine is an overlay mount of a
    cached Debian image (the image below, the machine's own disk above) booted by
    C(systemd-nspawn --boot) with systemd as PID 1, its own network namespace and a veth on a
    host bridge.
  - The host's PID 1 need not be systemd; the machine runs as a detached nspawn process with
    C(--register=no --keep-unit), tracked by a pid file in O(state_dir).
  - C(state=running) mounts the overlay, writes O(files) into the machine (before its first
    boot, or when their content changed), gives it its own SSH host keys, boots it when it is
    not running and waits until its sshd answers. A running machine whose files are unchanged
    is left alone (C(changed=false)).
  - C(state=killed) kills the machine's PID 1 at once, so every process and the network
    namespace go together and peers get no FIN, as in a power loss. The disk stays;
    C(state=running) boots it again.
  - C(state=frozen) freezes every process of a running machine at once (its own cgroup, made when
    it boots, with cgroup v1's freezer or cgroup v2's C(cgroup.freeze)), as a VM pause or a long stall does;
    peers' connections stay open and get no answer. C(state=running) thaws a frozen machine.
  - C(state=absent) kills it, unmounts the overlay and deletes its disk.
author:
  - hastack developers
options:
  name:
    description: Machine name on the box (unique; prefixed with the fleet's name).
    type: str
    required: true
  hostname:
    description: The machine's hostname (its inventory name). Required unless O(state=absent).
    type: str
  image:
    description: Directory of the Debian root file system the overlay is based on. Required for C(running).
    type: path
  state_dir:
    description: Directory of this machine's disk, mount point, pid file and console log.
    type: path
    required: true
  bridge:
    description: Host bridge the machine's veth joins. Required for C(running).
    type: str
  address:
    description: Address whose port 22 answers when the machine is up. Required for C(running).
    type: str
  files:
    description: Files written into the machine's file system (absolute paths inside it).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path inside the machine.
        type: str
        required: true
      content:
        description: File content.
        type: str
        required: true
      mode:
        description: File mode, octal string.
        type: str
        default: "0644"
  boot_timeout:
    description: Seconds to wait for sshd after boot.
    type: int
    default: 120
  wait:
    description: Wait until the machine's sshd answers (boot several machines first, then wait for each).
    type: bool
    default: true
  state:
    description: What the machine should be.
    type: str
    choices: [running, frozen, killed, absent]
    default: running
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Boot node-a
  hastack.ha.fleet_machine:
    name: hastack-node-a
    hostname: node-a
    image: /var/cache/hastack/fleet-images/bookworm-0123456789ab
    state_dir: /var/lib/hastack-fleet/hastack/machines/node-a
    bridge: hastack-a
    address: 198.18.1.11
    files:
      - path: /etc/systemd/network/10-host0.network
        content: "[Match]\nName=host0\n[Network]\nAddress=198.18.1.11/24\nGateway=198.18.1.1\n"
  delegate_to: localhost
"""

RETURN = r"""
booted:
  description: Whether the machine was booted by this call.
  type: bool
  returned: always
host_key:
  description: The machine's ed25519 SSH host public key (C(ssh-ed25519 AAAA...)), for known_hosts.
  type: str
  returned: when state is running
killed_t:
  description: When the machine's PID 1 was sent SIGKILL (epoch seconds, the box's clock); null when it was not running.
  type: float
  returned: when state is killed
frozen_t:
  description:
    - When the machine was frozen (epoch seconds, the box's clock, just before its freezer was set).
    - Null when it was frozen already.
  type: float
  returned: when state is frozen
nspawn_pid:
  description: PID of the machine's systemd-nspawn process on the box.
  type: int
  returned: when state is running or frozen
"""

import os  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils.fleet import Machine  # noqa: E402


def write_files(root: Path, files: list[dict]) -> bool:
    changed = False
    for item in files:
        inside = item["path"]
        if not inside.startswith("/") or ".." in Path(inside).parts:
            raise ValueError(f"files: path {inside!r} must be absolute, without '..'")
        target = root / inside.lstrip("/")
        content = item["content"].encode()
        mode = int(item.get("mode") or "0644", 8)
        if target.is_file() and target.read_bytes() == content and (target.stat().st_mode & 0o7777) == mode:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chmod(target, mode)
        changed = True
    return changed


def ensure_host_keys(root: Path) -> bool:
    """Each machine its own SSH host keys (the image carries none)."""
    if (root / "etc/ssh/ssh_host_ed25519_key").exists():
        return False
    (root / "etc/ssh").mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-A", "-f", str(root)], check=True, timeout=60)
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "hostname": {"type": "str"},
            "image": {"type": "path"},
            "state_dir": {"type": "path", "required": True},
            "bridge": {"type": "str"},
            "address": {"type": "str"},
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "str", "required": True},
                    "content": {"type": "str", "required": True},
                    "mode": {"type": "str", "default": "0644"},
                },
            },
            "boot_timeout": {"type": "int", "default": 120},
            "wait": {"type": "bool", "default": True},
            "state": {"type": "str", "choices": ["running", "frozen", "killed", "absent"], "default": "running"},
        },
        required_if=[("state", "running", ("hostname", "image", "bridge", "address"))],
        supports_check_mode=False,
    )
    params = module.params
    machine = Machine(params["name"], Path(params["image"] or "/nonexistent"), Path(params["state_dir"]))
    try:
        if params["state"] == "absent":
            module.exit_json(changed=machine.remove(), booted=False)
        if params["state"] == "killed":
            killed = machine.kill()
            module.exit_json(changed=killed, booted=False, killed_t=machine.killed_t if killed else None)
        if params["state"] == "frozen":
            frozen = machine.freeze()
            module.exit_json(
                changed=frozen,
                booted=False,
                frozen_t=machine.frozen_t if frozen else None,
                nspawn_pid=machine.nspawn_pid(),
            )
        if not machine.image.is_dir():
            module.fail_json(msg=f"image {machine.image} is not a directory: build it first (role fleet, image.yml)")
        changed = machine.mount()
        changed |= ensure_host_keys(machine.root)
        changed |= write_files(machine.root, params["files"])
        booted = False
        changed |= machine.thaw()
        if machine.nspawn_pid() is None:
            machine.start(params["hostname"], params["bridge"])
            booted = changed = True
        if params["wait"]:
            machine.wait_ssh(params["address"], params["boot_timeout"])
        host_key = (machine.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    except (OSError, ValueError, RuntimeError, subprocess.SubprocessError) as exc:
        module.fail_json(msg=f"machine {params['name']}: {exc}")
    module.exit_json(changed=changed, booted=booted, host_key=" ".join(host_key), nspawn_pid=machine.nspawn_pid())


if __name__ == "__main__":
    main()
