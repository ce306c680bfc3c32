"""Archive repeats whose run directories are gone, from their published figures (one-off).

``pesflow bench --results DIR`` archives finished repeats under ``DIR/repeats/`` so that a
sitting on another machine can restore them (docs/BENCHMARKS.md, "Another machine").
Results published before it did hold only ``results.json``; their run directories were
lost with the machine that ran them. For a problem judged by a fixed criterion (the basin
test, a given energy) a repeat's published figures are all the campaign's results use:
first success (call, CPU time), calls and CPU time at the end, best energies, seed. This
script writes, for every finished repeat of such a problem that ``DIR/repeats`` lacks, the
archive a sitting restores: ``run.yaml`` (the campaign's config of that repeat) and a
``bench.json`` rebuilt from those figures (no per-call rows; ``"rebuilt_from"`` says so).

A problem whose reference is chosen after the runs is left alone: choosing it needs the
structures, which were not published.

    .venv/bin/python benchmarks/campaign/archive_published.py \\
        benchmarks/campaign/standins.yaml benchmarks/campaign/standins

Then ``pesflow bench CAMPAIGN --out NEW --report --results DIR`` rebuilds the published
cells from the archive; this script checks that it gives back the published figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from pesflow.config import dump_run_config
from pesflow.store.atomic import atomic_write_bytes, atomic_write_json
from pesflow.workflows.bench import (
    RECORD,
    RECORD_FORMAT,
    Plan,
    chosen_after_runs,
    load_campaign,
    plan_campaign,
    report,
)
from pesflow.workflows.bench_archive import ARCHIVE

#: The figures a rebuilt cell must give back exactly (check_seconds is split evenly).
COMPARED = ("finished", "successes", "censored", "success_calls", "success_cpu_s",
            "calls_at_end", "cpu_s_at_end", "best_raw_energy", "best_basin_energy", "seeds",
            "median_calls_to_success", "curve_calls", "curve_cpu")


def rebuilt_records(plan: Plan, published: Path) -> dict[Path, tuple[str, dict]]:
    """Archive folder -> (run.yaml text, bench.json) for every finished repeat of a
    fixed-criterion problem in ``published/results.json`` not yet archived."""
    results = json.loads((published / "results.json").read_text())
    found = {}
    for cell in plan.cells:
        if chosen_after_runs(cell.problem.success):
            continue
        entry = results["problems"].get(cell.problem.name, {}).get("cells", {}).get(
            f"{cell.algorithm.name}/{cell.prior.name}")
        if not entry or not entry["finished"]:
            continue
        (budget,) = entry["budgets"]  # one budget per cell in every published campaign
        share = entry["check_seconds"] / entry["finished"]
        for k, seed in enumerate(entry["seeds"]):
            repeat = cell.repeats[seed - plan.campaign.seed]
            folder = published / ARCHIVE / repeat.path.relative_to(plan.out)
            if (folder / RECORD).exists():
                continue
            call, cpu = entry["success_calls"][k], entry["success_cpu_s"][k]
            # every published sitting ran 2 repeats on 2 cores: cores × wall = wall
            record = {
                "format": RECORD_FORMAT, "version": 1, "campaign": plan.campaign.name,
                "problem": repeat.problem, "algorithm": repeat.algorithm,
                "prior": repeat.prior, "repeat": repeat.index, "seed": seed,
                "budget": budget, "finished": True, "error": None,
                "stop_reason": "stop condition met" if call else "budget",
                "success": None if call is None else {"call": call, "cpu_time": cpu,
                                                      "wall_time": cpu},
                "oracle_calls": entry["calls_at_end"][k], "cpu_time": entry["cpu_s_at_end"][k],
                "wall_time": entry["cpu_s_at_end"][k],
                "best_energy": entry["best_raw_energy"][k],
                "best_basin_energy": entry["best_basin_energy"][k],
                "check_seconds": share, "sessions": [], "evaluations": [],
                "rebuilt_from": "the published results.json (its run directory was lost); "
                                "no per-call rows, wall time taken equal to CPU time",
            }
            found[folder] = (dump_run_config(repeat.config), record)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", type=Path)
    parser.add_argument("published", type=Path, help="the --results directory")
    args = parser.parse_args()
    campaign = load_campaign(args.campaign)
    before = json.loads((args.published / "results.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_campaign(campaign, Path(tmp) / "out")
        found = rebuilt_records(plan, args.published)
        for folder, (config, record) in found.items():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / "run.yaml", config.encode())
            atomic_write_json(folder / RECORD, record, indent=1)
        print(f"archived {len(found)} repeat(s) under {args.published / ARCHIVE}")
        # the check: a report restored from a copy of the archive gives back the figures
        copy = Path(tmp) / "published"
        copy.mkdir()
        shutil.copyfile(args.published / "results.json", copy / "results.json")
        shutil.copytree(args.published / ARCHIVE, copy / ARCHIVE)
        again = report(campaign, plan.out, publish=copy)
    deferred = {c.problem.name for c in plan.cells if chosen_after_runs(c.problem.success)}
    bad = [f"{name} {key} {field}"
           for name, problem in before["problems"].items() if name not in deferred
           for key, cell in problem["cells"].items()
           for field in COMPARED
           if cell.get(field) != again["problems"][name]["cells"][key].get(field)]
    if bad:
        print("rebuilt figures differ from the published ones:\n  " + "\n  ".join(bad),
              file=sys.stderr)
        return 1
    print("a report from the archive alone gives back every published figure compared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
