"""pgBackRest on the kubernetes platform of patroni_postgres.

On fixtures/k8s/rendered/ (two S3 repositories over IRSA: the render
scenario's inventory, molecule/render/molecule.yml) and on renders made here:

- preflight refuses a posix repository and static keys without a Secret,
  naming the variable and the rule, and renders nothing;
- the ConfigMap's pgbackrest.conf is the hosts template's, with S3 and key
  type web-id, spool/lock/log on the emptyDir both containers mount, no
  credential; pgBackRest 2.45 (the image's Debian version) parses it;
- patroni.yml archives, restores and creates replicas through it, as on hosts;
- credentials: IRSA annotates the ServiceAccount with the role and puts no
  key anywhere; static keys reach both containers as
  PGBACKREST_REPO<N>_S3_KEY / _S3_KEY_SECRET by secretKeyRef only;
- the sidecar: its schedule, the leader-only stanza and first backups, the
  hosts' metrics script run on the pod's paths and served on /metrics.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_cli import run_ansible_tool

ROOT = Path(__file__).resolve().parents[2]
RENDERED = ROOT / "tests" / "unit" / "fixtures" / "k8s" / "rendered" / "patroni_postgres"
SIDECAR = ROOT / "roles" / "patroni_postgres" / "files" / "k8s" / "pgbackrest-sidecar.py"
INFO = ROOT / "tests" / "unit" / "fixtures" / "pgbackrest" / "info-two-repos.json"
SCENARIO = yaml.safe_load((ROOT / "molecule" / "render" / "molecule.yml").read_text())
INVENTORY = SCENARIO["provisioner"]["inventory"]["host_vars"]["localhost"]


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((RENDERED / name).read_text(encoding="utf-8"))


def pod_spec(objs_dir: Path = RENDERED) -> dict[str, Any]:
    return yaml.safe_load((objs_dir / "50-statefulset.yml").read_text(encoding="utf-8"))["spec"]["template"]["spec"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in spec["containers"] if c["name"] == name)


def config_data() -> dict[str, str]:
    return load("20-configmap.yml")["data"]


def render(tmp: Path, **extra: Any) -> subprocess.CompletedProcess:
    """The render scenario's converge for patroni_postgres alone, its inventory plus ``extra``, into ``tmp``."""
    variables = {
        **{k: v for k, v in INVENTORY.items() if k.startswith("patroni_postgres_")},
        "ha_platform": "kubernetes",
        "ha_k8s_manifest_root": str(tmp),
        "render_roles": ["patroni_postgres"],
        "ansible_python_interpreter": sys.executable,
        **extra,
    }
    return run_ansible_tool(
        "ansible-playbook", "-i", "localhost,", "-c", "local", "molecule/render/converge.yml",
        "-e", json.dumps(variables),
        env={"ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip


# --- preflight ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        (
            {"patroni_postgres_backup_repos": [{"type": "posix", "path": "/var/lib/pgbackrest/repo1"}]},
            "on Kubernetes every repository of patroni_postgres_backup_repos must be type s3",
        ),
        (
            {"patroni_postgres_k8s_backup_s3_key_type": "shared"},
            "shared needs patroni_postgres_k8s_backup_s3_secret_name",
        ),
    ],
    ids=["posix-repository", "shared-keys-without-secret"],
)
def test_preflight_refuses_before_anything_is_rendered(tmp_path: Path, extra: dict[str, Any], rule: str) -> None:
    result = render(tmp_path / "out", **extra)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output[-3000:]
    assert rule in output
    assert not (tmp_path / "out").exists()


def test_the_render_scenario_inventory_renders(tmp_path: Path) -> None:
    """The control for the refusals above: the same call with the scenario's S3 repositories renders."""
    result = render(tmp_path / "out")
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "out" / "patroni_postgres" / "50-statefulset.yml").is_file()


# --- the ConfigMap: pgbackrest.conf and patroni.yml ------------------------------------


def test_pgbackrest_conf_is_s3_over_irsa_on_the_pods_paths() -> None:
    data = config_data()
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(data["pgbackrest.conf"])
    glob, stanza = conf["global"], conf["hastack"]
    for n, repo in enumerate(INVENTORY["patroni_postgres_backup_repos"], start=1):
        assert glob[f"repo{n}-type"] == "s3"
        assert glob[f"repo{n}-s3-bucket"] == repo["bucket"]
        assert glob[f"repo{n}-s3-region"] == repo["region"]
        assert glob[f"repo{n}-s3-key-type"] == "web-id"
        assert glob[f"repo{n}-path"] == repo["path"]
        assert f"repo{n}-s3-key" not in glob and f"repo{n}-s3-key-secret" not in glob
    # spool, lock and log on the emptyDir that both containers mount at that path
    spec = pod_spec()
    (volume,) = [v for v in spec["volumes"] if v["name"] == "pgbackrest"]
    assert "emptyDir" in volume
    for name in ("patroni", "pgbackrest"):
        (mount,) = [m for m in container(spec, name)["volumeMounts"] if m["name"] == "pgbackrest"]
        for key in ("spool-path", "lock-path", "log-path"):
            assert glob[key].startswith(mount["mountPath"] + "/"), (name, key)
    # the pod's PGDATA and socket, as patroni.yml has them
    patroni = yaml.safe_load(data["patroni.yml"])
    assert stanza["pg1-path"] == patroni["postgresql"]["data_dir"]
    assert stanza["pg1-socket-path"] == patroni["postgresql"]["parameters"]["unix_socket_directories"]
    assert glob["archive-async"] == "y"


@pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="pgbackrest missing (Debian package pgbackrest)")
def test_pgbackrest_parses_the_conf_and_takes_web_id_credentials(tmp_path: Path) -> None:
    """pgBackRest 2.45 accepts every option; with web-id it asks for what EKS injects
    (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE) and stops there, before any request."""
    path = tmp_path / "pgbackrest.conf"
    path.write_text(config_data()["pgbackrest.conf"], encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PGBACKREST_"))}
    for n in (1, 2):  # should it ever get that far: a closed port on loopback
        env |= {f"PGBACKREST_REPO{n}_STORAGE_HOST": "127.0.0.1", f"PGBACKREST_REPO{n}_STORAGE_PORT": "9"}
    result = subprocess.run(
        ["pgbackrest", f"--config={path}", "--stanza=hastack", "--log-level-file=off", "--output=json", "info"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (stanza,) = json.loads(result.stdout)
    assert [r["key"] for r in stanza["repo"]] == [1, 2]
    for repo in stanza["repo"]:
        assert "'AWS_ROLE_ARN' and 'AWS_WEB_IDENTITY_TOKEN_FILE' are not set" in repo["status"]["message"]


def test_patroni_archives_restores_and_clones_through_pgbackrest_as_on_hosts() -> None:
    data = config_data()
    pg = yaml.safe_load(data["patroni.yml"])["postgresql"]
    command = "pgbackrest --config=/etc/patroni/pgbackrest.conf --stanza=hastack"
    assert pg["parameters"]["archive_mode"] == "on"
    assert pg["parameters"]["archive_command"] == f'{command} archive-push "%p"'
    assert pg["parameters"]["archive_timeout"] == 60
    assert pg["recovery_conf"]["restore_command"] == f'{command} archive-get %f "%p"'
    assert pg["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert pg["pgbackrest"]["command"].startswith(command + " ")
    assert pg["pg_hba"][0] == "local all postgres peer"
    # the file those commands name is in Patroni's container
    spec = pod_spec()
    (config,) = [v for v in spec["volumes"] if v["name"] == "config"]
    assert {"key": "pgbackrest.conf", "path": "pgbackrest.conf"} in config["configMap"]["items"]
    (mount,) = [m for m in container(spec, "patroni")["volumeMounts"] if m["name"] == "config"]
    assert mount["mountPath"] == "/etc/patroni"


# --- credentials ---------------------------------------------------------------------


def test_irsa_annotates_the_service_account_and_renders_no_key() -> None:
    sa = load("10-serviceaccount.yml")
    assert sa["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": INVENTORY["patroni_postgres_k8s_backup_role_arn"]
    }
    spec = pod_spec()
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    env = [e["name"] for c in spec["containers"] for e in c.get("env", [])]
    # EKS's webhook injects AWS_ROLE_ARN and the token file; nothing of pgBackRest's in the env
    assert not [e for e in env if e.startswith(("PGBACKREST_", "AWS_"))]


def test_static_keys_reach_both_containers_from_the_secret_only(tmp_path: Path) -> None:
    result = render(
        tmp_path,
        patroni_postgres_k8s_backup_s3_key_type="shared",
        patroni_postgres_k8s_backup_s3_secret_name="hastack-pgbackrest-s3",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    out = tmp_path / "patroni_postgres"
    spec = pod_spec(out)
    expected = [
        {"name": f"PGBACKREST_REPO{n}_S3_{suffix}",
         "valueFrom": {"secretKeyRef": {"name": "hastack-pgbackrest-s3", "key": key}}}
        for n in (1, 2) for suffix, key in (("KEY", "s3-key"), ("KEY_SECRET", "s3-key-secret"))
    ]  # fmt: skip
    for name in ("patroni", "pgbackrest"):
        env = [e for e in container(spec, name)["env"] if e["name"].startswith("PGBACKREST_")]
        assert env == expected, name
    assert "pgbackrest" not in [c["name"] for c in spec["containers"] if c["name"] == "postgres-exporter"]
    conf = yaml.safe_load((out / "20-configmap.yml").read_text())["data"]["pgbackrest.conf"]
    assert "repo1-s3-key-type=shared" in conf and "repo2-s3-key-type=shared" in conf
    sa = yaml.safe_load((out / "10-serviceaccount.yml").read_text())
    assert "annotations" not in sa["metadata"]
    # no key, and no Secret, in any file
    for path in out.glob("*.yml"):
        text = path.read_text()
        assert "kind: Secret\n" not in text, path.name
        assert "s3-key=" not in text and "s3-key-secret=" not in text, path.name


# --- the sidecar -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sidecar() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("pgbackrest_sidecar", SIDECAR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sidecar_args(sidecar: types.ModuleType) -> Any:
    """The sidecar's arguments as the rendered container gives them, parsed by its own parser."""
    args = sidecar.parse_args(container(pod_spec(), "pgbackrest")["args"])
    args.schedule = sidecar.parse_schedule(args.schedule)
    return args


def at(text: str) -> time.struct_time:
    return time.strptime(text, "%Y-%m-%d %H:%M")


def test_the_schedule_is_the_hosts_cron_fields_in_utc(sidecar: types.ModuleType) -> None:
    args = sidecar_args(sidecar)
    assert container(pod_spec(), "pgbackrest")["args"][0] == "--schedule=0 2 *"  # defaults/main.yml: 02:00
    assert sidecar.due(args.schedule, at("2025-03-04 02:00"))
    assert not sidecar.due(args.schedule, at("2025-03-04 02:01"))
    assert not sidecar.due(args.schedule, at("2025-03-04 03:00"))
    weekly = sidecar.parse_schedule("30 */6 0")  # Sundays at 00:30, 06:30, ...
    assert sidecar.due(weekly, at("2025-03-02 06:30"))  # a Sunday
    assert not sidecar.due(weekly, at("2025-03-03 06:30"))
    assert sidecar.parse_schedule("0 1 7") == sidecar.parse_schedule("0 1 0")  # 7 is Sunday too
    assert sidecar.parse_schedule("5,10-12 0 1-5")[0] == {5, 10, 11, 12}
    for bad in ("0 2", "60 2 *", "0 24 *", "0 2 8", "*/0 2 *", "a 2 *"):
        with pytest.raises(ValueError):
            sidecar.parse_schedule(bad)


class FakeRun:
    """pgbackrest and the scripts as the sidecar calls them: an info answer, exit codes per subcommand."""

    def __init__(self, info: list[dict[str, Any]], fail: tuple[str, ...] = ()):
        self.info, self.fail, self.calls = info, fail, []

    def __call__(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        self.calls.append(list(argv))
        code = 1 if argv[-1] in self.fail else 0
        out = json.dumps(self.info) if argv[-1] == "info" else ""
        return subprocess.CompletedProcess(argv, code, out, "failed" if code else "")


def missing_stanza() -> list[dict[str, Any]]:
    return [{"name": "hastack", "backup": [], "repo": [
        {"key": 1, "status": {"code": 1, "message": "missing stanza path"}},
        {"key": 2, "status": {"code": 1, "message": "missing stanza path"}},
    ]}]  # fmt: skip


def test_the_leader_creates_the_stanza_and_a_first_full_backup_in_each_repository_once(
    sidecar: types.ModuleType, capsys: pytest.CaptureFixture
) -> None:
    args = sidecar_args(sidecar)
    run = FakeRun(missing_stanza())
    s = sidecar.Sidecar(args, run)
    s.leads = lambda: True
    s.tick(at("2025-03-04 10:00"), refresh=False)
    base = args.pgbackrest.split()
    assert run.calls == [
        [*base, "--output=json", "info"],
        [*base, "stanza-create"],
        [*base, "--repo=1", "--type=full", "backup"],
        [*base, "--repo=2", "--type=full", "backup"],
    ]
    run.calls.clear()
    s.tick(at("2025-03-04 10:01"), refresh=False)
    assert run.calls == []  # done: not repeated every minute
    assert "ready" in capsys.readouterr().out


def test_a_replica_or_a_ready_stanza_changes_nothing_and_a_failure_is_retried(sidecar: types.ModuleType) -> None:
    args = sidecar_args(sidecar)
    # a replica: nothing at all (the leader does it)
    run = FakeRun(missing_stanza())
    s = sidecar.Sidecar(args, run)
    s.leads = lambda: False
    s.tick(at("2025-03-04 10:00"), refresh=False)
    assert run.calls == []
    # the leader of a cluster with a full backup in both repositories: only info
    run = FakeRun(json.loads(INFO.read_text()))
    s = sidecar.Sidecar(args, run)
    s.leads = lambda: True
    s.tick(at("2025-03-04 10:00"), refresh=False)
    assert [c[-1] for c in run.calls] == ["info"]
    # stanza-create fails (S3 refuses): no backup tried, the next minute tries again
    run = FakeRun(missing_stanza(), fail=("stanza-create",))
    s = sidecar.Sidecar(args, run)
    s.leads = lambda: True
    s.tick(at("2025-03-04 10:00"), refresh=False)
    s.tick(at("2025-03-04 10:01"), refresh=False)
    assert [c[-1] for c in run.calls] == ["info", "stanza-create"] * 2


def test_the_schedule_runs_the_hosts_backup_script_on_every_member(sidecar: types.ModuleType) -> None:
    """The script decides (Patroni's GET /primary), as cron's entry does on hosts."""
    args = sidecar_args(sidecar)
    run = FakeRun(json.loads(INFO.read_text()))
    s = sidecar.Sidecar(args, run)
    s.leads = lambda: False
    s.tick(at("2025-03-04 02:00"), refresh=True)
    assert run.calls == [["sh", "/etc/patroni/pgbackrest-backup", "full"], [sys.executable, args.metrics_script]]
    script = config_data()["pgbackrest-backup"]
    assert "curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:8008/primary" in script
    assert '"${PATRONI_NAME} is not the leader: no backup here"' in script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_the_hosts_metrics_script_runs_on_the_pods_paths_and_is_served(
    sidecar: types.ModuleType, tmp_path: Path
) -> None:
    """The ConfigMap's pgbackrest-metrics (the hosts template) with a pgbackrest that answers
    the fixture's info, its output file moved under tmp_path; the sidecar serves it."""
    data = config_data()
    metrics_file = tmp_path / "pgbackrest.prom"
    script = tmp_path / "pgbackrest-metrics"
    script.write_text(data["pgbackrest-metrics"].replace("/var/lib/pgbackrest/pgbackrest.prom", str(metrics_file)))
    fake = tmp_path / "bin" / "pgbackrest"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ncat {INFO}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    port = free_port()
    server = sidecar.serve(port, metrics_file)
    try:
        assert get(f"http://127.0.0.1:{port}/health") == (200, "ok\n")
        assert get(f"http://127.0.0.1:{port}/metrics") == (200, "")  # before the first run: empty, still up
        env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
        subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=60)
        status, body = get(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
    assert status == 200
    assert 'hastack_pgbackrest_info_success{stanza="hastack"} 1' in body
    stops: dict[int, int] = {}
    for b in json.loads(INFO.read_text())[0]["backup"]:
        if b["type"] == "full":
            key = b["database"]["repo-key"]
            stops[key] = max(stops.get(key, 0), b["timestamp"]["stop"])
    assert sorted(stops) == [1, 2]
    for repo, stop in stops.items():
        assert f'hastack_pgbackrest_last_full_backup_timestamp_seconds{{stanza="hastack",repo="{repo}"}} {stop}' in body
    # the container serves it on the port Prometheus's job pgbackrest keeps
    (port_spec,) = container(pod_spec(), "pgbackrest")["ports"]
    assert port_spec["name"] == "prom-pgbackrest"
