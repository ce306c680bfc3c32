"""Plot generate.json and chgnet_energy.json into s2dpes_benchmark.png, and gpu/*.json
into gpu/s2dpes_gpu.png."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent


def main() -> None:
    gen = json.loads((HERE / "generate.json").read_text())
    chg = json.loads((HERE / "chgnet_energy.json").read_text())
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = gen["results"]
    n = [r["natoms"] for r in rows]
    a.plot(n, [r["structures_per_s"] for r in rows], "o-", label="generate + distance cost (JAX)")
    a.plot(n, [r["generation_only_per_s"] for r in rows], "s--", label="generate only (numpy)")
    for r in rows:
        a.annotate(f"{r['structures_per_s']:,.0f}/s", (r["natoms"], r["structures_per_s"]),
                   textcoords="offset points", xytext=(5, 5), fontsize=8)
    a.set(xscale="log", yscale="log", xlabel="atoms per cell", ylabel="structures per second",
          title=f"s2DPES structures, {rows[0]['points']:,} grid points, {gen['device']}")
    a.set_xticks(n, [str(x) for x in n])
    a.legend(fontsize=8)
    labels, rates, mems = [], [], []
    for r in chg["batch_sweep"]:
        labels.append(f"pesflow\nbatch {r['structures_per_batch']}\n({r['points']} pts)")
        rates.append(r["per_s"])
        mems.append(r["peak_rss_mb"])
    full, ase = chg["pesflow"], chg["ase_loop"]
    labels += [f"pesflow\n(all {full['points']} pts)", f"ASE loop\n({ase['points']} pts)"]
    rates += [full["per_s"], ase["per_s"]]
    mems += [full["peak_rss_mb"], ase["peak_rss_mb"]]
    colors = ["tab:blue"] * len(chg["batch_sweep"]) + ["tab:green", "tab:red"]
    bars = b.bar(range(len(rates)), rates, color=colors)
    for bar, mem in zip(bars, mems, strict=True):
        b.annotate(f"{bar.get_height():.1f}/s\n{mem:.0f} MB", (bar.get_x() + bar.get_width() / 2,
                   bar.get_height()), ha="center", va="bottom", fontsize=8)
    b.set_xticks(range(len(rates)), labels, fontsize=8)
    b.set(ylabel="energies per second (peak RSS above bars)",
          title=f"CHGNet on a 2,500-point W2N3 slice: {chg['speedup']:.1f}× vs ASE loop")
    b.set_ylim(0, max(rates) * 1.3)
    fig.tight_layout()
    fig.savefig(HERE / "s2dpes_benchmark.png", dpi=110)


def gpu() -> None:
    """CPU vs GPU generation rates, and CHGNet energies/s against workers sharing one GPU."""
    gpu_dir = HERE / "gpu"
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [
        (HERE / "generate.json", "2-core VM CPU, 10k points, 256 MB chunks", "o--"),
        (gpu_dir / "generate_h100-host-cpu_10k_256mb.json", "H100 host CPU (16 cores), 10k, 256 MB",
         "s--"),
        (gpu_dir / "generate_h100_10k_256mb.json", "H100, 10k, 256 MB", "o-"),
        (gpu_dir / "generate_h100_250k_4096mb.json", "H100, 250k, 4 GB", "s-"),
    ]
    for path, label, style in series:
        rows = json.loads(path.read_text())["results"]
        a.plot([r["natoms"] for r in rows], [r["structures_per_s"] for r in rows], style,
               label=label)
    a.set(xscale="log", yscale="log", xlabel="atoms per cell",
          ylabel="structures generated + scored per second",
          title="s2DPES distance cost (JAX float64)")
    a.set_xticks([10, 40, 100], ["10", "40", "100"])
    a.legend(fontsize=7)
    scaling = json.loads((gpu_dir / "workers_per_gpu.json").read_text())
    for key, style, label in (("after_fix", "o-", "Parsl gpu workers on one H100"),
                              ("before_fix", "x:", "before: JAX preallocation, OOM saved as NaN")):
        runs = scaling[key]["runs"]
        b.plot([r["workers"] for r in runs], [r["per_s_after_first"] for r in runs], style,
               label=label)
    cpu = json.loads((HERE / "chgnet_energy.json").read_text())["pesflow"]["per_s"]
    b.axhline(cpu, color="grey", ls="--", label=f"2-core VM CPU, 1 process ({cpu:.1f}/s)")
    b.set(xlabel="CHGNet workers sharing the GPU", ylabel="energies per second",
          title="CHGNet on a 4,900-point W2N3 slice, pesflow pes --site")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(gpu_dir / "s2dpes_gpu.png", dpi=110)


if __name__ == "__main__":
    main()
    gpu()
