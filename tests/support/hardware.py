"""A stand-in for the site's hardware as the agent sees it (the Redfish simulator arrives with
the hardware issue). Pure Python: it only answers agent commands, and counts each command it
carries out so tests can prove none ran twice."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from factory.wire import BurnInResult, CommandKind, CommandParam, HardwareState, InterconnectResult


@dataclass
class Box:
    firmware: str = "1.0"
    inactive: str = ""
    drained: bool = False
    cabled: bool = True
    powered: bool = True
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
            if serial and self.lose_results[serial] > 0 and kind != CommandKind.QUERY_STATE:
                self.lose_results[serial] -= 1
                return None
            return outcome

    def _state(self, box: Box) -> dict:
        return {
            HardwareState.FIRMWARE_VERSION: box.firmware,
            HardwareState.INACTIVE_FIRMWARE_VERSION: box.inactive if self.ab_banked else "",
            HardwareState.DRAINED: box.drained,
            HardwareState.CABLED: box.cabled,
            HardwareState.POWER_STATE: "On" if box.powered else "Off",
        }

    def _do(self, box: Box, serial, kind: str, params: dict):
        if kind == CommandKind.FLASH_FIRMWARE:
            if self.flash_failures[serial] > 0:
                self.flash_failures[serial] -= 1
                return False, {}, "SimpleUpdate failed: image verification error"
            box.inactive, box.firmware = box.firmware, params[CommandParam.VERSION]
            return True, self._state(box), ""
        if kind == CommandKind.ACTIVATE_BANK:
            if not self.ab_banked or box.inactive != params[CommandParam.VERSION]:
                return False, self._state(box), "no bank holds that version"
            box.firmware, box.inactive = box.inactive, box.firmware
            return True, self._state(box), ""
        if kind == CommandKind.BURN_IN:
            failed = [
                {BurnInResult.INDEX: i, BurnInResult.DETAIL: "HBM ECC uncorrectable"}
                for i in box.bad_chips
            ]
            return True, {BurnInResult.TESTED: 144, BurnInResult.FAILED_CHIPS: failed}, ""
        if kind == CommandKind.INTERCONNECT_CHECK:
            return True, {InterconnectResult.LINKS_OK: 72, InterconnectResult.LINKS_DOWN: []}, ""
        if kind in (CommandKind.DRAIN, CommandKind.UNDRAIN):
            box.drained = kind == CommandKind.DRAIN
            return True, self._state(box), ""
        if kind == CommandKind.RESET:
            box.powered = params.get(CommandParam.RESET_TYPE) not in (
                "ForceOff",
                "GracefulShutdown",
            )
            return True, self._state(box), ""
        if kind in (CommandKind.INSTALL_CHECK, CommandKind.QUERY_STATE):
            return True, self._state(box), ""
        return False, {}, f"unknown command {kind}"
