"""Real Ed25519 signing for tests: keys, trust roots and properly signed firmware releases."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from factory import wire
from tenants.sovereignty.core import signing
from tenants.sovereignty.models import TrustRoot


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


#: The provider's release key in tests (``make_releases`` signs with it and trusts it).
RELEASE_KEY = Ed25519PrivateKey.generate()


def pem_of(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_id_of(key: Ed25519PrivateKey) -> str:
    return signing.key_id(signing.parse_public_key(signing.public_key_of(key)))


def image_for(release) -> bytes:
    """The bytes a test serves as ``release``'s image (what its digest is of)."""
    return f"test firmware {release.model_id} {release.origin} {release.version}\n".encode() * 32


def sign_release(release, key: Ed25519PrivateKey, image: bytes | None = None):
    """Give ``release`` the digest of ``image`` (default ``image_for``) and ``key``'s signature
    over it, saved."""
    release.sha256 = signing.image_digest(image if image is not None else image_for(release))
    release.key_id = key_id_of(key)
    release.signature = signing.sign(
        key,
        signing.message(release.model.slug, release.version, release.origin, release.sha256),
    )
    release.save(update_fields=["sha256", "key_id", "signature"])
    return release


def trust(key: Ed25519PrivateKey, origin: str, *, tenant=None, name: str = "") -> TrustRoot:
    """Register ``key`` as a trust root for ``origin``: the provider's (no tenant) or a
    tenant's own."""
    root = TrustRoot(
        tenant=tenant,
        name=name or f"root-{key_id_of(key)}",
        origin=origin,
        public_key=signing.public_key_of(key),
    )
    root.full_clean()
    root.save()
    return root


@contextmanager
def artifact_server(
    images: Mapping[str, bytes | Callable[[], bytes]],
    *,
    default: bytes | None = None,
    fetched: list[str] | None = None,
) -> Iterator[str]:
    """A real HTTP server on loopback serving ``images`` by path (a callable is asked for the
    bytes at each GET); ``default`` answers any other path under the base, and ``fetched``
    collects every path asked for. Yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if fetched is not None:
                fetched.append(self.path)
            found = images.get(self.path)
            if found is None and default is not None and self.path.startswith("/firmware/"):
                found = default
            if found is None:
                self.send_error(404)
                return
            body = found() if callable(found) else found
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/firmware"
    finally:
        server.shutdown()
        server.server_close()


#: What ``any_image`` serves at every image path.
ANY_IMAGE = b"a firmware image\n" * 64
_RUN = contextlib.ExitStack()  # held: a collected one would close its servers


@functools.cache
def any_image() -> str:
    """The base URL of an artifact server, up for the rest of the test run, that answers every
    firmware image path with ``ANY_IMAGE``: a flash needs an image the agent can fetch (it
    pushes the bytes it fetched to a BMC with MultipartHttpPushUri)."""
    return _RUN.enter_context(artifact_server({}, default=ANY_IMAGE))


def release_images(releases: Iterable) -> dict[str, bytes]:
    """What ``artifact_server`` serves for signed ``releases``: each release's ``image_for`` bytes
    at the path the agent fetches under the server's base."""
    return {
        wire.firmware_image_uri("/firmware", r.origin, r.version): image_for(r) for r in releases
    }
