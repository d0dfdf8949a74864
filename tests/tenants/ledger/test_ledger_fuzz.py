"""Schemathesis against the ledger's endpoints only, served by a real gunicorn, with a provider
admin's and a tenant operator's token: no 5xx, every response as the OpenAPI schema says
(the whole API's run is tests/e2e/test_api_fuzz.py)."""

import subprocess

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from factory.inventory.demo import load_demo_fleet
from tenants.access import SYSTEM
from tenants.services.changes import ChangeContext
from tenants.services.tokens import issue_token
from tests.support.processes import BIN, app_env, gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.mark.parametrize("username", ["admin", "jonas.weber"])
def test_the_ledger_endpoints_conform_and_never_fail(transactional_db, tmp_path, username):
    load_demo_fleet()
    person = get_user_model().objects.get(username=username)
    _, token = issue_token(person, ChangeContext(SYSTEM), name="schemathesis")
    env = app_env(settings.REDIS_URL, LEDGER_SIGNING_KEY_FILE=str(tmp_path / "ledger.pem"))
    with gunicorn(env, tmp_path / "gunicorn.log") as url:
        result = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "run",
                f"{url}/api/schema/",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,"
                "response_schema_conformance",
                "--include-path-regex",
                "/ledger/",
                "--max-examples",
                "30",
                "--seed",
                "20261201",
                "--suppress-health-check",
                "all",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "failures" not in output.split("SUMMARY")[-1].lower()
