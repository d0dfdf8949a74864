"""Schemathesis against the API served by a real gunicorn, with a provider-admin token: no 5xx,
and every response conforms to the published OpenAPI schema (status codes, content types,
bodies)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from factory.inventory.demo import load_demo_fleet
from tenants.access import SYSTEM
from tenants.services.changes import ChangeContext
from tenants.services.tokens import issue_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_url(transactional_db, tmp_path):
    """gunicorn serving the test database (committed data: this test is transactional)."""
    db = settings.DATABASES["default"]
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "factory.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - open for the server's lifetime
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "factory.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            # Request-line limits belong to the proxy in front; here we test the app's answers.
            "--limit-request-line",
            "0",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "gunicorn.log"
                ).read_text()
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()  # before the test database is flushed
        server.wait(timeout=30)
        log.close()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(gunicorn_url, tmp_path):
    load_demo_fleet()
    admin = get_user_model().objects.get(username="admin")
    _, token = issue_token(admin, ChangeContext(SYSTEM), name="schemathesis")
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{gunicorn_url}/api/schema/",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "20261128",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-15000:]
    assert "generated" in output and "failures" not in output.split("SUMMARY")[-1].lower()
