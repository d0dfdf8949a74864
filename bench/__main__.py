"""`make bench`: run every bench/bench_*.py and print their results."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from bench.common import setup_django


def main(selected: list[str]) -> int:
    setup_django()
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if selected:
        names = [n for n in names if any(s in n for s in selected)]
    failed = False
    for name in names:
        result = importlib.import_module(f"bench.{name}").run()
        verdict = "held" if result["held"] else "MISSED"
        print(
            f"{result['name']}: {result['value']} {result['unit']} vs baseline "
            f"{result['baseline']} -> ratio {result['ratio']} (target {result['target']}): "
            f"{verdict}"
        )
        failed |= not result["held"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
