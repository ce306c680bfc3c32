"""Success curves of RSS, basin hopping, GOFEE and REX on LJ13 (Δ-model on a Morse prior).

LJ oracle (ε = 1 eV, σ = 2.5 Å, r_c = 20σ), Morse prior ρ0 = 6, r0 = 2^(1/6)σ, the
Δ-model retrained on every oracle result; success = basin test (a local LJ relaxation of
an evaluated structure reaches −44.326801 eV within 1e-3, not counted in the budget).
Each repeat stops at its first success or after ``--budget`` oracle calls (censored).
Time is the process's CPU time (the machine is shared, so cores × wall would count the
waiting), success checks excluded.
REX cadence scaled down: oracle every 3 iterations, swaps every 2. Writes
``docs/search-success-lj13.json`` and ``.png``.

    .venv/bin/python benchmarks/search/lj13_success_curves.py --repeats 10 --budget 25
"""

from __future__ import annotations

import argparse
import json
import platform
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
    args = parser.parse_args()
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
    calls_curves, cpu_curves = {}, {}
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
        calls_curves[name] = success_curve(calls, args.budget, label=name)
        cpu_curves[name] = success_curve(cpu, cpu_end, unit="process CPU seconds (1 core)",
                                         label=name)
        data["engines"][name] = {
            "settings": settings, "first_success_call": calls,
            "first_success_process_cpu_s": cpu, "process_cpu_s_at_end": cpu_end,
            "best_raw_oracle_energy": best,
            "curve_calls": calls_curves[name].todict(), "curve_cpu": cpu_curves[name].todict(),
        }
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    plot_success_curves(calls_curves, args.out.with_suffix(".png"),
                        title=f"LJ13, Δ-model on Morse ρ0=6: {args.repeats} repeats")
    plot_success_curves(cpu_curves, args.out.with_name(args.out.name + "-cpu.png"),
                        title=f"LJ13, Δ-model on Morse ρ0=6: {args.repeats} repeats", xlog=True)


if __name__ == "__main__":
    main()
