"""The app accepts what the Kubernetes Deployment gives it.

The ConfigMap of fixtures/k8s/rendered/app_backend (the same HASTACK_APP_*
variables the hosts' env file has) plus the pod's name and the Secret's files
at the paths the Deployment mounts, loaded by the app's own config reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hastack_app.config import ConfigError, Endpoint, load_config

RENDERED = Path(__file__).resolve().parents[1] / "fixtures" / "k8s" / "rendered" / "app_backend"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((RENDERED / name).read_text(encoding="utf-8"))


def pod_environment(tmp_path: Path) -> dict[str, str]:
    """The container's environment, with the Secret's files laid out under tmp_path."""
    deployment = load("50-deployment.yml")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    configmap = load("10-configmap.yml")
    assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")["mountPath"]
    secret = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]
    env = dict(configmap["data"])
    for item in secret["items"]:
        path = tmp_path / item["path"]
        path.write_text(f"{item['key']}-value-from-the-secret\n")
    # the file variables name the mounted paths; point them at tmp_path
    for name, value in list(env.items()):
        if name.endswith("_FILE"):
            assert value.startswith(mount + "/"), f"{name}={value} is not under the Secret's mount {mount}"
            env[name] = str(tmp_path / value.removeprefix(mount + "/"))
    env["HASTACK_APP_INSTANCE"] = "hastack-app-7d9c8b6f5-x2x9q"
    return env


def test_the_app_accepts_the_rendered_settings(tmp_path: Path) -> None:
    config = load_config(pod_environment(tmp_path))
    assert config.db_hosts == (Endpoint("hastack-primary.hastack.svc.cluster.local", 5432),)
    assert [e.host for e in config.redis_sentinels] == [
        f"hastack-sentinel-{i}.hastack-sentinel.hastack.svc.cluster.local" for i in range(3)
    ]
    assert config.db_password == "db-password-value-from-the-secret"
    assert config.redis_sentinel_password == "redis-sentinel-password-value-from-the-secret"
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 8080)
    deployment = load("50-deployment.yml")["spec"]["template"]["spec"]
    # the only writable paths are emptyDirs: the storage check's and /tmp
    mounts = {m["mountPath"]: m["name"] for m in deployment["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    assert "emptyDir" in volumes[mounts[str(config.storage_path)]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert deployment["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_no_password_in_the_configmap() -> None:
    data = load("10-configmap.yml")["data"]
    assert not [k for k in data if k.endswith("PASSWORD")]
    assert sorted(k for k in data if k.endswith("PASSWORD_FILE")) == [
        "HASTACK_APP_DB_PASSWORD_FILE",
        "HASTACK_APP_REDIS_PASSWORD_FILE",
        "HASTACK_APP_REDIS_SENTINEL_PASSWORD_FILE",
    ]


def test_a_secret_key_missing_from_the_mount_stops_the_app(tmp_path: Path) -> None:
    env = pod_environment(tmp_path)
    (tmp_path / "redis-password").unlink()
    with pytest.raises(ConfigError, match=r"HASTACK_APP_REDIS_PASSWORD_FILE=.*cannot read"):
        load_config(env)


def test_the_dockerfile_fits_the_pod() -> None:
    """Non-root uid of the pod, and the storage path the ConfigMap sets."""
    dockerfile = (Path(__file__).resolve().parents[3] / "app" / "Dockerfile").read_text(encoding="utf-8")
    pod = load("50-deployment.yml")["spec"]["template"]["spec"]
    uid = pod["securityContext"]["runAsUser"]
    assert f"USER {uid}:{pod['securityContext']['runAsGroup']}" in dockerfile
    assert f"--uid {uid}" in dockerfile
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile  # nothing written next to the code
    assert load("10-configmap.yml")["data"]["HASTACK_APP_STORAGE_PATH"] in dockerfile


def test_any_pod_name_the_role_allows_is_a_valid_instance(tmp_path: Path) -> None:
    """Preflight allows app_backend_k8s_name up to 42 characters; the pod's name
    (<name>-app-<pod-template-hash>-<5>, cut to 63 by Kubernetes) becomes
    HASTACK_APP_INSTANCE through the downward API. Such pods crash-looped when the
    app capped INSTANCE at 40 characters."""
    env = pod_environment(tmp_path)
    longest = f"{'n' * 42}-app-7d9c8b6f5d"[:58] + "-x2x9q"
    assert len(longest) == 63
    assert load_config({**env, "HASTACK_APP_INSTANCE": longest}).instance == longest
    short = f"{'n' * 20}-app-7d9c8b6f5d-x2x9q"
    assert load_config({**env, "HASTACK_APP_INSTANCE": short}).instance == short
    with pytest.raises(ConfigError, match=r"HASTACK_APP_INSTANCE='n{64}'; rule: must match .*\{1,63\}"):
        load_config({**env, "HASTACK_APP_INSTANCE": "n" * 64})
