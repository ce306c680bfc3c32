"""Success curves of RSS, basin hopping, GOFEE and REX on LJ13 (Δ-model on a Morse prior).

LJ oracle (ε = 1 eV, σ = 2.5 Å, r_c = 20σ), Morse prior ρ0 = 6, r0 = 2^(1/6)σ, the
Δ-model retrained on every oracle result; success = basin test (a local LJ relaxation of
an evaluated structure reaches −44.326801 eV within 1e-3, not counted in the budget).
Each repeat stops at its first success or after ``--budget`` oracle calls (censored).
Time is the process's CPU time (the machine is shared, so cores × wall would count the
waiting), success checks excluded.
REX cadence scaled down: oracle every 3 iterations, swaps every 2. Writes
``docs/search-success-lj13.json`` and ``.png``; ``--replot`` redraws the curves and
figures from that JSON's per-repeat records, running nothing.

    .venv/bin/python benchmarks/search/lj13_success_curves.py --repeats 10 --budget 25
    .venv/bin/python benchmarks/search/lj13_success_curves.py --replot
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from pathlib import Path

from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential

from pesflow.models.delta import DeltaModel
from pesflow.search.engines import GOFEE, REX, BasinHopping, RandomSearch
from pesflow.search.runner import SerialRunner
from pesflow.search.success import plot_success_curves, success_curve
from pesflow.structures.identity import Reference
from pesflow.structures.problem import lj_cluster

SIGMA = 2.5
E_GM = -44.326801
ENGINES = {
    "RSS": (RandomSearch, {}),
    "BH": (BasinHopping, {}),
    "GOFEE": (GOFEE, {}),
    "REX": (REX, {"oracle_interval": 3, "swap_interval": 2}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("docs/search-success-lj13"))
    parser.add_argument("--replot", action="store_true",
                        help="redraw from the existing JSON's records (its repeats and budget)")
    args = parser.parse_args()
    if args.replot:
        data = json.loads(args.out.with_suffix(".json").read_text())
        budget = int(re.search(r"--budget (\d+)", data["command"]).group(1))
        repeats = len(next(iter(data["engines"].values()))["first_success_call"])
        write_curves(data, args.out, repeats, budget)
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    problem = lj_cluster(13)

    def oracle() -> LennardJones:
        return LennardJones(sigma=SIGMA, epsilon=1.0, rc=20 * SIGMA)

    reference = Reference("basin", energy=E_GM, threshold=1e-3, oracle=oracle())
    data = {
        "command": f"python benchmarks/search/lj13_success_curves.py --repeats {args.repeats} "
        f"--budget {args.budget}",
        "machine": f"{platform.node()}, 1 core (shared), 1 BLAS thread",
        "setup": "LJ13, LJ oracle eps=1 eV sigma=2.5 A rc=50 A; Delta-model on Morse rho0=6",
        "engines": {},
    }
    for name, (cls, settings) in ENGINES.items():
        calls, cpu, cpu_end, best = [], [], [], []
        for seed in range(args.repeats):
            hit: list = []

            def stop(e, hit=hit) -> bool:
                if not hit and reference.matches(e.atoms, e.energy):
                    hit.append(e)
                return bool(hit)

            model = DeltaModel(problem.species, MorsePotential(
                epsilon=1.0, rho0=6.0, r0=2 ** (1 / 6) * SIGMA), seed=seed)
            runner = SerialRunner(cls(problem, settings, seed=seed), oracle(), model=model,
                                  budget=args.budget, stop=stop)
            runner.run()
            calls.append(hit[0].call if hit else None)
            cpu.append(hit[0].process_time if hit else None)
            cpu_end.append(runner.evaluations[-1].process_time)
            best.append(min(e.energy for e in runner.evaluations))
            print(name, seed, calls[-1], round(cpu_end[-1], 1), flush=True)
        data["engines"][name] = {
            "settings": settings, "first_success_call": calls,
            "first_success_process_cpu_s": cpu, "process_cpu_s_at_end": cpu_end,
            "best_raw_oracle_energy": best,
        }
    write_curves(data, args.out, args.repeats, args.budget)


def write_curves(data: dict, out: Path, repeats: int, budget: int) -> None:
    """Success curves (calls and process CPU time) of every engine into ``data``, then the
    JSON and both figures."""
    calls_curves, cpu_curves = {}, {}
    for name, engine in data["engines"].items():
        calls_curves[name] = success_curve(engine["first_success_call"], budget, label=name)
        cpu_curves[name] = success_curve(engine["first_success_process_cpu_s"],
                                         engine["process_cpu_s_at_end"],
                                         unit="process CPU seconds (1 core)", label=name)
        engine["curve_calls"] = calls_curves[name].todict()
        engine["curve_cpu"] = cpu_curves[name].todict()
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    title = f"LJ13, Δ-model on Morse ρ0=6: {repeats} repeats"
    plot_success_curves(calls_curves, out.with_suffix(".png"), title=title)
    plot_success_curves(cpu_curves, out.with_name(out.name + "-cpu.png"), title=title, xlog=True)

if __name__ == "__main__":
    main()
