"""Every role's README: what it does on each platform, an example, and its variables.

- The variables table is generated from meta/argument_specs.yml
  (tools/role_readme_vars.py) and must be current; read back on its own, it
  documents every option of every entry point and nothing else.
- A "## Platforms" section says what the role does on hosts, kubernetes and aws.
- A "## Example" section has YAML that parses, uses the role, and sets only
  variables of its own that the spec declares.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
TOOL = REPO / "tools" / "role_readme_vars.py"
BEGIN = "<!-- BEGIN VARIABLES"
END = "<!-- END VARIABLES -->"
PLATFORMS = ("hosts", "kubernetes", "aws")


def readme(role: str) -> str:
    path = REPO / "roles" / role / "README.md"
    assert path.is_file(), f"roles/{role} has no README.md"
    return path.read_text()


def spec_options(role: str) -> set[str]:
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return {name for spec in specs.values() for name in ((spec or {}).get("options") or {})}


def section(text: str, heading: str) -> str:
    """The body of a '## heading' section ('' when there is none)."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    return match[1] if match else ""


def documented_variables(text: str) -> list[str]:
    """First-column names of the table between the markers, read as a person reads it."""
    assert BEGIN in text and END in text, "no generated variables block (run tools/role_readme_vars.py)"
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", block, re.MULTILINE)


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def test_every_role_is_covered() -> None:
    assert len(ROLES) == 10, ROLES


def test_tables_are_current() -> None:
    run = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("role", ROLES)
def test_table_documents_every_option_and_nothing_else(role: str) -> None:
    documented = documented_variables(readme(role))
    options = spec_options(role)
    assert len(documented) == len(set(documented)), f"roles/{role}/README.md lists a variable twice"
    missing = sorted(options - set(documented))
    assert not missing, f"roles/{role}/README.md does not document {missing}"
    assert not set(documented) - options, (
        f"roles/{role}/README.md documents {sorted(set(documented) - options)}, which meta/argument_specs.yml lacks"
    )


@pytest.mark.parametrize("role", ROLES)
def test_readme_says_what_the_role_does_on_each_platform(role: str) -> None:
    body = section(readme(role), "Platforms")
    assert body, f"roles/{role}/README.md has no '## Platforms' section"
    for platform in PLATFORMS:
        match = re.search(rf"^- \*\*{platform}\*\*: (.+)", body, re.MULTILINE)
        assert match and len(match[1].split()) >= 3, f"roles/{role}/README.md: nothing said for {platform}"


@pytest.mark.parametrize("role", ROLES)
def test_example_parses_uses_the_role_and_only_declared_variables(role: str) -> None:
    blocks = yaml_blocks(section(readme(role), "Example"))
    assert blocks, f"roles/{role}/README.md has no '## Example' section with a ```yaml block"
    options = spec_options(role)
    prefix = f"{role}_"
    for block in blocks:
        data = yaml.safe_load(block)
        assert isinstance(data, list), f"roles/{role}/README.md: the example is not a list of plays or tasks"
        assert role in block, f"roles/{role}/README.md: the example does not use the role"
        undeclared = sorted(k for k in keys(data) if k.startswith(prefix) and k not in options)
        assert not undeclared, f"roles/{role}/README.md example sets {undeclared}, not in meta/argument_specs.yml"


# --- the checks catch what they are for -----------------------------------------


def test_table_reader_and_sections_catch_faults() -> None:
    text = f"## Platforms\n\n- **hosts**: all of it here.\n\n## Variables\n\n{BEGIN} -->\n| `a_x` | int |\n{END}\n"
    assert documented_variables(text) == ["a_x"]
    assert "hosts" in section(text, "Platforms") and "kubernetes" not in section(text, "Platforms")
    assert section(text, "Example") == ""
    with pytest.raises(AssertionError, match="no generated variables block"):
        documented_variables("## Variables\n| `a_x` | int |\n")
    assert keys([{"vars": {"etcd_bogus": 1}}]) == {"vars", "etcd_bogus"}
