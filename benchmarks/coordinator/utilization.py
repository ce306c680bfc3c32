"""Core utilization of the search coordinator on local HTEx (issue #5 benchmark).

Utilization = CPU time of every process of the run (coordinator with its retraining, the
HTEx interchanges, the surrogate and dft workers, the oracle) / (cores × wall time).

Set-up: a Cu13 cluster, CHGNet prior + Δ-model, EMT as the oracle, REX with 4 walkers
that all go to the oracle every iteration; local HTEx with one surrogate worker and one
dft worker on this 2-core machine (no more workers than cores); a stand-in oracle that
burns CPU (``busy: true``, no sleeping) for about as long as one surrogate relaxation
(measured first, in the same run of this script), so surrogate and oracle work per
iteration match. Two runs side by side, alternating: the default asynchronous
coordinator (surrogate work overlaps pending oracle calls) and ``--no-overlap`` (never
both at once, as AGOX). CPU time is sampled with psutil every 0.1 s over the coordinator's
process tree and the HTEx worker pools (found by the run directory on their command line;
per process: user + system, including reaped children), which misses at most the last
0.1 s of each process.

    .venv/bin/python benchmarks/coordinator/utilization.py [--repeats 2] [--calls 120]

writes ``benchmarks/coordinator/utilization.json`` and ``utilization.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

HERE = Path(__file__).resolve().parent
CORES = 2


def run_config(delay: float, calls: int, seed: int) -> dict:
    return {
        "name": "cu13-utilization",
        "problem": {"system": "emt_cluster", "formula": "Cu13"},
        "prior": "chgnet",
        "model": {"settings": {"n_inducing": 200, "ensemble_size": 5}},
        "algorithm": {"name": "rex", "settings": {
            "n_walkers": 4, "steps": 30, "oracle_interval": 1, "oracle_count": 4,
            "oracle_from": 4, "swap_interval": 2}},
        "oracle": {"kind": "calculator", "model": "emt", "delay": delay, "busy": True},
        "budget": {"oracle_calls": calls},
        "seed": seed,
    }


SITE = {"name": "htex-2", "kind": "htex", "cores": CORES,
        "surrogate": {"workers": 1, "provider": "local"},
        "dft": {"workers": 1, "ranks": 1, "provider": "local"}}


def measure(config: dict, workdir: Path, overlap: bool) -> dict:
    """Run `pesflow run` and sample the CPU time of its whole process tree."""
    cfg, site, out = workdir / "run.yaml", workdir / "site.yaml", workdir / "run"
    cfg.write_text(yaml.safe_dump(config))
    site.write_text(yaml.safe_dump(SITE))
    argv = [sys.executable, "-m", "pesflow.cli", "run", str(cfg), "--site", str(site),
            "--out", str(out), "--quiet"] + ([] if overlap else ["--no-overlap"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    seen: dict[int, float] = {}
    tracked: dict[int, psutil.Process] = {proc.pid: root}
    last_scan = 0.0
    while proc.poll() is None:
        if time.perf_counter() - last_scan > 0.5:
            # HTEx worker pools are started detached (not our descendants): find them by
            # the run directory on their command line
            for p in psutil.process_iter(["cmdline"]):
                if str(out) in " ".join(p.info["cmdline"] or []):
                    tracked.setdefault(p.pid, p)
            last_scan = time.perf_counter()
        for p in list(tracked.values()):
            try:
                for child in p.children(recursive=True):
                    tracked.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass
        for p in list(tracked.values()):
            try:
                t = p.cpu_times()
                seen[p.pid] = t.user + t.system + t.children_user + t.children_system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"pesflow run failed with {proc.returncode}")
    summary = json.loads((out / "summary.json").read_text())
    cpu = sum(seen.values())
    return {"overlap": overlap, "wall_s": wall, "cpu_s": cpu,
            "utilization": cpu / (CORES * wall), "processes": len(seen),
            "oracle_calls": summary["oracle_calls"]["done"],
            "surrogate_tasks": summary["surrogate_tasks"]["done"],
            "best_energy": summary["best"]["energy"]}


def relax_seconds() -> float:
    """Median wall time of one Cu13 surrogate relaxation (CHGNet + a trained Δ-model)."""
    import numpy as np

    from pesflow.models.delta import DeltaModel, DeltaSettings
    from pesflow.models.priors import make_prior
    from pesflow.models.registry import get_calculator
    from pesflow.search.rex import REX
    from pesflow.search.tasks import run_surrogate_relax
    from pesflow.structures.problem import emt_cluster

    problem = emt_cluster("Cu13")
    model = DeltaModel(problem.species, make_prior("chgnet"),
                       DeltaSettings(n_inducing=200, ensemble_size=5))
    engine = REX(problem, {"n_walkers": 4, "oracle_count": 4, "oracle_from": 4,
                           "steps": 30}, seed=0)
    oracle = get_calculator("emt")
    data = []  # a model trained on 20 structures, as the run's is after a few iterations
    for _ in range(20):
        atoms = engine._random()
        atoms.calc = oracle
        atoms.get_potential_energy()
        data.append(atoms)
    model.add_data(data)
    model.train()
    times = []
    for _ in range(5):
        for task in engine.propose():
            t = time.perf_counter()
            engine.tell([run_surrogate_relax(task, model.calculator())])
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--calls", type=int, default=120)
    args = parser.parse_args()
    delay = relax_seconds()
    print(f"one surrogate relaxation: {delay:.3f} s -> oracle burns {delay:.3f} s CPU per call")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for overlap in (True, False):  # alternate, so machine load hits both alike
                work = Path(tmp) / f"{repeat}-{overlap}"
                work.mkdir()
                row = measure(run_config(delay, args.calls, seed=repeat), work, overlap)
                row["repeat"] = repeat
                rows.append(row)
                print(json.dumps(row))
    summary = {}
    for overlap in (True, False):
        sel = [r for r in rows if r["overlap"] == overlap]
        summary["overlap" if overlap else "no_overlap"] = {
            "median_utilization": statistics.median(r["utilization"] for r in sel),
            "median_wall_s": statistics.median(r["wall_s"] for r in sel),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in sel),
        }
    summary["wall_ratio_no_overlap_over_overlap"] = (
        summary["no_overlap"]["median_wall_s"] / summary["overlap"]["median_wall_s"])
    result = {
        "command": "benchmarks/coordinator/utilization.py " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "load_before": os.getloadavg()},
        "setup": {"site": SITE, "config": run_config(delay, args.calls, 0),
                  "relax_seconds": delay},
        "runs": rows, "summary": summary,
    }
    (HERE / "utilization.json").write_text(json.dumps(result, indent=1))
    plot(rows, HERE / "utilization.png")
    print(json.dumps(summary, indent=1))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), constrained_layout=True)
    for ax, key, label in ((axes[0], "utilization", "core utilization"),
                           (axes[1], "wall_s", "wall time (s)")):
        for x, overlap in enumerate((True, False)):
            values = [r[key] for r in rows if r["overlap"] == overlap]
            ax.plot([x] * len(values), values, "o", color="C0" if overlap else "C1")
            ax.plot([x - 0.2, x + 0.2], [statistics.median(values)] * 2, "k-")
        ax.set_xticks([0, 1], ["overlap (default)", "--no-overlap"])
        ax.set_ylabel(label)
        ax.set_xlim(-0.6, 1.6)
    axes[0].axhline(0.9, ls="--", color="0.5")
    axes[0].set_ylim(0, 1.05)
    fig.suptitle("REX on Cu13 (CHGNet + Δ, EMT oracle burning CPU), local HTEx, 2 workers, 2 cores")
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
