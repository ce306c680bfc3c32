"""s2DPES of a search run's Δ-corrected model beside its prior (`delta:RUN`, `prior:RUN`).

A real run directory comes from the real coordinator (EMT Cu3Au3 cluster oracle, Morse
prior, 4 oracle calls); a Pnma CuAu crystal of the Δ-model's elements is sliced.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ase.spacegroup import crystal

from pesflow.cli import main
from pesflow.pes.energies import model_slug, parse_run_model
from pesflow.pes.slices import SliceData, open_run

DOFS = ["--dof", "Cu1.x", "--dof", "Au1.z", "--steps", "5"]


def _pnma(path, symbols):
    crystal(symbols, basis=[(0.1, 0.25, 0.3), (0.35, 0.25, 0.7)], spacegroup=62,
            cellpar=[6.5, 4.2, 7.5, 90, 90, 90]).write(path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from pesflow.config import parse_run_config
    from pesflow.executors import parse_site
    from pesflow.workflows.search import run_search

    # ℓ = 200 makes the kernel reach from cluster to crystal environments, so the Δ
    # varies over the slice instead of being the constant mean offset alone.
    config = parse_run_config({
        "problem": {"system": "emt_cluster", "formula": "Cu3Au3"}, "prior": "morse",
        "model": {"settings": {"n_inducing": 100, "ensemble_size": 3,
                               "kernel": {"length_scale": 200}}},
        "algorithm": {"name": "rss", "settings": {"steps": 10}},
        "oracle": {"kind": "calculator", "model": "emt"}, "budget": {"oracle_calls": 4},
        "seed": 1})
    site = parse_site({"kind": "threads", "surrogate": {"workers": 1},
                       "dft": {"workers": 1, "ranks": 1}})
    path = tmp_path_factory.mktemp("delta") / "cu3au3"
    run_search(config, site, path, deterministic=True)
    return path


@pytest.fixture(scope="module")
def cuau(tmp_path_factory):
    return _pnma(tmp_path_factory.mktemp("cif") / "cuau.cif", ["Cu", "Au"])


@pytest.fixture(scope="module")
def sliced(run_dir, cuau, tmp_path_factory):
    out = tmp_path_factory.mktemp("slice") / "out"
    argv = ["pes", str(cuau), *DOFS, "--model", f"prior:{run_dir}", "--model",
            f"delta:{run_dir}", "--reference-model", f"prior:{run_dir}", "--out", str(out),
            "--json"]
    assert main(argv) == 0
    return out, argv


def test_names_and_slugs():
    assert parse_run_model("chgnet") is None and parse_run_model("mace:/m/x.model") is None
    spec = parse_run_model("delta:runs/cu6@v00003")
    assert (spec.kind, spec.run_dir, spec.version) == ("delta", "runs/cu6", 3)
    assert parse_run_model("prior:runs/cu6/").version is None
    assert model_slug("delta:runs/cu6/") == "delta-cu6"
    assert model_slug("delta:/a/b/Cu6 run@3") == "delta-cu6_run-v3"
    assert model_slug("prior:runs/cu6") == "prior-cu6"
    assert "/" not in model_slug("delta:..") and model_slug("delta:..") != "delta-.."


def test_delta_prior_side_by_side(run_dir, sliced, capsys):
    from pesflow.models.priors import make_prior
    from pesflow.workflows.search import load_run_model

    out, _ = sliced
    prior_name, delta_name = f"prior:{run_dir}", f"delta:{run_dir}"
    data = SliceData.load(out)
    assert set(data.energies) == {prior_name, delta_name} and set(data.sigma) == {delta_name}
    delta, prior = data.energies[delta_name], data.energies[prior_name]
    sigma = data.sigma[delta_name]
    assert delta.shape == prior.shape == sigma.shape == (5, 5)
    assert np.isfinite(sigma).all() and (sigma >= 0).all() and np.ptp(sigma) > 0

    # Stored values are what the Δ-model and the prior calculator give, per atom.
    model = load_run_model(run_dir)
    calculator = make_prior("morse")
    geometry = open_run(out).geometry
    for i, j in [(0, 0), (2, 3), (4, 1)]:
        k = i * 5 + j
        atoms = geometry.structures(k, k + 1)[0]
        energy, s = model.predict(atoms)
        assert delta[i, j] == pytest.approx(energy / len(atoms), rel=1e-10, abs=1e-10)
        assert sigma[i, j] == pytest.approx(s / len(atoms), rel=1e-10)
        assert prior[i, j] == pytest.approx(calculator.get_potential_energy(atoms) / len(atoms),
                                            rel=1e-12)

    # Active learning reshaped the landscape: not a zero, nor merely a constant, shift.
    diff = delta - prior
    assert np.abs(diff).max() > 1e-3 and np.ptp(diff) > 1e-4

    metrics = json.loads((out / "metrics.json").read_text())["models"]
    stats = metrics[delta_name]["sigma_cost_free"]
    free = data.cost <= 0
    assert stats["median"] == pytest.approx(float(np.median(sigma[free])))
    assert stats["min"] <= stats["median"] <= stats["max"] == pytest.approx(sigma[free].max())
    assert "sigma_cost_free" not in metrics[prior_name]
    assert metrics[delta_name]["mae_vs_reference"] == pytest.approx(np.abs(diff[free]).mean())
    for png in ("slice.png", "difference.png", "uncertainty.png"):
        assert (out / png).stat().st_size > 10_000
    assert (out / "sigma" / model_slug(delta_name) / "00000.npy").exists()
    version = json.loads((out / "energies" / model_slug(delta_name) / "model.json").read_text())
    assert version["version"] == model.version and version["prior"] == "morse"


def test_resume_recomputes_nothing(run_dir, cuau, sliced, tmp_path, capsys):
    out, argv = sliced
    chunks = sorted((out / "energies").rglob("*.npy")) + sorted((out / "sigma").rglob("*.npy"))
    stamps = [p.stat().st_mtime_ns for p in chunks]
    before = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert main(argv) == 0
    assert "chunk" not in capsys.readouterr().err  # no chunk evaluated again
    assert [p.stat().st_mtime_ns for p in chunks] == stamps
    assert json.loads((out / "metrics.json").read_text()) == before
    # The same models from a slice YAML resume the same directory.
    yaml_file = tmp_path / "slice.yaml"
    yaml_file.write_text(f"structure: {cuau}\ndofs: [Cu1.x, Au1.z]\nsteps: 5\n"
                         f"models: ['prior:{run_dir}', 'delta:{run_dir}']\n")
    assert main(["pes", "--config", str(yaml_file), "--out", str(out), "--no-plot"]) == 0
    assert [p.stat().st_mtime_ns for p in chunks] == stamps


def test_resume_refuses_another_version(run_dir, cuau, tmp_path, capsys):
    from pesflow.store.rundir import RunDir

    out = tmp_path / "out"
    versions = RunDir(run_dir).model_versions()
    older = f"delta:{run_dir}@{versions[0]}"
    argv = ["pes", str(cuau), *DOFS, "--chunk-points", "10", "--model", older, "--out",
            str(out), "--no-plot"]
    assert main(argv) == 0
    slug = model_slug(older)
    assert slug.endswith(f"-v{versions[0]}")
    # Pretend the chunks came from another version, then lose one chunk: refused.
    record = out / "energies" / slug / "model.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "version": 99}))
    (out / "energies" / slug / "00002.npy").unlink()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "version 99" in err and err.count("\n") == 0
    assert not (out / "energies" / slug / "00002.npy").exists()


def test_bad_run_models_exit_2(run_dir, cuau, tmp_path, capsys):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    no_model = tmp_path / "no-model"
    shutil.copytree(run_dir, no_model)
    for path in (no_model / "models").glob("*.h5"):
        path.unlink()
    cuag = _pnma(tmp_path / "cuag.cif", ["Cu", "Ag"])
    cases = [
        (cuau, f"delta:{tmp_path / 'nowhere'}", "no run directory"),
        (cuau, f"delta:{empty}", "not a pesflow run directory"),
        (cuau, f"delta:{no_model}", "has no Δ-model"),
        (cuau, f"delta:{run_dir}@99", "no Δ-model version 99"),
        (cuau, f"delta:{run_dir}@latest", "cannot read the version"),
        (cuau, f"prior:{run_dir}@3", "a run's prior has no versions"),
        (cuag, f"delta:{run_dir}", "element(s) Ag that the Δ-model does not know"),
    ]
    for structure, model, message in cases:
        out = tmp_path / "out"
        code = main(["pes", str(structure), *DOFS, "--model", model, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2, model
        assert message in err and err.count("\n") == 0, err
        assert not out.exists()
    code = main(["pes", "--label", "A3B2_oP20_62_3c_2c:N-W", "--model", f"delta:{run_dir}",
                 "--write", str(tmp_path / "w.cif")])
    assert code == 2 and "stresses" in capsys.readouterr().err


def test_parsl_workers_match_in_process(run_dir, cuau, sliced, tmp_path):
    import parsl
    from parsl.config import Config
    from parsl.executors import ThreadPoolExecutor

    from pesflow.pes.slices import SliceConfig
    from pesflow.workflows.pes import run_slice_parsl

    names = [f"prior:{run_dir}", f"delta:{run_dir}"]
    config = SliceConfig(structure=str(cuau), dofs=["Cu1.x", "Au1.z"], steps=5, models=names,
                         chunk_points=10)
    dfk = parsl.load(Config(executors=[ThreadPoolExecutor(label="gpu", max_threads=2)],
                            run_dir=str(tmp_path / "parsl"), usage_tracking=0))
    try:
        parallel, table = run_slice_parsl(config, tmp_path / "out", plot=False)
    finally:
        dfk.cleanup()
        parsl.clear()
    serial = SliceData.load(sliced[0])
    for name in names:
        np.testing.assert_allclose(parallel.energies[name], serial.energies[name], rtol=1e-12)
    np.testing.assert_allclose(parallel.sigma[names[1]], serial.sigma[names[1]], rtol=1e-12)
    assert len(list((tmp_path / "out" / "sigma").rglob("*.npy"))) == 3
    assert table[names[1]]["sigma_cost_free"]["points"] == int((parallel.cost <= 0).sum()) > 0
