#!/usr/bin/python3
"""pgBackRest beside Patroni in every member's pod (the kubernetes platform).

What cron and the role's backup_init.yml do on hosts, in one small process
(the image's Python 3, standard library only; no cron, which needs root):

- every minute that matches the schedule (cron fields minute, hour and
  weekday, UTC), runs the hosts' backup script (pgbackrest-backup), which
  backs up only where Patroni's GET /primary answers 200, so exactly one
  member takes the backup whichever member leads;
- while this member leads and has not done it yet, creates the stanza
  (idempotent) and takes a first full backup into every repository that has
  none, as backup_init.yml does on hosts: archive-push works from the first
  segments on and a replica can be created from a backup;
- every --interval seconds, runs the hosts' metrics script
  (pgbackrest-metrics), which writes the hastack_pgbackrest_* metrics to a
  file, and serves that file on GET /metrics (Prometheus job pgbackrest);
  GET /health answers 200 while the process runs (neither PostgreSQL nor S3
  is asked: a failing backup shows in the metrics and the alert, it must not
  make the pod unready and take it out of its Services).

Everything is logged to stdout (kubectl logs). The work is sequential, one
pgBackRest command at a time; the HTTP server has a thread of its own.
"""

from __future__ import annotations

import argparse
import http.server
import json
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

# cron's ranges of the three fields the schedule has (weekday 7 is Sunday, as 0)
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("weekday", 0, 7))


def cron_values(field: str, low: int, high: int) -> set[int]:
    """The values a cron field (numbers, ``*``, ``a-b``, ``/step``, lists) matches; ValueError if invalid."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first_text, last_text = span.split("-", 1)
            first, last = int(first_text), int(last_text)
        else:
            first = int(span)
            last = high if step_text else first
        if step < 1 or not low <= first <= last <= high:
            raise ValueError(f"cron field {field!r}: {part!r} is outside {low}-{high} or has a step below 1")
        values.update(range(first, last + 1, step))
    return values


def parse_schedule(text: str) -> tuple[set[int], set[int], set[int]]:
    """``"minute hour weekday"`` (cron fields) as the sets of matching values."""
    parts = text.split()
    if len(parts) != len(FIELDS):
        raise ValueError(f"schedule {text!r}: expected three cron fields (minute hour weekday)")
    minutes, hours, weekdays = (cron_values(p, lo, hi) for p, (_, lo, hi) in zip(parts, FIELDS, strict=True))
    return minutes, hours, {day % 7 for day in weekdays}


def due(schedule: tuple[set[int], set[int], set[int]], t: time.struct_time) -> bool:
    """Does minute ``t`` (UTC) match the schedule? cron's weekday: 0 is Sunday (tm_wday: 0 is Monday)."""
    minutes, hours, weekdays = schedule
    return t.tm_min in minutes and t.tm_hour in hours and (t.tm_wday + 1) % 7 in weekdays


def repos_without_full_backup(info: list[dict], stanza: str, repos: int) -> list[int]:
    """Repository numbers (1..repos) with no full backup in ``pgbackrest --output=json info``."""
    entry = next((s for s in info if s.get("name") == stanza), {})
    have = {
        (b.get("database") or {}).get("repo-key")
        for b in entry.get("backup", [])
        if b.get("type") == "full" and not b.get("error")
    }
    return [n for n in range(1, repos + 1) if n not in have]


def stanza_ok(info: list[dict], stanza: str) -> bool:
    """Does the stanza exist in every repository? (status 0 ok, 2 no valid backups yet)"""
    entry = next((s for s in info if s.get("name") == stanza), None)
    return entry is not None and all((r.get("status") or {}).get("code") in (0, 2) for r in entry.get("repo", []))


class Sidecar:
    def __init__(self, args: argparse.Namespace, run: Callable[[Sequence[str], float], subprocess.CompletedProcess]):
        self.args = args
        self.run = run
        self.pgbackrest = shlex.split(args.pgbackrest)
        self.initialised = False

    def log(self, message: str) -> None:
        print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), message, flush=True)

    def leads(self) -> bool:
        """Patroni's GET /primary: 200 on the leader only (no authentication needed)."""
        try:
            with urllib.request.urlopen(self.args.api_url + "/primary", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def command(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess | None:
        try:
            result = self.run(argv, timeout)
        except (subprocess.SubprocessError, OSError) as exc:
            self.log(f"{shlex.join(argv)}: {exc}")
            return None
        if result.returncode != 0:
            self.log(f"{shlex.join(argv)}: exit {result.returncode}: {(result.stderr or '').strip()[-2000:]}")
        return result

    def initialise(self) -> None:
        """On the leader, once: the stanza, then a first full backup into each repository without one."""
        if self.initialised or not self.leads():
            return
        info = self.command([*self.pgbackrest, "--output=json", "info"], 300)
        if info is None or info.returncode != 0:
            return
        try:
            parsed = json.loads(info.stdout)
        except ValueError:
            self.log("pgbackrest info: no JSON on stdout")
            return
        if not stanza_ok(parsed, self.args.stanza):
            self.log(f"creating stanza {self.args.stanza}")
            created = self.command([*self.pgbackrest, "stanza-create"], 600)
            if created is None or created.returncode != 0:
                return
        for repo in repos_without_full_backup(parsed, self.args.stanza, self.args.repos):
            self.log(f"repo{repo} has no full backup: taking one")
            taken = self.command(
                [*self.pgbackrest, f"--repo={repo}", "--type=full", "backup"], self.args.backup_timeout
            )
            if taken is None or taken.returncode != 0:
                return
        self.initialised = True
        self.log("stanza and a full backup in every repository: ready")

    def scheduled_backup(self) -> None:
        self.log("scheduled full backup")
        result = self.command(["sh", self.args.backup_script, "full"], self.args.backup_timeout)
        if result is not None:
            self.log((result.stdout or "").strip() or f"backup script exit {result.returncode}")

    def refresh_metrics(self) -> None:
        self.command([sys.executable, self.args.metrics_script], 300)

    def tick(self, now: time.struct_time, refresh: bool) -> None:
        """One minute of work: the schedule first, then the stanza and first backups, then the metrics."""
        if self.args.schedule is not None and due(self.args.schedule, now):
            self.scheduled_backup()
        self.initialise()
        if refresh:
            self.refresh_metrics()


def serve(port: int, metrics_file: Path) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path == "/health":
                body, status = b"ok\n", 200
            elif self.path == "/metrics":
                try:
                    body, status = metrics_file.read_bytes(), 200
                except OSError:
                    body, status = b"", 200  # no metrics yet: an empty scrape, the target still up
            else:
                body, status = b"not found\n", 404
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # the base class's signature
            pass  # probes and scrapes every few seconds: not worth a log line

    server = http.server.ThreadingHTTPServer(("", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_command(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--schedule", required=True, help='cron fields "minute hour weekday" (UTC)')
    p.add_argument("--interval", type=int, default=300, help="seconds between metrics refreshes")
    p.add_argument("--port", type=int, required=True, help="port of /metrics and /health")
    p.add_argument("--api-url", required=True, help="Patroni's REST API in this pod")
    p.add_argument("--pgbackrest", required=True, help="pgbackrest with --config and --stanza")
    p.add_argument("--stanza", required=True)
    p.add_argument("--repos", type=int, required=True, help="number of repositories")
    p.add_argument("--backup-script", required=True)
    p.add_argument("--metrics-script", required=True)
    p.add_argument("--metrics-file", type=Path, required=True)
    p.add_argument("--backup-timeout", type=int, default=6 * 3600)
    p.add_argument("--make-dirs", nargs="*", type=Path, default=[], help="directories to create (emptyDir layout)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for directory in args.make_dirs:
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    serve(args.port, args.metrics_file)
    sidecar = Sidecar(args, run_command)
    try:
        args.schedule = parse_schedule(args.schedule)
    except ValueError as exc:
        # no scheduled backup (PostgresBackupTooOld will say so), but the
        # metrics go on: exiting would make the pod unready, a database outage
        sidecar.log(f"NO SCHEDULED BACKUPS: {exc}")
        args.schedule = None
    sidecar.log(f"serving :{args.port}, backups on the schedule, metrics every {args.interval} s")
    last_refresh = None
    while True:
        started = time.monotonic()
        refresh = last_refresh is None or started - last_refresh >= args.interval
        try:
            sidecar.tick(time.gmtime(), refresh)
        # a bug here must not restart the container: the pod would go unready
        except Exception as exc:
            sidecar.log(f"unexpected error, retrying in a minute: {exc!r}")
        if refresh:
            last_refresh = started
        # wake at the start of the next minute (wall clock: the schedule is one)
        time.sleep(60 - time.time() % 60 + 0.5)


if __name__ == "__main__":
    main()
