"""Progress display of a search (rich) and the table `pesflow status` prints."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table


def _fmt(value, spec: str = ".4f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def status_line(summary: dict) -> str:
    """One line: calls, pending, failures, best energy, model version, wall and CPU time."""
    calls = summary["oracle_calls"]
    budget = calls["budget"] if calls["budget"] is not None else "∞"
    best = summary["best"]
    cpu = summary["cpu_time"]
    used = cpu["used"] / cpu["allocated"] if cpu["allocated"] else None
    return (
        f"oracle {calls['done']}/{budget} (pending {calls['pending']}, failed {calls['failed']})"
        f"  best {_fmt(best and best['energy'])} eV  model v{summary['model_version']}"
        f"  surrogate {summary['surrogate_tasks']['done']} done"
        f"  wall {summary['wall_time']:.0f} s  CPU used {cpu['used']:.0f} s"
        f" of {cpu['allocated']:.0f} core-s ({_fmt(used, '.0%')})"
    )


def status_table(summary: dict, title: str = "") -> Table:
    """A table of a run's figures (``summary.json`` / :func:`load_status`)."""
    table = Table(title=title or summary.get("name"), show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    calls = summary["oracle_calls"]
    best = summary["best"]
    cpu = summary["cpu_time"]
    rows = [
        ("search", f"{summary['algorithm']} on {summary['problem']}, prior {summary['prior']}"
                   f"{' + Δ-model' if summary['delta_model'] else ''}, oracle {summary['oracle']}"),
        ("oracle calls", f"{calls['done']} done of {calls['budget'] or 'no limit'}, "
                         f"{calls['pending']} pending, {calls['failed']} failed"),
        ("surrogate tasks", f"{summary['surrogate_tasks']['done']} done, "
                            f"{summary['surrogate_tasks']['dropped']} dropped, "
                            f"{summary['surrogate_tasks']['pending']} pending"),
        ("best energy", "–" if best is None else
         f"{best['energy']:.4f} eV (oracle call {best['call']}, {best['structure']})"),
        ("model version", str(summary["model_version"])),
        ("wall time", f"{summary['wall_time']:.1f} s over {summary['sessions']} session(s)"),
        ("CPU time", f"{cpu['used']:.0f} s used of {cpu['allocated']:.0f} core-s allocated "
                     f"({cpu['cores']} cores)"),
        ("state", summary["stop_reason"] or "running or stopped before its budget"),
    ]
    engine = summary.get("engine") or {}
    if "iteration" in engine:
        rows.append(("iteration", str(engine["iteration"])))
    for i, w in enumerate(engine.get("walkers", [])):
        rows.append((f"walker {i}", f"kT {w['kT']:.3f} eV  amplitude {w['amplitude']:.2f} Å  "
                                    f"acceptance {_fmt(w['acceptance'], '.0%')}  "
                                    f"E {_fmt(w['energy'], '.3f')} eV"))
    for failure in summary.get("failures", []):
        rows.append(("failure", f"task {failure['task_id']}: {failure['reason']} "
                                f"({failure['attempts']} attempts)"))
    for key, value in rows:
        table.add_row(key, value)
    return table


def run_with_progress(start: Callable, run_dir: Path, quiet: bool = False) -> int:
    """Run ``start(on_progress)`` with a live status line; SIGTERM stops it like Ctrl-C.

    Returns the exit status: 0 when the run ended, 130 when it was interrupted (it can be
    resumed).
    """
    console = Console(soft_wrap=True, stderr=False)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    live = Live(console=console, refresh_per_second=2, transient=True) \
        if console.is_terminal and not quiet else None
    last = {"calls": -1, "time": 0.0}

    def on_progress(run) -> None:
        if quiet:
            return
        summary = run.report()
        line = status_line(summary)
        if live is not None:
            live.update(line)
        elif summary["oracle_calls"]["done"] != last["calls"] or time.time() - last["time"] > 60:
            console.print(line)
            last.update(calls=summary["oracle_calls"]["done"], time=time.time())

    try:
        if live is not None:
            live.start()
        try:
            run = start(on_progress)
        finally:
            if live is not None:
                live.stop()
    except KeyboardInterrupt:
        console.print(f"stopped; the last checkpoint is kept: continue with "
                      f"`pesflow resume {run_dir}`")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = run.report()
    console.print(status_table(summary, title=f"{summary['name']}: {run_dir}"))
    if run.dir.best.exists():
        console.print(f"best structure: {run.dir.best}")
    if run.dir.trace.exists():
        console.print(f"trace plot: {run.dir.trace}")
    return 0


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


__all__ = ["run_with_progress", "status_line", "status_table"]
