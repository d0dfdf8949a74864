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


def when_ready(server: Any) -> None:
    """gunicorn's hook, in the master once it listens: start the health listener if asked."""
    port = os.environ.get("WEB_HEALTH_PORT")
    if not port:
        return
    host = os.environ.get("WEB_HEALTH_HOST", "0.0.0.0")

    def serve() -> None:
        # After a re-exec (USR2) the old master holds the port until it goes: keep trying,
        # never fail the new master's start over it.
        while True:
            try:
                httpd = ThreadingHTTPServer((host, int(port)), _handler(server))
                break
            except OSError as exc:
                server.log.warning("liveness port %s:%s not free yet (%s)", host, port, exc)
                time.sleep(1.0)
        httpd.daemon_threads = True
        server.log.info("liveness on %s:%s/healthz, outside the request workers", host, port)
        httpd.serve_forever()

    threading.Thread(target=serve, name="health", daemon=True).start()
