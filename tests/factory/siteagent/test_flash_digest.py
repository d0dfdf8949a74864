"""The agent checks a firmware image's digest before it flashes (issue 14): it fetches the
image from the artifact server, and a digest other than the signed one fails the command with
nothing flashed; the right one is flashed. Where the BMC takes a multipart push the agent
sends the very bytes it checked; a BMC with only SimpleUpdate is given the URI."""

from __future__ import annotations

import hashlib
import io
import json

from factory import wire
from factory.siteagent import commands
from factory.wire import CommandKind, CommandParam, FirmwareComponent, HardwareState
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


def test_the_bmc_is_given_the_bytes_the_agent_verified_not_a_second_fetch():
    """An artifact server that answers the signed image once and other bytes afterwards: the
    BMC (it offers MultipartHttpPushUri) is pushed the verified bytes; the image is fetched
    once, by the agent."""
    fetched: list[str] = []
    answers = iter([SIGNED_IMAGE])

    def image() -> bytes:
        return next(answers, SIGNED_IMAGE + b"swapped after the check")

    with (
        artifact_server({IMAGE_PATH: image}, fetched=fetched) as base,
        site("factory", flash_seconds=0.2) as server,
    ):
        bmc = device(server)
        ok, state, error = flash(bmc, base, hashlib.sha256(SIGNED_IMAGE).hexdigest())
        assert (ok, error) == (True, "")
        assert state[HardwareState.FIRMWARE_VERSION] == VERSION
        (simulated,) = server.site.bmcs.values()
        assert simulated.image_digests == {
            FirmwareComponent.BIOS: hashlib.sha256(SIGNED_IMAGE).hexdigest()
        }
        bmc.close()
    assert fetched == [IMAGE_PATH]


def test_a_bmc_with_only_simple_update_is_given_the_uri():
    """The contoso BMC has no MultipartHttpPushUri: the agent checks the image, then names it
    in SimpleUpdate, and the BMC fetches it (its digest of the bytes is unknown: "")."""
    with (
        artifact_server({IMAGE_PATH: SIGNED_IMAGE}) as base,
        site("contoso", flash_seconds=0.2) as server,
    ):
        bmc = device(server)
        assert "MultipartHttpPushUri" not in bmc.get(commands.update_service_uri(bmc))
        ok, state, error = flash(bmc, base, hashlib.sha256(SIGNED_IMAGE).hexdigest())
        assert (ok, error) == (True, "")
        assert state[HardwareState.FIRMWARE_VERSION] == VERSION
        (simulated,) = server.site.bmcs.values()
        assert simulated.image_digests == {FirmwareComponent.BIOS: ""}
        bmc.close()


def test_a_push_of_a_malformed_or_empty_form_is_refused_with_a_redfish_error():
    with site("factory", flash_seconds=0.2) as server:
        bmc = device(server)
        push = bmc.get(commands.update_service_uri(bmc))["MultipartHttpPushUri"]
        empty = bmc.upload(push, {}, "2027.03.0.bin", io.BytesIO(b""), timeout=10)
        assert empty.status == 400
        assert "UpdateFile is empty" in json.dumps(empty.body)
        later = bmc.upload(
            push,
            {"@Redfish.OperationApplyTime": "OnReset"},
            "2027.03.0.bin",
            io.BytesIO(SIGNED_IMAGE),
            timeout=10,
        )
        assert later.status == 400 and "OperationApplyTime" in json.dumps(later.body)
        garbage = bmc.request("POST", push, {"UpdateFile": "not a file part"})
        assert garbage.status == 400
        (simulated,) = server.site.bmcs.values()
        assert simulated.image_digests == {}
        bmc.close()
