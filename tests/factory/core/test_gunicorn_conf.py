"""The web tier's gunicorn hook, directly (no Django: the master does not load it). Its health
listener must be listening when ``when_ready`` returns, since gunicorn forks its workers right
after, and must never resolve a name on the way: a worker forked while another thread holds
libc's resolver locks hangs on its first lookup (3 of 10 starts did, with the stdlib's bind)."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from factory.core import gunicorn_conf


class Arbiter(SimpleNamespace):
    """What the hook reads of gunicorn's arbiter: its workers and its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_the_listener_binds_without_a_name_lookup(monkeypatch):
    def lookup(*args):
        raise AssertionError("a resolver call while workers may be forked")

    monkeypatch.setattr(socket, "getfqdn", lookup)
    httpd = gunicorn_conf._HealthServer(("127.0.0.1", 0), gunicorn_conf._handler(Arbiter()))
    try:
        assert httpd.server_name == "127.0.0.1"
        assert httpd.server_port == httpd.server_address[1] > 0
    finally:
        httpd.server_close()


def test_when_ready_is_listening_before_it_returns(monkeypatch):
    port = free_port()
    monkeypatch.setenv("WEB_HEALTH_PORT", str(port))
    monkeypatch.setenv("WEB_HEALTH_HOST", "127.0.0.1")
    gunicorn_conf.when_ready(Arbiter(WORKERS={}, log=logging.getLogger("test.gunicorn")))
    # no wait: the workers are forked right after the hook returns
    assert health(port) == (503, {"status": "unavailable", "workers_alive": 0, "workers": 0})


def test_a_held_port_is_taken_once_it_is_free(monkeypatch, caplog):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    monkeypatch.setenv("WEB_HEALTH_PORT", str(port))
    monkeypatch.setenv("WEB_HEALTH_HOST", "127.0.0.1")
    with caplog.at_level(logging.WARNING, "test.gunicorn"):
        gunicorn_conf.when_ready(Arbiter(WORKERS={}, log=logging.getLogger("test.gunicorn")))
    assert "not free yet" in caplog.text  # the start goes on: the old master still holds it
    held.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert health(port)[0] == 503
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("the health listener never took the freed port")
            time.sleep(0.1)
