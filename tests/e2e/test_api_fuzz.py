"""Schemathesis against the API served by a real gunicorn, once with a provider-admin token and
once with a tenant operator's: no 5xx, and every response conforms to the published OpenAPI
schema (status codes, content types, bodies). The tenant run walks the 403s and 404s of scoping
that the provider never meets."""

import subprocess

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from factory.inventory.demo import load_demo_fleet
from tenants.access import SYSTEM
from tenants.services.changes import ChangeContext
from tenants.services.tokens import issue_token
from tests.support.processes import BIN, ROOT, app_env, gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


@pytest.fixture
def gunicorn_url(transactional_db, tmp_path):
    env = app_env(settings.REDIS_URL)
    with gunicorn(env, tmp_path / "gunicorn.log") as url:
        yield url


# The tenant operator's run is the referee of isolation and goes deeper; the provider admin's
# run covers the same operations with fewer examples each (the two took 30 min of CI together).
@pytest.mark.parametrize(
    ("username", "examples"),
    [
        pytest.param("admin", 10, id="provider-admin"),
        pytest.param("jonas.weber", 20, id="tenant-operator"),
    ],
)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    gunicorn_url, tmp_path, username, examples
):
    load_demo_fleet()
    person = get_user_model().objects.get(username=username)
    _, token = issue_token(person, ChangeContext(SYSTEM), name="schemathesis")
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
            str(examples),
            "--seed",
            "20261128",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--no-color",
            # The events watch stream stays open for up to ?timeout= seconds (server-sent events);
            # tests/e2e/test_event_stream.py drives it.
            "--exclude-path-regex",
            "/events/watch/$",
        ],
        capture_output=True,
        text=True,
        timeout=3000,  # the generated lookups multiply the parameters it covers
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / f"schemathesis-{username}.txt").write_text(output)
    assert result.returncode == 0, output[-15000:]
    assert "generated" in output and "failures" not in output.split("SUMMARY")[-1].lower()
