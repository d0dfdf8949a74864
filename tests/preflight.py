"""Before the suite: what the tests need beyond Python packages is here, or said in one line.

- PostgreSQL and Redis must be reachable (the tests talk to real ones); if not, one line names
  the command that starts each.
- Debian's Chromium (the console's browser tests: Playwright cannot download a browser here),
  promtool (Debian's ``prometheus``: the /metrics exposition test) and nginx (the compose
  file's front, tried before gunicorn) are installed with apt-get when missing and we are root;
  otherwise one line says how.

So ``make test`` alone passes on a fresh machine, and CI needs nothing that it lacks.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from urllib.parse import urlparse

SERVICES = {
    "PostgreSQL": (
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/factory"),
        5432,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "Redis": (
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    ),
}

# (what the tests run, the Debian package that brings it)
SYSTEM_TOOLS = [
    ("/usr/bin/chromium", "chromium"),
    ("promtool", "prometheus"),
    ("/usr/sbin/nginx", "nginx"),  # the front's configuration, tried (test_front_slow_clients)
]


def unreachable_services() -> list[str]:
    """One line per service the tests cannot reach, naming the command that starts it."""
    lines = []
    for name, (url, default_port, start) in SERVICES.items():
        parsed = urlparse(url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as exc:
            lines.append(
                f"{name} is not reachable at {host}:{port} ({exc.strerror or exc}); "
                f"start it with: {start}"
            )
    return lines


def missing_packages() -> list[str]:
    return [package for tool, package in SYSTEM_TOOLS if shutil.which(tool) is None]


def install(packages: list[str]) -> bool:
    """apt-get install ``packages`` when we may (root, apt-get present); True if it worked."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    print(f"installing {' '.join(packages)} (Debian packages the tests use)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_SUSPEND": "1"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            return False
    return not missing_packages()


def main(argv: list[str]) -> int:
    """``--services-only``: the benchmarks need the servers, not the browser."""
    problems = unreachable_services()
    packages = [] if "--services-only" in argv else missing_packages()
    if packages and not install(packages):
        problems.append(
            f"the tests need {' '.join(packages)}: install with "
            f"sudo apt-get install -y {' '.join(missing_packages() or packages)}"
        )
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
