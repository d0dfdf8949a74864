import pytest


@pytest.fixture(autouse=True)
def ledger_key(settings, tmp_path):
    """Each test signs with a key of its own, created 0600 on first use."""
    settings.LEDGER_SIGNING_KEY_FILE = tmp_path / "ledger-signing-key.pem"
    settings.LEDGER_SIGNING_KEY_CREATE = True
    return settings.LEDGER_SIGNING_KEY_FILE
