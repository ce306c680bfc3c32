"""Slice runs end to end with EMT: data, metrics, plots, resume, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.spacegroup import crystal

from pesflow.errors import InputError
from pesflow.pes.energies import EnergyModel
from pesflow.pes.run import run_slice
from pesflow.pes.slices import SliceConfig, SliceData, prepare


@pytest.fixture(scope="module")
def cuau(tmp_path_factory):
    path = tmp_path_factory.mktemp("structures") / "cuau.cif"
    crystal(["Cu", "Au"], basis=[(0.1, 0.25, 0.3), (0.35, 0.25, 0.7)], spacegroup=62,
            cellpar=[6.5, 4.2, 7.5, 90, 90, 90]).write(path)
    return path


def config(path, **kw):
    base = dict(structure=str(path), dofs=["Cu1.x", "Cu1.z"], steps=[9, 7], models=["emt"],
                chunk_points=20)
    return SliceConfig(**{**base, **kw})


def test_slice_with_emt_matches_direct_energies(cuau, tmp_path):
    out = tmp_path / "slice"
    data, table = run_slice(config(cuau), out)
    e = data.energies["emt"]
    assert e.shape == (9, 7) and np.isfinite(e).all()
    # Point (i, j) is the structure with Cu1.x = axes[0][i], Cu1.z = axes[1][j].
    run = prepare(config(cuau), out)
    i, j = 4, 2
    atoms = run.geometry.structures(i * 7 + j, i * 7 + j + 1)[0]
    atoms.calc = EMT()
    assert e[i, j] == pytest.approx(atoms.get_potential_energy() / len(atoms), abs=1e-12)
    for name in ("slice.json", "slice.npz", "metrics.json", "slice.png", "cost.npz"):
        assert (out / name).exists()
    again = SliceData.load(out)
    np.testing.assert_array_equal(again.energies["emt"], e)
    assert json.loads((out / "metrics.json").read_text())["models"]["emt"]["points"] == 63
    assert table["emt"]["minimum"]["energy"] == pytest.approx(np.min(e))


def test_resume_recomputes_only_missing_chunks(cuau, tmp_path):
    out = tmp_path / "slice"
    run_slice(config(cuau), out, plot=False)
    chunks = sorted((out / "energies" / "emt").glob("*.npy"))
    assert len(chunks) == 4  # 63 points in chunks of 20
    stamps = {p: p.stat().st_mtime_ns for p in chunks}
    chunks[1].unlink()
    calls = []

    class Counting(EnergyModel):
        def __call__(self, structures):
            calls.append(len(structures))
            return super().__call__(structures)

    run_slice(config(cuau), out, models={"emt": Counting(EMT(), "emt")}, plot=False)
    assert calls == [20]
    for p in chunks:
        if p != chunks[1]:
            assert p.stat().st_mtime_ns == stamps[p]
    assert chunks[1].exists()


class FailingEMT(EMT):
    """EMT that fails with ``error`` on the ``fail_at``-th structure it evaluates."""

    def __init__(self, error: Exception, fail_at: int = 3):
        super().__init__()
        self.error, self.fail_at, self.seen = error, fail_at, 0

    def calculate(self, *args, **kwargs):
        self.seen += 1
        if self.seen == self.fail_at:
            raise self.error
        super().calculate(*args, **kwargs)


def test_odd_structure_is_nan_but_out_of_memory_fails_its_chunk(cuau, tmp_path):
    import torch  # its out-of-memory error is what a model on a full GPU raises

    from pesflow.pes.slices import evaluate_chunk

    out = tmp_path / "slice"
    run = prepare(config(cuau), out)
    odd = EnergyModel(FailingEMT(ValueError("isolated atom")), "emt")
    energies = np.load(evaluate_chunk(run, odd, 0))
    assert np.isnan(energies[2]) and np.isfinite(np.delete(energies, 2)).all()
    for error in (torch.OutOfMemoryError("CUDA out of memory"), MemoryError()):
        full = EnergyModel(FailingEMT(error), "emt")
        with pytest.raises(type(error)):
            evaluate_chunk(run, full, 1)
        assert not run.chunk_done("emt", 1)  # nothing saved: a rerun computes it
    run_slice(config(cuau), out, plot=False)
    assert run.chunk_done("emt", 1)


def test_a_different_slice_in_the_same_directory_is_refused(cuau, tmp_path):
    out = tmp_path / "slice"
    prepare(config(cuau), out)
    with pytest.raises(InputError, match="different slice"):
        prepare(config(cuau, steps=[9, 9]), out)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a slice directory"):
        prepare(config(cuau), other)


def test_yaml_config(cuau, tmp_path):
    yaml_file = tmp_path / "slice.yaml"
    yaml_file.write_text(f"structure: {cuau}\ndofs: [Cu1.x, Au1.z]\nsteps: 5\nmodels: [emt]\n")
    assert SliceConfig.from_yaml(yaml_file).dofs == ["Cu1.x", "Au1.z"]
    yaml_file.write_text(f"structure: {cuau}\ndofs: [Cu1.x, Au1.z]\nstepz: 5\n")
    with pytest.raises(InputError, match="stepz"):
        SliceConfig.from_yaml(yaml_file)
