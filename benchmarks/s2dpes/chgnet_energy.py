"""CHGNet energies per second on a 2,500-point slice: pesflow's path vs a plain ASE loop.

Slice: W2N3 (A3B2_oP20_62_3c_2c:N-W, 20 atoms, relaxed in CHGNet by
examples/s2dpes/paper_cases.py), W1.x × W1.z over [0, 1]², 50 × 50 points.

- pesflow: ``EnergyModel`` on CHGNet's calculator, i.e. ``CHGNet.predict_structure(...,
  task="e")`` in chunks of 250 grid points (as ``pesflow pes`` runs), for several
  inference batch sizes on a subset, then on all 2,500 points with the fastest.
- ASE loop: ``atoms.calc = CHGNetCalculator(); atoms.get_potential_energy()`` per
  structure (energy, forces and stress, as the calculator always computes), on every
  ``--ase-stride``-th point of the same slice; energies are compared point by point.

Every measurement runs in its own process (one torch thread by default: the machine is
shared), so its peak resident memory (ru_maxrss) is its own; with ``--device cuda`` the
peak GPU memory torch allocated is recorded too.

    .venv/bin/python benchmarks/s2dpes/chgnet_energy.py [--ase-stride 10] [--device cuda]
        [--batches 20 200 1000] [--out benchmarks/s2dpes/chgnet_energy.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STRUCTURE = ROOT / "examples" / "s2dpes" / "structures" / "W2N3_chgnet_relaxed.cif"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_slice(out: Path, steps: int):
    """The benchmark's W2N3 slice (W1.x × W1.z over [0, 1]², steps × steps) in ``out``."""
    from pesflow.pes.slices import SliceConfig, prepare

    config = SliceConfig(structure=str(STRUCTURE), dofs=["W1.x", "W1.z"], steps=steps,
                         models=["chgnet"], symprec=1e-2)
    return prepare(config, out)


def device_name(device: str) -> str:
    if device == "cpu":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(0)


def worker(slice_dir: str, mode: str, batch_atoms: int, stride: int, limit: int | None,
           energies_out: str, device: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from pesflow.models.registry import get_calculator
    from pesflow.pes.energies import EnergyModel
    from pesflow.pes.slices import open_run

    run = open_run(slice_dir)
    calc = get_calculator("chgnet", device=device)
    base = rss_mb()
    points = np.arange(0, run.geometry.grid.size, stride)[:limit]
    start = time.perf_counter()
    if mode == "pesflow":
        model = EnergyModel(calc, "chgnet", batch_atoms=batch_atoms)
        energies = []
        for k in range(0, len(points), 250):  # chunks of contiguous flat indices (stride 1)
            lo, hi = points[k], points[min(k + 250, len(points)) - 1] + 1
            energies.append(model(run.geometry.structures(lo, hi)))
        energies = np.concatenate(energies)
    else:
        energies = []
        for k in points:
            atoms = run.geometry.structures(k, k + 1)[0]
            atoms.calc = calc
            energies.append(atoms.get_potential_energy() / len(atoms))
        energies = np.array(energies)
    seconds = time.perf_counter() - start
    np.save(energies_out, energies)
    row = {"mode": mode, "batch_atoms": batch_atoms, "points": len(points),
           "seconds": seconds, "per_s": len(points) / seconds,
           "peak_rss_mb": rss_mb(), "rss_after_model_load_mb": base,
           "nan": int(np.isnan(energies).sum())}
    if device == "cuda":
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(row))


def measure(slice_dir: Path, mode: str, batch_atoms: int, stride: int, limit: int | None,
            tmp: Path, device: str, threads: int) -> tuple[dict, np.ndarray]:
    out = tmp / f"{mode}-{batch_atoms}-{stride}-{limit}.npy"
    argv = [sys.executable, __file__, "--worker", str(slice_dir), mode, str(batch_atoms),
            str(stride), str(limit or 0), str(out), device, str(threads)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(row, flush=True)
    return row, np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ase-stride", type=int, default=10)
    parser.add_argument("--sweep-points", type=int, default=250)
    parser.add_argument("--batches", type=int, nargs="+", default=[20, 200, 1000],
                        help="inference batch sizes in atoms (20 atoms per W2N3 cell)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "chgnet_energy.json")
    args = parser.parse_args()
    run_on = (args.device, args.torch_threads)

    if not STRUCTURE.exists():
        raise SystemExit(f"{STRUCTURE} missing: run examples/s2dpes/paper_cases.py first")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run = prepare_slice(tmp / "slice", args.steps)
        size = run.geometry.grid.size
        sweep = []
        for batch in args.batches:  # inference batch size on the first sweep-points points
            row, _ = measure(run.out, "pesflow", batch, 1, args.sweep_points, tmp, *run_on)
            row["structures_per_batch"] = max(1, batch // 20)
            sweep.append(row)
        best = max(sweep, key=lambda r: r["per_s"])["batch_atoms"]
        full, e_full = measure(run.out, "pesflow", best, 1, None, tmp, *run_on)
        ase, e_ase = measure(run.out, "ase", 0, args.ase_stride, None, tmp, *run_on)
    common = e_full[:: args.ase_stride]
    finite = np.isfinite(common) & np.isfinite(e_ase)
    result = {
        "benchmark": "CHGNet energies per second on a 2,500-point s2DPES slice",
        "slice": f"W2N3 W1.x x W1.z, [0,1]^2, {args.steps}x{args.steps} = {size} points, 20 atoms",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads = "
                   f"{args.torch_threads}",
        "device": device_name(args.device),
        "batch_sweep": sweep, "pesflow": full, "ase_loop": ase,
        "speedup": full["per_s"] / ase["per_s"],
        "max_abs_energy_difference_eV_per_atom": float(np.abs(common - e_ase)[finite].max()),
        "compared_points": int(finite.sum()),
        "command": "benchmarks/s2dpes/chgnet_energy.py --ase-stride "
                   f"{args.ase_stride} --sweep-points {args.sweep_points} --batches "
                   f"{' '.join(map(str, args.batches))} --device {args.device}",
    }
    print(json.dumps({k: result[k] for k in ("speedup",
                      "max_abs_energy_difference_eV_per_atom")}), flush=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, d, m, b, s, lim, o, dev, th = sys.argv
        worker(d, m, int(b), int(s), int(lim) or None, o, dev, int(th))
    else:
        main()
