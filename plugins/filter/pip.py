# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""``pip_environment``: pip's settings (index, extra indexes, CA bundle, proxy) as environment.

The roles that install into a virtualenv on the target (patroni_postgres,
app_backend) pass the result as the pip task's ``environment``, so a private
mirror, its CA or a proxy is one inventory setting (``ha_pip``). Pure
function, unit-tested in tests/unit/test_pip_filter.py.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

KEYS = {
    "index_url": "PIP_INDEX_URL",
    "extra_index_urls": "PIP_EXTRA_INDEX_URL",
    "cert": "PIP_CERT",
    "proxy": "PIP_PROXY",
    "trusted_hosts": "PIP_TRUSTED_HOST",
}
LISTS = ("extra_index_urls", "trusted_hosts")


def pip_environment(settings: Any, name: str = "ha_pip") -> dict[str, str]:
    if settings in (None, ""):
        settings = {}
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"{name} must be a dict with keys {sorted(KEYS)}, got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise AnsibleFilterError(f"{name} has unknown keys {unknown}; rule: only {sorted(KEYS)}")
    env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for key, var in KEYS.items():
        value = settings.get(key)
        if value in (None, "", []):
            continue
        if key in LISTS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise AnsibleFilterError(f"{name}.{key} must be a list of non-empty strings, got {value!r}")
            env[var] = " ".join(value)
        else:
            if not isinstance(value, str):
                raise AnsibleFilterError(f"{name}.{key} must be a string, got {value!r}")
            env[var] = value
    return env


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pip_environment": pip_environment}
