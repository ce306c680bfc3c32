"""Why does the repulsive wall + Δ-model not find LJ26? A look at the surrogate it builds.

Trains the Δ-model (paper settings, SPEC.md §1) on the oracle evaluations of one finished
stand-in repeat, in several variants, relaxes the same random LJ26 structures in each
surrogate (FIRE, fmax 0.05 eV/Å, ≤ 300 steps) and scores the minima with the true LJ
energy. A surrogate that steers a search toward LJ's minimum gives low LJ energies; the wall
alone is the baseline a Δ-model should improve on.

    .venv/bin/python benchmarks/campaign/delta_wall_diagnostic.py \
        runs/standins/LJ26/REX/repulsive/r00 --out benchmarks/campaign/delta-wall/r00.json

Variants: the paper's model as trained in the campaign (θ0 = 1, ℓ = 40); a shorter length
scale (ℓ = 10); the evaluations more than 20 eV above the lowest left out of the training
(AGOX's EnergyFilter idea); the (θ0, ℓ) of largest DTC log marginal likelihood on a grid.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read
from scipy.linalg import solve_triangular

from pesflow.models.delta import DeltaModel, DeltaSettings
from pesflow.models.gpr import Kernel, _cholesky
from pesflow.models.priors import make_prior
from pesflow.models.registry import get_calculator
from pesflow.structures.generators import random_structure
from pesflow.structures.identity import relax_locally
from pesflow.structures.problem import lj_cluster

GRID_AMPLITUDE = (1.0, 1e2, 1e4, 1e6)
GRID_LENGTH = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0)


def log_marginal_likelihood(model: DeltaModel) -> float:
    """DTC log marginal likelihood of the model's mean targets (SPEC.md §1 notation)."""
    s = model.settings
    n_atoms = np.array([len(a) for a in model._structures], dtype=float)
    y = np.array(model._energy) - np.array(model._prior_energy) - model.mu * n_atoms
    noise = s.noise_energy**2 * n_atoms
    chol_mm = _cholesky(model.kernel(model._xm, model._xm), s.jitter * model.kernel.amplitude)
    scale = 1.0 / np.sqrt(noise)
    v = solve_triangular(chol_mm, (model._lk * scale[:, None]).T, lower=True)
    chol_b = np.linalg.cholesky(v @ v.T + np.eye(v.shape[0]))
    yt = y * scale
    c = solve_triangular(chol_b, v @ yt, lower=True)
    logdet = np.log(noise).sum() + 2.0 * np.log(np.diag(chol_b)).sum()
    return float(-0.5 * (yt @ yt - c @ c) - 0.5 * logdet - 0.5 * len(y) * np.log(2 * np.pi))


def lj_energy_of_minima(starts: list[Atoms], calculator_of, lj) -> list[float]:
    """LJ energies of ``starts`` relaxed in the surrogate ``calculator_of()``."""
    energies = []
    for start in starts:
        scored, _, _ = relax_locally(start, calculator_of(), 0.05, 300, optimizer="FIRE")
        scored.calc = lj
        energies.append(float(scored.get_potential_energy()))
    return energies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished LJ26 repeat with a wall prior")
    parser.add_argument("--starts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    frames = read(args.run / "evaluated.extxyz", ":")
    energy = np.array([a.get_potential_energy() for a in frames])
    problem = lj_cluster(26)
    lj = get_calculator("lj")
    rng = np.random.default_rng(args.seed)
    starts = [random_structure(problem, rng) for _ in range(args.starts)]

    def model(keep: np.ndarray, amplitude: float = 1.0, length: float = 40.0) -> DeltaModel:
        settings = DeltaSettings(n_inducing=1000, kernel=Kernel(amplitude, length))
        m = DeltaModel(problem.species, make_prior("repulsive"), settings, seed=0)
        m.add_data([frames[i] for i in keep], energy[keep])
        m.train()
        return m

    every = np.arange(len(frames))
    grid = [(a, ell, log_marginal_likelihood(model(every, a, ell)))
            for a in GRID_AMPLITUDE for ell in GRID_LENGTH]
    best_a, best_l, _ = max(grid, key=lambda row: row[2])
    low = every[energy <= energy.min() + 20.0]
    variants = {
        "wall alone (no Δ)": (lambda: make_prior("repulsive"), len(every)),
        "Δ as in the campaign (θ0 = 1, ℓ = 40)": (model(every).calculator, len(every)),
        "Δ with ℓ = 10": (model(every, 1.0, 10.0).calculator, len(every)),
        "Δ without evaluations > E_min + 20 eV": (model(low).calculator, len(low)),
        f"Δ at the grid's largest marginal likelihood (θ0 = {best_a:g}, ℓ = {best_l:g})":
            (model(every, best_a, best_l).calculator, len(every)),
    }
    rows = []
    for name, (calculator_of, n_train) in variants.items():
        t = time.perf_counter()
        minima = lj_energy_of_minima(starts, calculator_of, lj)
        rows.append({"variant": name, "n_train": n_train, "lj_energy_of_minima": minima,
                     "median": float(np.median(minima)), "seconds": time.perf_counter() - t})
        print(f"{name:70s} n={n_train:3d}  LJ energy of the surrogate's minima: "
              f"median {np.median(minima):9.1f} eV, best {min(minima):8.1f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "run": str(args.run), "n_evaluations": len(frames),
        "oracle_energy_percentiles": dict(zip(
            ("0", "25", "50", "75", "100"),
            np.percentile(energy, [0, 25, 50, 75, 100]).round(2).tolist(), strict=True)),
        "starts": args.starts, "seed": args.seed,
        "log_marginal_likelihood_grid": [{"amplitude": a, "length_scale": ell, "lml": v}
                                         for a, ell, v in grid],
        "variants": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
