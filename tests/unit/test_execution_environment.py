"""The execution environment (execution-environment.yml, ansible-builder v3).

``ansible-builder create`` writes the build context without a container
engine; the tests run it and check what it generated: the base image, the
Python interpreter, ansible-core as pinned in requirements.txt, and our three
dependency files copied into the context and installed by the Containerfile.
Then the dependency files themselves: every third-party package the
collection's plugins import is in requirements-ee.txt, pinned as in
requirements.txt, and every collection the roles and playbooks use is in
requirements.yml with bounds the installed versions satisfy.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
EE_FILE = REPO / "execution-environment.yml"
EE = yaml.safe_load(EE_FILE.read_text())
BUILDER = Path(sys.executable).parent / "ansible-builder"
COLLECTIONS = Path(importlib.metadata.distribution("ansible").locate_file("ansible_collections"))


def requirements(path: Path) -> dict[str, Requirement]:
    """Name -> requirement of a pip requirements file (comments, options and annotations skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            out[canonicalize_name(req.name)] = req
    return out


def pin(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req} is not pinned with =="
    return spec.version


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ee") / "context"
    run = subprocess.run(
        [str(BUILDER), "create", "-f", str(EE_FILE), "-c", str(out), "--output-filename", "Containerfile"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def test_schema_v3_with_our_dependency_files() -> None:
    assert EE["version"] == 3
    deps = EE["dependencies"]
    assert (deps["python"], deps["galaxy"], deps["system"]) == ("requirements-ee.txt", "requirements.yml", "bindep.txt")


def test_containerfile_builds_from_the_base_image_with_our_python_and_ansible(context: Path) -> None:
    containerfile = (context / "Containerfile").read_text()
    base = EE["images"]["base_image"]["name"]
    assert f'ARG EE_BASE_IMAGE="{base}"' in containerfile
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    python = EE["dependencies"]["python_interpreter"]
    assert f'ARG PYCMD="{python["python_path"]}"' in containerfile
    assert f'ARG PYPKG="{python["package_system"]}"' in containerfile
    core = requirements(REPO / "requirements.txt")["ansible-core"]
    refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile)
    assert refs is not None
    assert f"ansible-core=={pin(core)}" in refs[1].split(), "the EE's ansible-core differs from requirements.txt's"
    assert any(ref.startswith("ansible-runner==") for ref in refs[1].split())


def test_context_holds_our_dependency_files_and_the_containerfile_installs_them(context: Path) -> None:
    build = context / "_build"
    assert (build / "requirements.txt").read_text() == (REPO / "requirements-ee.txt").read_text()
    assert (build / "requirements.yml").read_text() == (REPO / "requirements.yml").read_text()
    assert (build / "bindep.txt").read_text() == (REPO / "bindep.txt").read_text()
    for script in ("assemble", "introspect.py", "install-from-bindep", "pip_install", "entrypoint"):
        assert (build / "scripts" / script).is_file(), script
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "COPY _build/requirements.txt requirements.txt" in containerfile
    assert "introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    assert "RUN /output/scripts/install-from-bindep" in containerfile


def test_ee_python_requirements_are_pinned_as_in_requirements_txt() -> None:
    dev = requirements(REPO / "requirements.txt")
    problems = []
    for name, req in requirements(REPO / "requirements-ee.txt").items():
        if name not in dev:
            problems.append(f"{req}: not in requirements.txt (so never tested here)")
        elif pin(req) != pin(dev[name]):
            problems.append(f"{req}: requirements.txt pins {dev[name]}")
    assert not problems, "\n".join(problems)


def third_party_imports() -> dict[str, set[str]]:
    """Top-level modules the collection's plugins import, other than the stdlib and Ansible: module -> files."""
    out: dict[str, set[str]] = {}
    for path in sorted((REPO / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("ansible", "ansible_collections", "__future__"):
                    out.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return out


def test_every_package_the_plugins_import_is_in_the_ee() -> None:
    distributions = importlib.metadata.packages_distributions()
    ee = requirements(REPO / "requirements-ee.txt")
    imports = third_party_imports()
    assert "psycopg" in imports and "botocore" in imports  # the scan sees what is there
    problems = []
    for module, files in sorted(imports.items()):
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        if not dists & set(ee):
            problems.append(f"{module} (imported by {sorted(files)}, from {sorted(dists) or '?'}) is not in "
                            "requirements-ee.txt")  # fmt: skip
    assert not problems, "\n".join(problems)


def used_collections() -> dict[str, set[str]]:
    """namespace.name of every module, filter, lookup or callback the roles and playbooks use -> files."""
    pattern = re.compile(r"\b([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*\b")
    out: dict[str, set[str]] = {}
    files = [*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("roles/*/handlers/*.yml"), *REPO.glob("playbooks/**/*.yml"),
             REPO / "site.yml", REPO / "ansible.cfg"]  # fmt: skip
    for path in files:
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("#"):
                continue
            for namespace, name in pattern.findall(line):
                fqcn = f"{namespace}.{name}"
                if (COLLECTIONS / namespace / name).is_dir():
                    out.setdefault(fqcn, set()).add(str(path.relative_to(REPO)))
    return out


def installed_version(fqcn: str) -> str:
    manifest = json.loads((COLLECTIONS / fqcn.replace(".", "/") / "MANIFEST.json").read_text())
    return str(manifest["collection_info"]["version"])


def listed_collections() -> dict[str, Any]:
    listed = yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
    return {c["name"]: c.get("version", "*") for c in listed}


def test_every_collection_used_is_in_requirements_yml() -> None:
    used = used_collections()
    assert "community.general" in used and "awx.awx" in used  # the scan sees what is there
    listed = listed_collections()
    missing = {fqcn: sorted(files) for fqcn, files in used.items() if fqcn not in listed and fqcn != "ansible.builtin"}
    assert not missing, f"collections used but not in requirements.yml: {missing}"


def test_installed_collections_satisfy_requirements_yml() -> None:
    """What the tests run with is what AWX would install."""
    problems = []
    for fqcn, bound in listed_collections().items():
        version = installed_version(fqcn)
        spec = SpecifierSet(",".join(part.strip() for part in str(bound).split(",")) if bound != "*" else "")
        if version not in spec:
            problems.append(f"{fqcn}: installed {version}, requirements.yml wants {bound}")
    assert not problems, "\n".join(problems)
