"""The ledger's Ed25519 signing key: a PEM file (``LEDGER_SIGNING_KEY_FILE``), created 0600 on
first use in development; its public half and key id kept in ``LedgerKey`` for ever, so after a
rotation (a new file) old checkpoints and packs still verify."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from tenants.errors import PreconditionFailed
from tenants.ledger.verify_pack import key_id
from tenants.models.audit import LedgerKey

_lock = threading.Lock()
_loaded: dict[tuple[str, float], tuple[str, Ed25519PrivateKey]] = {}


def key_id_of(private_key: Ed25519PrivateKey) -> str:
    return key_id(private_key.public_key())


def public_pem(private_key: Ed25519PrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def signing_key() -> tuple[str, Ed25519PrivateKey]:
    """The current key id and private key; its public half is registered on first use."""
    path = Path(settings.LEDGER_SIGNING_KEY_FILE)
    with _lock:
        if not path.exists():
            if not settings.LEDGER_SIGNING_KEY_CREATE:
                raise PreconditionFailed(
                    f"the ledger signing key {path} is missing", code="ledger_key_missing"
                )
            _create(path)
        stamp = (str(path), path.stat().st_mtime)
        if stamp not in _loaded:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise PreconditionFailed(
                    f"the ledger signing key {path} is not Ed25519", code="ledger_key_type"
                )
            _loaded.clear()
            _loaded[stamp] = (key_id_of(key), key)
        kid, key = _loaded[stamp]
    # Every time (signing is rare): a rolled-back or fresh database still gets the public half.
    LedgerKey.objects.get_or_create(key_id=kid, defaults={"public_key_pem": public_pem(key)})
    return kid, key


def public_keys() -> dict[str, str]:
    """Every key the ledger has signed with: key id → public key PEM (as the database says:
    for display; verification trusts ``trusted_keys``, pinned outside the database)."""
    return dict(LedgerKey.objects.values_list("key_id", "public_key_pem"))


def _pem(value: str | Path) -> str:
    """A configured public key: PEM text, or the path of a PEM file."""
    text = str(value)
    return text if "-----BEGIN" in text else Path(text).read_text()


def trusted_keys() -> dict[str, str]:
    """The keys verification trusts: the signing key file's public half plus the retired
    public keys in ``LEDGER_TRUSTED_PUBLIC_KEYS`` (PEM text or file paths), id → PEM. Never the
    ``LedgerKey`` table: a database superuser could add a key of their own and re-sign. Each id
    is computed from its key (sha256 of the raw public key), so an id cannot be borrowed."""
    pems = [_pem(v) for v in getattr(settings, "LEDGER_TRUSTED_PUBLIC_KEYS", ())]
    path = Path(settings.LEDGER_SIGNING_KEY_FILE)
    if path.exists():
        pems.append(public_pem(signing_key()[1]))
    return {key_id(serialization.load_pem_public_key(p.encode())): p for p in pems}
