"""A lean telemetry replay client: pre-serialized reports, keep-alive connections, only the
sequence number and time stamp written per request. Runs as its own process so that its cost
is the load's, not the server's.

    python -m bench.replay URL TOKEN SERIALS_FILE SECONDS CONNECTIONS REPORTS_PER_REQUEST

Prints one JSON line: requests, chip samples stored, replays, errors, latencies (ms).
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import threading
import time
import urllib.parse

from factory import wire
from factory.wire import OEM, Metric, ReportId, ReportKey

CHIPS = 144


def chips_fragment(seed: int) -> bytes:
    """One server's per-chip metrics, serialized once (realistic values; counters steady)."""
    rng = random.Random(seed)
    columns = {
        Metric.POWER_W: [round(rng.uniform(600, 1000), 1) for _ in range(CHIPS)],
        Metric.ENERGY_J: [round(rng.uniform(1e8, 2e8), 1) for _ in range(CHIPS)],
        Metric.TEMP_C: [round(rng.uniform(55, 75), 2) for _ in range(CHIPS)],
        Metric.UTILIZATION: [round(rng.uniform(0.5, 1.0), 4) for _ in range(CHIPS)],
        Metric.HBM_USED_GB: [round(rng.uniform(50, 130), 2) for _ in range(CHIPS)],
        Metric.ECC_CORRECTED: [rng.randrange(100) for _ in range(CHIPS)],
        Metric.ECC_UNCORRECTED: [0] * CHIPS,
        Metric.LINK_ERRORS: [rng.randrange(10) for _ in range(CHIPS)],
        Metric.LINK_DOWN_S: [0.0] * CHIPS,
        Metric.THROTTLE_S: [0.0] * CHIPS,
        Metric.HEALTH: [int(wire.HealthCode.OK)] * CHIPS,
    }
    assert tuple(columns) == wire.METRIC_NAMES
    return json.dumps(columns, separators=(",", ":")).encode()


def main() -> int:
    url, token, serials_file, seconds, connections, per_request = sys.argv[1:7]
    seconds, connections, per_request = float(seconds), int(connections), int(per_request)
    with open(serials_file) as f:
        serials = json.load(f)
    fragments = [chips_fragment(i) for i in range(16)]
    # Pre-serialized up to the sequence number: {"Id", "MetricValues", "Oem": {OEM: {Source,
    # Chips}}, "ReportSequence", "Timestamp"}; only the last two change per request.
    opening = (
        f'{{"Id":"{ReportId.CHIPS}","MetricValues":[],"Oem":{{"{OEM}":{{"{ReportKey.SOURCE}":"'
    )
    head = [
        (
            opening.encode()
            + s.encode()
            + f'","{ReportKey.CHIPS}":'.encode()
            + fragments[i % 16]
            + b'}},"ReportSequence":"'
        )
        for i, s in enumerate(serials)
    ]
    # Each connection owns a slice of the servers, so each source's sequence rises in order.
    slices = [list(range(c, len(serials), connections)) for c in range(connections)]
    parsed = urllib.parse.urlsplit(url)
    path = f"{wire.API_ROOT}{wire.TELEMETRY_PATH}"
    stats = {"requests": 0, "chip_samples": 0, "replayed": 0, "errors": 0, "latencies": []}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(indexes: list[int]):
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        sequence = 0
        headers = {wire.AUTH_HEADER: wire.authorization(token), "Content-Type": "application/json"}
        while time.monotonic() < deadline:
            sequence += 1
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            tail = f'","Timestamp":"{stamp}.{sequence % 1000:03d}Z"}}'.encode()
            for start in range(0, len(indexes), per_request):
                chunk = indexes[start : start + per_request]
                body = (
                    b'{"reports":['
                    + b",".join(head[i] + str(sequence).encode() + tail for i in chunk)
                    + b"]}"
                )
                began = time.perf_counter()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
                    with lock:
                        stats["errors"] += 1
                    continue
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    stats["requests"] += 1
                    stats["latencies"].append(elapsed)
                    if response.status == 200:
                        result = json.loads(answer)
                        stats["chip_samples"] += result["chip_samples"]
                        stats["replayed"] += result["replayed"]
                    else:
                        stats["errors"] += 1
                if time.monotonic() >= deadline:
                    break

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(s,)) for s in slices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["elapsed"] = time.monotonic() - started
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
