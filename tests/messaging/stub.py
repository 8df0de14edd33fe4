"""A real HTTP server on loopback standing in for each provider.

Each test gives it a ``respond(request) -> Reply`` function that checks the request the way
the provider would (auth, form fields, signature) and answers like the provider. Every
request is recorded with its raw query and body bytes, so a test can recompute a signature
over exactly what went over the wire.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@dataclass
class Recorded:
    method: str
    path: str
    query: str  # raw, as sent
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def json(cls, status: int, text: str, **headers: str) -> Reply:
        return cls(status, text, {"Content-Type": "application/json", **headers})


Responder = Callable[[Recorded], Reply]


class StubServer:
    """A ThreadingHTTPServer on 127.0.0.1 with a free port; answers via ``respond``."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[Recorded] = []
        self.errors: list[BaseException] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Recorded(self.command, parts.path, parts.query,
                                   dict(self.headers.items()), body)
                stub.requests.append(request)
                try:
                    reply = stub.respond(request)
                except AssertionError as exc:  # a check failed: make the test see it
                    stub.errors.append(exc)
                    reply = Reply(599, f"stub check failed: {exc}")
                if reply.delay_s:
                    threading.Event().wait(reply.delay_s)
                payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (a timeout test)
                    pass

            do_GET = _handle  # noqa: N815
            do_POST = _handle  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits for the next poll, once per test.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def check(self) -> None:
        """Re-raise the first check that failed inside the server thread."""
        if self.errors:
            raise self.errors[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url() -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    return f"http://127.0.0.1:{free_port()}"
