"""The front (issue 18 item 2), for real: Debian's nginx with the compose file's own
configuration (factory/core/front/nginx.conf.template, rendered with the same ${NAMES}) before a
gunicorn of one gthread worker with two threads.

- 50 clients holding half-sent requests (slowloris) freeze gunicorn alone: its /healthz does
  not answer. Through the front, /healthz and the API answer within a second meanwhile.
- What nginx itself refuses is the API's JSON error body (413 too_large), not an HTML page.
- The plain-HTTP listener redirects to HTTPS, except the health checks.
- Server-sent events pass through unbuffered: a watch stream's first frame arrives at once.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from pathlib import Path
from string import Template

import pytest
import requests
from django.conf import settings

from factory.core import devcert
from tests.support.fleet import build_fleet, client_for
from tests.support.processes import ROOT, Process, app_env, free_port, gunicorn, until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
TEMPLATE = ROOT / "factory" / "core" / "front" / "nginx.conf.template"
NGINX = "/usr/sbin/nginx"
SLOW_CLIENTS = 50
HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "  # never ends


def nginx_conf(folder: Path, upstream: str, https: int, http: int) -> Path:
    """nginx's main file around the shipped server-level file, all paths in ``folder``."""
    (folder / "temp").mkdir()
    front = Template(TEMPLATE.read_text()).safe_substitute(
        FRONT_UPSTREAM=upstream,
        FRONT_HTTPS_PORT=str(https),
        FRONT_HTTP_PORT=str(http),
        FRONT_PUBLIC_HTTPS_PORT=str(https),
        FRONT_CERT=str(folder / "cert.pem"),
        FRONT_KEY=str(folder / "key.pem"),
        FRONT_MAX_BODY="9m",
    )
    (folder / "front.conf").write_text(front)
    temp = folder / "temp"
    main = f"""
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
    # As the nginx image's own nginx.conf has them, around the file it includes.
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 65;
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {folder}/front.conf;
}}
"""
    path = folder / "nginx.conf"
    path.write_text(main)
    return path


def hold_half_sent(host: str, port: int, context: ssl.SSLContext | None) -> list[socket.socket]:
    held = []
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection((host, port), timeout=5)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(HALF_SENT)
        held.append(sock)
    return held


def let_go(held: list[socket.socket]) -> None:
    for sock in held:
        sock.close()


def answers_within(url: str, seconds: float, **kwargs) -> bool:
    try:
        return requests.get(url, timeout=seconds, **kwargs).status_code == 200
    except requests.RequestException:
        return False


def test_the_front_keeps_slow_clients_off_the_workers(tmp_path):
    assert Path(NGINX).exists(), "the tests need Debian's nginx (make test installs it)"
    devcert.write(tmp_path)
    env = app_env(settings.REDIS_URL)
    https, http = free_port(), free_port()
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=2) as direct:
        upstream = direct.removeprefix("http://")
        conf = nginx_conf(tmp_path, upstream, https, http)
        check = Process([NGINX, "-t", "-c", str(conf)], os.environ.copy(), tmp_path / "t.log")
        check.start().proc.wait(timeout=20)
        assert check.proc.returncode == 0, (tmp_path / "t.log").read_text()
        front = Process([NGINX, "-c", str(conf)], os.environ.copy(), tmp_path / "nginx.log")
        front.start()
        base = f"https://localhost:{https}"
        tls = {"verify": str(tmp_path / "cert.pem")}
        try:
            until(lambda: answers_within(f"{base}/healthz", 2, **tls), 20, "nginx")
            fleet = build_fleet()
            person = client_for(fleet.people["provider_admin"])._credentials["HTTP_AUTHORIZATION"]

            # gunicorn alone: half-sent requests take its threads; /healthz does not answer.
            held = hold_half_sent("127.0.0.1", int(upstream.rsplit(":", 1)[1]), None)
            try:
                assert not answers_within(f"{direct}/healthz", 3)
            finally:
                let_go(held)
            until(lambda: answers_within(f"{direct}/healthz", 2), 30, "gunicorn again")

            # Through the front: the same 50 clients, and everything answers within a second.
            context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
            held = hold_half_sent("127.0.0.1", https, context)
            try:
                for _ in range(5):
                    started = time.monotonic()
                    assert requests.get(f"{base}/healthz", timeout=5, **tls).status_code == 200
                    sites = requests.get(
                        f"{base}/api/v1/sites/", headers={"Authorization": person}, timeout=5, **tls
                    )
                    assert sites.status_code == 200, sites.text
                    assert time.monotonic() - started < 1.0
            finally:
                let_go(held)

            # What nginx refuses is the API's error body.
            big = requests.post(
                f"{base}/api/v1/sites/",
                data=b"x" * (10 * 1024 * 1024),
                headers={"Authorization": person, "Content-Type": "application/json"},
                timeout=30,
                **tls,
            )
            assert big.status_code == 413
            assert big.headers["Content-Type"].startswith("application/json")
            assert json.loads(big.content)["code"] == "too_large"

            # Plain HTTP: health checks answer, everything else goes to HTTPS.
            assert answers_within(f"http://127.0.0.1:{http}/healthz", 2)
            moved = requests.get(f"http://localhost:{http}/api/v1/", allow_redirects=False)
            assert moved.status_code == 308
            assert moved.headers["Location"] == f"https://localhost:{https}/api/v1/"

            # Server-sent events are not held back by the front's buffering.
            started = time.monotonic()
            with requests.get(
                f"{base}/api/v1/events/watch/",
                headers={"Authorization": person},
                stream=True,
                timeout=10,
                **tls,
            ) as stream:
                assert stream.status_code == 200, stream.text
                first = next(stream.iter_content(chunk_size=None))
            assert first.startswith(b"retry:"), first
            assert time.monotonic() - started < 3.0
        finally:
            front.stop()
