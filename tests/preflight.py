"""Before the suite: are the PostgreSQL and Redis that the tests use reachable? One line if not."""

import os
import socket
import sys
from urllib.parse import urlparse

SERVICES = {
    "PostgreSQL": (
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/factory"),
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "Redis": (
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    ),
}


def main() -> int:
    failed = False
    for name, (url, start) in SERVICES.items():
        parsed = urlparse(url)
        host, port = (
            parsed.hostname or "127.0.0.1",
            parsed.port or (5432 if name == "PostgreSQL" else 6379),
        )
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as exc:
            print(
                f"{name} is not reachable at {host}:{port} ({exc.strerror or exc}); "
                f"start it with: {start}",
                file=sys.stderr,
            )
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
