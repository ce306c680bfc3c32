"""AGOX 3.11 SparseGPR half of the side-by-side benchmark (runs in .venv-agox).

Usage: python agox_side.py DATA.extxyz SETTINGS.json OUT.json
Reads the same structures and targets as the pesflow half and follows the same protocol
(warm-up, then per seed: train on each size, test MAE, prediction times, +5 retrain);
prints nothing but errors. Also writes OUT.json.xm.npy: the inducing points of the
first seed's largest model.
"""

import json
import sys
import time

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read


def main(data_path, settings_path, out_path):
    from agox.models.descriptors import SOAP
    from agox.models.GPR import SparseGPR
    from agox.models.GPR.kernels import RBF
    from agox.models.GPR.kernels import Constant as C
    from agox.utils.sparsifiers import CUR

    with open(settings_path) as f:
        cfg = json.load(f)
    frames = read(data_path, ":")
    for a in frames:  # target = oracle − prior, as for pesflow
        a.calc = SinglePointCalculator(a, energy=a.info["target"])
    train_all = [a for a in frames if a.info["split"] == "train"]
    test = [a for a in frames if a.info["split"] == "test"]
    sizes = cfg["sizes"]

    def new_model():
        descriptor = SOAP.from_species(
            species=cfg["species"], r_cut=cfg["r_cut"], nmax=cfg["n_max"], lmax=cfg["l_max"],
            sigma=cfg["sigma"], weight=False, periodic=False,
        )
        kernel = C(cfg["amplitude"], "fixed") * RBF(cfg["length_scale"], "fixed")
        return SparseGPR(kernel=kernel, descriptor=descriptor, sparsifier=CUR(cfg["n_inducing"]),
                         sigma=cfg["noise"], centralize=True, n_optimize=0,
                         use_ray=False)  # Ray serves only hyperparameter search: none here

    def trained(n, seed):
        np.random.seed(seed)  # noqa: NPY002  (AGOX's CUR draws from the global RNG)
        model = new_model()
        t = time.perf_counter()
        model.train(train_all[:n])
        return model, time.perf_counter() - t

    trained(sizes[0], 0)  # warm-up (imports, first BLAS calls), not timed
    out = {"train_s": {str(n): [] for n in sizes}, "mae": {str(n): [] for n in sizes},
           "retrain_plus5_s": [], "predict_s": []}
    target = np.array([a.info["target"] for a in test])
    for seed in cfg["seeds"]:
        for n in sizes:
            model, elapsed = trained(n, seed)
            out["train_s"][str(n)].append(elapsed)
            e = np.array([model.predict_energy(a) for a in test])
            out["mae"][str(n)].append(float(np.mean(np.abs(e - target))))
            if n == sizes[-1] and seed == cfg["seeds"][0]:
                # For the same-inducing-points check on the pesflow side.
                np.save(out_path + ".xm.npy", model.Xm)
                out["test_energy_seed0"] = e.tolist()
        for a in test:
            t = time.perf_counter()
            model.predict_energy(a)
            model.predict_forces(a)
            out["predict_s"].append(time.perf_counter() - t)
        # AGOX has no incremental update: train() recomputes everything.
        n = sizes[-1]
        t = time.perf_counter()
        model.train(train_all[: n + 5])
        out["retrain_plus5_s"].append(time.perf_counter() - t)
    # More CUR draws for the MAE comparison only (the draw dominates its scatter).
    for seed in cfg["mae_extra_seeds"]:
        for n in cfg["mae_extra_sizes"]:
            model, _ = trained(n, seed)
            e = np.array([model.predict_energy(a) for a in test])
            out["mae"][str(n)].append(float(np.mean(np.abs(e - target))))
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
