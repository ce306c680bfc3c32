"""Where pesflow's CHGNet energy path spends its time, per step, on one slice chunk.

Steps for the first ``--points`` points of the W2N3 slice (as chgnet_energy.py):
ASE -> pymatgen conversion, CHGNet's crystal-graph construction (CPU, one structure at
a time), and the batched model call (``predict_graph(task="e")``, on ``--device``).
Tells whether a faster device can help: only the last step runs on it.

    .venv/bin/python benchmarks/s2dpes/chgnet_profile.py [--device cuda] [--points 250]
        [--batch-atoms 5000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from chgnet_energy import device_name, prepare_slice


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--points", type=int, default=250)
    parser.add_argument("--batch-atoms", type=int, default=5000)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import numpy as np
    import torch
    from pymatgen.io.ase import AseAtomsAdaptor

    from pesflow.models.registry import get_calculator
    from pesflow.pes.energies import EnergyModel

    torch.set_num_threads(args.torch_threads)
    model = EnergyModel(get_calculator("chgnet", device=args.device), "chgnet",
                        batch_atoms=args.batch_atoms).chgnet
    with tempfile.TemporaryDirectory() as tmp:
        structures = prepare_slice(Path(tmp) / "slice", 50).geometry.structures(0, args.points)
    batch = max(1, args.batch_atoms // len(structures[0]))

    def timed(step):
        times, value = [], None
        for _ in range(args.repeats):
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            value = step()
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return float(np.median(times)), value

    model.predict_graph([model.graph_converter(AseAtomsAdaptor.get_structure(structures[0]))],
                        task="e")  # warm-up (CUDA context, kernels)
    t_convert, pmg = timed(lambda: [AseAtomsAdaptor.get_structure(a) for a in structures])
    t_graph, graphs = timed(lambda: [model.graph_converter(s) for s in pmg])
    with torch.no_grad():
        t_model, _ = timed(lambda: model.predict_graph(graphs, task="e", batch_size=batch))
    total = t_convert + t_graph + t_model
    result = {
        "benchmark": "pesflow's CHGNet energy path, seconds per step (median of repeats)",
        "device": device_name(args.device),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads = "
                   f"{args.torch_threads}",
        "points": len(structures), "atoms_per_structure": len(structures[0]),
        "structures_per_batch": batch, "repeats": args.repeats,
        "ase_to_pymatgen_s": t_convert, "graph_construction_s": t_graph,
        "model_s": t_model, "energies_per_s": len(structures) / total,
        "model_share": t_model / total,
        "command": f"benchmarks/s2dpes/chgnet_profile.py --device {args.device} --points "
                   f"{args.points} --batch-atoms {args.batch_atoms} --torch-threads "
                   f"{args.torch_threads}",
    }
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
