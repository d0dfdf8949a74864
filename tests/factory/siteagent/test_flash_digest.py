"""The agent checks a firmware image's digest before it flashes (issue 14): it fetches the
image from the artifact server, and a digest other than the signed one fails the command with
nothing flashed; the right one is flashed."""

from __future__ import annotations

import hashlib

from factory import wire
from factory.siteagent import commands
from factory.wire import CommandKind, CommandParam, HardwareState
from tests.factory.siteagent.sites import device, site
from tests.support.signing import artifact_server

ORIGIN, VERSION = "provider", "2027.03.0"
SIGNED_IMAGE = b"the image that was signed\n" * 1000
IMAGE_PATH = wire.firmware_image_uri("/firmware", ORIGIN, VERSION)  # under the server's base


def flash(bmc, base: str, digest: str):
    params = {
        CommandParam.VERSION: VERSION,
        CommandParam.ORIGIN: ORIGIN,
        CommandParam.DIGEST: digest,
    }
    return commands.execute(bmc, CommandKind.FLASH_FIRMWARE, params, image_base=base, poll_s=0.1)


def test_an_image_whose_digest_differs_is_refused_and_nothing_flashed():
    signed = hashlib.sha256(SIGNED_IMAGE).hexdigest()
    tampered = SIGNED_IMAGE + b"backdoor"
    with (
        artifact_server({IMAGE_PATH: tampered}) as base,
        site("factory", flash_seconds=0.2) as server,
    ):
        bmc = device(server)
        before = commands.query_state(bmc)[HardwareState.FIRMWARE_VERSION]
        ok, state, error = flash(bmc, base, signed)
        assert not ok
        assert f"not the signed {signed}" in error and "nothing flashed" in error
        assert hashlib.sha256(tampered).hexdigest() in error
        assert state[HardwareState.FIRMWARE_VERSION] == before
        assert state[HardwareState.INACTIVE_FIRMWARE_VERSION] == ""  # no bank was written
        bmc.close()


def test_an_image_that_cannot_be_fetched_is_refused():
    with artifact_server({}) as base, site("factory", flash_seconds=0.2) as server:
        bmc = device(server)
        before = commands.query_state(bmc)[HardwareState.FIRMWARE_VERSION]
        ok, _, error = flash(bmc, base, hashlib.sha256(SIGNED_IMAGE).hexdigest())
        assert not ok and "HTTP 404" in error
        assert commands.query_state(bmc)[HardwareState.FIRMWARE_VERSION] == before
        bmc.close()


def test_the_signed_image_is_flashed():
    with (
        artifact_server({IMAGE_PATH: SIGNED_IMAGE}) as base,
        site("factory", flash_seconds=0.2) as server,
    ):
        bmc = device(server)
        ok, state, error = flash(bmc, base, hashlib.sha256(SIGNED_IMAGE).hexdigest())
        assert (ok, error) == (True, "")
        assert state[HardwareState.FIRMWARE_VERSION] == VERSION
        bmc.close()
