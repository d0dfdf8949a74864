"""Run the whole control plane in one terminal: web (gunicorn), Celery worker and Celery beat.

Used by ``make up`` on the embedded default (SQLite + filesystem broker). Ctrl-C, or any one
process dying, stops all of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class Command(BaseCommand):
    help = "Run web + Celery worker + beat together until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("FACTORY_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("FACTORY_PORT", "8000")))

    def handle(self, *args, host, port, **options):
        if not _port_free(host, port):
            raise CommandError(f"port {port} on {host} is in use; set FACTORY_PORT=<free port>")
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            folder = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}).get(key)
            if folder:
                os.makedirs(folder, exist_ok=True)
        bin_dir = os.path.dirname(sys.executable)
        processes = {
            "web": [
                os.path.join(bin_dir, "gunicorn"),
                "factory.wsgi",
                "--bind",
                f"{host}:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--access-logfile",
                "-",
            ],
            "worker": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "factory",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--without-gossip",
                "--without-mingle",
            ],
            "beat": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "factory",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(settings.VAR_DIR / "celerybeat-schedule"),
            ],
        }
        running: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, argv in processes.items():
            running[name] = subprocess.Popen(argv, start_new_session=True)
        base = f"http://{host}:{port}"
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        broker = settings.CELERY_BROKER_URL.split("://")[0]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nAI factory control plane is starting (database: {database}, broker: {broker})\n"
                f"  Admin UI      {base}/admin/   (admin / factory-demo)\n"
                f"  REST API      {base}/api/v1/\n"
                f"  API docs      {base}/api/docs/\n"
                f"  Health        {base}/healthz  {base}/readyz\n"
                f"  Token         .venv/bin/python manage.py issue_token admin\n"
                "Press Ctrl-C to stop.\n"
            )
        )
        exit_code = 0
        try:
            while not stopping:
                for name, proc in running.items():
                    if proc.poll() is not None:
                        self.stderr.write(
                            f"{name} exited with {proc.returncode}; stopping everything"
                        )
                        exit_code = 1
                        stopping = True
                        break
                time.sleep(0.5)
        finally:
            for proc in running.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in running.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.stdout.write("Stopped web, worker and beat.")
        if exit_code:
            raise CommandError("a process of the control plane died")
