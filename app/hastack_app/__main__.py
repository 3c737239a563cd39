"""``python -m hastack_app``: validate the environment, then serve with uvicorn.

``python -m hastack_app migrate``: bring the database's schema to this app's
version (hastack_app.schema) and print what was done as one JSON line; run
once per deployment, before the instances start (the role, the Kubernetes Job).
"""

from __future__ import annotations

import json
import os
import sys

import uvicorn

from .config import ConfigError, load_config
from .logs import setup_logging
from .main import create_app


def main(argv: list[str]) -> int:
    if argv not in ([], ["migrate"]):
        print(f"usage: python -m hastack_app [migrate]; got {' '.join(argv)!r}", file=sys.stderr)
        return 2
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        print(f"hastack_app: configuration error: {exc}", file=sys.stderr)
        return 2
    if argv == ["migrate"]:
        import psycopg

        from .schema import migrate

        try:
            print(json.dumps(migrate(config.db_conninfo())))
        except psycopg.Error as exc:
            print(f"hastack_app: migrate failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0
    setup_logging(config.log_level, config.instance)
    uvicorn.run(
        create_app(config),
        host=config.listen_host,
        port=config.listen_port,
        log_config=None,
        access_log=False,
        # SIGTERM: stop accepting, finish what is in flight (rolling restarts)
        timeout_graceful_shutdown=10,
        # idle connections: HAProxy (or a cloud load balancer) must close
        # them first; an app that closes one as a request arrives on it makes
        # the balancer drop the client's connection without an answer
        timeout_keep_alive=config.keepalive_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
