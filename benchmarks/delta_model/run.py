"""Δ-model benchmark: pesflow vs AGOX 3.11 SparseGPR side by side, and the Δ overhead in BFGS.

Run from the repository root (both virtual environments must exist):

    .venv/bin/python benchmarks/delta_model/run.py          # (--plot: figures only)

Writes results.json, side_by_side.png, retrain_growth.png and overhead.png next to this file.
Data: Ag13 clusters (search-like: EMT-relaxed random starts, rattled), target EMT, prior
CHGNet; both models learn the same residual E_EMT − E_CHGNet with the same SOAP, kernel,
noise and number of CUR inducing points. Cached in data/ (made on the first run).

Everything runs on one thread (BLAS, torch; both sides): on a shared 2-core machine,
two-thread BLAS made the same training 10-20× slower and erratic.
"""

# ruff: noqa: E402  (thread limits must be set before numpy loads its BLAS)
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.emt import EMT
from ase.io import read, write
from ase.optimize import BFGS

from pesflow.models.delta import DeltaModel, DeltaSettings
from pesflow.models.gpr import Kernel, fit_sparse_gpr
from pesflow.models.registry import get_calculator
from pesflow.models.soap import SoapDescriptor, SoapSettings
from pesflow.structures.generators import random_structure
from pesflow.structures.problem import ag2s_cluster

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AGOX_PYTHON = ROOT / ".venv-agox" / "bin" / "python"
DATA = HERE / "data" / "ag13_emt_chgnet.extxyz"
SIZES = [50, 200, 800]
CFG = dict(species=["Ag"], r_cut=7.0, n_max=3, l_max=2, sigma=1.0, amplitude=1.0,
           length_scale=40.0, noise=0.01, n_inducing=1000, seeds=[0, 1, 2, 3, 4],
           mae_extra_seeds=list(range(5, 20)), mae_extra_sizes=[200, 800], sizes=SIZES)


def random_cluster(symbols, rng, spacing=2.6):
    """Random positions in a cube, whole-structure rejection: fine for 13 atoms only."""
    n = len(symbols)
    side = 1.15 * spacing * n ** (1 / 3)
    while True:
        pos = rng.uniform(0, side, (n, 3))
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(n)
        if d.min() > 0.85 * spacing:
            atoms = Atoms(symbols, pos, cell=[20.0] * 3)
            atoms.center()
            return atoms


def make_data(chgnet) -> list[Atoms]:
    """Search-like Ag13: 45 EMT-relaxed random starts × 25 rattles (40 starts train, 5 test)."""
    rng = np.random.default_rng(0)
    frames = []
    for start in range(45):
        atoms = random_cluster(["Ag"] * 13, rng)
        atoms.calc = EMT()
        BFGS(atoms, logfile=None).run(fmax=0.05, steps=40)
        for _ in range(25):
            moved = atoms.positions + rng.normal(0, 0.08, (13, 3))
            c = Atoms(atoms.numbers, moved, cell=atoms.cell)
            c.info["split"] = "train" if start < 40 else "test"
            c.info["emt"] = EMT().get_potential_energy(c)
            c.info["chgnet"] = float(chgnet.get_potential_energy(c))
            c.info["target"] = c.info["emt"] - c.info["chgnet"]
            frames.append(c)
    train = [f for f in frames if f.info["split"] == "train"]
    order = rng.permutation(len(train))  # mix starts so every prefix is diverse
    return [train[i] for i in order] + [f for f in frames if f.info["split"] == "test"]


def _settings() -> DeltaSettings:
    """pesflow's defaults (ensemble uncertainty, K = 10) with the shared SOAP/kernel/noise."""
    return DeltaSettings(
        soap=SoapSettings(r_cut=CFG["r_cut"], n_max=CFG["n_max"], l_max=CFG["l_max"],
                          sigma=CFG["sigma"]),
        kernel=Kernel(CFG["amplitude"], CFG["length_scale"]), noise_energy=CFG["noise"],
        n_inducing=CFG["n_inducing"], mean="per_structure",  # AGOX's centralize=True
    )


def _split(frames):
    train = [a for a in frames if a.info["split"] == "train"]
    test = [a for a in frames if a.info["split"] == "test"]
    return train, test


def _trained(train, n, seed) -> tuple[DeltaModel, float]:
    model = DeltaModel(CFG["species"], None, _settings(), seed=seed)
    t = time.perf_counter()
    model.add_data(train[:n], [a.info["target"] for a in train[:n]])
    model.train()
    return model, time.perf_counter() - t


def pesflow_side(frames) -> dict:
    """Same protocol as agox_side.py: per seed, train on 50/200/800 from raw structures."""
    train, test = _split(frames)
    target = np.array([a.info["target"] for a in test])
    _trained(train, SIZES[0], 0)  # warm-up (imports, first BLAS calls), not timed
    out: dict = {"train_s": {str(n): [] for n in SIZES}, "mae": {str(n): [] for n in SIZES},
                 "retrain_plus5_s": [], "predict_s": [], "predict_lcb_s": []}
    for seed in CFG["seeds"]:
        for n in SIZES:
            model, elapsed = _trained(train, n, seed)
            out["train_s"][str(n)].append(elapsed)
            e = np.array([model.predict_delta(a, forces=False).energy for a in test])
            out["mae"][str(n)].append(float(np.mean(np.abs(e - target))))
        for a in test:  # energy + forces of the mean model, then of the LCB (κ = 2)
            for key, kappa in (("predict_s", 0.0), ("predict_lcb_s", 2.0)):
                t = time.perf_counter()
                model.predict_delta(a, forces=True, kappa=kappa)
                out[key].append(time.perf_counter() - t)
        # Incremental: 5 more structures; inducing points kept (re-selection not due).
        n = SIZES[-1]
        t = time.perf_counter()
        model.add_data(train[n:n + 5], [a.info["target"] for a in train[n:n + 5]])
        model.train()
        out["retrain_plus5_s"].append(time.perf_counter() - t)
    # More CUR draws for the MAE comparison only (the draw dominates its scatter).
    for seed in CFG["mae_extra_seeds"]:
        for n in CFG["mae_extra_sizes"]:
            model, _ = _trained(train, n, seed)
            e = np.array([model.predict_delta(a, forces=False).energy for a in test])
            out["mae"][str(n)].append(float(np.mean(np.abs(e - target))))
    return out


def retrain_growth(frames, start=50, step=5) -> dict:
    """pesflow retraining as data arrives: +5 structures at a time from 50 to all 1000.

    Re-selection of the inducing points follows the model's schedule (every 25 trainings
    or +50 % environments); those trainings are flagged.
    """
    train, _ = _split(frames)
    model, _ = _trained(train, start, 0)
    rows = []
    for n in range(start, len(train), step):
        new = train[n:n + step]
        t = time.perf_counter()
        model.add_data(new, [a.info["target"] for a in new])
        model.train()
        elapsed = time.perf_counter() - t
        # Private counter: 1 right after a training that re-selected the inducing points.
        rows.append([model.n_train, elapsed, int(model._trains_since_selection == 1)])
    return {"n_train_s_reselected": rows}


def agox_side(frames) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data, cfg, res = (Path(tmp) / n for n in ("data.extxyz", "cfg.json", "out.json"))
        write(data, frames)
        cfg.write_text(json.dumps(CFG))
        done = subprocess.run([str(AGOX_PYTHON), str(HERE / "agox_side.py"), str(data),
                               str(cfg), str(res)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"agox_side.py failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        out = json.loads(res.read_text())
        out["xm_seed0"] = np.load(str(res) + ".xm.npy")
        return out


def same_inducing_points(frames, xm: np.ndarray, agox_energy) -> dict:
    """pesflow's solver (fit_sparse_gpr) on AGOX's own inducing points, N = 800.

    Separates the solver from the random CUR draw: with the same inducing points both
    codes should predict the same test energies.
    """
    train, test = _split(frames)
    train = train[:SIZES[-1]]
    settings = _settings()
    desc = SoapDescriptor(CFG["species"], settings.soap)
    kernel = settings.kernel
    lk = np.stack([kernel(desc.create(a), xm).sum(axis=0) for a in train])
    y = np.array([a.info["target"] for a in train])
    noise_var = CFG["noise"] ** 2 * np.array([len(a) for a in train], dtype=float)
    fit = fit_sparse_gpr(kernel, xm, lk, (y - y.mean())[:, None], noise_var, settings.jitter)
    e = np.array([kernel(desc.create(a), xm).sum(axis=0) @ fit.alpha[:, 0] for a in test])
    e += y.mean()
    target = np.array([a.info["target"] for a in test])
    return {"mae_pesflow_eV": float(np.mean(np.abs(e - target))),
            "mae_agox_eV": float(np.mean(np.abs(np.array(agox_energy) - target))),
            "max_abs_energy_difference_eV": float(np.max(np.abs(e - np.array(agox_energy))))}


AG2S = {12: 4, 24: 8, 36: 12}  # atoms -> X of [Ag2S]_X


def ag2s_structure(x: int, rng) -> Atoms:
    """A random [Ag2S]_X start as a search draws it (paper's bond rule, 15 Å confinement)."""
    return random_structure(ag2s_cluster(x), rng)


def delta_overhead(chgnet, reps=3, steps=11, pairs=60) -> dict:
    """Time per BFGS step: CHGNet alone vs DeltaCalculator(CHGNet + Δ), 1000 inducing points.

    Training: 70 random starts each of Ag8S4, Ag16S8, Ag24S12 (210 structures, 5040
    environments), labels = CHGNet energy + Gaussian noise (0.05 eV/atom): the cost of a
    prediction does not depend on the label values, only on the number of inducing points.
    The three calculators run in turn from the same start, ``reps`` times (round robin, so
    load changes on the shared machine hit all three); the median over all steps is kept.
    Also paired single calls (``pairs`` rattled geometries): median of the per-geometry
    time differences over the median CHGNet call.
    """
    rng = np.random.default_rng(1)
    structures = [ag2s_structure(x, rng) for x in AG2S.values() for _ in range(70)]
    labels = [float(chgnet.get_potential_energy(a)) + rng.normal(0, 0.05 * len(a))
              for a in structures]
    model = DeltaModel(["Ag", "S"], chgnet, DeltaSettings(), seed=0)  # pesflow defaults
    t = time.perf_counter()
    model.add_data(structures, labels)  # includes the CHGNet prior energies (cached)
    model.train()
    out = {"n_train": model.n_train, "n_environments": sum(len(a) for a in structures),
           "n_inducing": int(model.fit.xm.shape[0]), "ensemble_size": 10,
           "train_with_prior_s": time.perf_counter() - t, "sizes": {}}
    calcs = {"chgnet": chgnet, "delta": model.calculator(),
             "delta_lcb": model.calculator(kappa=2.0)}
    for n_atoms, x in AG2S.items():
        start = ag2s_structure(x, rng)
        times: dict[str, list[float]] = {k: [] for k in calcs}
        for _ in range(reps):
            for label, calc in calcs.items():
                atoms = start.copy()
                atoms.calc = calc
                opt = BFGS(atoms, logfile=None)
                t = time.perf_counter()
                for i, _ in enumerate(opt.irun(fmax=1e-4, steps=steps)):
                    now = time.perf_counter()
                    if i:  # step i: BFGS update + energy and forces at the new geometry
                        times[label].append(now - t)
                    t = now
        row = {f"{k}_step_s": float(np.median(v)) for k, v in times.items()}
        row["steps_timed"] = {k: len(v) for k, v in times.items()}
        # Paired: energy + forces of all three at the same geometries, in rotating order,
        # so that load changes cancel in the per-geometry differences.
        calls: dict[str, list[float]] = {k: [] for k in calcs}
        names = list(calcs)
        for g in range(pairs):
            atoms = start.copy()
            atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
            for label in names[g % 3:] + names[:g % 3]:
                chgnet.reset()
                calcs[label].reset()
                atoms.calc = calcs[label]
                t = time.perf_counter()
                atoms.get_forces()
                calls[label].append(time.perf_counter() - t)
        base = np.array(calls["chgnet"])
        row["paired_chgnet_call_s"] = float(np.median(base))
        for label, key in (("delta", "paired_overhead_mean"), ("delta_lcb", "paired_overhead_lcb")):
            row[key] = float(np.median(np.array(calls[label]) - base) / np.median(base))
        delta_only = []
        for _ in range(10):
            t = time.perf_counter()
            model.predict_delta(start, forces=True, kappa=2.0)
            delta_only.append(time.perf_counter() - t)
        row["delta_only_lcb_s"] = float(np.median(delta_only))
        row["overhead_mean"] = row["delta_step_s"] / row["chgnet_step_s"] - 1
        row["overhead_lcb"] = row["delta_lcb_step_s"] / row["chgnet_step_s"] - 1
        out["sizes"][f"Ag{2 * x}S{x} ({n_atoms} atoms)"] = row
    return out


def soap_derivatives() -> dict:
    """SOAP derivative cost: analytic vs numerical (clusters), images vs numerical (slab)."""
    from ase.build import add_adsorbate, fcc111

    rng = np.random.default_rng(2)
    res = {}
    desc = SoapDescriptor(["Ag", "S"], periodic_derivatives="numerical")
    for x in AG2S.values():
        atoms = ag2s_structure(x, rng)
        res[f"cluster Ag{2 * x}S{x} analytic"] = _median_time(lambda a=atoms: desc.derivatives(a))
        boxed = atoms.copy()
        boxed.pbc = True  # the same cluster in its 20 Å box, periodic: DScribe numerical
        res[f"cluster Ag{2 * x}S{x} numerical"] = _median_time(
            lambda a=boxed: desc.derivatives(a), repeat=3)
    slab = fcc111("Ag", size=(3, 3, 4), vacuum=8.0)
    for site in ("fcc", "hcp", "ontop"):
        add_adsorbate(slab, "S", 2.0, site)
    slab.rattle(0.05, seed=3)
    free = list(range(27, len(slab)))
    for method in ("images", "numerical"):
        desc = SoapDescriptor(["Ag", "S"], periodic_derivatives=method)
        res[f"slab Ag36S3 {method} all atoms"] = _median_time(
            lambda d=desc: d.derivatives(slab), repeat=3)
        res[f"slab Ag36S3 {method} 12 free atoms"] = _median_time(
            lambda d=desc: d.derivatives(slab, include=free), repeat=3)
    return res


def _median_time(f, repeat=7):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _med(values) -> float:
    return float(np.median(values))


def summarize(results) -> dict:
    """Medians, AGOX/pesflow ratios and the issue's targets, from the raw timings."""
    p, a = results["pesflow"], results["agox"]
    summary: dict = {"median": {}, "ratio_agox_over_pesflow": {}}
    for side, r in (("pesflow", p), ("agox", a)):
        med = {f"train_{n}_s": _med(r["train_s"][str(n)]) for n in SIZES}
        med |= {f"mae_{n}_eV": _med(r["mae"][str(n)]) for n in SIZES}
        med["retrain_plus5_at_800_s"] = _med(r["retrain_plus5_s"])
        med["predict_energy_forces_s"] = _med(r["predict_s"])
        summary["median"][side] = med
    summary["median"]["pesflow"]["predict_lcb_energy_forces_s"] = _med(p["predict_lcb_s"])
    mp, ma = summary["median"]["pesflow"], summary["median"]["agox"]
    ratio = {f"train_{n}": ma[f"train_{n}_s"] / mp[f"train_{n}_s"] for n in SIZES}
    ratio["retrain_plus5_at_800"] = ma["retrain_plus5_at_800_s"] / mp["retrain_plus5_at_800_s"]
    ratio["predict_energy_forces"] = ma["predict_energy_forces_s"] / mp["predict_energy_forces_s"]
    summary["ratio_agox_over_pesflow"] = ratio
    o = results["overhead"]["sizes"]
    summary["targets"] = {
        "train_2x_faster": {f"N={n}": ratio[f"train_{n}"] >= 2 for n in SIZES},
        "predict_2x_faster": ratio["predict_energy_forces"] >= 2,
        "mae_equal_or_lower": {f"N={n}": {
            "pesflow_median_eV": mp[f"mae_{n}_eV"], "agox_median_eV": ma[f"mae_{n}_eV"],
            "difference_eV": mp[f"mae_{n}_eV"] - ma[f"mae_{n}_eV"],
            # Scatter from the random CUR draw (same distribution in both codes).
            "seed_std_eV": float(np.std(p["mae"][str(n)] + a["mae"][str(n)], ddof=1)),
            "met_strictly": mp[f"mae_{n}_eV"] <= ma[f"mae_{n}_eV"],
        } for n in SIZES},
        "overhead_at_most_25pct": {k: max(v["overhead_mean"], v["overhead_lcb"]) <= 0.25
                                   for k, v in o.items()},
    }
    return summary


def plot(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, a = results["pesflow"], results["agox"]
    sides = (("pesflow", p, "C0", "o"), ("AGOX 3.11", a, "C1", "s"))

    def band(ax, r, key, color, marker, label):
        v = [r[key][str(n)] for n in SIZES]  # seeds per size may differ
        med = np.array([np.median(x) for x in v])
        err = [med - [min(x) for x in v], [max(x) for x in v] - med]
        ax.errorbar(SIZES, med, yerr=err, color=color, marker=marker, capsize=3, label=label)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for label, r, color, marker in sides:
        band(axes[0], r, "train_s", color, marker, f"{label}: train from raw structures")
        axes[0].plot([SIZES[-1] + 5], [_med(r["retrain_plus5_s"])], color=color, marker="*",
                     ms=12, ls="none", label=f"{label}: +5 structures to 800")
        band(axes[1], r, "mae", color, marker, label)
    axes[0].set(xscale="log", yscale="log", xlabel="training structures (Ag13)",
                ylabel="wall time (s), median over seeds",
                title="training time (1 thread)")
    axes[0].legend(fontsize=7)
    axes[1].axhline(results["prior_offset_mae"], color="k", ls="--",
                    label="CHGNet + constant offset")
    axes[1].set(xscale="log", xlabel="training structures (Ag13)",
                ylabel="test MAE vs EMT (eV / structure)", ylim=(0, None),
                title="accuracy (median, min–max over CUR seeds)")
    axes[1].legend(fontsize=8)
    names = ["pesflow E+F", "pesflow LCB E+F", "AGOX E+F"]
    values = [_med(p["predict_s"]), _med(p["predict_lcb_s"]), _med(a["predict_s"])]
    axes[2].bar(names, [1e3 * v for v in values], color=["C0", "C2", "C1"])
    for i, v in enumerate(values):
        axes[2].text(i, 1e3 * v, f"{1e3 * v:.2f} ms", ha="center", va="bottom", fontsize=8)
    axes[2].set(yscale="log", ylabel="median time per Ag13 structure (ms)",
                title="prediction, energy + forces")
    for ax in axes:
        ax.minorticks_off()
    for ax in axes[:2]:
        ax.set_xticks(SIZES, [str(n) for n in SIZES])
    fig.tight_layout()
    fig.savefig(HERE / "side_by_side.png", dpi=110)
    plt.close(fig)

    g = np.array(results["retrain_growth"]["n_train_s_reselected"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    keep = g[:, 2] == 0
    ax.plot(g[keep, 0], g[keep, 1], "o", ms=3, color="C0",
            label="pesflow +5 structures, inducing points kept")
    ax.plot(g[~keep, 0], g[~keep, 1], "^", ms=6, color="C3",
            label="pesflow +5 structures, inducing points re-selected")
    for label, r, color, marker in sides:
        ax.plot(SIZES, [_med(r["train_s"][str(n)]) for n in SIZES], marker, color=color,
                ls=":", label=f"{label}: full training from raw structures")
    ax.set(xscale="log", yscale="log", xlabel="training structures (Ag13, 13 atoms each)",
           ylabel="wall time per retraining (s)",
           title="retraining as data arrives (1000 inducing points)")
    ax.minorticks_off()
    ax.set_xticks([50, 100, 200, 400, 800], ["50", "100", "200", "400", "800"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "retrain_growth.png", dpi=110)
    plt.close(fig)

    o = results["overhead"]["sizes"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = list(o)
    x = np.arange(len(names))
    keys = (("chgnet", "CHGNet alone"), ("delta", "CHGNet + Δ"),
            ("delta_lcb", "CHGNet + Δ, LCB κ=2"))
    for i, (key, label) in enumerate(keys):
        heights = [1e3 * o[n][f"{key}_step_s"] for n in names]
        ax.bar(x + (i - 1) * 0.27, heights, 0.27, label=label)
        if key != "chgnet":
            for xi, h, n in zip(x, heights, names, strict=True):
                pct = 100 * o[n]["overhead_mean" if key == "delta" else "overhead_lcb"]
                ax.text(xi + (i - 1) * 0.27, h, f"{pct:+.0f}%", ha="center", va="bottom",
                        fontsize=8)
    ax.set(xticks=x, xticklabels=names, ylabel="median wall time per BFGS step (ms)",
           title=f"Δ overhead ({results['overhead']['n_inducing']} inducing points, "
                 f"{results['overhead']['n_train']} training structures)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "overhead.png", dpi=110)
    plt.close(fig)


def machine() -> dict:
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__,
            "threads": os.environ["OPENBLAS_NUM_THREADS"],
            "load_average_at_start": os.getloadavg()}


def main() -> int:
    if sys.argv[1:] == ["--plot"]:  # re-draw the figures from an existing results.json
        plot(json.loads((HERE / "results.json").read_text()))
        return 0
    import torch

    torch.set_num_threads(1)
    chgnet = get_calculator("chgnet")
    if DATA.exists():
        frames = read(DATA, ":")
    else:
        DATA.parent.mkdir(exist_ok=True)
        frames = make_data(chgnet)
        write(DATA, frames)
    train, test = _split(frames)
    offset = np.mean([f.info["target"] for f in train])
    results = {
        "command": ".venv/bin/python benchmarks/delta_model/run.py",
        "machine": machine(), "config": CFG, "n_train_available": len(train),
        "n_test": len(test),
        "prior_mae": float(np.mean([abs(f.info["target"]) for f in test])),
        "prior_offset_mae": float(np.mean([abs(f.info["target"] - offset) for f in test])),
        "section_wall_s": {},
    }
    partial = HERE / "results.partial.json"
    agox_model: dict = {}

    def agox():
        out = agox_side(frames)
        agox_model["xm"], agox_model["energy"] = out.pop("xm_seed0"), out.pop("test_energy_seed0")
        return out

    parts = (("agox", agox), ("pesflow", lambda: pesflow_side(frames)),
             ("same_inducing_points",
              lambda: same_inducing_points(frames, agox_model["xm"], agox_model["energy"])),
             ("retrain_growth", lambda: retrain_growth(frames)),
             ("soap_derivatives_s", soap_derivatives), ("overhead", lambda: delta_overhead(chgnet)))
    for key, part in parts:
        t = time.perf_counter()
        results[key] = part()
        results["section_wall_s"][key] = time.perf_counter() - t
        results.setdefault("load_average_after_section", {})[key] = os.getloadavg()
        print(f"{key}: {results['section_wall_s'][key]:.1f} s", flush=True)
        partial.write_text(json.dumps(results, indent=1))
    results["summary"] = summarize(results)
    (HERE / "results.json").write_text(json.dumps(results, indent=1))
    partial.unlink()
    plot(results)
    print(json.dumps(results["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
