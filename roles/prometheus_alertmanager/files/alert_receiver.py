#!/usr/bin/python3
"""hastack lab alert receiver: an Alertmanager webhook that records every notification.

Each POST body (Alertmanager's webhook JSON) is appended to the output file as
one JSON line: {"received_at": <Unix seconds>, "notification": <body>}, so a
test can prove that an alert was delivered, and when. GET /-/healthy answers
200. Python standard library only; runs as a systemd unit like every
lab daemon.

    alert_receiver.py --listen 198.18.0.20:9095 --output /var/lib/.../notifications.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 4 * 1024 * 1024


def make_handler(output: Path, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hastack-alert-receiver/1"

        def _answer(self, code: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/-/healthy":
                self._answer(200, "OK")
            else:
                self._answer(404, "not found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._answer(400, f"body length {length} not in 1..{MAX_BODY}")
                return
            try:
                notification = json.loads(self.rfile.read(length))
            except ValueError as exc:
                self._answer(400, f"body is not JSON: {exc}")
                return
            line = json.dumps({"received_at": time.time(), "notification": notification}, sort_keys=True)
            with lock, output.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._answer(200, "recorded")

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="address:port to listen on")
    parser.add_argument("--output", required=True, type=Path, help="JSON-lines file to append to")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer((host, int(port)), make_handler(args.output, threading.Lock()))
    sys.stderr.write(f"listening on {host}:{server.server_port}, recording to {args.output}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
