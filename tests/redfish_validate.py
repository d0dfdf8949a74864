"""DMTF's Redfish Service Validator against a simulated BMC and a simulated PDU, offline.

    python -m tests.redfish_validate [--schemas ../shared/redfish/csdl]

Starts each device with ``python -m factory.simulator --device ...`` on a free port, runs
``rf_service_validator`` with the local CSDL bundle, and exits non-zero unless every run
reports zero failures. Run by ``.ci/run`` (``make redfish-validate``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def validate(device: str, schemas: Path, logdir: Path) -> tuple[bool, str]:
    port = free_port()
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "factory.simulator",
            "--device",
            device,
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/redfish/v1/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("rf_service_validator")),
                "-r",
                f"http://127.0.0.1:{port}",
                "--authtype",
                "Basic",
                "-u",
                "admin",
                "-p",
                "factory-sim",
                "--schema_directory",
                str(schemas),
                "--skipschema",
                "--logdir",
                str(logdir / device),
            ],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    finally:
        simulator.terminate()
        simulator.wait(10)
    output = run.stdout + run.stderr
    table = re.search(r"\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", output)
    if table is None:
        return False, f"{device}: no result table\n{output[-3000:]}"
    passed, warned, failed, untested = (int(n) for n in table.groups())
    summary = (
        f"{device}: pass {passed}, warn {warned}, fail {failed}, not tested {untested}"
        f" (validator exit {run.returncode})"
    )
    return run.returncode == 0 and failed == 0 and passed > 0, summary


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schemas", default=str(ROOT.parent / "shared" / "redfish" / "csdl"))
    parser.add_argument("--devices", nargs="+", default=["bmc", "pdu"])
    args = parser.parse_args()
    schemas = Path(args.schemas)
    if not schemas.is_dir():
        print(f"no Redfish schemas at {schemas}", file=sys.stderr)
        return 2
    ok = True
    with tempfile.TemporaryDirectory(prefix="rfv-") as logs:
        for device in args.devices:
            started = time.monotonic()
            good, summary = validate(device, schemas, Path(logs))
            print(f"redfish validator: {summary} in {time.monotonic() - started:.0f} s")
            ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
