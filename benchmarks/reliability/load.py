"""Load benchmark of the search coordinator on local HTEx (issue #8, item 6).

Two runs of ``pesflow run`` on local HTEx (2 surrogate workers, 1 dft worker, each pool
kept up: ``min_blocks: 1``), Morse ρ0 = 6 prior + Δ-model, LJ oracle, budgets of oracle
calls and wall time:

- ``rex100``: REX with 100 walkers on LJ13 (5 relaxation steps), 5 walkers to the oracle
  every second iteration;
- ``inflight1000``: REX with 1,000 walkers on LJ13 (3 relaxation steps): REX submits a
  whole iteration at once (one relaxation per walker, plus a single point per walker
  after every model update), and the coordinator hands every surrogate task to Parsl at
  once, so 1,000 to 2,000 surrogate tasks are in flight at a time.

While a run goes, a sampler (every ``--every`` s) records the resident memory (RSS) of
the coordinator, of the HTEx interchanges and of the worker pools (started detached:
found by ``RUN_DIR/parsl`` on their command line), and the completed and in-flight task
counts from the checkpoint's state (``/state_json``, read with h5py). A second thread
times ``pesflow status RUN_DIR`` and ``pesflow status RUN_DIR --json`` (wall time of the
subprocess), and the same :func:`~pesflow.workflows.search.load_status` in this process
(imports done: the part that grows with the run). Memory growth is the slope of RSS
against completed tasks over the second half of the run (completed tasks ≥ half the
final count), in MB per 1,000 tasks. Afterwards Parsl's ``parsl.log`` tells how long each
oracle task waited for Parsl's launch thread and whether a pool was scaled in.

    .venv/bin/python benchmarks/reliability/load.py [--repeats 2] [--only rex100] [--quick]

writes ``benchmarks/reliability/load.json`` and ``load.png`` (not with ``--quick``).
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
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import yaml

HERE = Path(__file__).resolve().parent
MB = 1024**2

# min_blocks 1: with the default 0, Parsl stops a pool idle for 120 s and starts it again
# on the next task (the dft pool in these runs), which would mask memory growth with tasks
KEEP = {"type": "local", "min_blocks": 1}
SITE = {"name": "htex-load", "kind": "htex", "cores": 2,
        "surrogate": {"workers": 2, "provider": KEEP},
        "dft": {"workers": 1, "ranks": 1, "provider": KEEP}}


def rex_config(name: str, n: int, walkers: int, steps: int, interval: int,
               calls: int, wall: str | None = None) -> dict:
    """A REX run on LJ``n`` with the Morse ρ0 = 6 prior + Δ-model (as tests/search_runs.py)."""
    return {
        "name": name,
        "problem": {"system": "lj_cluster", "n": n},
        "prior": "morse:rho0=6",
        "model": {"settings": {"n_inducing": 200, "ensemble_size": 3}},
        "algorithm": {"name": "rex", "settings": {
            "n_walkers": walkers, "steps": steps, "oracle_interval": interval,
            "oracle_count": 5, "oracle_from": 9, "swap_interval": 2}},
        "oracle": {"kind": "calculator", "model": "lj"},
        "budget": {"oracle_calls": calls, **({"wall_time": wall} if wall else {})},
        "seed": 1,
    }


def runs(quick: bool) -> dict[str, dict]:
    """The two run configs by name (tiny ones with ``quick``)."""
    if quick:  # a smoke test of this script (seconds), not the benchmark
        return {"rex100": rex_config("rex100", 13, 20, 3, 1, 10),
                "inflight1000": rex_config("inflight1000", 13, 100, 3, 1, 10)}
    return {"rex100": rex_config("rex100", 13, 100, 5, 2, 40, wall="4m"),
            "inflight1000": rex_config("inflight1000", 13, 1000, 3, 1, 10, wall="5m")}


# ----------------------------------------------------------------------------- sampling


def read_state(checkpoint: Path) -> dict | None:
    """Task counts of the last checkpoint (None while there is none or it is replaced)."""
    try:
        with h5py.File(checkpoint, "r") as h5:
            text = h5["state_json"][0]
    except (OSError, KeyError):
        return None
    state = json.loads(text.decode() if isinstance(text, bytes) else text)
    counts = state.get("counts", {})
    in_flight = state.get("engine", {}).get("in_flight", [])
    return {
        "surrogate_done": counts.get("surrogate_tasks", 0),
        "oracle_done": counts.get("oracle_tasks", 0),
        "n_calls": state.get("n_calls", 0),
        "surrogate_in_flight": sum(t["kind"] != "oracle" for t in in_flight),
        "oracle_in_flight": sum(t["kind"] == "oracle" for t in in_flight),
        "model_version": state.get("model_version", 0),
        "state_json_bytes": len(text),
    }


class Processes:
    """The coordinator, its children (interchanges) and the detached worker pools."""

    def __init__(self, root: int, run: Path) -> None:
        self.root = psutil.Process(root)
        self.parsl = str(run / "parsl")
        self.tracked: dict[int, psutil.Process] = {root: self.root}
        self.last_scan = 0.0

    def _role(self, proc: psutil.Process, cmdline: str) -> str:
        if proc.pid == self.root.pid:
            return "coordinator"
        if "interchange" in cmdline:
            return "interchange"
        return "workers"  # process_worker_pool.py managers and their worker processes

    def rss(self) -> dict[str, float]:
        """RSS in MB per role (RSS counts shared pages in every process: an upper bound)."""
        if time.perf_counter() - self.last_scan > 2.0:
            for p in psutil.process_iter(["cmdline"]):
                if self.parsl in " ".join(p.info["cmdline"] or []):
                    self.tracked.setdefault(p.pid, p)
            self.last_scan = time.perf_counter()
        for p in list(self.tracked.values()):
            try:
                for child in p.children(recursive=True):
                    self.tracked.setdefault(child.pid, child)
            except psutil.Error:
                pass
        out = {"coordinator": 0.0, "interchange": 0.0, "workers": 0.0}
        n = 0
        for pid, p in list(self.tracked.items()):
            try:
                cmdline = " ".join(p.cmdline())
                out[self._role(p, cmdline)] += p.memory_info().rss / MB
                n += 1
            except psutil.Error:
                del self.tracked[pid]
        out["total"] = sum(out.values())
        out["processes"] = n
        try:
            cpu = self.root.cpu_times()
            out["coordinator_cpu_s"] = cpu.user + cpu.system
        except psutil.Error:
            pass
        return out


def time_status(run: Path, env: dict, t0: float, records: list, stop: threading.Event,
                every: float) -> None:
    """Every ``every`` s: `pesflow status` (text, then --json) and in-process load_status."""
    from pesflow.store.checkpoint import read_checkpoint
    from pesflow.workflows.search import load_status

    while not stop.wait(every):
        if not (run / "checkpoint.h5").exists():
            continue
        row: dict = {"t": time.perf_counter() - t0}
        for key, extra in (("text_s", []), ("json_s", ["--json"])):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "pesflow.cli", "status", str(run), *extra],
                env=env, capture_output=True, text=True)
            row[key] = time.perf_counter() - start
            row[key.replace("_s", "_rc")] = done.returncode
            if extra and done.returncode == 0:
                row["json_bytes"] = len(done.stdout)
        try:
            start = time.perf_counter()
            read_checkpoint(run / "checkpoint.h5")
            row["read_checkpoint_s"] = time.perf_counter() - start
            start = time.perf_counter()
            load_status(run)
            row["load_status_s"] = time.perf_counter() - start
        except Exception as error:  # a checkpoint replaced mid-read would say so here
            row["error"] = f"{type(error).__name__}: {error}"
        records.append(row)


def measure(name: str, config: dict, workdir: Path, every: float, status_every: float) -> dict:
    """Run one `pesflow run`, sampling memory, task counts and status latency."""
    cfg, site, run = workdir / "run.yaml", workdir / "site.yaml", workdir / "run"
    cfg.write_text(yaml.safe_dump(config))
    site.write_text(yaml.safe_dump(SITE))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "pesflow.cli", "run", str(cfg), "--site", str(site),
            "--out", str(run), "--quiet"]
    t0 = time.perf_counter()
    # to a file: the final status table (a row per walker) would fill a pipe and block
    out = (workdir / "stdout.txt").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    procs = Processes(proc.pid, run)
    samples: list[dict] = []
    status: list[dict] = []
    stop = threading.Event()
    timer = threading.Thread(target=time_status,
                             args=(run, env, t0, status, stop, status_every), daemon=True)
    timer.start()
    last: dict = {}
    while proc.poll() is None:
        row = {"t": time.perf_counter() - t0, **procs.rss()}
        last = read_state(run / "checkpoint.h5") or last
        row.update(last)
        samples.append(row)
        time.sleep(every)
    wall = time.perf_counter() - t0
    stop.set()
    timer.join()
    out.close()
    output = (workdir / "stdout.txt").read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: pesflow run failed with {proc.returncode}:\n{output}")
    summary = json.loads((run / "summary.json").read_text())
    result = {"name": name, "wall_s": wall, "summary": summary, "samples": samples,
              "status": status, "figures": figures(samples, status, summary)}
    result["figures"]["parsl"] = parsl_log_figures(run / "parsl")
    return result


def parsl_log_figures(parsl_dir: Path) -> dict:
    """From Parsl's own logs: how long oracle (dft) tasks waited for Parsl's launch
    thread (one thread launches the tasks of every executor, in submission order), how
    long they ran once launched, and how often Parsl scaled a pool in."""
    sent, launched, done = {}, {}, {}
    scale_in = {"surrogate": 0, "dft": 0}
    for log in parsl_dir.glob("*/parsl.log"):
        for line in log.read_text(errors="replace").splitlines():
            words = line.split()
            if "Idle time has reached" in line:
                for label in scale_in:
                    scale_in[label] += f"[Scaling executor {label}]" in line
            elif "will be sent to executor dft" in line:
                sent[words[words.index("Task") + 1]] = float(words[0])
            elif "launched on executor dft" in line:
                launched[words[words.index("task") + 1]] = float(words[0])
            elif "from launched to exec_done" in line:
                done[words[words.index("Task") + 1]] = float(words[0])
    wait = [launched[k] - sent[k] for k in sent if k in launched]
    run = [done[k] - launched[k] for k in launched if k in done]

    def stats(values: list[float]) -> dict | None:
        return {"median": statistics.median(values), "max": max(values),
                "n": len(values)} if values else None

    return {"oracle_launch_wait_s": stats(wait), "oracle_launched_to_done_s": stats(run),
            "pools_scaled_in": scale_in}


# ----------------------------------------------------------------------------- figures


def steady(samples: list[dict]) -> list[dict]:
    """Samples up to the one where the completed-task count reached its final value."""
    done = [s.get("surrogate_done", 0) + s.get("oracle_done", 0) for s in samples]
    return samples[: done.index(max(done)) + 1] if done else samples


def slope(samples: list[dict], key: str) -> float | None:
    """MB per 1,000 completed tasks, fitted where completed tasks ≥ half the final count.

    Samples after the last change of the count are left out: Parsl's shutdown then stops
    the worker pools, which is no growth or shrinkage with tasks.
    """
    samples = steady(samples)
    done = np.array([s.get("surrogate_done", 0) + s.get("oracle_done", 0) for s in samples])
    rss = np.array([s[key] for s in samples])
    keep = (done >= done.max() / 2) & (rss > 0)
    if len(np.unique(done[keep])) < 3:
        return None
    return float(np.polyfit(done[keep], rss[keep], 1)[0] * 1000)


def figures(samples: list[dict], status: list[dict], summary: dict) -> dict:
    """Peaks, growth slopes and status latencies of one run."""
    def stats(key: str) -> dict | None:
        values = [r[key] for r in status if key in r]
        if not values:
            return None
        return {"median": statistics.median(values), "max": max(values), "n": len(values)}

    return {
        "surrogate_tasks_done": summary["surrogate_tasks"]["done"],
        "oracle_calls": summary["oracle_calls"]["done"],
        "peak_surrogate_in_flight": max((s.get("surrogate_in_flight", 0) for s in samples),
                                        default=0),
        "peak_rss_mb": {k: max(s[k] for s in samples)
                        for k in ("coordinator", "interchange", "workers", "total")},
        "slope_mb_per_1000_tasks": {k: slope(samples, k)
                                    for k in ("coordinator", "interchange", "workers", "total")},
        "peak_state_json_mb": max((s.get("state_json_bytes", 0) for s in samples),
                                  default=0) / MB,
        "status_s": {"text": stats("text_s"), "json": stats("json_s"),
                     "load_status_in_process": stats("load_status_s"),
                     "read_checkpoint_in_process": stats("read_checkpoint_s")},
        "status_failures": sum(r.get("text_rc", 0) != 0 or r.get("json_rc", 0) != 0
                               for r in status),
    }


def plot(results: list[dict], path: Path) -> None:
    """Memory against completed tasks, tasks in flight and status latency, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    names = sorted({r["name"] for r in results}, reverse=True)
    for res in results:
        c, first = names.index(res["name"]), res["repeat"] == 0
        ls = "-" if first else "--"

        def label(text: str, first: bool = first, res: dict = res) -> str | None:
            return f"{res['name']}: {text}" if first else None

        s = steady(res["samples"])
        done = [x.get("surrogate_done", 0) + x.get("oracle_done", 0) for x in s]
        axes[0, 0].plot(done, [x["coordinator"] for x in s], color=f"C{c}", ls=ls,
                        label=label("coordinator"))
        axes[0, 1].plot(done, [x["total"] for x in s], color=f"C{c}", ls=ls,
                        label=label("whole run"))
        axes[0, 1].plot(done, [x["workers"] for x in s], color=f"C{c}", ls=":",
                        label=label("worker pools"))
        axes[1, 0].plot([x["t"] for x in s], [x.get("surrogate_in_flight", 0) for x in s],
                        color=f"C{c}", ls=ls, label=label("surrogate tasks"))
        st = res["status"]
        for key, marker, text in (("text_s", "o", "status"), ("json_s", "s", "status --json"),
                                  ("load_status_s", "x", "load_status (in process)")):
            rows = [r for r in st if key in r]
            axes[1, 1].plot([r["t"] for r in rows], [r[key] for r in rows], marker,
                            mfc="none" if key == "json_s" else None, color=f"C{c}",
                            label=label(text))
    axes[0, 0].set(xlabel="completed tasks", ylabel="RSS (MB)", title="coordinator memory")
    axes[0, 1].set(xlabel="completed tasks", ylabel="RSS (MB)",
                   title="whole run (coordinator + interchanges + pools)")
    axes[1, 0].set(xlabel="wall time (s)", ylabel="tasks", title="surrogate tasks in flight")
    axes[1, 1].set(xlabel="wall time (s)", ylabel="seconds", title="`pesflow status` latency")
    for ax in axes.flat:
        ax.legend(fontsize=7)
        ax.set_ylim(bottom=0)
    fig.suptitle("pesflow coordinator under load: REX on LJ13, local HTEx, 2 shared cores "
                 "(dashed: second repeat)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Run the benchmark; write load.json and load.png beside this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["rex100", "inflight1000"], action="append")
    parser.add_argument("--quick", action="store_true", help="tiny runs; writes nothing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--every", type=float, default=1.0, help="sampling interval (s)")
    parser.add_argument("--status-every", type=float, default=20.0,
                        help="pause between `pesflow status` timings (s)")
    args = parser.parse_args()
    chosen = {k: v for k, v in runs(args.quick).items() if not args.only or k in args.only}
    machine = {"cores": os.cpu_count(), "memory_gb": psutil.virtual_memory().total / 1024**3,
               "python": platform.python_version(), "load_before": os.getloadavg(),
               "shared": "other jobs shared the 2 cores while this ran"}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, config in chosen.items():  # alternate: machine load hits both alike
                work = Path(tmp) / f"{name}-{repeat}"
                work.mkdir()
                res = measure(name, config, work, args.every, args.status_every)
                res.update(config=config, repeat=repeat, load_after=os.getloadavg())
                results.append(res)
                print(name, repeat, f"{res['wall_s']:.0f} s",
                      json.dumps(res["figures"], indent=1), flush=True)
    if args.quick:
        return
    result = {
        "command": "benchmarks/reliability/load.py " + " ".join(sys.argv[1:]),
        "machine": machine,
        "setup": {"site": SITE, "every_s": args.every, "status_every_s": args.status_every},
        "runs": [{**r, "samples": [{k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in s.items()} for s in r["samples"]]}
                 for r in results],
    }
    (HERE / "load.json").write_text(json.dumps(result, indent=1))
    plot(results, HERE / "load.png")


if __name__ == "__main__":
    main()
