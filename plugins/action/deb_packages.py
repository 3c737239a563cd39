# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Action for hastack.ha.deb_packages: ask dpkg, then apt only for what is missing."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.hastack.ha.plugins.module_utils.deb_packages import (
    dpkg_query_command,
    missing_packages,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "list", "elements": "str", "required": True},
    "cache_valid_time": {"type": "int", "default": 3600},
    "lock_timeout": {"type": "int", "default": 300},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        names: list[str] = [n for n in args["name"] if n]
        if not names:
            result.update(changed=False, missing=[], msg="No package asked for.")
            return result

        query = self._low_level_execute_command(dpkg_query_command(names))
        # rc 1: some name is unknown to dpkg (never installed), so it is missing. Any other
        # rc (no dpkg-query: not Debian; or it broke): the apt module decides and says why.
        answered = query.get("rc") in (0, 1)
        missing = missing_packages(names, query.get("stdout", "")) if answered else list(names)
        if not missing:
            result.update(changed=False, missing=[], msg=f"Installed already: {', '.join(names)}.")
            return result

        apt_args = {
            "name": missing,
            "state": "present",
            "cache_valid_time": args["cache_valid_time"],
            "lock_timeout": args["lock_timeout"],
        }
        apt = self._execute_module(module_name="ansible.builtin.apt", module_args=apt_args, task_vars=task_vars)
        result.update(apt)
        result["missing"] = missing
        return result
