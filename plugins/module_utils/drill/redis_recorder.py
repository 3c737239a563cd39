"""The Redis recorder: writer + sampler for the length of a drill, then the read-back.

Same raw JSON as :mod:`recorder` (``format: hastack.drill.raw/1``, read by
:mod:`analysis` and :mod:`report` unchanged); only ``config`` differs::

    config   {master_name, sentinels [{name, host, port}], members [{name, host, port}],
              key, interval_ms, sample_interval_ms, write_timeout_s, sample_timeout_s,
              sentinel_timeout_s, max_duration_s, stop_file, events_file}

``writer.attempts[].server`` is the address of the master that acknowledged
(the host the sentinels named), ``readback.ids`` every id in the run's list on
the master the sentinels name at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ansible_collections.hastack.ha.plugins.module_utils.drill.clock import Clock
from ansible_collections.hastack.ha.plugins.module_utils.drill.fileio import write_json
from ansible_collections.hastack.ha.plugins.module_utils.drill.recorder import (
    RAW_FORMAT,
    EventTail,
    RecorderError,
    wait_for_stop,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.redis_sampler import (
    RedisClusterSampler,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.redis_writer import (
    RedisWriter,
    SentinelTarget,
    connect_master,
    discover_master,
    read_back_ids,
    run_key,
    short_error,
)
from ansible_collections.hastack.ha.plugins.module_utils.redis_sentinel import (
    Credentials,
    Endpoint,
    RedisError,
)


@dataclass
class RedisRecorderConfig:
    master_name: str
    sentinels: list[Endpoint]
    members: list[Endpoint]
    run_id: str
    output: str
    stop_file: str
    password: str | None = None
    sentinel_password: str | None = None
    username: str | None = None
    interval_s: float = 0.02
    sample_interval_s: float = 0.2
    write_timeout_s: float = 1.0
    sample_timeout_s: float = 1.0
    sentinel_timeout_s: float = 0.5
    max_duration_s: float = 600.0
    events_file: str | None = None
    readback_timeout_s: float = 30.0
    poll_s: float = 0.1

    def target(self) -> SentinelTarget:
        return SentinelTarget(
            tuple(self.sentinels),
            self.master_name,
            Credentials(self.password, self.username),
            Credentials(self.sentinel_password),
        )


def _endpoints(items: list[Endpoint]) -> list[dict[str, Any]]:
    return [{"name": e.label, "host": e.host, "port": e.port} for e in items]


def _prepare(config: RedisRecorderConfig) -> None:
    """Check the sentinels name a master that answers, retrying like the read-back."""
    target = config.target()
    deadline = time.monotonic() + config.readback_timeout_s
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            host, port, _ = discover_master(target, config.sentinel_timeout_s)
            connect_master(target, host, port, config.write_timeout_s).close()
            return
        except RedisError as ex:
            last = short_error(ex)
        time.sleep(1)
    raise RecorderError(
        f"no master reachable through the sentinels within {config.readback_timeout_s:g} s "
        f"before the drill started ({last}); check it is healthy before disrupting it"
    )


def read_back(config: RedisRecorderConfig, clock: Clock) -> dict[str, Any]:
    """Every id of the run on the current master, retrying for ``readback_timeout_s``."""
    target = config.target()
    deadline = time.monotonic() + config.readback_timeout_s
    attempts = 0
    last = None
    while True:
        attempts += 1
        try:
            ids, server = read_back_ids(target, config.run_id, timeout_s=5.0)
            return {
                "ok": True,
                "server": server,
                "ids": ids,
                "attempts": attempts,
                "error": None,
                "t": round(clock.now(), 6),
            }
        except RedisError as ex:
            last = short_error(ex)
        if time.monotonic() >= deadline:
            return {
                "ok": False,
                "server": None,
                "ids": [],
                "attempts": attempts,
                "error": f"no master answered within {config.readback_timeout_s:g} s: {last}",
                "t": round(clock.now(), 6),
            }
        time.sleep(1)


def record(config: RedisRecorderConfig) -> dict[str, Any]:
    """Run the whole recording; write ``config.output``; return the raw data."""
    if os.path.exists(config.stop_file):
        raise RecorderError(
            f"stop file {config.stop_file} exists before the drill started: remove it (the recorder would stop at once)"
        )
    _prepare(config)

    clock = Clock.start()
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    events = EventTail(config.events_file, clock)
    sampler = RedisClusterSampler(
        config.members,
        Credentials(config.password, config.username),
        interval_s=config.sample_interval_s,
        timeout_s=config.sample_timeout_s,
        clock=clock,
    )
    writer = RedisWriter(
        config.target(),
        config.run_id,
        interval_s=config.interval_s,
        write_timeout_s=config.write_timeout_s,
        connect_timeout_s=config.sentinel_timeout_s,
        clock=clock,
    )
    sampler.start()
    writer.start()
    try:
        reason = wait_for_stop(events, writer, clock, config.stop_file, config.max_duration_s, config.poll_s)
    finally:
        t_stop = clock.now()
        writer.stop()
        # Bounded by our own timeouts: the write in flight, one ask per sentinel, one connect.
        writer.join(2 * config.write_timeout_s + len(config.sentinels) * config.sentinel_timeout_s * 2 + 5)
        stuck_lanes = sampler.stop(3 * config.sample_timeout_s + 5)
        events.poll()

    readback = read_back(config, clock)
    raw = {
        "format": RAW_FORMAT,
        "run_id": config.run_id,
        "started_at": started_at,
        "anchor": clock.anchor(),
        "config": {
            "kind": "redis",
            "master_name": config.master_name,
            "sentinels": _endpoints(config.sentinels),
            "members": _endpoints(config.members),
            "key": run_key(config.run_id),
            "interval_ms": round(config.interval_s * 1000),
            "sample_interval_ms": round(config.sample_interval_s * 1000),
            "write_timeout_s": config.write_timeout_s,
            "sample_timeout_s": config.sample_timeout_s,
            "sentinel_timeout_s": config.sentinel_timeout_s,
            "max_duration_s": config.max_duration_s,
            "stop_file": config.stop_file,
            "events_file": config.events_file,
        },
        "writer": {
            "t_start": None if writer.t_started is None else round(writer.t_started, 6),
            "t_stop": round(writer.t_stopped if writer.t_stopped is not None else t_stop, 6),
            "fatal": writer.fatal,
            "stuck": writer.is_alive(),
            "attempts": [a.as_dict() for a in writer.attempts()],
        },
        "samples": {m: [s.as_dict() for s in rows] for m, rows in sampler.samples().items()},
        "sampler": {"fatal": sampler.fatal(), "stuck": stuck_lanes},
        "events": events.events,
        "stop": {"reason": reason, "t": round(t_stop, 6)},
        "readback": readback,
    }
    write_json(config.output, raw)
    return raw
