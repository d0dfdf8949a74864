"""gunicorn's hooks for the web tier (``gunicorn -c python:factory.core.gunicorn_conf``):
liveness answered outside the request worker pool.

``/healthz`` on the API's port waits for a free request thread like any request, so when every
thread is busy (long reports, a slow database, many event streams) it stops answering and a load
balancer or orchestrator restarts a replica that is only busy. With ``WEB_HEALTH_PORT`` set, the
gunicorn master answers ``GET /healthz`` on that port from a thread of its own: 200 while at
least one worker's heartbeat is fresh (gthread workers beat from their main loop, busy threads
or not), 503 when every worker is hung or gone. It knows nothing of the database (that is
``/readyz``, on the API's port): it says whether this process tree can serve at all.

Standard library only: the master does not load Django.
"""

from __future__ import annotations

import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Seconds without a heartbeat after which a worker counts as hung (gunicorn itself kills one
#: after --timeout, 30 s).
STALE_SECONDS = float(os.environ.get("WEB_HEALTH_STALE_SECONDS", "10"))


def workers_alive(arbiter: Any, stale_seconds: float = STALE_SECONDS) -> tuple[int, int]:
    """(workers with a fresh heartbeat, workers) of the arbiter. gunicorn stamps the heartbeat
    file with ``time.monotonic()``, so it is read against that clock."""
    workers = list(arbiter.WORKERS.values())
    now = time.monotonic()
    alive = 0
    for worker in workers:
        try:
            if now - worker.tmp.last_update() <= stale_seconds:
                alive += 1
        except (OSError, ValueError):  # its file closed: it is going
            continue
    return alive, len(workers)


def _handler(arbiter: Any) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/healthz":
                self._answer(404, {"status": 404, "code": "not_found", "message": "only /healthz"})
                return
            alive, total = workers_alive(arbiter)
            ok = alive > 0
            self._answer(
                200 if ok else 503,
                {"status": "ok" if ok else "unavailable", "workers_alive": alive, "workers": total},
            )

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # probes are not news
            return

    return Health


class _HealthServer(ThreadingHTTPServer):
    """The stdlib's threading HTTP server without its name lookup on bind.

    ``HTTPServer.server_bind`` calls ``socket.getfqdn``: a resolver call that takes libc's
    locks. The master forks its workers while this listener starts (and again whenever one is
    replaced); a worker forked while another thread holds such a lock inherits it held and
    hangs on its first lookup, as its first request did in CI."""

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def _bind(host: str, port: int, server: Any) -> _HealthServer | None:
    try:
        return _HealthServer((host, port), _handler(server))
    except OSError as exc:
        server.log.warning("liveness port %s:%s not free yet (%s)", host, port, exc)
        return None


def when_ready(server: Any) -> None:
    """gunicorn's hook, in the master once it listens and before it forks its workers: bind
    the health listener here, in the master's own thread, and serve it from a thread that only
    waits on its socket."""
    port = os.environ.get("WEB_HEALTH_PORT")
    if not port:
        return
    host = os.environ.get("WEB_HEALTH_HOST", "0.0.0.0")
    httpd = _bind(host, int(port), server)

    def serve(httpd: _HealthServer | None) -> None:
        # After a re-exec (USR2) the old master holds the port until it goes: keep trying,
        # never fail the new master's start over it.
        while httpd is None:
            time.sleep(1.0)
            httpd = _bind(host, int(port), server)
        httpd.serve_forever()

    if httpd is not None:
        server.log.info("liveness on %s:%s/healthz, outside the request workers", host, port)
    threading.Thread(target=serve, args=(httpd,), name="health", daemon=True).start()
