"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse, as ansible-doc reads them.

A colon in a description line, for example, makes it a YAML key: the module
still runs, but ansible-doc and AWX show nothing for it.
"""

from __future__ import annotations

import json

import yaml
from ansible_cli import REPO, run_ansible_tool

MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


def test_ansible_doc_reads_every_module():
    names = [f"hastack.ha.{m}" for m in MODULES]
    proc = run_ansible_tool("ansible-doc", "--json", *names)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert sorted(docs) == names, proc.stderr
    for name, doc in docs.items():
        assert doc["doc"].get("short_description"), f"{name}: no short_description"
        assert doc["doc"].get("options") is not None or name.endswith("_info"), f"{name}: no options"
        examples = yaml.safe_load(doc["examples"])
        assert isinstance(examples, list) and examples, f"{name}: EXAMPLES is not a list of tasks"
        assert isinstance(doc["return"], dict), f"{name}: RETURN is not a mapping"
