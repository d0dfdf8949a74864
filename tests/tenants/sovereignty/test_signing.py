"""The pure signing core: what a firmware signature covers, keys in, signatures checked."""

from __future__ import annotations

import base64

import pytest

from tenants.sovereignty.core import signing
from tests.support.signing import new_key, pem_of

DIGEST = "ab" * 32


def test_the_signed_message_is_the_context_and_every_field_one_per_line():
    assert signing.message("trn3", "2.0", "nvidia", DIGEST) == (
        f"aifactory-firmware-v1\ntrn3\n2.0\nnvidia\n{DIGEST}".encode()
    )
    with pytest.raises(ValueError):
        signing.message("trn3", "2.0\ntrn2", "nvidia", DIGEST)


def test_a_signature_verifies_only_its_own_message_under_its_own_key():
    key, other = new_key(), new_key()
    signed = signing.message("trn3", "2.0", "nvidia", DIGEST)
    signature = signing.sign(key, signed)
    public = signing.public_key_of(key)
    assert signing.verify(public, signature, signed)
    assert not signing.verify(signing.public_key_of(other), signature, signed)
    for tampered in (
        signing.message("trn2", "2.0", "nvidia", DIGEST),
        signing.message("trn3", "2.1", "nvidia", DIGEST),
        signing.message("trn3", "2.0", "mirror", DIGEST),
        signing.message("trn3", "2.0", "nvidia", "cd" * 32),
    ):
        assert not signing.verify(public, signature, tampered)
    assert not signing.verify(public, "not base64!", signed)
    assert not signing.verify(public, base64.b64encode(b"x" * 64).decode(), signed)
    assert not signing.verify("garbage", signature, signed)


def test_public_keys_are_taken_as_pem_or_raw_base64_and_identified_alike():
    key = new_key()
    raw = signing.parse_public_key(pem_of(key))
    assert signing.parse_public_key(signing.public_key_of(key)) == raw
    assert len(signing.key_id(raw)) == 16 and signing.KEY_ID.match(signing.key_id(raw))
    for bad in ("", "zz", base64.b64encode(b"x" * 33).decode(), "-----BEGIN nonsense"):
        with pytest.raises(ValueError):
            signing.parse_public_key(bad)
