"""DMTF's Redfish Service Validator and Redfish Protocol Validator against every simulated device
kind, offline.

    python -m tests.redfish_validate [--schemas ../shared/redfish/csdl] [--only bmc-factory ...]

Each target (a BMC in each vendor flavour, a rack PDU, a CDU) is started with
``python -m factory.simulator --device ...`` on a free port:

- ``rf_service_validator`` walks it over HTTP with the local CSDL bundle (``--skipschema``) and a
  session log-in. The BMCs are Trn2 systems (``--family trn2``): the validator checks every
  resource it reaches, and a Trn3's 144 accelerators make the same checks take several times as
  long for no added coverage.
- ``rf_protocol_validator`` runs against the same device served over HTTPS (``--tls``), trusting
  the simulator's site CA (``--ca-bundle``): DSP0266 requires HTTPS for Basic and for session
  log-in, so a plain-HTTP run could never pass.

Prints the counts of each run and every failure and warning; exits non-zero on any failure.
Run by ``.ci/run`` (``make redfish-validate``).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
USERNAME, PASSWORD = "admin", "factory-sim"


@dataclass(frozen=True)
class Target:
    name: str
    device: str
    flavour: str = "factory"
    family: str = "trn2"


TARGETS = (
    Target("bmc-factory", "bmc", "factory"),
    Target("bmc-contoso", "bmc", "contoso"),
    Target("pdu", "pdu"),
    Target("cdu", "cdu"),
)


#: ``rf_service_validator --collectionlimit``: members checked per collection of these types.
COLLECTION_LIMITS = ("Processor", "8", "Memory", "8", "Port", "4")


@dataclass
class Outcome:
    tool: str
    target: str
    passed: int = 0
    warned: int = 0
    failed: int = 0
    untested: int = 0
    exit_code: int = 0
    problems: list[str] = field(default_factory=list)  # failures first, then warnings
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.failed == 0 and self.passed > 0

    def summary(self) -> str:
        return (
            f"{self.tool} {self.target}: pass {self.passed}, warn {self.warned}, "
            f"fail {self.failed}, not tested {self.untested} (exit {self.exit_code}, "
            f"{self.seconds:.0f} s)"
        )


@contextmanager
def simulator(target: Target, *extra: str) -> Iterator[str]:
    """The device on a free port until the block ends; yields its base URL."""
    port = free_port()
    tls = "--tls" in extra
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "factory.simulator",
            "--device",
            target.device,
            "--family",
            target.family,
            "--flavour",
            target.flavour,
            "--port",
            str(port),
            "--log-level",
            "WARNING",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # readiness probe only
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/redfish/v1/", timeout=1, context=insecure)
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


def service_validator(target: Target, schemas: Path, logdir: Path) -> Outcome:
    outcome = Outcome("service-validator", target.name)
    # Every accelerator, its HBM and its links are the same resources again: check a few.
    limits = ["--collectionlimit", *COLLECTION_LIMITS] if target.device == "bmc" else []
    started = time.monotonic()
    with simulator(target) as base:
        run = subprocess.run(
            [
                str(BIN / "rf_service_validator"),
                "-r",
                base,
                "--authtype",
                "Session",
                "-u",
                USERNAME,
                "-p",
                PASSWORD,
                "--schema_directory",
                str(schemas),
                "--skipschema",
                "--logdir",
                str(logdir),
                *limits,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    outcome.seconds = time.monotonic() - started
    outcome.exit_code = run.returncode
    output = run.stdout + run.stderr
    table = re.search(r"\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", output)
    if table is None:
        outcome.exit_code = outcome.exit_code or 1
        outcome.problems.append(f"no result table:\n{output[-3000:]}")
        return outcome
    outcome.passed, outcome.warned, outcome.failed, outcome.untested = (
        int(n) for n in table.groups()
    )
    outcome.problems = service_problems(logdir, output)
    return outcome


def service_problems(logdir: Path, output: str) -> list[str]:
    """The failures and warnings the service validator logged (its debug log, else its
    output), each once with how often it came."""
    texts = [p.read_text(errors="replace") for p in sorted(logdir.rglob("*.log"))] or [output]
    counts: dict[str, int] = {}
    for text in texts:
        for line in text.splitlines():
            level = re.search(r" - (ERROR|WARNING) - (.*)", line)
            if level:
                text = re.sub(r"^(WARN|ERROR|FAIL) - ", "", level[2].strip())
                key = f"{'FAIL' if level[1] == 'ERROR' else 'WARN'} {text}"
                counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts, key=lambda k: (not k.startswith("FAIL"), k))
    return [f"{k} (x{counts[k]})" if counts[k] > 1 else k for k in ordered]


def protocol_validator(target: Target, workdir: Path) -> Outcome:
    outcome = Outcome("protocol-validator", target.name)
    ca = workdir / "ca.pem"
    started = time.monotonic()
    with simulator(target, "--tls", "--ca-out", str(ca)) as base:
        run = subprocess.run(
            [
                str(BIN / "rf_protocol_validator"),
                "-r",
                base,
                "-u",
                USERNAME,
                "-p",
                PASSWORD,
                "--ca-bundle",
                str(ca),
                "--report-dir",
                str(workdir),
                "--report-type",
                "tsv",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=workdir,
            # requests lets REQUESTS_CA_BUNDLE override a session's ``verify``, and the TLS
            # version probe builds its own context on the default store: make the site CA the
            # trust of every path, so certificates are verified throughout.
            env={
                **os.environ,
                "REQUESTS_CA_BUNDLE": str(ca),
                "CURL_CA_BUNDLE": str(ca),
                "SSL_CERT_FILE": str(ca),
            },
        )
    outcome.seconds = time.monotonic() - started
    outcome.exit_code = run.returncode
    output = run.stdout + run.stderr
    summary = re.search(
        r"PASS:\s*(\d+),\s*WARN:\s*(\d+),\s*FAIL:\s*(\d+),\s*NOT_TESTED:\s*(\d+)", output
    )
    if summary is None:
        outcome.exit_code = outcome.exit_code or 1
        outcome.problems.append(f"no summary:\n{output[-3000:]}")
        return outcome
    outcome.passed, outcome.warned, outcome.failed, outcome.untested = (
        int(n) for n in summary.groups()
    )
    # The validator exits with the number of failures; the report is what counts.
    outcome.exit_code = 0 if outcome.failed == 0 else run.returncode or 1
    failures, warnings = [], []
    for report in workdir.glob("*.tsv"):
        with report.open(newline="") as f:
            for row in csv.reader(f, delimiter="\t"):
                if len(row) > 5 and row[4] in ("FAIL", "WARN"):
                    line = f"{row[4]} {row[0]} {row[1]} {row[3]}: {row[5]}"
                    (failures if row[4] == "FAIL" else warnings).append(line)
    outcome.problems = failures + warnings
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schemas", default=str(ROOT.parent / "shared" / "redfish" / "csdl"))
    parser.add_argument(
        "--only", nargs="+", choices=[t.name for t in TARGETS], help="some targets only"
    )
    parser.add_argument(
        "--tool", choices=["service", "protocol", "both"], default="both", help="one validator"
    )
    args = parser.parse_args()
    schemas = Path(args.schemas)
    if not schemas.is_dir():
        print(f"no Redfish schemas at {schemas}", file=sys.stderr)
        return 2
    targets = [t for t in TARGETS if not args.only or t.name in args.only]
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="rfv-") as tmp:
        for target in targets:
            work = Path(tmp) / target.name
            if args.tool in ("service", "both"):
                (work / "service").mkdir(parents=True)
                outcomes.append(service_validator(target, schemas, work / "service"))
                print(f"redfish validate: {outcomes[-1].summary()}", flush=True)
            if args.tool in ("protocol", "both"):
                (work / "protocol").mkdir(parents=True)
                outcomes.append(protocol_validator(target, work / "protocol"))
                print(f"redfish validate: {outcomes[-1].summary()}", flush=True)
    for outcome in outcomes:
        if outcome.problems:
            print(f"\n{outcome.tool} {outcome.target}:")
            for problem in outcome.problems[:60]:
                print(f"  {problem[:400]}")
    bad = [o for o in outcomes if not o.ok]
    print(
        f"\nredfish validate: {len(outcomes) - len(bad)} of {len(outcomes)} runs without failures"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
