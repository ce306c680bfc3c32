"""The foundation demo: relax an [Ag2S]_2 cluster with CHGNet, check it with GPAW, via Parsl.

Until the search workflow lands this is the main job: one surrogate relaxation on the
``surrogate`` executor and one MPI GPAW single point on the ``dft`` executor, on any site
config (the local HTEx one by default).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write

from pesflow.dft import OracleResult, get_settings, prepare_task


def ag4s2_start() -> Atoms:
    """A reasonable [Ag2S]_2 start: an Ag4 rhombus with one S capping each face.

    Ag–Ag 2.9 Å, Ag–S about 2.5 Å (bulk Ag2S has 2.4–2.6 Å), in the paper's 20 Å cell.
    """
    atoms = Atoms(
        "Ag4S2",
        positions=[[0.0, 0.0, 0.0], [2.9, 0.0, 0.0], [1.45, 2.51, 0.0], [4.35, 2.51, 0.0],
                   [2.18, 1.26, 1.55], [2.18, 1.26, -1.55]],
        cell=[20.0] * 3,
    )
    atoms.center()
    return atoms


@dataclass
class DemoResult:
    chgnet_energy: float
    chgnet_steps: int
    chgnet_fmax: float
    chgnet_wall: float
    dft: OracleResult
    dft_wall: float
    total_wall: float
    level_of_theory: str

    def summary(self) -> dict:
        return {
            "structure": "[Ag2S]_2 (Ag4S2)",
            "chgnet": {"energy_eV": self.chgnet_energy, "steps": self.chgnet_steps,
                       "fmax_eV_per_A": self.chgnet_fmax, "wall_s": self.chgnet_wall},
            "dft": {"status": self.dft.status, "energy_eV": self.dft.energy,
                    "max_force_eV_per_A": None if self.dft.forces is None else
                    float(np.sqrt((self.dft.forces**2).sum(axis=1)).max()),
                    "wall_s": self.dft_wall, "level_of_theory": self.level_of_theory,
                    "task_dir": self.dft.task_dir},
            "total_wall_s": self.total_wall,
        }


def run_demo(site_path: str | Path, out: str | Path, ranks: int | None = None) -> DemoResult:
    """Relax [Ag2S]_2 in CHGNet and evaluate it with GPAW (LCAO dzp PBE) through Parsl.

    Parameters
    ----------
    site_path
        Site config YAML (``site-configs/local-htex.yaml`` for this machine).
    out
        Directory for the Parsl run dir, the relaxed structure, GPAW's task dir and
        ``demo.json``.
    ranks
        MPI ranks of the GPAW job (default: the site's ``dft.ranks``).
    """
    import parsl

    from pesflow.apps.dft import dft_result, submit_dft
    from pesflow.apps.surrogate import relax_app
    from pesflow.executors import build_config, load_site

    site = load_site(site_path)
    if ranks is not None:
        site = site.model_copy(update={"dft": site.dft.model_copy(update={"ranks": ranks})})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = get_settings("fast")
    start = time.perf_counter()
    dfk = parsl.load(build_config(site, run_dir=out))
    try:
        relaxed = relax_app(
            ag4s2_start(), "chgnet", fmax=0.05, steps=500,
            parsl_resource_specification=site.resource_specification(),
        ).result()
        chgnet_wall = time.perf_counter() - start
        if relaxed.error:
            raise RuntimeError(f"CHGNet relaxation failed: {relaxed.error}")
        write(out / "relaxed-chgnet.extxyz", relaxed.atoms)
        task = prepare_task(relaxed.atoms, settings, out / "dft")
        dft_start = time.perf_counter()
        future = submit_dft(task, site.dft, site.resource_specification())
        dft = dft_result(future, task)
        dft_wall = time.perf_counter() - dft_start
    finally:
        dfk.cleanup()
        parsl.clear()
    result = DemoResult(
        chgnet_energy=relaxed.energy, chgnet_steps=relaxed.steps, chgnet_fmax=relaxed.fmax,
        chgnet_wall=chgnet_wall, dft=dft, dft_wall=dft_wall,
        total_wall=time.perf_counter() - start, level_of_theory=settings.level_of_theory(),
    )
    (out / "demo.json").write_text(json.dumps(result.summary(), indent=1))
    return result
