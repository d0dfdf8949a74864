"""A self-signed TLS certificate for the front (nginx) when the operator has not given one:
``python -m factory.core.devcert DIR [HOST ...]`` writes DIR/cert.pem and DIR/key.pem unless they
exist. For a demo or a staging stack; production mounts its own certificate instead."""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def _name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def write(folder: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 365) -> bool:
    """Write ``cert.pem`` and ``key.pem`` under ``folder``; False if they were there already."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.exists() and key_path.exists():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_name(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m factory.core.devcert DIR [HOST ...]", file=sys.stderr)
        return 2
    hosts = tuple(argv[1:]) or DEFAULT_HOSTS
    made = write(Path(argv[0]), hosts)
    print(f"{'wrote' if made else 'kept'} {argv[0]}/cert.pem and key.pem")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
