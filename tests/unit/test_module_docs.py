"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse, as ansible-doc reads them.

A colon in a description line, for example, makes it a YAML key: the module
still runs, but ansible-doc and AWX show nothing for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


def test_ansible_doc_reads_every_module():
    names = [f"hastack.ha.{m}" for m in MODULES]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", *names],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert sorted(docs) == names, proc.stderr
    for name, doc in docs.items():
        assert doc["doc"].get("short_description"), f"{name}: no short_description"
        assert doc["doc"].get("options") is not None or name.endswith("_info"), f"{name}: no options"
        examples = yaml.safe_load(doc["examples"])
        assert isinstance(examples, list) and examples, f"{name}: EXAMPLES is not a list of tasks"
        assert isinstance(doc["return"], dict), f"{name}: RETURN is not a mapping"
