"""Crash and resume: SIGKILL the search coordinator at random moments (issue #8, item 1).

Runs N trials (default 50) of ``tests/kill_trials.py``, the code the tests use: each
trial starts ``pesflow run`` on an LJ7 REX stand-in search (6 oracle calls, LJ oracle
with a short sleep), SIGKILLs the coordinator 1 to 3 times at moments drawn from a
seeded generator (``random``), during a checkpoint write (``checkpoint``: stopped while a
``.checkpoint.h5.*.tmp`` exists, then killed), during the very first checkpoint write
(``first-checkpoint``) or while the run is starting (``startup``), resumes it with
``pesflow resume`` each time, and checks that the budget completes with each oracle
result recorded exactly once, nothing recorded before a kill computed again, every
checkpoint a kill left readable, and no process of the run left. Every 8th trial (from
the 4th) runs on local HTEx, the others on the thread executor.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reliability/kill_trials.py [--trials 50]

writes ``benchmarks/reliability/kill_trials.json`` (per-trial records and counts). The
exit status is 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from kill_trials import (  # noqa: E402 (tests/ is not a package)
    TIMING,
    run_trials,
    summarize_trials,
    trial_config,
    trial_plan,
)


def source_digest() -> str:
    """SHA-256 over pesflow's Python sources: which code the trials ran."""
    sha = hashlib.sha256()
    for path in sorted((HERE.parents[1] / "pesflow").rglob("*.py")):
        sha.update(str(path.relative_to(HERE.parents[1])).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "kill_trials.json")
    args = parser.parse_args()
    plan = trial_plan(args.trials, args.first_seed)
    load_before, digest = os.getloadavg(), source_digest()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="pesflow-kill-") as tmp:
        records = run_trials(plan, Path(tmp), on_trial=lambda r: print(
            f"seed {r['seed']} {r['mode']:16s} {r['site']:7s} kills {len(r['kills'])} "
            f"in write {sum(k.get('tmp_present', False) for k in r['kills'])} "
            f"repeated {r.get('extra', '-')} {r['wall_s']:6.1f} s  {r['outcome']}",
            flush=True))
    summary = summarize_trials(records)
    changed = source_digest() != digest
    if changed:
        print("warning: pesflow's sources changed while the trials ran", file=sys.stderr)
    result = {
        "command": "benchmarks/reliability/kill_trials.py " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_before": load_before,
                    "load_after": os.getloadavg()},
        "pesflow_source_sha256": digest,  # at the start
        "sources_changed_during_run": changed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "setup": {"config": trial_config(6, TIMING["threads"]["delay"], 1000),
                  "timing": TIMING, "plan": plan},
        "summary": summary,
        "trials": records,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
