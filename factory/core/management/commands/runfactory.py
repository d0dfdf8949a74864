"""Run the whole control plane in one terminal: web (gunicorn), a Celery worker (on every
queue: workflow steps, scheduled jobs, telemetry, webhooks) and Celery beat, plus, for each
site with UltraServers, its simulated hardware and a site agent.

Used by ``make up`` on the embedded default (SQLite + filesystem broker). Ctrl-C, or any one
process dying, stops all of them.
"""

from __future__ import annotations

import json
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Command(BaseCommand):
    help = "Run web + Celery worker + beat together until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("FACTORY_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("FACTORY_PORT", "8000")))
        parser.add_argument(
            "--no-sim", action="store_true", help="no simulated hardware and site agents"
        )
        parser.add_argument(
            "--fault-scale",
            type=float,
            default=float(os.environ.get("FACTORY_SIM_FAULT_SCALE", "300")),
            help="multiply HARDWARE.md's fault rates in the simulators (a demo sees faults)",
        )

    def _simulated_sites(self, base: str, fault_scale: float) -> dict[str, tuple[list, dict]]:
        """Per site with servers: a simulator (its layout exported from inventory) and an agent
        with a fresh credential."""
        from io import StringIO

        from django.core.management import call_command

        from factory.inventory.models import Site
        from factory.telemetry.layout import site_layout

        folder = settings.VAR_DIR / "sim"
        folder.mkdir(parents=True, exist_ok=True)
        processes = {}
        # The demo's firmware images (load_demo_fleet writes them): served on loopback for the
        # agents, which fetch each image and check its signed digest before flashing.
        images, image_args = settings.VAR_DIR / "firmware", []
        if images.is_dir():
            image_port = _free_port()
            processes["firmware"] = (
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    str(images),
                    str(image_port),
                ],
                {},
            )
            image_args = ["--image-base", f"http://127.0.0.1:{image_port}"]
        for seed, site in enumerate(Site.objects.order_by("code"), start=1):
            layout = site_layout(site)
            if not layout["racks"]:
                continue
            layout_path = folder / f"{site.code}.json"
            devices_path = folder / f"{site.code}-devices.json"
            layout_path.write_text(json.dumps(layout))
            devices_path.unlink(missing_ok=True)
            out = StringIO()
            call_command(
                "issue_agent_token", site.code, "--name", "demo-agent", "--replace", stdout=out
            )
            processes[f"sim-{site.code}"] = (
                [
                    sys.executable,
                    "-m",
                    "factory.simulator",
                    "--layout",
                    str(layout_path),
                    "--devices-out",
                    str(devices_path),
                    "--seed",
                    str(seed),
                    "--fault-scale",
                    str(fault_scale),
                    "--log-level",
                    "WARNING",
                ],
                {},
            )
            processes[f"agent-{site.code}"] = (
                [
                    sys.executable,
                    "-m",
                    "factory.siteagent",
                    "--control-plane",
                    base,
                    "--devices",
                    str(devices_path),
                    "--outbox",
                    str(folder / f"{site.code}-outbox.sqlite3"),
                    # The embedded simulator serves plain HTTP on loopback (a demo, not a site).
                    "--allow-plain-http",
                    *image_args,
                    "--log-level",
                    "WARNING",
                ],
                {"FACTORY_AGENT_TOKEN": out.getvalue().strip()},
            )
        return processes

    def handle(self, *args, host, port, no_sim, fault_scale, **options):
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
                # Above the per-process caps on watch streams (EVENTS_WATCH_MAX_PER_PROCESS, 4)
                # and waiting agent long-polls (AGENT_CLAIM_WAITS_MAX_PER_PROCESS, 2), so they
                # never take every thread from the rest of the API.
                "--threads",
                "8",
                "--access-logfile",
                "-",
                # Liveness outside the request threads when WEB_HEALTH_PORT is set.
                "-c",
                "python:factory.core.gunicorn_conf",
            ],
            # Every concern's queue: workflow steps, scheduled jobs, telemetry maintenance and
            # webhook deliveries (the compose file gives each workers of its own; here one
            # process keeps the demo small).
            "worker": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "factory",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "-Q",
                ",".join(settings.CELERY_TASK_QUEUES),
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
        simulated = {} if no_sim else self._simulated_sites(base, fault_scale)
        for name, (argv, env) in simulated.items():
            if name.startswith("agent-"):
                # The agent reads the device list its simulator writes once it is listening.
                devices = argv[argv.index("--devices") + 1]
                for _ in range(100):
                    if os.path.exists(devices):
                        break
                    time.sleep(0.1)
            running[name] = subprocess.Popen(
                argv, start_new_session=True, env={**os.environ, **env}
            )
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        broker = settings.CELERY_BROKER_URL.split("://")[0]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nAI factory control plane is starting (database: {database}, broker: {broker})\n"
                f"  Console       {base}/console/ (admin / factory-demo)\n"
                f"  Admin UI      {base}/admin/   (admin / factory-demo)\n"
                f"  REST API      {base}/api/v1/\n"
                f"  API docs      {base}/api/docs/\n"
                f"  Health        {base}/healthz  {base}/readyz\n"
                f"  Simulated     {', '.join(n for n in simulated if n.startswith('sim-'))}"
                " (hardware + a site agent each)\n"
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
            self.stdout.write("Stopped web, worker, beat, simulators and agents.")
        if exit_code:
            raise CommandError("a process of the control plane died")
