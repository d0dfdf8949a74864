"""Simulated Redfish devices as real processes, and DMTF's tools run against them.

Every outside referee (``redfish_utilities`` scripts, the service and protocol validators) talks
to a simulator started here on a free port, as it would to a BMC on a management network.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
USERNAME, PASSWORD = "admin", "factory-sim"


@contextmanager
def simulated_device(
    kind: str = "bmc", flavour: str = "factory", *extra: str, family: str = "trn3"
) -> Iterator[str]:
    """One device (``--device kind``) served on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "factory.simulator",
            "--device",
            kind,
            "--family",
            family,
            "--flavour",
            flavour,
            "--port",
            str(port),
            "--log-level",
            "WARNING",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/redfish/v1/", timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"simulator exited {process.returncode}") from None
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def rf_script(
    name: str, base: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """A DMTF ``redfish_utilities`` script (``rf_sensor_list.py``...) against ``base``, logged in
    with a session as the scripts do by default."""
    return subprocess.run(
        [
            sys.executable,
            str(BIN / name),
            "--user",
            USERNAME,
            "--password",
            PASSWORD,
            "--rhost",
            base,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
