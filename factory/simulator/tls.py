"""TLS for a simulated site: a site CA and one server certificate, in memory.

Real BMCs serve HTTPS with their own certificates, signed by the site's CA or self-signed and
pinned by fingerprint. The simulator issues both kinds of material here so the agent's
verification (a per-site CA bundle, or a pinned SHA-256 fingerprint) is tested against a real
handshake, never switched off.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365


@dataclass(frozen=True)
class TlsMaterial:
    """A site CA's certificate and one server certificate with its key, all PEM."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    #: ``sha256:<hex>`` of the server certificate's DER: what a pinning agent compares.
    fingerprint: str

    def server_context(self) -> ssl.SSLContext:
        """A server-side context serving the certificate (and the CA, as a chain)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain reads files only: write them briefly, private to this user.
        with tempfile.TemporaryDirectory() as tmp:
            chain, key = os.path.join(tmp, "chain.pem"), os.path.join(tmp, "key.pem")
            with open(chain, "wb") as f:
                f.write(self.cert_pem + self.ca_pem)
            with open(key, "wb") as f:
                f.write(self.key_pem)
            context.load_cert_chain(chain, key)
        return context


def fingerprint(cert_der: bytes) -> str:
    """The pin of a certificate: ``sha256:`` and the hex digest of its DER."""
    return f"sha256:{hashlib.sha256(cert_der).hexdigest()}"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue(site_code: str, hosts: list[str]) -> TlsMaterial:
    """A fresh CA for ``site_code`` and a server certificate it signed, valid for ``hosts``
    (DNS names or IP addresses, each a SubjectAltName)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host")
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{site_code} site CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{site_code} {hosts[0]}"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        fingerprint=fingerprint(cert.public_bytes(serialization.Encoding.DER)),
    )
