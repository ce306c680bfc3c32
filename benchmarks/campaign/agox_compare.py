"""Judge the AGOX side-by-side repeats with pesflow's own success test and draw them
beside pesflow's cells (issue #7 item 4; runs in ``.venv``).

Reads the repeat directories ``agox_runner.py`` wrote (``AGOX_DIR/<problem>/AGOX-<ALG>/
<prior>/r<NN>/``), judges every oracle evaluation up to the first success with the
campaign's success criterion through :func:`pesflow.workflows.bench.problem_criterion` (the
object ``pesflow bench`` judges with; an energy criterion whose reference is chosen after
the runs takes the reference energy from ``--pesflow``'s results), checks that every
evaluated structure holds the problem's fixed atoms where pesflow puts them, and writes::

    OUT/agox.json                       per problem and cell, the fields of a pesflow
                                        results.json cell plus wall / process-CPU curves
                                        and seconds per oracle call
    OUT/<problem>-agox-vs-pesflow.png   success vs oracle calls and vs CPU time, AGOX's
                                        cells and (--pesflow) pesflow's cells of the same
                                        prior, 95 % bands
    OUT/<problem>-table.md              success at 1/4, 1/2 and all of the budget (95 %
                                        bands), median calls to success, s per oracle call,
                                        and issue #7's REX target with its verdict
    OUT/judged/<problem>/<ALG>/<prior>/rNN.json   each judged repeat: its record and
                                        verdicts, so that a later comparison on another
                                        machine (AGOX_DIR gone) keeps it and judges only
                                        new repeats; rebuilt once from an OUT/agox.json
                                        written before judged/ existed

    .venv/bin/python benchmarks/campaign/agox_compare.py runs/agox-standins \
        --pesflow benchmarks/campaign/standins/results.json
    .venv/bin/python benchmarks/campaign/agox_compare.py runs/agox-surface \
        --campaign benchmarks/campaign/surface-standin.yaml \
        --pesflow benchmarks/campaign/surface-standin/results.json \
        --out benchmarks/campaign/agox-surface

CPU time is pesflow's measure, cores × wall time without the success checks: an AGOX
repeat runs on one core (``cores`` in its record), so it equals its wall time. The
process CPU time is reported beside it. Only finished repeats enter the curves.
Exit status: 0 done, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from pesflow.errors import InputError
from pesflow.workflows.bench import (
    chosen_after_runs,
    median_seconds_per_call,
    reported_budgets,
    success_table,
)

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "benchmarks" / "campaign" / "standins.yaml"
RECORD = "record.json"
FRAMES = "evaluations.extxyz"
JUDGED = "judged"  # OUT/judged/<problem>/<label>/<prior>/rNN.json: one judged repeat
RECORD_FORMAT = "agox-side-repeat"
RESULTS_FORMAT = "agox-side-results"
PESFLOW_RESULTS = "pesflow-bench-results"
ALGORITHMS = {"rex": "AGOX-REX", "gofee": "AGOX-GOFEE"}
CPU_UNIT = "CPU core-seconds (cores × wall)"  # pesflow's curve_cpu unit: same axis


def _readable_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{what} {path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"{what} {path} is not readable")
    return path


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads((path / RECORD).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InputError(f"{path / RECORD} cannot be read ({error}); remove the repeat "
                         "directory and rerun agox_runner.py for it") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise InputError(f"{path / RECORD} is not an agox_runner.py record")
    return record


def _walk(root: Path, problems: list[str] | None, wanted: set[str] | None, suffix: str):
    """``((problem, label, prior), entry)`` for every ``root/<problem>/<label>/<prior>/r*``
    entry: directories (``suffix`` "") or files ending in ``suffix``."""
    if not root.is_dir():
        return
    for problem_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if problems is not None and problem_dir.name not in problems:
            continue
        for alg_dir in sorted(p for p in problem_dir.iterdir() if p.is_dir()):
            if alg_dir.name not in ALGORITHMS.values() or \
                    (wanted is not None and alg_dir.name not in wanted):
                continue
            for prior_dir in sorted(p for p in alg_dir.iterdir() if p.is_dir()):
                for entry in sorted(prior_dir.iterdir()):
                    if entry.name.startswith("r") and (
                            entry.is_file() and entry.name.endswith(suffix) if suffix
                            else entry.is_dir()):
                        yield (problem_dir.name, alg_dir.name, prior_dir.name), entry


def find_repeats(agox_dir: Path, out: Path, problems: list[str] | None,
                 algorithms: list[str] | None) -> dict[tuple[str, str, str], dict]:
    """Repeats by (problem, algorithm label, prior): repeat name -> [its directory under
    ``agox_dir`` or None, its judged file under ``OUT/judged`` or None]."""
    cells: dict[tuple[str, str, str], dict[str, list]] = {}
    wanted = None if algorithms is None else {ALGORITHMS[a] for a in algorithms}
    for key, path in _walk(agox_dir, problems, wanted, ""):
        cells.setdefault(key, {}).setdefault(path.name, [None, None])[0] = path
    for key, path in _walk(out / JUDGED, problems, wanted, ".json"):
        cells.setdefault(key, {}).setdefault(path.stem, [None, None])[1] = path
    return cells


def _judged_file(out: Path, key: tuple[str, str, str], name: str) -> Path:
    return out / JUDGED / Path(*key) / f"{name}.json"


def _stored(path: Path) -> dict:
    try:
        stored = json.loads(path.read_text())
        if not {"record", "judged"} <= set(stored):
            raise ValueError("no record or judged")
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"{path} cannot be read as a judged repeat ({error}); remove it "
                         "(and rerun agox_runner.py for that repeat if its directory is gone)"
                         ) from None
    return stored


def load_repeats(found: dict[str, tuple[Path | None, dict | None]], criterion,
                 template: Atoms) -> tuple[list, dict]:
    """``(name, record, judged)`` per repeat (``judged`` None unless finished) from
    ``found`` (name -> its directory under AGOX_DIR, its judged repeat from an earlier
    comparison; either may be None), judging only what was not judged for the same
    record; and name -> ``{"record", "judged"}`` for those judged now."""
    items, fresh = [], {}
    for name, (path, stored) in found.items():
        record = _read_record(path) if path is not None else None
        if record is None and stored is not None:  # run on another machine
            items.append((name, stored["record"], stored["judged"]))
        elif record and record.get("finished") and not record.get("error"):
            if stored is not None and stored["record"] == record:
                judged = stored["judged"]
            else:
                judged = judge_repeat(path, record, criterion, template)
                fresh[name] = {"record": record, "judged": judged}
            items.append((name, record, judged))
        else:
            items.append((name, record, None))
    return items, fresh


def judged_from_summary(summary: dict) -> dict[tuple[str, str, str, str], dict]:
    """Judged repeats rebuilt from an ``agox.json`` written before ``judged/`` existed:
    ``(problem, label, prior, name)`` -> ``{"record", "judged"}``."""
    rebuilt = {}
    for problem, entry in summary.get("problems", {}).items():
        for key, cell in entry.get("cells", {}).items():
            if not cell.get("finished"):  # e.g. repeats still running: nothing judged yet
                continue
            label, prior = key.split("/", 1)
            runner = {d["repeat"]: d["runner_success_call"]
                      for d in cell.get("judge_disagreements", [])}
            (budget,) = cell["budgets"]
            for k, (name, rows) in enumerate(cell.get("evaluations", {}).items()):
                success = next((row for row in rows if row["success"]), None)
                judged = {
                    "seed": cell["seeds"][k], "rows": rows, "success": success,
                    "judge_seconds": cell["check_seconds"] / cell["finished"],
                    "calls_at_end": cell["calls_at_end"][k],
                    "wall_at_end": cell["wall_s_at_end"][k],
                    "cpu_at_end": cell["cpu_s_at_end"][k],
                    "process_cpu_at_end": cell["process_cpu_s_at_end"][k],
                    "best_energy": cell["best_raw_energy"][k],
                    "best_basin_energy": cell["best_basin_energy"][k],
                    "runner_agrees": name not in runner,
                    "runner_success_call": runner.get(
                        name, success["call"] if success else None),
                    "stop_reason": cell["stop_reasons"][k], "budget": budget,
                }
                record = {"format": RECORD_FORMAT, "finished": True, "error": None,
                          "seed": judged["seed"], "engine": cell["engine"],
                          "settings": cell["settings"], "prior_spec": cell["prior_spec"],
                          "delta_model": cell["delta_model"], "budget": budget,
                          "rebuilt_from": "agox.json (the repeat directory was lost)"}
                rebuilt[(problem, label, prior, name)] = {"record": record, "judged": judged}
    return rebuilt


def judge_repeat(path: Path, record: dict, criterion, template: Atoms) -> dict:
    """Every evaluation judged up to the first success, as ``pesflow bench`` records it;
    raises InputError if a structure's first atoms are not ``template`` (the fixed atoms)."""
    from ase.io import read

    try:
        frames = read(path / FRAMES, index=":", format="extxyz") \
            if (path / FRAMES).exists() else []
    except Exception as error:  # ASE raises many types for damaged files
        raise InputError(f"{path / FRAMES} cannot be read ({error}); remove the repeat "
                         "directory and rerun agox_runner.py for it") from None
    if len(frames) != record["oracle_calls"]:
        raise InputError(f"{path}: {len(frames)} frames in {FRAMES} but the record says "
                         f"{record['oracle_calls']} oracle calls; remove the repeat directory "
                         "and rerun agox_runner.py for it")
    cores = float(record.get("cores", 1))
    rows, success, seconds = [], None, 0.0
    fixed = len(template)
    for atoms in frames:
        if fixed and (atoms.get_chemical_symbols()[:fixed] != template.get_chemical_symbols()
                      or not np.allclose(atoms.positions[:fixed], template.positions,
                                         rtol=0, atol=1e-6)
                      or not np.allclose(atoms.cell.array, template.cell.array, atol=1e-6)):
            raise InputError(f"{path / FRAMES}: call {atoms.info.get('call')} does not hold "
                             f"the problem's {fixed} fixed atoms where pesflow puts them; "
                             "the runner's template or its fixing is wrong")
        energy = float(atoms.get_potential_energy())
        verdict = basin = None
        if success is None:
            start = time.perf_counter()
            verdict, basin = criterion.check(atoms, energy)
            seconds += time.perf_counter() - start
        row = {"call": int(atoms.info["call"]), "energy": energy,
               "wall_time": float(atoms.info["wall_time"]),
               "cpu_time": cores * float(atoms.info["wall_time"]),
               "process_cpu_time": float(atoms.info["cpu_time"]),
               "success": verdict, "basin_energy": basin,
               "runner_basin_energy": atoms.info.get("basin_energy")}
        rows.append(row)
        if verdict:
            success = row
    runner = record.get("success")
    agree = (runner or {}).get("call") == (success or {}).get("call") if (
        runner is not None or success is not None) else True
    basins = [r["basin_energy"] for r in rows if r["basin_energy"] is not None]
    return {
        "seed": record["seed"], "rows": rows, "success": success, "judge_seconds": seconds,
        "calls_at_end": max(record["oracle_calls"], success["call"] if success else 0),
        "wall_at_end": record["wall_time"], "cpu_at_end": cores * record["wall_time"],
        "process_cpu_at_end": record["cpu_time"],
        "best_energy": min((r["energy"] for r in rows), default=None),
        "best_basin_energy": min(basins, default=None),
        "runner_agrees": agree, "runner_success_call": (runner or {}).get("call"),
        "stop_reason": record.get("stop_reason"), "budget": record["budget"],
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cell_results(problem: str, label: str, prior: str, items: list) -> dict:
    """A results.json-like cell for one AGOX algorithm and prior, from its repeats
    ``(name, record, judged)`` (:func:`load_repeats`)."""
    from pesflow.search.success import first_reached, success_curve

    finished = [(name, r) for name, r, j in items if j is not None]
    judged = [j for _, _, j in items if j is not None]
    first = next((r for _, r, _ in items if r), {})

    def at(key: str) -> list:
        return [j["success"][key] if j["success"] else None for j in judged]

    calls = at("call")
    calls_end = [j["calls_at_end"] for j in judged]
    per_call_wall = [j["wall_at_end"] / j["calls_at_end"] for j in judged if j["calls_at_end"]]
    per_call_cpu = [j["process_cpu_at_end"] / j["calls_at_end"] for j in judged
                    if j["calls_at_end"]]
    total_calls = sum(calls_end)
    result: dict[str, Any] = {
        "problem": problem, "algorithm": label, "engine": first.get("engine"),
        "settings": first.get("settings"), "prior": prior, "prior_spec": first.get("prior_spec"),
        "delta_model": first.get("delta_model", True), "repeats": len(items),
        "finished": len(finished),
        "failed": sum(bool(r and r.get("error")) for _, r, _ in items),
        "successes": sum(c is not None for c in calls),
        "success_calls": calls, "success_cpu_s": at("cpu_time"),
        "success_wall_s": at("wall_time"), "success_process_cpu_s": at("process_cpu_time"),
        "calls_at_end": calls_end, "cpu_s_at_end": [j["cpu_at_end"] for j in judged],
        "wall_s_at_end": [j["wall_at_end"] for j in judged],
        "process_cpu_s_at_end": [j["process_cpu_at_end"] for j in judged],
        "censored": sum(c is None for c in calls),
        "budgets": [json.loads(b) for b in sorted({json.dumps(j["budget"], sort_keys=True)
                                                   for j in judged})],
        "best_raw_energy": [j["best_energy"] for j in judged],
        "best_basin_energy": [j["best_basin_energy"] for j in judged],
        "seeds": [j["seed"] for j in judged],
        "stop_reasons": [j["stop_reason"] for j in judged],
        "check_seconds": sum(j["judge_seconds"] for j in judged),
        "seconds_per_oracle_call": {
            "wall_median": _median(per_call_wall), "process_cpu_median": _median(per_call_cpu),
            "wall_total": (sum(j["wall_at_end"] for j in judged) / total_calls
                           if total_calls else None),
            "process_cpu_total": (sum(j["process_cpu_at_end"] for j in judged) / total_calls
                                  if total_calls else None),
            "per_repeat_wall": per_call_wall, "per_repeat_process_cpu": per_call_cpu,
        },
        "judge_disagreements": [
            {"repeat": name, "runner_success_call": j["runner_success_call"],
             "pesflow_success_call": j["success"]["call"] if j["success"] else None}
            for (name, _), j in zip(finished, judged, strict=True) if not j["runner_agrees"]],
        "evaluations": {name: j["rows"] for (name, _), j in zip(finished, judged, strict=True)},
    }
    if judged:
        curves = {
            "curve_calls": success_curve(calls, calls_end, label=label),
            "curve_cpu": success_curve(at("cpu_time"), result["cpu_s_at_end"], unit=CPU_UNIT,
                                       label=label),
            "curve_wall": success_curve(at("wall_time"), result["wall_s_at_end"],
                                        unit="wall seconds", label=label),
            "curve_process_cpu": success_curve(at("process_cpu_time"),
                                               result["process_cpu_s_at_end"],
                                               unit="process CPU seconds", label=label),
        }
        result["median_calls_to_success"] = first_reached(curves["curve_calls"])
        result["median_cpu_s_to_success"] = first_reached(curves["curve_cpu"])
        result["median_wall_s_to_success"] = first_reached(curves["curve_wall"])
        result.update({k: c.todict() for k, c in curves.items()})
    return result


def read_pesflow(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--pesflow {path} does not exist; give a pesflow bench "
                         "results.json") from None
    except (OSError, ValueError) as error:
        raise InputError(f"--pesflow {path} cannot be read as JSON ({error})") from None
    if not isinstance(results, dict) or results.get("format") != PESFLOW_RESULTS:
        raise InputError(f"--pesflow {path} is not a pesflow bench results.json "
                         f"(format {PESFLOW_RESULTS!r})")
    return results


def pesflow_cells(results: dict | None, problem: str, prior: str, success: dict) -> dict:
    """pesflow's cells (every algorithm) of ``problem`` and ``prior`` (label -> cell)."""
    if results is None or problem not in results.get("problems", {}):
        return {}
    entry = results["problems"][problem]
    theirs = entry.get("success", {})
    for key in ("criterion", "energy", "threshold"):
        if theirs.get(key) != success.get(key):
            raise InputError(f"--pesflow: problem {problem} was judged with {key} "
                             f"{theirs.get(key)!r}, the campaign says {success.get(key)!r}; "
                             "compare results of the same campaign")
    return {f"pesflow {c['algorithm']}": c for c in entry["cells"].values()
            if c.get("prior") == prior}


def with_reference(entry, results: dict | None, path: Path | None):
    """``entry`` with an energy reference chosen after the runs filled in from pesflow's
    ``results`` (its ``reference.energy``); other criteria are returned as they are."""
    spec = entry.success
    if not chosen_after_runs(spec):
        return entry
    if spec.criterion != "energy":
        raise InputError(f"problem {entry.name}: its {spec.criterion} reference is chosen "
                         "after the runs, which this comparison does not support; give the "
                         "campaign a fixed reference structure")
    reference = ((results or {}).get("problems", {}).get(entry.name) or {}).get("reference")
    if not reference or reference.get("energy") is None:
        where = "no --pesflow was given" if path is None else f"--pesflow {path} has none"
        raise InputError(f"problem {entry.name}: the energy criterion's reference is chosen "
                         f"after pesflow's runs, and {where}; pass --pesflow with the "
                         "results.json of the finished campaign")
    return entry.model_copy(update={"success": spec.model_copy(
        update={"energy": float(reference["energy"])})})


def plot_problem(problem: str, cells: dict[str, dict], theirs: dict[str, dict[str, dict]],
                 path: Path, criterion: str = "basin test") -> Path | None:
    """One row per prior: success vs oracle calls and vs CPU time (log)."""
    from pesflow.search.success import SuccessCurve, SuccessPanel, plot_success_panels

    rows = []
    for prior in dict.fromkeys(k.split("/", 1)[1] for k in cells):
        curves_calls: dict[str, SuccessCurve] = {}
        curves_cpu: dict[str, SuccessCurve] = {}
        for label, cell in theirs.get(prior, {}).items():
            if "curve_calls" in cell:
                curves_calls[label] = SuccessCurve.fromdict(cell["curve_calls"])
                curves_cpu[label] = SuccessCurve.fromdict(cell["curve_cpu"])
        for key, cell in cells.items():
            if key.split("/", 1)[1] == prior and "curve_calls" in cell:
                label = cell["algorithm"].replace("-", " ")
                curves_calls[label] = SuccessCurve.fromdict(cell["curve_calls"])
                curves_cpu[label] = SuccessCurve.fromdict(cell["curve_cpu"])
        if curves_calls:
            spec = next(c["prior_spec"] for k, c in cells.items() if k.endswith("/" + prior))
            rows.append([SuccessPanel(curves_calls, f"prior {spec} + Δ-model: oracle calls"),
                         SuccessPanel(curves_cpu, f"prior {spec} + Δ-model: CPU time",
                                      xlog=True)])
    if not rows:
        return None
    return plot_success_panels(rows, path, title=f"{problem}: AGOX 3.11 vs pesflow "
                                                 f"({criterion}; CPU = cores × wall)")


def compare(agox_dir: Path, out: Path, campaign_path: Path, pesflow: Path | None,
            problems: list[str] | None, algorithms: list[str] | None,
            command: str = "") -> dict:
    """Judge, summarise and draw; returns what is written to ``OUT/agox.json``."""
    from pesflow.workflows.bench import load_campaign, problem_criterion

    agox_dir = _readable_dir(agox_dir.resolve(), "AGOX directory")
    campaign = load_campaign(campaign_path)
    entries = {p.name: p for p in campaign.problems}
    for name in problems or []:
        if name not in entries:
            raise InputError(f"--problems: unknown problem {name!r}; campaign "
                             f"{campaign.name} has {', '.join(entries)}")
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    found = find_repeats(agox_dir, out, problems, algorithms)
    stored = {(key, name): _stored(saved) for key, repeats in found.items()
              for name, (_, saved) in repeats.items() if saved is not None}
    summary_file = out / "agox.json"  # repeats judged before judged/ existed
    earlier = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    for (problem, label, prior, name), data in judged_from_summary(earlier).items():
        key = (problem, label, prior)
        if (problems is None or problem in problems) and (
                algorithms is None or label in {ALGORITHMS[a] for a in algorithms}) and \
                (key, name) not in stored:
            stored[key, name] = data
            found.setdefault(key, {}).setdefault(name, [None, None])
    if not found:
        raise InputError(f"no agox_runner.py repeats under {agox_dir} (expected "
                         "<problem>/AGOX-REX|AGOX-GOFEE/<prior>/rNN/) nor judged ones under "
                         f"{out / JUDGED}; check the directories and --problems/--algorithms")
    found = {key: dict(sorted(repeats.items())) for key, repeats in sorted(found.items())}
    for problem, _, _ in found:
        if problem not in entries:
            raise InputError(f"{agox_dir / problem}: problem {problem!r} is not in campaign "
                             f"{campaign.name} ({', '.join(entries)}); pass --campaign")
    theirs_all = read_pesflow(pesflow)
    summary: dict[str, Any] = {
        "format": RESULTS_FORMAT, "version": 1, "command": command,
        "agox_dir": str(agox_dir), "campaign": str(campaign_path),
        "pesflow_results": None if pesflow is None else str(pesflow.resolve()),
        "cpu_time": "cores × wall time without success checks (cores = 1 per AGOX repeat)",
        "problems": {},
    }
    judged, writes = [], {}
    for problem in dict.fromkeys(p for p, _, _ in found):
        entry = entries[problem]
        success = entry.success.model_dump(mode="json")
        judge_entry = with_reference(entry, theirs_all, pesflow)
        criterion = problem_criterion(campaign, judge_entry)  # the one `pesflow bench` uses
        template = entry.problem.build().template
        cells = {}
        for key, repeats in found.items():
            if key[0] != problem:
                continue
            items, fresh = load_repeats({name: (path, stored.get((key, name)))
                                         for name, (path, _) in repeats.items()}, criterion,
                                        template)
            for name in repeats:  # judged now, or kept only in the old agox.json
                path = _judged_file(out, key, name)
                if name in fresh or ((key, name) in stored and not path.exists()):
                    writes[path] = fresh.get(name) or stored[key, name]
            cells[f"{key[1]}/{key[2]}"] = cell_results(problem, key[1], key[2], items)
        theirs = {prior: pesflow_cells(theirs_all, problem, prior, success)
                  for prior in dict.fromkeys(k.split("/", 1)[1] for k in cells)}
        summary["problems"][problem] = {"success": success,
                                        "judged_with": judge_entry.success.model_dump(
                                            mode="json"), "cells": cells,
                                        "pesflow_cells": {pr: sorted(c) for pr, c in
                                                          theirs.items()}}
        judged.append((problem, cells, theirs))
    # validated and judged: from here on files are written
    out.mkdir(parents=True, exist_ok=True)
    for path, data in writes.items():  # judged repeats travel with the results (in git)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    for problem, cells, theirs in judged:
        kind = {"basin": "basin test", "energy": "energy criterion", "graph": "graph identity"}
        figure = plot_problem(problem, cells, theirs, out / f"{problem}-agox-vs-pesflow.png",
                              kind[entries[problem].success.criterion])
        summary["problems"][problem]["figure"] = None if figure is None else str(figure)
        budget = entries[problem].budget.oracle_calls
        tables, targets = [], {}
        for prior, mine in theirs.items():
            agox = {c["algorithm"]: c for k, c in cells.items() if k.endswith("/" + prior)}
            title = f"{problem}, prior {prior}"
            tables.append(success_table(title, budget, {**mine, **agox}))
            target = rex_target(budget, mine.get("pesflow REX"), agox.get(ALGORITHMS["rex"]))
            if target is not None:
                targets[prior] = target
                tables.append(target_text(title, target))
        summary["problems"][problem]["rex_target"] = targets
        (out / f"{problem}-table.md").write_text("\n".join(tables))
    tmp = out / "agox.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out / "agox.json")
    return summary


def rex_target(budget: int, mine: dict | None, agox: dict | None) -> dict | None:
    """Issue #7's target for one problem and prior: pesflow's REX succeeds at least as
    often as AGOX's REX at every reported budget (1/4, 1/2 and all of ``budget`` oracle
    calls; overlapping 95 % bands count as equal), one of them succeeds at some budget,
    and pesflow needs less wall time per oracle call (medians over repeats).

    ``mine`` and ``agox``: the two REX cells (results.json-like). ``None`` while either
    has no judged repeat."""
    from pesflow.search.success import SuccessCurve

    if not mine or not agox or "curve_calls" not in mine or "curve_calls" not in agox:
        return None
    ours, theirs = (SuccessCurve.fromdict(c["curve_calls"]) for c in (mine, agox))
    budgets = []
    for mark in reported_budgets(budget):
        (p, low, high), (q, q_low, q_high) = ours.at(mark), theirs.at(mark)
        budgets.append({"calls": mark, "pesflow": [p, low, high], "agox": [q, q_low, q_high],
                        "at_least": bool(p >= q or (low <= q_high and q_low <= high))})
    seconds = [median_seconds_per_call(c) for c in (mine, agox)]
    either = any(b["pesflow"][0] > 0 or b["agox"][0] > 0 for b in budgets)
    faster = seconds[0] < seconds[1]
    return {"budgets": budgets, "either_succeeds": either,
            "wall_s_per_call": {"pesflow": seconds[0], "agox": seconds[1],
                                "ratio": seconds[1] / seconds[0]},
            "repeats": {"pesflow": mine["finished"], "agox": agox["finished"]},
            "holds": all(b["at_least"] for b in budgets) and either and faster}


def target_text(title: str, target: dict) -> str:
    """The verdict of :func:`rex_target` in words, for the problem's table file."""
    def share(value: list[float]) -> str:
        return f"{100 * value[0]:.0f} % ({100 * value[1]:.0f}–{100 * value[2]:.0f})"

    rates = "; ".join(f"{b['calls']} calls: {share(b['pesflow'])} vs {share(b['agox'])}"
                      + ("" if b["at_least"] else " (below)") for b in target["budgets"])
    per = target["wall_s_per_call"]
    if target["holds"]:
        verdict = "holds"
    elif not target["either_succeeds"]:
        verdict = "cannot be shown: neither REX succeeded at any reported budget"
    else:
        verdict = "does not hold"
    return (f"**Target, {title}** (pesflow REX vs AGOX REX, {target['repeats']['pesflow']} "
            f"and {target['repeats']['agox']} repeats): {verdict}. Success {rates}. Wall time "
            f"per oracle call (median) {per['pesflow']:.2f} s vs {per['agox']:.2f} s "
            f"(AGOX/pesflow {per['ratio']:.1f}×).\n")


def _line(cell: dict) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    per = cell["seconds_per_oracle_call"]
    return (f"{cell['problem']} {cell['algorithm']}/{cell['prior']}: "
            f"{cell['successes']}/{cell['finished']} successes (median calls to success "
            f"{num(cell.get('median_calls_to_success'), 'g')}), "
            f"{num(per['wall_total'], '.2f')} s wall and "
            f"{num(per['process_cpu_total'], '.2f')} s process CPU per oracle call"
            + (f"; {len(cell['judge_disagreements'])} repeat(s) where the runner's own "
               "judge disagreed" if cell["judge_disagreements"] else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agox_compare.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("agox_dir", type=Path, help="--out of agox_runner.py")
    parser.add_argument("--pesflow", type=Path, default=None, metavar="RESULTS_JSON",
                        help="a pesflow bench results.json to draw beside")
    parser.add_argument("--campaign", type=Path, default=CAMPAIGN,
                        help="campaign whose success criteria judge (default: standins.yaml)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where agox.json and the figures go (default: AGOX_DIR)")
    parser.add_argument("--problems", nargs="+", default=None)
    parser.add_argument("--algorithms", nargs="+", choices=sorted(ALGORITHMS), default=None)
    args = parser.parse_args(argv)
    try:
        summary = compare(args.agox_dir, args.out or args.agox_dir, args.campaign, args.pesflow,
                          args.problems, args.algorithms, " ".join(sys.argv))
    except InputError as error:
        print(f"agox_compare.py: error: {error}", file=sys.stderr)
        return 2
    for problem in summary["problems"].values():
        for cell in problem["cells"].values():
            print(_line(cell))
    return 0


if __name__ == "__main__":
    sys.exit(main())
