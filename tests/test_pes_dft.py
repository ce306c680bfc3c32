"""A coarse GPAW reference grid over a slice (real GPAW, tiny cell): slow."""

from __future__ import annotations

import numpy as np
import pytest
from ase.spacegroup import crystal

from pesflow.pes.dft_reference import coarse_indices, monkhorst_pack_for


def test_coarse_indices_and_kpoints():
    assert coarse_indices(50, 5).tolist() == [0, 12, 24, 37, 49]
    assert coarse_indices(3, 5).tolist() == [0, 1, 2]
    assert monkhorst_pack_for(np.diag([3.0, 5.0, 16.0]), 15.0) == (5, 3, 1)


@pytest.mark.slow
@pytest.mark.mpi
def test_dft_reference_grid_with_gpaw(tmp_path):
    pytest.importorskip("gpaw")
    from pesflow.pes.run import run_slice
    from pesflow.pes.slices import SliceConfig

    path = tmp_path / "aln.cif"
    crystal(["Al", "N"], basis=[(1 / 3, 2 / 3, 0), (1 / 3, 2 / 3, 0.38)], spacegroup=186,
            cellpar=[3.11, 3.11, 4.98, 90, 90, 120]).write(path)
    config = SliceConfig(structure=str(path), dofs=["Al1.z", "N1.z"],
                         ranges=[(-0.05, 0.05), (0.33, 0.43)], steps=5, models=["emt"],
                         dft_grid=2, reference_model="dft")
    data, table = run_slice(config, tmp_path / "slice")
    dft = data.energies["dft"]
    assert np.isfinite(dft).sum() == 4  # the corners of the 5 × 5 grid
    assert np.isfinite(dft[[0, 0, -1, -1], [0, -1, 0, -1]]).all()
    assert table["emt"]["mae_vs_reference"] is not None
    assert (tmp_path / "slice" / "slice.png").exists()
