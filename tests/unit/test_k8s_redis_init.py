"""The redis_sentinel kubernetes platform's init scripts, run for real.

files/k8s/prepare-redis.sh and prepare-sentinel.sh run in the pods' init
containers; here they run with sh on this machine, on the ConfigMap the role
rendered (fixtures/k8s/rendered/redis_sentinel/10-configmap.yml), and the
files they write are then loaded by the real redis-server / redis-sentinel
7.0 (Debian, the same version as the image), which exit at once on a config
error. Only the paths (dir) and the monitored host are rewritten so that the
daemons run here; nothing listens on TCP (port 0 / a unix socket).

Not covered: asking the sentinels for the master (it needs the pods' DNS
names); SENTINELS=0 makes the scripts fall back as on a first deploy.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

CONFIGMAP = Path(__file__).resolve().parent / "fixtures" / "k8s" / "rendered" / "redis_sentinel" / "10-configmap.yml"
INITIAL_MASTER = "hastack-redis-0.hastack-redis.hastack.svc.cluster.local"
REDIS_PASSWORD = "r" * 24
SENTINEL_PASSWORD = "s" * 24

pytestmark = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-sentinel")),
    reason="redis-server / redis-sentinel not installed (make unit installs them)",
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    data = yaml.safe_load(CONFIGMAP.read_text(encoding="utf-8"))["data"]
    directory = tmp_path / "config"
    directory.mkdir()
    for name, content in data.items():
        (directory / name).write_text(content, encoding="utf-8")
    return directory


def run_script(config_dir: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ["PATH"],
        "CONFIG_DIR": str(config_dir),
        "MASTER_NAME": "hastack",
        "INITIAL_MASTER": INITIAL_MASTER,
        "REDIS_PORT": "6379",
        "SENTINELS": "0",
        "SENTINEL_SERVICE": "hastack-sentinel",
        "SENTINEL_PORT": "26379",
        "DOMAIN": "hastack.svc.cluster.local",
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "SENTINEL_PASSWORD": SENTINEL_PASSWORD,
    }
    result = subprocess.run(
        ["sh", str(config_dir / script)], env=base | env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result


def accepted(daemon: str, conf: Path, workdir: Path, *args: str) -> None:
    """The daemon loads the file and keeps running (timeout exits 124); a config error exits at once."""
    text = conf.read_text(encoding="utf-8")
    text = text.replace('dir "/data"', f'dir "{workdir}"').replace(INITIAL_MASTER, "127.77.4.1")
    conf.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["timeout", "2", daemon, str(conf), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 124, f"{daemon} rejected {conf.name}:\n{result.stdout[-1500:]}"


def redis_args(workdir: Path) -> list[str]:
    return ["--port", "0", "--unixsocket", str(workdir / "redis.sock"), "--appendonly", "no", "--save", ""]


def test_pod_zero_starts_as_the_initial_master(config_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_script(config_dir, "prepare-redis.sh", RUN_DIR=str(run_dir), POD_FQDN=INITIAL_MASTER)
    conf = run_dir / "redis.conf"
    text = conf.read_text(encoding="utf-8")
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert text.startswith((config_dir / "redis.conf").read_text(encoding="utf-8"))
    assert f'requirepass "{REDIS_PASSWORD}"' in text and f'masterauth "{REDIS_PASSWORD}"' in text
    assert f"replica-announce-ip {INITIAL_MASTER}" in text
    assert not [line for line in text.splitlines() if line.startswith("replicaof")]
    accepted("redis-server", conf, tmp_path, *redis_args(tmp_path))


def test_other_pods_follow_the_initial_master(config_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    me = "hastack-redis-1.hastack-redis.hastack.svc.cluster.local"
    run_script(config_dir, "prepare-redis.sh", RUN_DIR=str(run_dir), POD_FQDN=me)
    text = (run_dir / "redis.conf").read_text(encoding="utf-8")
    assert text.rstrip().endswith(f"replicaof {INITIAL_MASTER} 6379")
    assert f"replica-announce-ip {me}" in text
    accepted("redis-server", run_dir / "redis.conf", tmp_path, *redis_args(tmp_path))


def test_sentinel_conf_is_written_once(config_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    me = "hastack-sentinel-0.hastack-sentinel.hastack.svc.cluster.local"
    run_script(config_dir, "prepare-sentinel.sh", DATA_DIR=str(data_dir), POD_FQDN=me)
    conf = data_dir / "sentinel.conf"
    text = conf.read_text(encoding="utf-8")
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert f"sentinel monitor hastack {INITIAL_MASTER} 6379 2" in text
    assert f'sentinel auth-pass hastack "{REDIS_PASSWORD}"' in text
    assert f'sentinel sentinel-pass "{SENTINEL_PASSWORD}"' in text
    assert f"sentinel announce-ip {me}" in text
    # Sentinel owns the file afterwards: a restarted pod keeps what it learnt
    conf.write_text(text + "sentinel known-replica hastack 10.0.2.17 6379\n", encoding="utf-8")
    result = run_script(config_dir, "prepare-sentinel.sh", DATA_DIR=str(data_dir), POD_FQDN=me)
    assert "Sentinel owns it" in result.stdout
    assert conf.read_text(encoding="utf-8").endswith("sentinel known-replica hastack 10.0.2.17 6379\n")
    conf.write_text(text, encoding="utf-8")
    # Sentinel refuses to run without a TCP port: a free one on the unit tests' loopback block
    accepted("redis-sentinel", conf, data_dir, "--port", "26999", "--bind", "127.77.4.2")


def test_a_broken_file_is_rejected(config_dir: Path, tmp_path: Path) -> None:
    """The check above can fail: Redis refuses a directive the scripts could get wrong."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_script(config_dir, "prepare-redis.sh", RUN_DIR=str(run_dir), POD_FQDN=INITIAL_MASTER)
    conf = run_dir / "redis.conf"
    conf.write_text(conf.read_text(encoding="utf-8") + "replicaof only-a-host\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"rejected redis\.conf"):
        accepted("redis-server", conf, tmp_path, *redis_args(tmp_path))
