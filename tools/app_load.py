#!/usr/bin/env python3
"""Load through the app's load balancer: a benchmark, and drills under load.

    # requests/s and p50/p99 for cached reads and for writes (not a test)
    .venv/bin/python tools/app_load.py bench --url http://198.18.0.30:8080

    # load while a drill playbook breaks PostgreSQL or Redis; reports every 5xx
    # and where it fell against the drill's failover window
    .venv/bin/python tools/app_load.py drill --url http://198.18.0.30:8080 \\
        --playbook playbooks/drill_postgres.yml -e drill=kill

The load is asyncio + httpx: ``--concurrency`` workers, each paced to
``--rate / concurrency`` requests per second (0: as fast as they can), mixing
reads of a working set of items (cached after their first write) with writes
(PUT of an item of the set, or POST of a new one). Every request is recorded
with its wall-clock start, latency and status (or transport error).

    # load until a file appears, every request kept (playbooks/drill_zone.yml
    # starts it in the background and reads it back for its report)
    .venv/bin/python tools/app_load.py record --url http://198.18.0.30:8080 \\
        --stop-file /tmp/zone/stop --output /tmp/zone/app.json

    # sustained saturation: requests started at a fixed rate whatever the answers
    # take (open loop), the instances' /ready and breakers watched meanwhile
    .venv/bin/python tools/app_load.py saturate --url http://198.18.0.30:8080 \\
        --rate 800 --duration 60 --instance http://198.18.0.10:8080

``--read-miss-ratio F`` (drill, record, saturate): that fraction of the reads
asks for an id no item has, so it misses both cache tiers and reads PostgreSQL
(answered 404, not a failure; the X-Cache headers of the answers are counted).

An idempotent request (GET, PUT, DELETE) whose kept-alive connection closed
before any byte of the response is sent once more on a new connection, as Go's
net/http and urllib3 do; each such request counts in ``retried`` (and a
sample's last field), and a second failure is recorded as a failure.

Drill mode runs the drill playbook (the PostgreSQL/Redis drill engine writes
its own report with the disruption's events) while the load runs, keeps the
load ``--tail-s`` seconds after the playbook ends, and writes
``<out>/app-drill-<UTC>.json`` with: requests, 5xx and transport errors, the
first and last failure, the failover window from the drill's events
(disrupt_start .. new_leader), and the failures after the window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import glob
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Sample:
    t: float  # wall clock at start
    kind: str  # read | write
    latency: float
    status: int  # 0: transport error
    error: str | None = None
    retried: bool = False  # sent twice: the first connection closed before any response byte


IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def closed_unanswered(exc: httpx.HTTPError) -> bool:
    """The connection closed before any byte of the response: a kept-alive connection the
    server (or the load balancer) was closing as the request went out."""
    if isinstance(exc, httpx.WriteError):
        return True
    return isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)


async def send(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> tuple[httpx.Response, bool]:
    """One request; an idempotent one is sent once more, on a new connection, if its connection
    closed before any response byte (as Go's net/http and urllib3 do). Returns (response, retried);
    a second failure raises."""
    try:
        return await client.request(method, path, **kw), False
    except httpx.HTTPError as exc:
        if method not in IDEMPOTENT or not closed_unanswered(exc):
            raise
    return await client.request(method, path, **kw), True


@dataclass
class Load:
    url: str
    concurrency: int
    rate: float
    write_ratio: float
    items: int
    timeout: float
    read_miss_ratio: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    x_cache: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    async def prepare(self, client: httpx.AsyncClient) -> None:
        """Create the working set (its first write puts each item into the cache)."""
        for i in range(self.items):
            for attempt in range(30):  # a failover may be settling: retry a failed create for up to ~30 s
                try:
                    r = await client.post("/items", json={"name": f"load-{i}", "data": {"i": i}})
                    if r.status_code < 500:
                        break
                except httpx.TransportError:
                    if attempt == 29:
                        raise
                await asyncio.sleep(1)
            r.raise_for_status()
            self.ids.append(r.json()["id"])

    async def worker(self, client: httpx.AsyncClient, n: int) -> None:
        period = self.concurrency / self.rate if self.rate > 0 else 0.0
        rnd = random.Random(n)
        next_t = time.monotonic() + rnd.random() * period
        while not self.stop.is_set():
            if period:
                delay = next_t - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_t += period
            await self.one(client, rnd, n)

    def pick(self, rnd: random.Random, n: int) -> tuple[str, str, str, dict[str, Any]]:
        """(kind, method, path, request keywords): a write of an item of the set, a read of one,
        or (--read-miss-ratio) a read of an id no item has: it misses both cache tiers and reads
        PostgreSQL (404, not a failure; the answers' X-Cache headers are counted)."""
        if rnd.random() < self.write_ratio:
            item = rnd.choice(self.ids)
            return "write", "PUT", f"/items/{item}", {"json": {"name": f"load-{item}", "data": {"n": n}}}
        if self.read_miss_ratio and rnd.random() < self.read_miss_ratio:
            return "read", "GET", f"/items/{max(self.ids) + 1_000_000 + rnd.randrange(1_000_000_000)}", {}
        return "read", "GET", f"/items/{rnd.choice(self.ids)}", {}

    async def one(self, client: httpx.AsyncClient, rnd: random.Random, n: int) -> None:
        kind, method, path, kw = self.pick(rnd, n)
        t_wall, t0 = time.time(), time.monotonic()
        try:
            r, retried = await send(client, method, path, **kw)
            self.samples.append(Sample(t_wall, kind, time.monotonic() - t0, r.status_code, retried=retried))
            if "x-cache" in r.headers:
                self.x_cache[r.headers["x-cache"]] = self.x_cache.get(r.headers["x-cache"], 0) + 1
        except httpx.HTTPError as exc:
            self.samples.append(Sample(t_wall, kind, time.monotonic() - t0, 0, type(exc).__name__))

    async def run(self, duration: float | None, ready: threading.Event | None = None) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout, limits=limits) as client:
            await self.prepare(client)
            if ready:
                ready.set()
            if duration is not None:
                asyncio.get_running_loop().call_later(duration, self.stop.set)
            await asyncio.gather(*(self.worker(client, n) for n in range(self.concurrency)))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(samples: list[Sample], kind: str | None = None) -> dict[str, Any]:
    rows = [s for s in samples if kind is None or s.kind == kind]
    if not rows:
        return {"requests": 0}
    span = max(s.t + s.latency for s in rows) - min(s.t for s in rows)
    ok = [s.latency for s in rows if 200 <= s.status < 400]
    by_status: dict[str, int] = {}
    for s in rows:
        key = str(s.status) if s.status else f"error:{s.error}"
        by_status[key] = by_status.get(key, 0) + 1
    return {
        "requests": len(rows),
        "requests_per_s": round(len(rows) / span, 1) if span > 0 else None,
        "by_status": dict(sorted(by_status.items())),
        "p50_ms": round(percentile(ok, 0.50) * 1000, 2) if ok else None,
        "p99_ms": round(percentile(ok, 0.99) * 1000, 2) if ok else None,
        "max_ms": round(max(ok) * 1000, 2) if ok else None,
        # idempotent requests sent a second time: the first connection closed unanswered
        "retried": sum(1 for s in rows if s.retried),
    }


def failures(samples: list[Sample]) -> list[Sample]:
    """5xx answers and transport errors (what a user would call a failure)."""
    return [s for s in samples if s.status == 0 or s.status >= 500]


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


# -- bench -----------------------------------------------------------------------
def bench(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"url": args.url, "concurrency": args.concurrency, "duration_s": args.duration}
    for name, ratio in (("cached_reads", 0.0), ("writes", 1.0)):
        load = Load(args.url, args.concurrency, 0, ratio, args.items, args.timeout)
        # warm-up: connections, the working set in every instance's local tier
        asyncio.run(load.run(min(3.0, args.duration)))
        load.samples.clear()
        load.stop.clear()
        load.items = 0

        async def measured(load: Load = load) -> None:
            ids = list(load.ids)
            load.ids = ids
            limits = httpx.Limits(max_connections=load.concurrency, max_keepalive_connections=load.concurrency)
            async with httpx.AsyncClient(base_url=load.url, timeout=load.timeout, limits=limits) as client:
                asyncio.get_running_loop().call_later(args.duration, load.stop.set)
                await asyncio.gather(*(load.worker(client, n) for n in range(load.concurrency)))

        asyncio.run(measured())
        out[name] = summarize(load.samples)
        print(f"{name:13s} {json.dumps(out[name])}", flush=True)
    return out


# -- saturate --------------------------------------------------------------------
BREAKER_OPENED = re.compile(r'^\w*breaker_transitions_total\{[^}]*state="(?i:open)"[^}]*\}\s+([0-9.e+]+)', re.M)


async def watch_instances(urls: list[str], stop: asyncio.Event, timeout: float) -> dict[str, Any]:
    """Every second, each instance's /ready (status; any breaker its body reports open); at the
    start and the end, its /metrics (breaker transitions to open, summed over breakers)."""
    seen: dict[str, dict[str, Any]] = {u: {"ready": {}, "breaker_open_seen": 0, "polls": 0} for u in urls}

    async def opened(client: httpx.AsyncClient, url: str) -> float | None:
        try:
            text = (await client.get(url + "/metrics")).text
        except httpx.HTTPError:
            return None
        return sum(float(v) for v in BREAKER_OPENED.findall(text))

    async with httpx.AsyncClient(timeout=timeout) as client:
        before = {u: await opened(client, u) for u in urls}
        while not stop.is_set():
            for u in urls:
                try:
                    r = await client.get(u + "/ready")
                    key, body = str(r.status_code), r.text
                except httpx.HTTPError as exc:
                    key, body = f"error:{type(exc).__name__}", ""
                row = seen[u]
                row["polls"] += 1
                row["ready"][key] = row["ready"].get(key, 0) + 1
                if re.search(r'"state"\s*:\s*"open"', body, re.I):
                    row["breaker_open_seen"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        for u in urls:
            after = await opened(client, u)
            seen[u]["breaker_opened"] = None if after is None or before[u] is None else after - before[u]
    return seen


SHARD = 50  # connections per httpx client in saturate


def saturate(args: argparse.Namespace) -> dict[str, Any]:
    """Open-loop load: a request starts every 1/--rate s whatever the answers take (up to
    --max-in-flight at once; past that, a request due is counted as not sent), for --duration."""
    load = Load(args.url, 1, args.rate, args.write_ratio, args.items, args.timeout, args.read_miss_ratio)
    peak = {"in_flight": 0, "not_sent": 0}

    async def run() -> dict[str, Any]:
        # httpcore's pool scans every connection for every request: beyond ~50 connections
        # the client, not the app, sets the pace. So one client per SHARD connections.
        shards = -(-args.max_in_flight // SHARD)
        limits = httpx.Limits(max_connections=SHARD, max_keepalive_connections=SHARD)
        async with contextlib.AsyncExitStack() as stack:
            client = functools.partial(httpx.AsyncClient, base_url=args.url, timeout=args.timeout, limits=limits)
            clients = [await stack.enter_async_context(client()) for _ in range(shards)]
            busy = [0] * shards
            await load.prepare(clients[0])
            for _ in range(2):  # warm both cache tiers of every instance
                await asyncio.gather(*(clients[0].get(f"/items/{i}") for i in load.ids), return_exceptions=True)
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_instances(args.instance, stop, args.timeout))
            rnd, tasks = random.Random(0), set()

            async def one(n: int, shard: int) -> None:
                try:
                    await load.one(clients[shard], rnd, n)
                finally:
                    busy[shard] -= 1

            t0 = time.monotonic()
            for n in range(int(args.rate * args.duration)):
                delay = t0 + n / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if sum(busy) >= args.max_in_flight:
                    peak["not_sent"] += 1
                    continue
                shard = busy.index(min(busy))
                busy[shard] += 1
                peak["in_flight"] = max(peak["in_flight"], sum(busy))
                task = asyncio.create_task(one(n, shard))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent_s = time.monotonic() - t0
            await asyncio.gather(*tasks)
            stop.set()
            return {"sending_s": round(sent_s, 2), "instances": await watcher}

    t_start = time.time()
    watched = asyncio.run(run())
    fails = failures(load.samples)
    result: dict[str, Any] = {
        "url": args.url,
        "load": {
            "rate": args.rate,
            "duration_s": args.duration,
            "write_ratio": args.write_ratio,
            "read_miss_ratio": args.read_miss_ratio,
            "max_in_flight": args.max_in_flight,
            "timeout_s": args.timeout,
        },
        "started": iso(t_start),
        "loadavg_1m": os.getloadavg()[0],
        "sending_s": watched["sending_s"],
        "in_flight_peak": peak["in_flight"],
        "not_sent": peak["not_sent"],
        "summary": summarize(load.samples),
        "reads": summarize(load.samples, "read"),
        "writes": summarize(load.samples, "write"),
        "x_cache": load.x_cache,
        "answered_429": sum(1 for s in load.samples if s.status == 429),
        "failures_5xx": sum(1 for s in fails if s.status >= 500),
        "failures_transport": sum(1 for s in fails if s.status == 0),
        "instances": watched["instances"],
        "breaker_opened": any(
            (r.get("breaker_opened") or 0) > 0 or r["breaker_open_seen"] > 0 for r in watched["instances"].values()
        ),
    }
    out = Path(args.out) / f"app-saturate-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(t_start))}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    result["written"] = str(out)
    return result


# -- drill -----------------------------------------------------------------------
def start_load(args: argparse.Namespace) -> tuple[Load, threading.Thread]:
    """Create the working set, then keep loading in a thread until ``load.stop`` is set."""
    load = Load(args.url, args.concurrency, args.rate, args.write_ratio, args.items, args.timeout, args.read_miss_ratio)
    ready = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(load.run(None, ready)), daemon=True)
    thread.start()
    if not ready.wait(60):
        raise SystemExit("app_load: could not create the working set through the load balancer within 60 s")
    return load, thread


def drill_events(report_dir: Path) -> tuple[Path | None, dict[str, Any]]:
    """The drill engine's report (JSON) and its events by name (first of each)."""
    reports = sorted(p for p in glob.glob(str(report_dir / "*.json")))
    if not reports:
        return None, {}
    path = Path(reports[-1])
    report = json.loads(path.read_text())
    events: dict[str, Any] = {}
    stack: list[Any] = [report]
    while stack:  # the events list sits inside the report; find it wherever it is
        node = stack.pop()
        if isinstance(node, dict):
            if "event" in node and "t_wall" in node and isinstance(node["t_wall"], int | float):
                events.setdefault(node["event"], node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return path, events


def drill(args: argparse.Namespace) -> dict[str, Any]:
    report_dir = Path(args.out) / "raw" / f"app-drill-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    report_dir.mkdir(parents=True, exist_ok=True)
    load, thread = start_load(args)
    time.sleep(args.baseline_s)
    t_play = time.time()
    cmd = ["ansible-playbook", args.playbook, "-e", f"drill_report_dir={report_dir}"]
    for extra in args.e:
        cmd += ["-e", extra]
    play = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, timeout=args.playbook_timeout_s)
    t_play_end = time.time()
    time.sleep(args.tail_s)
    load.stop.set()
    thread.join(30)

    report_path, events = drill_events(report_dir)
    start = events.get("disrupt_start", {}).get("t_wall")
    recovered = events.get("new_leader", {}).get("t_wall")
    fails = failures(load.samples)
    after = [s for s in fails if recovered is not None and s.t > recovered]
    result: dict[str, Any] = {
        "playbook": " ".join(cmd),
        "playbook_rc": play.returncode,
        "drill_report": str(report_path) if report_path else None,
        "load": {
            "url": args.url,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "write_ratio": args.write_ratio,
            "read_miss_ratio": args.read_miss_ratio,
        },
        "requests": len(load.samples),
        "x_cache": load.x_cache,
        "summary": summarize(load.samples),
        "reads": summarize(load.samples, "read"),
        "writes": summarize(load.samples, "write"),
        "failures": len(fails),
        "failures_5xx": sum(1 for s in fails if s.status >= 500),
        "failures_transport": sum(1 for s in fails if s.status == 0),
        "failure_first": iso(min((s.t for s in fails), default=None)),
        "failure_last": iso(max((s.t + s.latency for s in fails), default=None)),
        "failure_span_s": round(max(s.t + s.latency for s in fails) - min(s.t for s in fails), 2) if fails else 0,
        "failover_window": {
            "disrupt_start": iso(start),
            "new_leader": iso(recovered),
            "seconds": round(recovered - start, 2) if start and recovered else None,
        },
        "failures_before_window": sum(1 for s in fails if start is not None and s.t + s.latency < start),
        "failures_after_window": len(after),
        "failures_after_window_last": iso(max((s.t + s.latency for s in after), default=None)),
        # seconds from the end of the window to the last failure after it (0: none after)
        "failures_after_window_s": round(max(s.t + s.latency for s in after) - recovered, 2) if after else 0.0,
        "failures_after_window_by_kind": {k: sum(1 for s in after if s.kind == k) for k in ("read", "write")},
        "failed_reads": sum(1 for s in fails if s.kind == "read"),
        "failed_writes": sum(1 for s in fails if s.kind == "write"),
        "load_window": {
            "start": iso(load.samples[0].t) if load.samples else None,
            "playbook": iso(t_play),
            "playbook_end": iso(t_play_end),
        },
    }
    out = Path(args.out) / f"app-drill-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(t_play))}.json"
    out.write_text(json.dumps(result, indent=2))
    result["written"] = str(out)
    if play.returncode != 0:
        sys.stderr.write(play.stdout[-4000:] + play.stderr[-2000:])
    return result


# -- record ------------------------------------------------------------------------
def record(args: argparse.Namespace) -> dict[str, Any]:
    """Load until --stop-file exists (or --max-s); write every request to --output."""
    stop_file = Path(args.stop_file)
    load, thread = start_load(args)
    t_start = time.time()
    if args.ready_file:
        Path(args.ready_file).touch()
    deadline = time.monotonic() + args.max_s
    while not stop_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    load.stop.set()
    thread.join(args.timeout + 5)
    samples = sorted(load.samples, key=lambda s: s.t)
    result: dict[str, Any] = {
        "format": "hastack-app-load/1",
        "url": args.url,
        "load": {
            "concurrency": args.concurrency,
            "rate": args.rate,
            "write_ratio": args.write_ratio,
            "read_miss_ratio": args.read_miss_ratio,
        },
        "started_at": t_start,
        "stopped_at": time.time(),
        "stopped_by": "stop_file" if stop_file.exists() else "max_s",
        "summary": summarize(samples),
        "x_cache": load.x_cache,
        # [wall-clock start, kind, latency s, HTTP status (0: transport error), error, retried (0/1)]
        "samples": [[round(s.t, 4), s.kind, round(s.latency, 4), s.status, s.error, int(s.retried)] for s in samples],
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))
    return {k: v for k, v in result.items() if k != "samples"} | {"written": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("bench", "drill", "record", "saturate"):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True, help="the load balancer, e.g. http://198.18.0.30:8080")
        p.add_argument("--concurrency", type=int, default=16 if name == "bench" else 8)
        p.add_argument("--items", type=int, default=200, help="working set (created first)")
        p.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
        p.add_argument("--out", default=str(REPO / "reports"))
    b = sub.choices["bench"]
    b.add_argument("--duration", type=float, default=15.0, help="seconds per measurement")
    d = sub.choices["drill"]
    d.add_argument("--playbook", required=True)
    d.add_argument("-e", action="append", default=[], help="extra vars for the playbook (repeatable)")
    d.add_argument("--rate", type=float, default=100.0, help="requests per second in total")
    d.add_argument("--write-ratio", type=float, default=0.2)
    d.add_argument("--baseline-s", type=float, default=3.0)
    d.add_argument("--tail-s", type=float, default=10.0, help="load kept after the playbook ended")
    d.add_argument("--playbook-timeout-s", type=float, default=900)
    r = sub.choices["record"]
    r.add_argument("--stop-file", required=True, help="the load stops when this file exists")
    r.add_argument("--output", required=True, help="JSON file: every request and a summary")
    r.add_argument("--max-s", type=float, default=1800, help="stop anyway after this many seconds")
    r.add_argument("--ready-file", help="touched once the working set exists and the load runs")
    r.add_argument("--rate", type=float, default=60.0, help="requests per second in total")
    r.add_argument("--write-ratio", type=float, default=0.2)
    for name in ("drill", "record", "saturate"):
        sub.choices[name].add_argument(
            "--read-miss-ratio",
            type=float,
            default=0.0,
            help="fraction of reads that ask for an id no item has: they miss both cache tiers and read PostgreSQL",
        )
    t = sub.choices["saturate"]
    t.add_argument("--rate", type=float, required=True, help="requests started per second, whatever the answers take")
    t.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    t.add_argument("--write-ratio", type=float, default=0.2)
    t.add_argument("--max-in-flight", type=int, default=400, help="past this, a request due is counted as not sent")
    t.add_argument(
        "--instance",
        action="append",
        default=[],
        help="an app instance's own URL (repeatable): its /ready and breakers are watched during the load",
    )
    args = parser.parse_args(argv)
    os.chdir(REPO)
    result = {"bench": bench, "drill": drill, "record": record, "saturate": saturate}[args.mode](args)
    print(json.dumps(result, indent=2))
    if args.mode == "drill":
        return 0 if result["playbook_rc"] == 0 else 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
