"""Per-chip values packed into one column per metric: a little-endian array, one element per chip.

Why not one row per chip: a million chips every 10 s is 100,000 rows/s, and PostgreSQL's ~24-byte
row header plus alignment would outweigh the data. One row per UltraServer and sample, with the
chip values packed, is ~140× fewer rows, ~2× smaller, and written with the same ``COPY``. The
codec lives here and nowhere else; ``unpack`` gives the per-chip lists back.
"""

from __future__ import annotations

import sys
from array import array

from factory import wire

# metric -> array typecode (factory.wire): counters exact as 64-bit integers, gauges as floats.
CODES = {m.name: m.type.value for m in wire.CHIP_METRICS}
METRICS = tuple(CODES)
# Kept with the latest state only, derived by the health rules from the metrics above.
DERIVED = {"link_outage_s": "f"}

# Telemetry categories a sovereignty egress rule speaks of, and the metrics each covers.
CATEGORIES = {
    c.value: tuple(m.name for m in wire.CHIP_METRICS if m.category == c) for c in wire.Category
}
CATEGORY_OF = {metric: category for category, metrics in CATEGORIES.items() for metric in metrics}

_SWAP = sys.byteorder != "little"


def pack(metric: str, values: list) -> bytes:
    """Raises TypeError/OverflowError on values of the wrong kind (the caller answers 400)."""
    packed = array(CODES.get(metric) or DERIVED[metric], values)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def unpack(metric: str, data: bytes | memoryview | None) -> list | None:
    if data is None:
        return None
    values = array(CODES.get(metric) or DERIVED[metric])
    values.frombytes(bytes(data))
    if _SWAP:
        values.byteswap()
    return values.tolist()
