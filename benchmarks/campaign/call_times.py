"""Wall seconds at given oracle calls, pesflow's repeats against AGOX's, per cell.

The median seconds per call of a whole repeat mixes start-up with the steady state,
and repeats that stop at an early success carry more start-up per call. This prints,
for pesflow's archived repeats (``bench.json``) and AGOX's judged repeats
(``agox_compare.py``'s ``judged/``), the median wall time at calls 5, 10 and 40 and the
median seconds per call between calls 5 and 10::

    .venv/bin/python benchmarks/campaign/call_times.py \\
        benchmarks/campaign/surface-standin-sitting13/repeats/Au4-Ag111 \\
        benchmarks/campaign/agox-surface/judged/Au4-Ag111 --cells REX/morse GOFEE/morse
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def pesflow_times(cell: Path) -> list[dict[int, float]]:
    """Wall time at each oracle call, one dict per repeat (``rNN/bench.json``)."""
    return [{e["call"]: e["wall_time"] for e in json.loads(f.read_text())["evaluations"]}
            for f in sorted(cell.glob("r*/bench.json"))]


def agox_times(cell: Path) -> list[dict[int, float]]:
    """The same from agox_compare.py's judged repeats (``rNN.json``)."""
    return [{r["call"]: r["wall_time"] for r in json.loads(f.read_text())["judged"]["rows"]}
            for f in sorted(cell.glob("r*.json"))]


def summary(repeats: list[dict[int, float]], calls=(5, 10, 40)) -> dict:
    at = {c: [t[c] for t in repeats if c in t] for c in calls}
    steady = [(t[10] - t[5]) / 5 for t in repeats if 10 in t and 5 in t]
    return {"repeats": len(repeats),
            **{f"wall_at_call_{c}": statistics.median(v) if v else None for c, v in at.items()},
            "s_per_call_6_to_10": statistics.median(steady) if steady else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pesflow", type=Path, help="pesflow's repeats/<problem> directory")
    parser.add_argument("agox", type=Path, help="agox_compare.py's judged/<problem> directory")
    parser.add_argument("--cells", nargs="+", required=True, metavar="ALG/PRIOR")
    args = parser.parse_args(argv)
    for cell in args.cells:
        algorithm, prior = cell.split("/", 1)
        ours = pesflow_times(args.pesflow / algorithm / prior)
        theirs = agox_times(args.agox / f"AGOX-{algorithm}" / prior)
        if not ours or not theirs:
            print(f"call_times.py: error: no repeats of {cell} under {args.pesflow} or "
                  f"{args.agox}", file=sys.stderr)
            return 2
        print(json.dumps({"cell": cell, "pesflow": summary(ours), "agox": summary(theirs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
