"""Where the agent's credentials may go, and when it may log in: an absolute URL a device
names is followed only on the device's own origin; plain HTTP only when the operator allows
it; a closed device never logs in again. And a chip is the place of its Processor in the
collection, whatever digits the vendor's Ids carry."""

from __future__ import annotations

import json

import pytest

from factory import wire
from factory.siteagent.__main__ import load_devices, main
from factory.siteagent.agent import Agent
from factory.siteagent.commands import follow
from factory.siteagent.devices import Answer, DeviceError, chip_of, chip_report
from factory.siteagent.outbox import Outbox
from factory.siteagent.sse import classify
from tests.factory.siteagent.sites import PASSWORD, USERNAME, StaticService, device, site


def test_an_absolute_url_off_the_devices_origin_is_refused_before_any_request():
    elsewhere = StaticService({"/steal": {"ok": True}})
    bmc_service = StaticService({"/redfish/v1/Tasks/1": {"TaskState": "Completed"}})
    try:
        bmc = bmc_service.device()
        with pytest.raises(DeviceError, match="refused to follow"):
            bmc.get(f"{elsewhere.url}/steal")
        # A task monitor at another host (a 202's Location): not followed, no credentials.
        with pytest.raises(DeviceError, match="refused to follow"):  # execute: a failed result
            follow(bmc, Answer(202, {}, {"Location": f"{elsewhere.url}/steal"}), poll_s=0.05)
        assert elsewhere.requests == []
        # The device's own origin, spelled absolutely (default port too), is fine.
        assert bmc.get(f"{bmc_service.url}/redfish/v1/Tasks/1")["TaskState"] == "Completed"
        port_80 = bmc_service.device()
        port_80.url = "http://127.0.0.1"
        assert port_80.url_of("http://127.0.0.1:80/x") == "http://127.0.0.1:80/x"
        with pytest.raises(DeviceError):
            port_80.url_of("https://127.0.0.1/x")  # another scheme is another origin
    finally:
        elsewhere.stop()
        bmc_service.stop()


def test_plain_http_needs_the_operators_word(tmp_path, capsys):
    listing = wire.DeviceListing(
        site="FRA1", devices=[wire.Device(kind="bmc", serial="A", url="http://10.0.0.1")]
    )
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(listing))
    with pytest.raises(ValueError, match="allow-plain-http"):
        load_devices(str(path), USERNAME, PASSWORD)
    with pytest.raises(ValueError, match="allow-plain-http"):
        load_devices("http://127.0.0.1:9/sim/devices", USERNAME, PASSWORD)
    (allowed,) = load_devices(str(path), USERNAME, PASSWORD, allow_plain_http=True)
    assert allowed.url == "http://10.0.0.1"
    with pytest.raises(SystemExit) as exit_:
        main(["--control-plane", "http://cp", "--token", "t", "--devices", str(path)])
    assert exit_.value.code == 2
    assert "--allow-plain-http" in capsys.readouterr().err


def test_a_closed_device_does_not_log_in_again(tmp_path):
    with site("factory") as server:
        bmc = device(server)
        agent = Agent(
            control_plane="http://127.0.0.1:9",
            token="unused",
            devices=[bmc],
            outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
        )
        agent.poll_once()
        assert bmc.auth == "session"
        agent.shutdown(grace_s=0.5)
        # Work still in flight after shutdown: refused, and no session is opened.
        with pytest.raises(DeviceError, match="closed"):
            bmc.get(wire.SYSTEM_PATH)
        assert bmc.logins == 1 and bmc.token is None


SYSTEM = "/redfish/v1/Systems/1"


def numbered_from_one() -> StaticService:
    """A BMC whose Processors and Memory are numbered from 1 (GPU1..GPU3, HBM1..HBM3)."""
    return StaticService(
        {
            wire.REDFISH_ROOT: {"Systems": {"@odata.id": "/redfish/v1/Systems"}},
            "/redfish/v1/Systems": {"Members": [{"@odata.id": SYSTEM}]},
            SYSTEM: {
                "Processors": {"@odata.id": f"{SYSTEM}/Processors"},
                "Memory": {"@odata.id": f"{SYSTEM}/Memory"},
            },
            f"{SYSTEM}/Processors": {
                "Members": [{"@odata.id": f"{SYSTEM}/Processors/GPU{n}"} for n in (1, 2, 3)]
            },
            f"{SYSTEM}/Memory": {
                "Members": [{"@odata.id": f"{SYSTEM}/Memory/HBM{n}"} for n in (1, 2, 3)]
            },
        }
    )


def test_a_chip_is_its_place_in_the_collection_not_its_ids_digits():
    service = numbered_from_one()
    try:
        bmc = service.device()
        assert chip_of(bmc, f"{SYSTEM}/Processors/GPU1") == 0
        assert chip_of(bmc, f"{SYSTEM}/Processors/GPU3/Ports/Link2") == 2
        assert chip_of(bmc, f"{SYSTEM}/Memory/HBM2") == 1
        assert chip_of(bmc, f"{SYSTEM}/Processors/GPU9") is None
        record = {
            "MessageSeverity": "Critical",
            "OriginOfCondition": {"@odata.id": f"{SYSTEM}/Processors/GPU1"},
            "EventTimestamp": "2026-11-28T10:00:00Z",
        }
        event = classify(record, bmc.serial, "bmc", chip_of=lambda o: chip_of(bmc, o))
        assert event is not None and event["chip"] == 0
        unknown = {**record, "OriginOfCondition": {"@odata.id": f"{SYSTEM}/Processors/GPU9"}}
        event = classify(unknown, bmc.serial, "bmc", chip_of=lambda o: chip_of(bmc, o))
        assert event is not None and "chip" not in event  # unknown: no chip, not a guess
        report = {
            "Timestamp": "2026-11-28T10:00:00Z",
            "MetricValues": [
                {
                    "MetricId": wire.Metric.HEALTH,
                    "MetricValue": str(n),
                    "MetricProperty": f"{SYSTEM}/Processors/GPU{n}/#/Status/Health",
                }
                for n in (1, 2, 3)
            ],
        }
        chips = chip_report(bmc.serial, report, bmc)["Oem"][wire.OEM][wire.ReportKey.CHIPS]
        assert chips[wire.Metric.HEALTH] == [1, 2, 3]  # three chips, the first at 0
    finally:
        service.stop()
