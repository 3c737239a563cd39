"""An HTTP/1.1 server on loopback that loses the keep-alive race on purpose.

It answers the first request of each connection and closes the connection,
unanswered, when a second request arrives on it: what a client (or HAProxy)
sees when the server closes an idle connection just as a request is sent on it.
Shared by the tests of the role's haproxy.cfg and of tools/app_load.py.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter


class ClosingBackend:
    """HTTP/1.1 on loopback: answers a connection's first request, closes it unanswered on the second."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answered: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            buf = b""
            for n in range(2):
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = dict(h.lower().partition(":")[::2] for h in lines[1:])
                length = int(headers.get("content-length", 0))
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                key = f"{method} {path}"
                if n == 1 and path != "/ready":
                    self.dropped[key] += 1  # as uvicorn closing an idle connection as the request arrives
                    return
                self.answered[key] += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()
