"""Schemathesis against the live API with a provider-admin token: no 5xx, and every response
conforms to the published OpenAPI schema (status codes, content types, bodies)."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from factory.inventory.demo import load_demo_fleet
from tenants.access import SYSTEM
from tenants.services.changes import ChangeContext
from tenants.services.tokens import issue_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_server, tmp_path):
    load_demo_fleet()
    admin = get_user_model().objects.get(username="admin")
    _, token = issue_token(admin, ChangeContext(SYSTEM), name="schemathesis")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{live_server.url}/api/schema/",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "10",
            "--seed",
            "20261128",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    output = result.stdout + result.stderr
    (Path("test-artifacts")).mkdir(exist_ok=True)
    Path("test-artifacts/schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-15000:]
    assert "passed" in output.lower()
