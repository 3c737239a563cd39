#!/usr/bin/env python3
"""The variables table of each role's README, generated from meta/argument_specs.yml.

    .venv/bin/python tools/role_readme_vars.py            # rewrite the block in every roles/*/README.md
    .venv/bin/python tools/role_readme_vars.py --check    # exit 1 and name the READMEs that differ

Each README holds the table between two markers; everything else in it is
written by hand. A row per option of every entry point: name, type,
default (defaults/main.yml's value, the source of truth; a value too long for
a table says where it is), which entry points take it, and the first sentence
of its description. tests/unit/test_role_readmes.py runs --check and also
reads the table back against the spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"
BEGIN = "<!-- BEGIN VARIABLES: generated from meta/argument_specs.yml by tools/role_readme_vars.py -->"
END = "<!-- END VARIABLES -->"
MAX_DEFAULT = 60
MAX_DESCRIPTION = 220


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def first_sentence(description: Any) -> str:
    text = " ".join(description) if isinstance(description, list) else str(description or "")
    text = " ".join(text.split())
    end = text.find(". ")
    text = text if end == -1 else text[: end + 1]
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1].rstrip() + "…"


def shown_default(name: str, option: dict[str, Any], defaults: dict[str, Any]) -> str:
    if name in defaults:
        value = defaults[name]
    elif "default" in option:
        value = option["default"]
    else:
        return "— (required)" if option.get("required") else "—"
    text = value if isinstance(value, str) else json.dumps(value)
    if text == "":
        return '`""`'
    if len(text) > MAX_DEFAULT:
        return "see defaults/main.yml" if name in defaults else "see meta/argument_specs.yml"
    return f"`{cell(text)}`"


def table(role: str) -> str:
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults_file = ROLES / role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    options: dict[str, dict[str, Any]] = {}
    entry_points: dict[str, list[str]] = {}
    for entry, spec in specs.items():
        for name, option in ((spec or {}).get("options") or {}).items():
            options.setdefault(name, option)
            entry_points.setdefault(name, []).append(entry)
    every = sorted(specs)
    lines = [
        BEGIN,
        "",
        f"Entry points: {', '.join(f'`{e}`' for e in every)}. "
        "Required options without a default must come from the inventory (secrets from ansible-vault).",
        "",
        "| variable | type | default | entry points | description |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(options):
        option = options[name]
        kind = option.get("type", "str")
        if option.get("elements"):
            kind += f" of {option['elements']}"
        if option.get("choices"):
            kind += ": " + ", ".join(str(c) for c in option["choices"])
        where = "all" if entry_points[name] == every else ", ".join(entry_points[name])
        lines.append(f"| `{name}` | {cell(kind)} | {shown_default(name, option, defaults)} | {where} | "
                     f"{cell(first_sentence(option.get('description')))} |")  # fmt: skip
    lines += ["", END]
    return "\n".join(lines)


def updated(readme: str, role: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"roles/{role}/README.md has no {BEGIN!r} ... {END!r} block")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + table(role) + tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a README differs")
    args = parser.parse_args()
    stale = []
    for spec in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        role = spec.parts[-3]
        path = ROLES / role / "README.md"
        text = path.read_text()
        new = updated(text, role)
        if new != text:
            stale.append(str(path))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("variables tables out of date (run tools/role_readme_vars.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
