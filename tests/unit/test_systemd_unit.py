"""hastack.ha.systemd_unit: the module run for real, each decision checked.

This box's PID 1 is not systemd, so a stand-in ``systemctl`` (a shell script
first on PATH) answers ``show`` from a state directory, records every call and
applies start/stop/enable/disable to that state. The unit file itself is
written for real, into a temporary unit directory. The real systemd path runs
on every fleet machine (ha_service runs every daemon of the stack through it).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "systemd_unit.py"

FAKE_SYSTEMCTL = r"""#!/bin/sh
state="$FAKE_SYSTEMD"
echo "$*" >> "$state/calls"
verb="$1"
if [ -e "$state/fail-$verb" ]; then echo "Job for $2 failed (stand-in)" >&2; exit 1; fi
case "$verb" in
  show)
    echo "ActiveState=$(cat "$state/active")"
    echo "UnitFileState=$(cat "$state/enabled")"
    echo "NeedDaemonReload=$(cat "$state/reload")"
    echo "LoadState=$(cat "$state/load")" ;;
  daemon-reload) echo no > "$state/reload"; echo loaded > "$state/load" ;;
  start|restart) echo active > "$state/active" ;;
  stop) echo inactive > "$state/active" ;;
  enable) echo enabled > "$state/enabled" ;;
  disable) echo disabled > "$state/enabled" ;;
esac
"""

UNIT = "[Unit]\nDescription=hsunit\n\n[Service]\nExecStart=/bin/sleep 600\n"


@pytest.fixture
def systemd(tmp_path: Path) -> Path:
    """A stand-in systemd: state files, a call log, and ``systemctl`` on PATH."""
    state = tmp_path / "systemd"
    state.mkdir()
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    (tmp_path / "units").mkdir()
    set_state(state, active="inactive", enabled="disabled", reload="no", load="not-found")
    return state


def set_state(state: Path, **values: str) -> None:
    for key, value in values.items():
        (state / key).write_text(value + "\n")


def read_state(state: Path, key: str) -> str:
    return (state / key).read_text().strip()


def calls(state: Path) -> list[str]:
    log = state / "calls"
    return [line for line in log.read_text().splitlines() if not line.startswith("show ")] if log.exists() else []


def run(systemd: Path, check_mode: bool = False, **params: object) -> dict:
    """Run the module with ``params`` (unit_dir defaults to the test's own); return its JSON result."""
    (systemd / "calls").unlink(missing_ok=True)
    tmp = systemd.parent
    args = {"name": "hsunit-svc", "content": UNIT, "unit_dir": str(tmp / "units"), **params}
    if check_mode:
        args["_ansible_check_mode"] = True
    args_file = tmp / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "FAKE_SYSTEMD": str(systemd), "PATH": f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    return json.loads(done.stdout)


def unit_file(systemd: Path) -> Path:
    return systemd.parent / "units" / "hsunit-svc.service"


def test_a_new_unit_is_written_loaded_enabled_and_started(systemd):
    result = run(systemd)
    assert result["changed"] and result["unit_changed"]
    assert calls(systemd) == ["daemon-reload", "enable hsunit-svc.service", "start hsunit-svc.service"]
    path = unit_file(systemd)
    assert path.read_text() == UNIT
    mode = path.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o644 and mode.st_uid == 0 and mode.st_gid == 0


def test_nothing_to_do_runs_no_command_and_no_reload(systemd):
    run(systemd)
    result = run(systemd)
    assert result == {**result, "changed": False, "unit_changed": False, "commands": []}
    assert calls(systemd) == []


def test_a_missing_final_newline_is_the_same_file(systemd):
    # the template lookup drops the final newline that the template module kept
    run(systemd)
    assert run(systemd, content=UNIT.rstrip("\n"))["changed"] is False


def test_a_changed_unit_restarts_a_running_daemon(systemd):
    run(systemd)
    result = run(systemd, content=UNIT + "Environment=A=1\n")
    assert result["changed"] and result["unit_changed"]
    assert calls(systemd) == ["daemon-reload", "restart hsunit-svc.service"]
    assert "Environment=A=1" in unit_file(systemd).read_text()


def test_a_deferred_restart_writes_and_loads_but_leaves_the_daemon(systemd):
    run(systemd)
    result = run(systemd, content=UNIT + "Environment=A=2\n", restart_on_change=False)
    assert result["changed"]
    assert calls(systemd) == ["daemon-reload"]
    assert read_state(systemd, "active") == "active"


def test_a_stopped_daemon_is_started_and_restarted_always_restarts(systemd):
    run(systemd)
    set_state(systemd, active="failed")
    run(systemd)
    assert calls(systemd) == ["start hsunit-svc.service"]
    assert run(systemd, state="restarted")["changed"]
    assert calls(systemd) == ["restart hsunit-svc.service"]


def test_stopped_stops_and_disables(systemd):
    run(systemd)
    result = run(systemd, state="stopped")
    assert result["changed"] and not result["unit_changed"]
    assert calls(systemd) == ["disable hsunit-svc.service", "stop hsunit-svc.service"]
    assert run(systemd, state="stopped")["changed"] is False


def test_wrong_owner_or_mode_is_repaired_without_a_restart(systemd):
    run(systemd)
    unit_file(systemd).chmod(0o666)
    result = run(systemd)
    assert result["changed"] and not result["unit_changed"]
    assert calls(systemd) == []
    assert stat.S_IMODE(unit_file(systemd).stat().st_mode) == 0o644


def test_systemd_asking_for_a_reload_gets_one(systemd):
    run(systemd)
    set_state(systemd, reload="yes")
    assert run(systemd)["changed"]
    assert calls(systemd) == ["daemon-reload"]


def test_check_mode_reports_and_changes_nothing(systemd):
    result = run(systemd, check_mode=True)
    assert result["changed"] and result["unit_changed"]
    assert result["commands"] == [
        "systemctl daemon-reload",
        "systemctl enable hsunit-svc.service",
        "systemctl start hsunit-svc.service",
    ]
    assert calls(systemd) == []
    assert not unit_file(systemd).exists()


def test_a_failing_start_names_the_command_and_the_journal(systemd):
    (systemd / "fail-start").touch()
    result = run(systemd)
    assert result["failed"]
    assert "systemctl start hsunit-svc.service failed (rc 1): Job for hsunit-svc.service failed" in result["msg"]
    assert "journalctl -u hsunit-svc.service" in result["msg"]


@pytest.mark.parametrize("name", ["bad name", "x;rm", "hsunit.service"])
def test_a_bad_name_is_refused_before_anything_runs(systemd, name):
    result = run(systemd, name=name)
    assert result["failed"] and "a plain unit name" in result["msg"]
    assert calls(systemd) == [] and not list((systemd.parent / "units").iterdir())
