#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: systemd_unit
short_description: Write one systemd service unit and bring it to a state, in one round trip
version_added: 0.1.0
description:
  - Writes O(content) to C(/etc/systemd/system/<name>.service) (root:root, 0644) when the file
    differs, reloads systemd when the file changed or systemd says it needs a reload, and then
    brings the unit to O(state) (enabled unless O(state=stopped)).
  - One module call does what a M(ansible.builtin.template) and a
    M(ansible.builtin.systemd_service) task do, reading the unit's state with one
    C(systemctl show) and running only the C(systemctl) commands that change something.
  - "Why it exists, measured on the lab's fleet: the role ha_service runs 25 units, and its two
    tasks per unit took 28 s of a 148 s idempotent C(site.yml) run, mostly per-task round trips
    and a C(daemon-reload) per unit every time."
author:
  - hastack developers
options:
  name:
    description: The unit's name, without C(.service).
    type: str
    required: true
  content:
    description:
      - The unit file's text (for example C(lookup('ansible.builtin.template', ...))).
      - A missing final newline is added, as the M(ansible.builtin.template) module keeps it.
    type: str
    required: true
  state:
    description:
      - V(started) starts the unit when it is not running, and restarts it when the file changed
        (unless O(restart_on_change=false)). V(stopped) stops and disables it. V(restarted) always
        restarts it.
    type: str
    choices: [started, stopped, restarted]
    default: started
  restart_on_change:
    description:
      - With V(false), a changed file is written and loaded, and the running daemon keeps the old
        definition until something restarts it (rolling updates time each member's restart).
    type: bool
    default: true
  unit_dir:
    description: Where the unit file lives.
    type: path
    default: /etc/systemd/system
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - The host must run systemd as PID 1.
"""

EXAMPLES = r"""
- name: Run Patroni
  hastack.ha.systemd_unit:
    name: patroni
    content: "{{ lookup('ansible.builtin.template', 'etc/systemd/system/unit.service.j2') }}"
    state: started
"""

RETURN = r"""
unit_changed:
  description: Whether the unit file's content was (or, in check mode, would be) written.
  type: bool
  returned: always
commands:
  description: The C(systemctl) commands run (or, in check mode, that would run), in order.
  type: list
  elements: str
  returned: always
  sample: ["systemctl daemon-reload", "systemctl restart patroni.service"]
active_state:
  description: The unit's C(ActiveState) before the module acted.
  type: str
  returned: always
  sample: active
"""

import os  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

RUNNING = ("active", "activating", "reloading")


def unit_properties(module: AnsibleModule, systemctl: str, unit: str) -> dict[str, str]:
    """ActiveState, UnitFileState, NeedDaemonReload and LoadState of one unit."""
    rc, out, err = module.run_command(
        [systemctl, "show", unit, "--property=ActiveState,UnitFileState,NeedDaemonReload,LoadState"]
    )
    if rc != 0:
        module.fail_json(msg=f"systemctl show {unit} failed (rc {rc}): {err.strip() or out.strip()}")
    props = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        props[key] = value
    return props


def write_unit(module: AnsibleModule, path: str, data: bytes) -> None:
    """Write the unit file atomically, root:root 0644."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".hastack-unit-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.chown(tmp, 0, 0)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        module.fail_json(msg=f"could not write {path}: {exc}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "content": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["started", "stopped", "restarted"], "default": "started"},
            "restart_on_change": {"type": "bool", "default": True},
            "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
        },
        supports_check_mode=True,
    )
    name = module.params["name"]
    if not re.match(r"^[A-Za-z0-9_.@-]+$", name) or name.endswith(".service"):
        module.fail_json(msg=f"name {name!r}: a plain unit name ([A-Za-z0-9_.@-]+) without .service")
    state = module.params["state"]
    unit = f"{name}.service"
    path = os.path.join(module.params["unit_dir"], unit)
    content = module.params["content"]
    data = (content if content.endswith("\n") else content + "\n").encode()
    systemctl = module.get_bin_path("systemctl", required=True)

    try:
        with open(path, "rb") as handle:
            unit_changed = handle.read() != data
        st = os.stat(path)
        attrs_wrong = (st.st_mode & 0o7777) != 0o644 or st.st_uid != 0 or st.st_gid != 0
    except FileNotFoundError:
        unit_changed, attrs_wrong = True, False

    props = unit_properties(module, systemctl, unit)
    active = props.get("ActiveState", "")
    running = active in RUNNING
    enabled = props.get("UnitFileState", "") in ("enabled", "enabled-runtime")
    commands: list[list[str]] = []
    if unit_changed or props.get("NeedDaemonReload") == "yes" or props.get("LoadState") == "not-found":
        commands.append([systemctl, "daemon-reload"])
    want_enabled = state != "stopped"
    if want_enabled != enabled:
        commands.append([systemctl, "enable" if want_enabled else "disable", unit])
    if state == "restarted" or (state == "started" and unit_changed and running and module.params["restart_on_change"]):
        commands.append([systemctl, "restart", unit])
    elif state == "started" and not running:
        commands.append([systemctl, "start", unit])
    elif state == "stopped" and running:
        commands.append([systemctl, "stop", unit])

    changed = unit_changed or attrs_wrong or bool(commands)
    shown = [" ".join(["systemctl", *cmd[1:]]) for cmd in commands]
    if module.check_mode:
        module.exit_json(changed=changed, unit_changed=unit_changed, commands=shown, active_state=active)
    if unit_changed or attrs_wrong:
        write_unit(module, path, data)
    for cmd in commands:
        rc, out, err = module.run_command(cmd)
        if rc != 0:
            module.fail_json(
                msg=f"{' '.join(['systemctl', *cmd[1:]])} failed (rc {rc}): {err.strip() or out.strip()}; "
                f"see journalctl -u {unit}",
                unit_changed=unit_changed,
                commands=shown,
                active_state=active,
            )
    module.exit_json(changed=changed, unit_changed=unit_changed, commands=shown, active_state=active)


if __name__ == "__main__":
    main()
