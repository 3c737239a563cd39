"""The Kubernetes sidecars and the roles Job, run for real on this machine.

What the rendered manifests (fixtures/k8s/rendered/) tell the containers to
run — the command or args, the environment built the way the kubelet builds
it (values with $(VAR) expanded, secretKeyRef from a Secret, fieldRef from
the pod), the files of the mounted ConfigMap and Secret — is run here
against a throw-away PostgreSQL 15, Redis and Sentinel 7.0 and Debian's
postgres_exporter 0.11.1 and redis_exporter 1.45.0 (the versions the images
pin). Only the addresses are rewritten: the primary Service's name, the
pod's IP and the listen ports become 127.79.x.x and free ports.

- the roles Job's psql creates the monitoring role and the app's role and
  database, is idempotent, applies a rotated password, refuses a short one
  without changing anything;
- postgres_exporter logs in as the monitoring role with the password file
  and serves pg_up 1 and the extra queries (the metrics the rules use);
- redis_exporter, once beside Redis and once beside Sentinel, authenticates
  with the Secret's password and serves redis_up 1 and the Sentinel's
  CKQUORUM status.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RENDERED = ROOT / "tests" / "unit" / "fixtures" / "k8s" / "rendered"
PG_HOST = "127.79.0.1"
REDIS_HOST = "127.79.1.1"
PG_EXPORTER = "/usr/bin/prometheus-postgres-exporter"
REDIS_EXPORTER = "/usr/bin/prometheus-redis-exporter"

_spec = importlib.util.spec_from_file_location(
    "hastack_unit_pg_roles", ROOT / "tests" / "unit" / "drill" / "conftest.py"
)
assert _spec and _spec.loader
_pg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pg)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rendered(role: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((RENDERED / role).glob("*.yml"))]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def kubelet_env(c: dict[str, Any], secret_data: dict[tuple[str, str], str], fields: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: values with $(VAR) of earlier
    entries expanded, secretKeyRef from ``secret_data`` (a missing key fails, as the kubelet
    refuses to start the container), fieldRef from ``fields``."""
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), e["value"])
        elif "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secret_data[(ref["name"], ref["key"])]
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def mounted(pod_spec: dict[str, Any], c: dict[str, Any], secret_data: dict[tuple[str, str], str],
            configmaps: dict[str, dict[str, str]], root: Path) -> dict[str, Path]:  # fmt: skip
    """Write the files of the container's ConfigMap and Secret volumes under ``root``;
    mountPath -> the directory standing in for it."""
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    out = {}
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        directory = root / m["name"]
        directory.mkdir(parents=True)
        if "configMap" in v:
            data = configmaps[v["configMap"]["name"]]
            for item in v["configMap"]["items"]:
                (directory / item["path"]).write_text(data[item["key"]], encoding="utf-8")
        elif "secret" in v:
            for item in v["secret"]["items"]:
                path = directory / item["path"]
                path.write_text(secret_data[(v["secret"]["secretName"], item["key"])], encoding="utf-8")
                path.chmod(v["secret"]["defaultMode"])
        else:
            continue
        out[m["mountPath"]] = directory
    return out


def remap(text: str, paths: dict[str, Path]) -> str:
    for mount, directory in paths.items():
        text = text.replace(mount + "/", f"{directory}/")
    return text


def scrape(url: str, timeout: float = 15) -> str:
    """The exporter's /metrics once it answers (it starts in well under a second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=3)
            if response.status_code == 200:
                return response.text
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout} s")
        time.sleep(0.2)


def sample(metrics: str, name: str) -> float:
    """The value of the first sample of ``name`` (with or without labels)."""
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", metrics, re.M)
    assert match, f"{name} not in the metrics"
    return float(match[1])


# --- PostgreSQL: the roles Job and postgres_exporter ------------------------------

PATRONI = rendered("patroni_postgres")
CONFIGMAPS = {"hastack-patroni-config": one(PATRONI, "ConfigMap")["data"]}
JOB_POD = one(PATRONI, "Job")["spec"]["template"]["spec"]
PSQL = container(JOB_POD, "psql")


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    with _pg.throwaway_pg("hastack-unit-roles-pg-", PG_HOST) as server:
        yield server


def secrets_for(pg: Any, **passwords: str) -> dict[tuple[str, str], str]:
    return {
        ("hastack-patroni", "superuser-password"): pg.password,
        ("hastack-patroni", "monitor-password"): passwords.get("monitor", "m" * 20),
        ("hastack-app", "db-password"): passwords.get("app", "a" * 20),
    }


def run_job(pg: Any, tmp: Path, data: dict[tuple[str, str], str]) -> subprocess.CompletedProcess[str]:
    """The Job's container: its command and environment, the primary Service's name
    replaced by the test server's address."""
    env = kubelet_env(PSQL, data, {})
    assert (env["PGHOST"], env["PGPORT"]) == ("hastack-primary", "5432")
    env |= {"PGHOST": PG_HOST, "PGPORT": str(pg.port), "PATH": os.environ["PATH"], "HOME": str(tmp)}
    paths = mounted(JOB_POD, PSQL, data, CONFIGMAPS, tmp / f"run-{secrets.token_hex(4)}")
    argv = [remap(a, paths) for a in PSQL["command"]]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def can_log_in(pg: Any, user: str, password: str, dbname: str = "postgres") -> bool:
    import psycopg

    try:
        with psycopg.connect(pg.conninfo(user=user, dbname=dbname), password=password):
            return True
    except psycopg.OperationalError:
        return False


def state(pg: Any) -> list[tuple]:
    return pg.sql(
        "SELECT r.rolname, r.rolcanlogin, r.rolsuper, pg_has_role(r.rolname, 'pg_monitor', 'MEMBER'),"
        " (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'hastack_app')"
        " FROM pg_roles r WHERE r.rolname IN ('monitor', 'hastack_app') ORDER BY 1"
    )


def test_the_roles_job_creates_the_roles_and_database_and_is_idempotent(pg: Any, tmp_path: Path) -> None:
    data = secrets_for(pg)
    first = run_job(pg, tmp_path, data)
    assert first.returncode == 0, first.stderr
    assert "roles and databases reconciled: monitor, hastack_app; hastack_app" in first.stdout
    expected = [("hastack_app", True, False, False, "hastack_app"), ("monitor", True, False, True, "hastack_app")]
    assert state(pg) == expected
    assert can_log_in(pg, "monitor", "m" * 20)
    assert can_log_in(pg, "hastack_app", "a" * 20, dbname="hastack_app")
    # the app owns its database: it can create its table there
    import psycopg

    with psycopg.connect(pg.conninfo(user="hastack_app", dbname="hastack_app"), password="a" * 20) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (id int)")

    again = run_job(pg, tmp_path, data)
    assert again.returncode == 0, again.stderr
    assert state(pg) == expected


def test_the_roles_job_applies_a_rotated_password_and_repairs_drift(pg: Any, tmp_path: Path) -> None:
    assert run_job(pg, tmp_path, secrets_for(pg)).returncode == 0
    pg.sql("REVOKE pg_monitor FROM monitor")
    pg.sql("ALTER DATABASE hastack_app OWNER TO postgres")
    rotated = run_job(pg, tmp_path, secrets_for(pg, app="b" * 24))
    assert rotated.returncode == 0, rotated.stderr
    assert can_log_in(pg, "hastack_app", "b" * 24, dbname="hastack_app")
    assert not can_log_in(pg, "hastack_app", "a" * 20, dbname="hastack_app")
    assert state(pg)[1][3] is True and state(pg)[0][4] == "hastack_app"


def test_the_roles_job_refuses_a_short_password_and_changes_nothing(pg: Any, tmp_path: Path) -> None:
    assert run_job(pg, tmp_path, secrets_for(pg, app="c" * 20)).returncode == 0
    short = run_job(pg, tmp_path, secrets_for(pg, monitor="x" * 20, app="tooshort"))
    assert short.returncode != 0
    assert "role hastack_app: the password in Secret hastack-app, key db-password, is shorter than 16" in short.stderr
    assert "reconciled" not in short.stdout
    assert can_log_in(pg, "hastack_app", "c" * 20, dbname="hastack_app")


@pytest.mark.skipif(not Path(PG_EXPORTER).exists(), reason="prometheus-postgres-exporter not installed")
def test_postgres_exporter_sidecar_logs_in_as_the_monitoring_role(pg: Any, tmp_path: Path) -> None:
    data = secrets_for(pg)
    assert run_job(pg, tmp_path, data).returncode == 0
    pod = one(PATRONI, "StatefulSet")["spec"]["template"]["spec"]
    sidecar = container(pod, "postgres-exporter")
    env = kubelet_env(sidecar, data, {"status.podIP": PG_HOST})
    assert env["DATA_SOURCE_URI"] == f"{PG_HOST}:5432/postgres?sslmode=disable&connect_timeout=3"
    env["DATA_SOURCE_URI"] = env["DATA_SOURCE_URI"].replace(":5432/", f":{pg.port}/")
    paths = mounted(pod, sidecar, data, CONFIGMAPS, tmp_path / "exporter")
    env = {k: remap(v, paths) for k, v in env.items()} | {"PATH": os.environ["PATH"]}
    port = free_port(PG_HOST)
    args = [remap(a, paths) for a in sidecar["args"]]
    args = [f"--web.listen-address={PG_HOST}:{port}" if a.startswith("--web.listen-address=") else a for a in args]
    with subprocess.Popen([PG_EXPORTER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            metrics = scrape(f"http://{PG_HOST}:{port}/metrics")
        finally:
            proc.terminate()
    assert sample(metrics, "pg_up") == 1
    # the extra queries of the ConfigMap (PostgresWALArchivingFailing reads them)
    assert sample(metrics, "pg_archiver_failed_count") == 0
    assert "pg_archiver_last_archived_time_seconds" in metrics


# --- Redis and Sentinel: redis_exporter beside each -------------------------------

REDIS = rendered("redis_sentinel")
REDIS_PASSWORD = "r" * 24
SENTINEL_PASSWORD = "s" * 24
REDIS_SECRETS = {
    ("hastack-redis", "redis-password"): REDIS_PASSWORD,
    ("hastack-redis", "sentinel-password"): SENTINEL_PASSWORD,
}


@pytest.fixture(scope="module")
def redis_and_sentinel() -> Iterator[dict[str, int]]:
    if not (shutil.which("redis-server") and shutil.which("redis-sentinel") and Path(REDIS_EXPORTER).exists()):
        pytest.skip("redis-server, redis-sentinel or prometheus-redis-exporter not installed")
    base = Path(tempfile.mkdtemp(prefix="hastack-unit-exporters-redis-", dir="/tmp"))
    ports = {"redis": free_port(REDIS_HOST), "sentinel": free_port(REDIS_HOST)}
    (base / "sentinel.conf").write_text(
        f'bind {REDIS_HOST}\nport {ports["sentinel"]}\ndir {base}\nrequirepass "{SENTINEL_PASSWORD}"\n'
        f"sentinel monitor hastack {REDIS_HOST} {ports['redis']} 1\n"
        f'sentinel auth-pass hastack "{REDIS_PASSWORD}"\n'
    )
    procs = [
        subprocess.Popen(
            ["redis-server", "--bind", REDIS_HOST, "--port", str(ports["redis"]), "--requirepass", REDIS_PASSWORD,
             "--dir", str(base), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(["redis-sentinel", str(base / "sentinel.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    try:
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(("statefulset", "name"), [("hastack-redis", "redis"), ("hastack-sentinel", "sentinel")])
def test_redis_exporter_sidecar_authenticates_with_the_secret(
    redis_and_sentinel: dict[str, int], statefulset: str, name: str
) -> None:
    pod = one(REDIS, "StatefulSet", statefulset)["spec"]["template"]["spec"]
    sidecar = container(pod, f"{name}-exporter")
    server = container(pod, name)
    env = kubelet_env(sidecar, REDIS_SECRETS, {}) | {"PATH": os.environ["PATH"]}
    # the sidecar scrapes the container beside it, over loopback, on that container's port
    own = f"-redis.addr=redis://127.0.0.1:{server['ports'][0]['containerPort']}"
    assert own in sidecar["args"]
    port = free_port(REDIS_HOST)
    args = [
        f"-redis.addr=redis://{REDIS_HOST}:{redis_and_sentinel[name]}" if a == own
        else f"-web.listen-address={REDIS_HOST}:{port}" if a.startswith("-web.listen-address=")
        else a
        for a in sidecar["args"]
    ]  # fmt: skip
    deadline = time.monotonic() + 15
    with subprocess.Popen([REDIS_EXPORTER, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            while True:  # the sentinel needs a moment to find its master
                metrics = scrape(f"http://{REDIS_HOST}:{port}/metrics")
                if name == "redis" or "redis_sentinel_master_ckquorum_status" in metrics:
                    break
                assert time.monotonic() < deadline, "no redis_sentinel_master_ckquorum_status"
                time.sleep(0.5)
        finally:
            proc.terminate()
    assert sample(metrics, "redis_up") == 1
    if name == "redis":
        assert 'role="master"' in metrics  # redis_instance_info: RedisMasterMissing / RedisTwoMasters
    else:
        assert sample(metrics, "redis_sentinel_master_ckquorum_status") == 1  # SentinelQuorumLost
