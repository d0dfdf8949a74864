"""A stand-in for the site's hardware as the agent sees it (the Redfish simulator arrives with
the hardware issue). Pure Python: it only answers agent commands, and counts each command it
carries out so tests can prove none ran twice."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Box:
    firmware: str = "1.0"
    inactive: str = ""
    drained: bool = False
    cabled: bool = True
    bad_chips: list[int] = field(default_factory=list)


class SimHardware:
    def __init__(self, ab_banked: bool = True):
        self.boxes: dict[str, Box] = {}
        self.ab_banked = ab_banked
        self.executed: Counter = Counter()  # command id -> times carried out
        self.flash_failures: Counter = Counter()  # serial -> flashes still to fail
        self.lose_results: Counter = Counter()  # serial -> results still to lose (agent crash)
        self.lock = threading.Lock()

    def box(self, serial: str) -> Box:
        return self.boxes.setdefault(serial, Box())

    def execute(self, command_id: str, kind: str, serial: str | None, params: dict):
        """Returns (ok, result, error), or None when the result is lost after the work."""
        with self.lock:
            self.executed[command_id] += 1
            box = self.box(serial or "")
            outcome = self._do(box, serial, kind, params)
            if serial and self.lose_results[serial] > 0 and kind != "query-state":
                self.lose_results[serial] -= 1
                return None
            return outcome

    def _state(self, box: Box) -> dict:
        return {
            "firmware_version": box.firmware,
            "inactive_firmware_version": box.inactive if self.ab_banked else "",
            "drained": box.drained,
            "cabled": box.cabled,
            "power_state": "On",
        }

    def _do(self, box: Box, serial, kind: str, params: dict):
        if kind == "flash-firmware":
            if self.flash_failures[serial] > 0:
                self.flash_failures[serial] -= 1
                return False, {}, "SimpleUpdate failed: image verification error"
            box.inactive, box.firmware = box.firmware, params["version"]
            return True, self._state(box), ""
        if kind == "activate-bank":
            if not self.ab_banked or box.inactive != params["version"]:
                return False, self._state(box), "no bank holds that version"
            box.firmware, box.inactive = box.inactive, box.firmware
            return True, self._state(box), ""
        if kind == "burn-in":
            failed = [{"index": i, "detail": "HBM ECC uncorrectable"} for i in box.bad_chips]
            return True, {"tested": 144, "failed_chips": failed}, ""
        if kind == "interconnect-check":
            return True, {"links_ok": 72, "links_down": []}, ""
        if kind == "drain":
            box.drained = True
            return True, self._state(box), ""
        if kind == "undrain":
            box.drained = False
            return True, self._state(box), ""
        if kind == "install-check":
            return True, self._state(box), ""
        if kind == "query-state":
            return True, self._state(box), ""
        return False, {}, f"unknown command {kind}"
