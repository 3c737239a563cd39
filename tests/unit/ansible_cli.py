"""Run one of the venv's ansible command-line tools from the repository root, with its ansible.cfg."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_ansible_tool(tool: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``tool`` (ansible, ansible-doc, ...) from this interpreter's bin directory; never raises on its exit code."""
    return subprocess.run(
        [str(Path(sys.executable).parent / tool), *args],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
