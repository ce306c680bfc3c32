"""Published campaign results that outlive the machine which ran them.

A campaign takes more sittings than one machine may last (a fresh cloud or CI machine, a
purged scratch directory), so ``pesflow bench ... --results DIR`` keeps in ``DIR``, beside
``results.json``, what later sittings need of every finished repeat, and a sitting whose
``--out`` lacks them restores them from there before it plans::

    DIR/repeats/<problem>/<algorithm>/<prior>/rNN/
        run.yaml, bench.json, bench-checks*.jsonl
        evaluations.json    the oracle evaluations (only where the reference is chosen
                            after the runs: the reference is picked from them)
    DIR/references/<problem>/reference.json, reference.extxyz
    DIR/sessions.json       every sitting on every machine (the CPU hours)

Unfinished repeats are not archived: their checkpoints stay in ``--out``, and one that
``--out`` lacks is run again from its start.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pesflow.config import load_run_config
from pesflow.errors import InputError
from pesflow.store.atomic import atomic_write_json
from pesflow.store.rundir import RunDir
from pesflow.workflows.bench import (
    CHECKS,
    RECORD,
    RESTORED,
    RESULTS,
    RESULTS_FORMAT,
    SESSIONS,
    Plan,
    Repeat,
    _read_sessions,
    _same_search,
    _spent,
    chosen_after_runs,
    read_record,
)

ARCHIVE = "repeats"
REFERENCES = "references"
EVALUATIONS = "evaluations.json"
_REFERENCE_FILES = ("reference.json", "reference.extxyz")


def _relative(plan: Plan, repeat: Repeat) -> Path:
    return repeat.path.relative_to(plan.out)


def _finished(record: dict | None) -> bool:
    return bool(record and record.get("finished") and not record.get("error"))


def archive_repeats(plan: Plan, publish: Path) -> int:
    """Copy what later sittings need of every finished repeat, the chosen references and
    the sittings' list from ``plan.out`` to ``publish``; returns the repeats archived."""
    from pesflow.workflows.bench import _checkpoint

    deferred = {c.problem.name for c in plan.cells if chosen_after_runs(c.problem.success)}
    archived = 0
    for repeat in plan.repeats:
        if not _finished(read_record(repeat.path)):
            continue
        target = publish / ARCHIVE / _relative(plan, repeat)
        target.mkdir(parents=True, exist_ok=True)
        restored = repeat.path / EVALUATIONS  # a repeat restored from an archive
        for source in (RunDir(repeat.path).config, repeat.path / RECORD,
                       *sorted(repeat.path.glob(f"{Path(CHECKS).stem}*.jsonl")),
                       *([restored] if restored.exists() else [])):
            shutil.copyfile(source, target / source.name)
        if repeat.problem in deferred and RunDir(repeat.path).checkpoint.exists():
            evaluations = [e.todict() for e in _checkpoint(repeat.path)[1]]
            atomic_write_json(target / EVALUATIONS, evaluations)
        archived += 1
    for problem in dict.fromkeys(c.problem.name for c in plan.cells):
        folder = plan.out / problem / "reference"
        if all((folder / name).exists() for name in _REFERENCE_FILES):
            target = publish / REFERENCES / problem
            target.mkdir(parents=True, exist_ok=True)
            for name in _REFERENCE_FILES:
                shutil.copyfile(folder / name, target / name)
    sessions = plan.out / SESSIONS
    if sessions.exists():
        shutil.copyfile(sessions, publish / SESSIONS)
    return archived


def restorable(plan: Plan, publish: Path | None) -> list[tuple[Repeat, Path]]:
    """The archived repeats in ``publish`` that ``plan.out`` lacks, each with its archive
    folder; raises :class:`InputError` for one the campaign now runs differently."""
    if publish is None:
        return []
    size = (published_results(publish) or {}).get("size")
    if size is not None and size != ("quick" if plan.quick else "full"):
        raise InputError(f"--results {publish} holds the campaign's {size}-size results; "
                         f"this {'quick' if plan.quick else 'full'}-size run would mix the "
                         "two: give it another --results directory")
    found = []
    for repeat in plan.repeats:
        source = publish / ARCHIVE / _relative(plan, repeat)
        if repeat.path.exists() or not (source / RECORD).is_file():
            continue
        config = source / RunDir(source).config.name
        if not config.is_file():
            raise InputError(f"{source} holds no {config.name}: it is not a repeat archived "
                             "by pesflow bench; remove it or choose another --results")
        _same_search(load_run_config(config), repeat.config, source)
        record = read_record(source) or {}
        if not (record.get("success") or _spent(record.get("oracle_calls", 0),
                                                record.get("wall_time", 0.0),
                                                repeat.config.budget)):
            raise InputError(
                f"{source} ended within a smaller budget ({record.get('oracle_calls')} "
                "oracle calls); its checkpoint stayed on the machine that ran it, so it "
                "cannot be extended here: keep the campaign's budget, or run it in the "
                "--out that holds its checkpoint")
        found.append((repeat, source))
    return found


def restore(plan: Plan, publish: Path | None, found: list[tuple[Repeat, Path]]) -> None:
    """Copy the repeats ``found`` (:func:`restorable`), the references and the sittings'
    list that ``plan.out`` lacks from ``publish`` into it."""
    if publish is None:
        return
    for repeat, source in found:
        shutil.copytree(source, repeat.path)
        atomic_write_json(repeat.path / RESTORED, {"from": str(source)}, indent=1)
    for problem in dict.fromkeys(c.problem.name for c in plan.cells):
        source, folder = publish / REFERENCES / problem, plan.out / problem / "reference"
        if all((source / n).exists() for n in _REFERENCE_FILES) and \
                not (folder / _REFERENCE_FILES[0]).exists():
            folder.mkdir(parents=True, exist_ok=True)
            for name in _REFERENCE_FILES:
                shutil.copyfile(source / name, folder / name)
    merged = merge_sessions(_read_sessions(plan.out), published_sessions(publish))
    if merged:
        atomic_write_json(plan.out / SESSIONS, merged, indent=1)


def archived_evaluations(path: Path) -> list | None:
    """The oracle evaluations archived with a restored repeat (``None``: none here)."""
    from pesflow.search.runner import Evaluation

    try:
        rows = json.loads((path / EVALUATIONS).read_text())
    except OSError:
        return None
    return [Evaluation.fromdict(row) for row in rows]


def published_results(publish: Path | None) -> dict | None:
    """``publish``'s ``results.json`` (``None`` when absent or not pesflow's)."""
    if publish is None:
        return None
    try:
        results = json.loads((publish / RESULTS).read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and \
        results.get("format") == RESULTS_FORMAT else None


def published_sessions(publish: Path) -> list[dict]:
    """The sittings published in ``publish``; for results published before the sittings'
    list was, one entry that carries their CPU-hour totals."""
    sessions = _read_sessions(publish)
    if sessions:
        return sessions
    results = published_results(publish)
    hours = (results or {}).get("cpu_hours") or {}
    if not hours.get("sessions"):
        return []
    return [{"started": "", "command": results.get("command", ""), "state": "ended",
             "sessions": hours["sessions"], "wall_s": 3600 * hours.get("wall_hours", 0.0),
             "cpu_allocated_s": 3600 * hours.get("allocated", 0.0),
             "cpu_used_s": 3600 * hours.get("used", 0.0),
             "note": "the totals of sittings published before sessions.json was"}]


def merge_sessions(mine: list[dict], theirs: list[dict]) -> list[dict]:
    """Both lists of sittings, each sitting once (by its start and command), in order."""
    seen = {(s.get("started"), s.get("command")) for s in mine}
    merged = mine + [s for s in theirs if (s.get("started"), s.get("command")) not in seen]
    return sorted(merged, key=lambda s: s.get("started") or "")


def kept_problems(results: dict, previous: dict | None) -> dict[str, dict]:
    """Problems whose published entry (in ``previous``) counts more finished repeats in
    some cell than ``results`` rebuilt from ``--out``: repeats run elsewhere before they
    were archived. Those entries are kept as published until ``--out`` catches up."""
    kept = {}
    for name, old in ((previous or {}).get("problems") or {}).items():
        new = results["problems"].get(name, {}).get("cells", {})
        if any(cell.get("finished", 0) > new.get(key, {}).get("finished", 0)
               for key, cell in old.get("cells", {}).items()):
            kept[name] = {**old, "kept": "published earlier from repeats that --out lacks "
                          "and the archive cannot restore; rebuilt once --out has as many "
                          "finished repeats in every cell"}
    return kept


__all__ = [
    "archive_repeats",
    "archived_evaluations",
    "kept_problems",
    "merge_sessions",
    "published_results",
    "published_sessions",
    "restorable",
    "restore",
]
