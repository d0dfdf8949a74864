"""Real processes for end-to-end tests: a private redis-server, gunicorn and Celery workers
against the test database. Each is started on a free port and stopped by its fixture; the shared
Redis and PostgreSQL are never restarted or flushed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def wait_for(check, timeout: float, what: str, process: Process | None = None) -> None:
    """Poll ``check`` until true. With ``process``: fail at once if it exits, and put the tail
    of its log in the error either way (CI keeps no temporary files)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if process is not None and not process.alive:
            raise RuntimeError(f"{what} exited ({process.proc.returncode}):\n{process.log_tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{process.log_tail()}" if process is not None else ""
            raise TimeoutError(f"{what} did not come up in {timeout}s{tail}")
        time.sleep(0.1)


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def until(check, timeout: float, what: str):
    """Poll ``check`` until it returns something truthy, and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def hint_sender(redis_url: str):
    """A Celery client sending as the control plane does (beat and the web tier), by the
    settings' routes, to the broker at ``redis_url`` (a private one)."""
    from celery import Celery

    client = Celery(broker=redis_url)
    client.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    client.conf.task_queues = settings.CELERY_TASK_QUEUES
    client.conf.task_routes = settings.CELERY_TASK_ROUTES
    return client


class Process:
    """A child process in its own session, so that a kill reaches its pool children too."""

    def __init__(self, args: list[str], env: dict, log: Path, pass_fds: tuple[int, ...] = ()):
        self.args, self.env, self.log_path, self.pass_fds = args, env, log, pass_fds
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "a")  # noqa: SIM115 - closed when the process is stopped
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=self.pass_fds,
        )
        self._log = log
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no acks, like a lost machine."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    @property
    def alive(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None


def site_simulator(layout: Path, devices: Path, log: Path, *extra: str) -> Process:
    """A site's simulated hardware from ``layout``, faults off, quick flashes; it writes its
    device list to ``devices`` for the agent."""
    return Process(
        [
            sys.executable,
            "-m",
            "factory.simulator",
            "--layout",
            str(layout),
            "--devices-out",
            str(devices),
            "--fault-scale",
            "0",
            "--flash-seconds",
            "2",
            "--flash-failure-rate",
            "0",
            "--tick",
            "0.5",
            *extra,
        ],
        dict(os.environ),
        log,
    ).start()


def site_agent(
    url: str, devices: Path, token: str, outbox: Path, log: Path, *extra: str
) -> Process:
    """A site agent reporting every second to the control plane at ``url``."""
    return Process(
        [
            sys.executable,
            "-m",
            "factory.siteagent",
            "--control-plane",
            url,
            "--devices",
            str(devices),
            "--outbox",
            str(outbox),
            "--interval",
            "1",
            "--allow-plain-http",  # the simulator serves http unless started with --tls
            *extra,
        ],
        {**os.environ, "FACTORY_AGENT_TOKEN": token},
        log,
    ).start()


def redis_process(port: int, log: Path) -> Process:
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = Process(
        [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        dict(os.environ),
        log,
    ).start()
    wait_for(
        lambda: socket.create_connection(("127.0.0.1", port), 1).close() is None, 15, "redis-server"
    )
    return process


def app_env(redis_url: str, **extra) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "factory.settings.test",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        **extra,
    }


def worker_process(
    env: dict,
    log: Path,
    name: str,
    concurrency: int = 2,
    queues: tuple[str, ...] | None = None,
) -> Process:
    """A Celery worker consuming ``queues``: by default every concern's (workflow steps,
    scheduled jobs, telemetry, webhooks; as the test settings name them), so that every hint
    a test sends is taken."""
    if queues is None:
        queues = tuple(settings.CELERY_TASK_QUEUES)  # every concern's
    return Process(
        [
            str(BIN / "celery"),
            "-A",
            "factory",
            "worker",
            "--loglevel",
            "warning",
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "-Q",
            ",".join(queues),
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
        log,
    ).start()


def beat_process(env: dict, log: Path, schedule: Path) -> Process:
    """Celery beat with the project's scheduler (the rows in the test database, behind the
    scheduler lease): several may run at once, as compose's replicas do."""
    return Process(
        [
            str(BIN / "celery"),
            "-A",
            "factory",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(schedule),
        ],
        env,
        log,
    ).start()


@contextmanager
def gunicorn_server(env: dict, log: Path, workers: int = 2, threads: int = 1, extra: tuple = ()):
    """gunicorn serving the test database (the test must be transactional to see its data), as
    (url, its master Process). ``threads`` > 1: the gthread worker (what ``make up`` runs).

    The listening socket is bound here and handed over (``--bind fd://N``): a port picked free
    and bound later by gunicorn can be taken meanwhile by any outgoing connection's ephemeral
    port, and then gunicorn gives up after its retries."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        server = Process(
            [
                str(BIN / "gunicorn"),
                "factory.wsgi",
                "--bind",
                f"fd://{listener.fileno()}",
                "--workers",
                str(workers),
                "--limit-request-line",
                "0",
                "--log-level",
                "warning",
                *(["--threads", str(threads)] if threads > 1 else []),
                *extra,
            ],
            env,
            log,
            pass_fds=(listener.fileno(),),
        ).start()
    finally:
        listener.close()  # gunicorn holds its own copy
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200,
            60,
            f"gunicorn (log {log})",
            process=server,
        )
        yield url, server
    finally:
        server.stop()  # before the test database is flushed


@contextmanager
def gunicorn(env: dict, log: Path, workers: int = 2, threads: int = 1, extra: tuple = ()):
    """:func:`gunicorn_server`, yielding only its url."""
    with gunicorn_server(env, log, workers, threads, extra) as (url, _server):
        yield url


def other_session(autocommit: bool = False):
    """Another PostgreSQL session on the test database (another worker's, an operator's): to
    hold a lock the code under test must meet."""
    import psycopg
    from django.db import connection

    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=autocommit,
    )
