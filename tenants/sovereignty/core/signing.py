"""What a firmware signature covers, and how it is checked: pure, no Django.

A release is signed by a detached Ed25519 signature over exactly these UTF-8 bytes::

    aifactory-firmware-v1\\n<model slug>\\n<version>\\n<origin>\\n<sha256 of the image, hex>

so a signature cannot be moved to another model, version, origin or image. Public keys are
taken as PEM (SubjectPublicKeyInfo) or as the raw 32 bytes in base64, and stored as the raw
bytes in base64; a key's id is the first 16 hex digits of the SHA-256 of its raw bytes (the
release names the key that signed it by this id).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CONTEXT = "aifactory-firmware-v1"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
KEY_ID = re.compile(r"^[0-9a-f]{16}$")
SIGNATURE_BYTES = 64
RAW_KEY_BYTES = 32


def message(model: str, version: str, origin: str, sha256: str) -> bytes:
    """The bytes a release's signature is over. No field may hold a newline (it would let one
    release's fields be read as another's)."""
    fields = (model, version, origin, sha256)
    if any("\n" in f for f in fields):
        raise ValueError("a signed field must not contain a newline")
    return "\n".join((CONTEXT, *fields)).encode()


def image_digest(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


def parse_public_key(text: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key given as PEM or base64; ValueError otherwise."""
    text = (text or "").strip()
    if not text:
        raise ValueError("empty key")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("neither PEM nor base64") from None
    if len(raw) != RAW_KEY_BYTES:
        raise ValueError(f"a raw Ed25519 public key is {RAW_KEY_BYTES} bytes, not {len(raw)}")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_signature(text: str) -> bytes:
    """The 64 bytes of a base64 Ed25519 signature; ValueError otherwise."""
    try:
        raw = base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != SIGNATURE_BYTES:
        raise ValueError(f"an Ed25519 signature is {SIGNATURE_BYTES} bytes, not {len(raw)}")
    return raw


def verify(public_key: str, signature: str, signed: bytes) -> bool:
    """Whether ``signature`` (base64) is ``public_key``'s (stored form) over ``signed``.
    Anything malformed is simply not a valid signature."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(parse_signature(signature), signed)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def sign(private_key: Ed25519PrivateKey, signed: bytes) -> str:
    """A base64 detached signature (release tooling, the demo and tests sign with this)."""
    return base64.b64encode(private_key.sign(signed)).decode()


def public_key_of(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return encode_key(raw)
