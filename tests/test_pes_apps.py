"""The s2DPES Parsl app on a ThreadPoolExecutor labelled "gpu" gives the in-process result."""

from __future__ import annotations

import numpy as np
import parsl
import pytest
from ase.spacegroup import crystal
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

from pesflow.pes.run import run_slice
from pesflow.pes.slices import SliceConfig
from pesflow.workflows.pes import run_slice_parsl


@pytest.fixture
def gpu_threads(tmp_path):
    dfk = parsl.load(Config(executors=[ThreadPoolExecutor(label="gpu", max_threads=2)],
                            run_dir=str(tmp_path / "parsl"), usage_tracking=0))
    yield dfk
    dfk.cleanup()
    parsl.clear()


def test_parsl_gpu_app_matches_in_process(gpu_threads, tmp_path):
    path = tmp_path / "cuau.cif"
    crystal(["Cu", "Au"], basis=[(0.1, 0.25, 0.3), (0.35, 0.25, 0.7)], spacegroup=62,
            cellpar=[6.5, 4.2, 7.5, 90, 90, 90]).write(path)
    config = SliceConfig(structure=str(path), dofs=["Cu1.x", "Cu1.z"], steps=[8, 6],
                         models=["emt", "lj:rc=7"], chunk_points=10)
    parallel, _ = run_slice_parsl(config, tmp_path / "parsl-slice", plot=False)
    serial, _ = run_slice(config, tmp_path / "serial-slice", plot=False)
    assert len(list((tmp_path / "parsl-slice" / "energies" / "emt").glob("*.npy"))) == 5
    for name in config.models:
        np.testing.assert_allclose(parallel.energies[name], serial.energies[name], rtol=1e-12)
