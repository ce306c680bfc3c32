"""Core utilization of the search coordinator on local HTEx (issue #5 benchmark).

Utilization = CPU time of every process of the run (coordinator with its retraining, the
HTEx interchanges, the workers, the oracle) / (cores × wall time).

Set-up: a Cu13 cluster, CHGNet prior + Δ-model, EMT as the oracle, REX with 4 walkers
that all go to the oracle every iteration, on this 2-core machine with no more workers
than cores; a stand-in oracle that burns CPU (``busy: true``, no sleeping) for as long as
one surrogate relaxation (measured first, in the same run of this script), so surrogate
and oracle work per iteration match. Three modes, alternating:

- ``overlap``: the default coordinator (surrogate work overlaps pending oracle calls) on
  one pool of 2 workers shared by surrogate and oracle tasks (``dft: {shared: true}``);
- ``no-overlap``: the same site with ``--no-overlap`` (never both at once, as AGOX);
- ``overlap-separate``: the default coordinator on a pool per label, 1 worker each.

CPU time is sampled with psutil every 0.25 s over the coordinator's process tree and the
HTEx worker pools (found by the run directory on their command line; per process: user +
system, including reaped children), which misses at most the last 0.25 s of each process.
The sampler's own CPU time is reported beside it (it competes for the same 2 cores).

    .venv/bin/python benchmarks/coordinator/utilization.py [--repeats 2] [--calls 100]

writes ``benchmarks/coordinator/utilization.json`` and ``utilization.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
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


#: One pool of 2 single-core workers for surrogate and oracle tasks alike (``dft.shared``):
#: whichever work exists fills both cores; oracle tasks go first.
SITE = {"name": "htex-shared-2", "kind": "htex", "cores": CORES,
        "surrogate": {"workers": CORES, "provider": "local"},
        "dft": {"shared": True, "ranks": 1}}
#: Session 3's set-up: a pool per label, one worker each.
SEPARATE = {"name": "htex-2", "kind": "htex", "cores": CORES,
            "surrogate": {"workers": 1, "provider": "local"},
            "dft": {"workers": 1, "ranks": 1, "provider": "local"}}


GROUPS = ("coordinator", "surrogate", "dft")


def _group(proc: psutil.Process, root: int) -> str | None:
    """Which part of the run a process belongs to: the coordinator's tree (with its
    interchanges and training thread) or one of the two HTEx worker pools."""
    try:
        chain = [proc, *proc.parents()]
    except psutil.NoSuchProcess:
        return None
    for p in chain:
        if p.pid == root:
            return "coordinator"
        try:
            cmd = " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if "process_worker_pool" in cmd:
            for label in ("surrogate", "dft"):
                if f"/{label}/" in cmd:
                    return label
    return None


def _sample(proc: subprocess.Popen, out: Path, t0: float) -> tuple[list, dict]:
    """CPU seconds per group every 0.25 s until ``proc`` ends: (samples, per-pid CPU)."""
    root = psutil.Process(proc.pid)
    seen: dict[int, float] = {}
    group_of: dict[int, str] = {proc.pid: "coordinator"}
    tracked: dict[int, psutil.Process] = {proc.pid: root}
    samples = []  # (seconds since start, CPU seconds per group)
    last_scan = 0.0
    while proc.poll() is None:
        if time.time() - last_scan > 1.0:
            # HTEx worker pools are started detached (not our descendants): find them by
            # the run directory on their command line
            for p in psutil.process_iter(["cmdline"]):
                if str(out) in " ".join(p.info["cmdline"] or []):
                    tracked.setdefault(p.pid, p)
            for p in list(tracked.values()):
                try:
                    for child in p.children(recursive=True):
                        tracked.setdefault(child.pid, child)
                except psutil.NoSuchProcess:
                    pass
            last_scan = time.time()
        for pid, p in list(tracked.items()):
            if pid not in group_of:
                group = _group(p, proc.pid)
                if group is None:
                    continue
                group_of[pid] = group
            try:
                t = p.cpu_times()
                seen[pid] = t.user + t.system + t.children_user + t.children_system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        cpu = dict.fromkeys(GROUPS, 0.0)
        for pid, value in seen.items():
            cpu[group_of[pid]] += value
        samples.append((time.time() - t0, cpu))
        time.sleep(0.25)
    return samples, seen


#: mode -> (site, overlap)
MODES = {"overlap": (SITE, True), "no-overlap": (SITE, False),
         "overlap-separate": (SEPARATE, True)}


def measure(config: dict, workdir: Path, mode: str) -> dict:
    """Run `pesflow run` and sample the CPU time of its whole process tree over time."""
    site_config, overlap = MODES[mode]
    cfg, site, out = workdir / "run.yaml", workdir / "site.yaml", workdir / "run"
    cfg.write_text(yaml.safe_dump(config))
    site.write_text(yaml.safe_dump(site_config))
    argv = [sys.executable, "-m", "pesflow.cli", "run", str(cfg), "--site", str(site),
            "--out", str(out), "--quiet"] + ([] if overlap else ["--no-overlap"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0, sampler0 = time.time(), time.process_time()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        samples, seen = _sample(proc, out, t0)
    finally:  # interrupted (Ctrl-C, a timeout): leave no run behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            from pesflow.executors.leftovers import stop_leftovers

            stop_leftovers(out)
    wall, sampler = time.time() - t0, time.process_time() - sampler0
    if proc.returncode != 0:
        raise RuntimeError(f"pesflow run failed with {proc.returncode}")
    summary = json.loads((out / "summary.json").read_text())
    performed = [json.loads(line)["time"] - t0
                 for line in (out / "oracle" / "performed.log").read_text().splitlines()]
    total = sum(seen.values())
    steady = (min(performed), max(performed))
    return {"mode": mode, "wall_s": wall, "cpu_s": total,
            "utilization": total / (CORES * wall),
            "sampler_cpu_s": sampler,
            "steady_window_s": steady,
            "steady_utilization": _window_utilization(samples, *steady),
            "cpu_s_by_group": samples[-1][1] if samples else {},
            "processes": len(seen),
            "oracle_calls": summary["oracle_calls"]["done"],
            "surrogate_tasks": summary["surrogate_tasks"]["done"],
            "best_energy": summary["best"]["energy"],
            "samples": [(round(t, 2), {k: round(v, 3) for k, v in c.items()})
                        for t, c in samples[::2]]}


def _total_at(samples: list, t: float) -> float:
    """CPU seconds of all groups at time ``t`` (linear between samples)."""
    times = [s[0] for s in samples]
    totals = [sum(s[1].values()) for s in samples]
    import numpy as np

    return float(np.interp(t, times, totals))


def _window_utilization(samples: list, start: float, end: float) -> float:
    """Utilization between ``start`` and ``end`` (the steady part: first to last oracle
    evaluation, so start-up and shut-down are left out)."""
    return (_total_at(samples, end) - _total_at(samples, start)) / (CORES * (end - start))


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
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--out", type=Path, default=HERE, help="where the JSON and PNG go")
    args = parser.parse_args()
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the run being measured is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    delay = relax_seconds()
    print(f"one surrogate relaxation: {delay:.3f} s -> oracle burns {delay:.3f} s CPU per call")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for mode in MODES:  # alternate, so machine load hits every mode alike
                work = Path(tmp) / f"{repeat}-{mode}"
                work.mkdir()
                row = measure(run_config(delay, args.calls, seed=repeat), work, mode)
                row["repeat"] = repeat
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "samples"}))
    summary = {}
    for mode in MODES:
        sel = [r for r in rows if r["mode"] == mode]
        summary[mode] = {
            "median_utilization": statistics.median(r["utilization"] for r in sel),
            "median_steady_utilization": statistics.median(r["steady_utilization"] for r in sel),
            "median_wall_s": statistics.median(r["wall_s"] for r in sel),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in sel),
            "median_sampler_cpu_s": statistics.median(r["sampler_cpu_s"] for r in sel),
        }
    for mode in ("no-overlap", "overlap-separate"):
        summary[f"wall_ratio_{mode}_over_overlap"] = (
            summary[mode]["median_wall_s"] / summary["overlap"]["median_wall_s"])
    result = {
        "command": "benchmarks/coordinator/utilization.py " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "load_before": os.getloadavg()},
        "setup": {"sites": {m: site for m, (site, _) in MODES.items()},
                  "config": run_config(delay, args.calls, 0),
                  "relax_seconds": delay},
        "runs": rows, "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "utilization.json").write_text(json.dumps(result, indent=1))
    plot(rows, args.out / "utilization.png")
    print(json.dumps(summary, indent=1))


def plot(rows: list[dict], path: Path) -> None:
    """Left: utilization (whole run and steady part) per mode; right: cores in use over
    time by part of the run, for the first run of each mode."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(MODES), figsize=(17, 3.8), constrained_layout=True,
                             gridspec_kw={"width_ratios": [1.2] + [1.6] * len(MODES)})
    ax = axes[0]
    for x, mode in enumerate(MODES):
        for dx, key, marker in ((-0.12, "utilization", "o"), (0.12, "steady_utilization", "s")):
            values = [r[key] for r in rows if r["mode"] == mode]
            ax.plot([x + dx] * len(values), values, marker, color=f"C{x}",
                    label=("whole run" if key == "utilization" else "steady part")
                    if x == 0 else None, mfc="none" if marker == "s" else None)
            ax.plot([x + dx - 0.08, x + dx + 0.08], [statistics.median(values)] * 2, "k-")
    ax.set_xticks(range(len(MODES)), [m.replace("-s", "\ns") for m in MODES], fontsize=8)
    ax.set_ylabel("core utilization")
    ax.set_xlim(-0.6, len(MODES) - 0.4)
    ax.set_ylim(0, 1.05)
    ax.axhline(0.9, ls="--", color="0.5")
    ax.legend(loc="lower left", fontsize=8)
    for ax, mode in zip(axes[1:], MODES, strict=True):
        row = next(r for r in rows if r["mode"] == mode)
        # rates over 2 s (4 samples): CPU time of a process advances in scheduler ticks
        t = np.array([s[0] for s in row["samples"]])[::4]
        cpu = {g: np.array([s[1][g] for s in row["samples"]])[::4] for g in GROUPS}
        mid = 0.5 * (t[1:] + t[:-1])
        shared = MODES[mode][0]["dft"].get("shared", False)
        groups = [g for g in GROUPS if not (shared and g == "dft")]
        rates = [np.diff(cpu[g]) / np.diff(t) for g in groups]
        labels = ["surrogate + dft (shared)" if shared and g == "surrogate" else g
                  for g in groups]
        ax.stackplot(mid, rates, labels=labels, step="mid", alpha=0.8)
        ax.axvspan(*row["steady_window_s"], color="0.9", zorder=-1, label="steady part")
        ax.axhline(CORES, color="k", lw=0.8)
        ax.set_ylim(0, CORES + 0.4)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("cores in use")
        ax.set_title(f"{mode}: {row['utilization']:.0%} whole, "
                     f"{row['steady_utilization']:.0%} steady, {row['wall_s']:.0f} s", fontsize=9)
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle("REX on Cu13 (CHGNet + Δ, EMT oracle burning CPU), local HTEx on 2 cores, "
                 "no more workers than cores", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
