# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Which Debian packages of a list dpkg does not have installed.

Shared by the ``hastack.ha.deb_packages`` action. Asking ``dpkg-query`` takes
a few milliseconds; opening the apt cache, which ``ansible.builtin.apt`` does
on every call, takes seconds. So the action asks dpkg first and hands only
what is missing to the apt module.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

# One line per package dpkg knows: its status abbreviation (three columns:
# desired, current, error) right before the name. "ii " is installed and
# healthy; anything else (half-installed, config-files, unknown) is not.
DPKG_QUERY_FORMAT = r"${db:Status-Abbrev}${binary:Package}\n"


def is_plain_name(name: str) -> bool:
    """A bare package name: no version (``=``), release (``/``), wildcard or file path."""
    return bool(name) and not any(c in name for c in "=/*?[]") and not name.endswith(".deb")


def dpkg_query_command(names: Iterable[str]) -> str:
    """The shell command that prints the status of ``names`` (unknown ones on stderr)."""
    return " ".join(["dpkg-query", "-W", "-f", shlex.quote(DPKG_QUERY_FORMAT), "--", *(shlex.quote(n) for n in names)])


def installed_packages(dpkg_output: str) -> set[str]:
    """Names (with and without their ``:arch``) that dpkg reports installed and healthy."""
    installed: set[str] = set()
    for line in dpkg_output.splitlines():
        if len(line) < 4 or not line.startswith("ii "):
            continue
        name = line[3:].strip()
        installed.add(name)
        installed.add(name.split(":", 1)[0])
    return installed


def missing_packages(names: Iterable[str], dpkg_output: str) -> list[str]:
    """The entries of ``names`` that are not installed, in their order.

    A name with a version, release, wildcard or path is always returned: only
    apt can tell whether what is installed matches it.
    """
    installed = installed_packages(dpkg_output)
    missing: list[str] = []
    for name in names:
        if (not is_plain_name(name) or name not in installed) and name not in missing:
            missing.append(name)
    return missing
