"""``python -m hastack_app``: validate the environment, then serve with uvicorn."""

from __future__ import annotations

import os
import sys

import uvicorn

from .config import ConfigError, load_config
from .logs import setup_logging
from .main import create_app


def main() -> int:
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        print(f"hastack_app: configuration error: {exc}", file=sys.stderr)
        return 2
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
    sys.exit(main())
