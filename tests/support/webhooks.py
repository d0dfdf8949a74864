"""A real webhook receiver for tests: an HTTP(S) server in a thread of the test process, on a
free port. It records every request and answers from a script; ``HOLD`` keeps a request
waiting (a receiver that is slow, or whose caller dies mid-call)."""

from __future__ import annotations

import hashlib
import hmac
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: A scripted answer that keeps the request open until ``Receiver.release`` is set.
HOLD = "hold"
#: A scripted answer sent one byte at a time, ``Receiver.drip_seconds`` apart (a receiver that
#: never trips a read timeout, yet never finishes), until ``release`` or the caller is gone.
DRIP = "drip"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def delivery(self) -> str:
        return self.headers["X-Factory-Delivery"]


def signature_ok(secret: str, received: Received) -> bool:
    """A receiver's check, written from the README and not from the code that signs:
    HMAC-SHA256 of ``<X-Factory-Timestamp>.<raw body>`` with the secret."""
    timestamp = received.headers["X-Factory-Timestamp"].encode()
    expected = hmac.new(secret.encode(), timestamp + b"." + received.body, hashlib.sha256)
    return hmac.compare_digest(
        "sha256=" + expected.hexdigest(), received.headers["X-Factory-Signature-256"]
    )


class Receiver:
    """Answers each POST with the next scripted status (an int, ``HOLD``, or ``(status,
    headers)``), then with ``default``."""

    def __init__(
        self, script=(), default: int = 200, host: str = "127.0.0.1", reply: bytes | None = None
    ):
        self.script = deque(script)
        self.default = default
        self.reply = reply  # the body of every answer; None: "ok", or "not now" for a non-2xx
        self.drip_seconds = 0.5
        self.dripped = threading.Event()  # a dripping answer has ended
        self.requests: list[Received] = []
        self.arrived = threading.Event()  # a request is being held
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    answer = receiver.script.popleft() if receiver.script else receiver.default
                if answer == HOLD:
                    receiver.arrived.set()
                    receiver.release.wait(60)
                    answer = 200
                if answer == DRIP:
                    self.drip(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    return
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                reply = receiver.reply
                if reply is None:
                    reply = b"ok" if 200 <= status < 300 else b"not now"
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:  # the caller is gone
                    pass

            def drip(self, raw: bytes) -> None:
                self.close_connection = True
                try:
                    for byte in raw:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        if receiver.release.wait(receiver.drip_seconds):
                            break
                except OSError:  # the caller gave up
                    pass
                finally:
                    receiver.dripped.set()

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def use_tls(self, cert: Path, key: Path) -> Receiver:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https"
        return self

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
