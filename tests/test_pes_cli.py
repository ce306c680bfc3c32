"""`pesflow pes`: listing DOFs, a small slice, and exit status 2 with one message for bad input."""

from __future__ import annotations

import json

import pytest
from ase.spacegroup import crystal
from pes_inputs import PARTIAL_CIF

from pesflow.cli import main


@pytest.fixture(scope="module")
def bite(tmp_path_factory):
    """Bi2Te3-like R-3m: Te1 on 3a is fixed, Bi1 and Te2 on 6c have a free z."""
    path = tmp_path_factory.mktemp("cli") / "bite.cif"
    crystal(["Bi", "Te", "Te"], basis=[(0, 0, 0.4), (0, 0, 0), (0, 0, 0.79)], spacegroup=166,
            cellpar=[4.38, 4.38, 30.5, 90, 90, 120]).write(path)
    return path


def test_list_dofs(bite, capsys):
    assert main(["pes", str(bite), "--list-dofs"]) == 0
    out = capsys.readouterr().out
    assert "Bi1.z=" in out and "Te2.z=" in out and "(fixed)" in out and "R-3m" in out
    assert main(["pes", str(bite), "--list-dofs", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spacegroup"] == 166 and data["label"].startswith("A2B3_hR15_166")


def _error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("dof, message", [
    ("Bi9.z", "unknown DOF 'Bi9.z'"),
    ("Te1.z", "'Te1.z' is fixed by symmetry"),
    ("Bi1.x", "'Bi1.x' is fixed by symmetry"),
])
def test_bad_dofs_exit_2(bite, tmp_path, capsys, dof, message):
    code, err = _error(["pes", str(bite), "--dof", "Bi1.z", "--dof", dof, "--model", "emt",
                        "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 0
    assert not (tmp_path / "out").exists()


def test_bad_files_exit_2(tmp_path, capsys):
    partial = tmp_path / "partial.cif"
    partial.write_text(PARTIAL_CIF)
    code, err = _error(["pes", str(partial), "--list-dofs"], capsys)
    assert code == 2 and "partially occupied" in err
    garbage = tmp_path / "garbage.cif"
    garbage.write_bytes(b"\x00\x01 not a structure")
    code, err = _error(["pes", str(garbage), "--dof", "A1.x", "--dof", "A1.y",
                        "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "cannot read structure file" in err
    code, err = _error(["pes", str(tmp_path / "nope.cif"), "--list-dofs"], capsys)
    assert code == 2 and "does not exist" in err


def test_unknown_model_exit_2(bite, tmp_path, capsys):
    code, err = _error(["pes", str(bite), "--dof", "Bi1.z", "--dof", "Te2.z", "--model",
                        "no-such-model", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "unknown model" in err
    assert not (tmp_path / "out").exists()


def test_small_slice_json(tmp_path, capsys):
    path = tmp_path / "cuau.cif"
    crystal(["Cu", "Au"], basis=[(0.1, 0.25, 0.3), (0.35, 0.25, 0.7)], spacegroup=62,
            cellpar=[6.5, 4.2, 7.5, 90, 90, 90]).write(path)
    out = tmp_path / "out"
    argv = ["pes", str(path), "--dof", "Cu1.x", "--dof", "Au1.z", "--range", "0", "0.5",
            "--range", "0.5", "1", "--steps", "6", "5", "--model", "emt", "--model",
            "lj:rc=7", "--reference-model", "emt", "--out", str(out), "--json", "--no-plot"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["models"]) == {"emt", "lj:rc=7"}
    assert result["models"]["emt"]["points"] == 30
    assert result["models"]["lj:rc=7"]["mae_vs_reference"] > 0
    yaml_file = tmp_path / "slice.yaml"
    yaml_file.write_text(f"structure: {path}\ndofs: [Cu1.x, Au1.z]\nranges: [[0, 0.5], [0.5, 1]]\n"
                         "steps: [6, 5]\nmodels: [emt]\n")
    assert main(["pes", "--config", str(yaml_file), "--out", str(out), "--json", "--no-plot"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["models"]["emt"] == result["models"]["emt"]  # resumed, same numbers


def test_site_without_gpu_label_exit_2(bite, tmp_path, capsys):
    site = tmp_path / "site.yaml"
    site.write_text("name: t\nkind: threads\nsurrogate:\n  workers: 1\n")
    code, err = _error(["pes", str(bite), "--dof", "Bi1.z", "--dof", "Te2.z", "--model", "emt",
                        "--out", str(tmp_path / "out"), "--site", str(site)], capsys)
    assert code == 2 and "no 'gpu' executor" in err
    assert not (tmp_path / "out").exists()


def test_structure_from_label(tmp_path, capsys):
    out = tmp_path / "w2n3.cif"
    assert main(["pes", "--label", "A3B2_oP20_62_3c_2c:N-W", "--cellpar", "8.8", "2.9", "9",
                 "90", "90", "90", "--write", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["label"] == "A3B2_oP20_62_3c_2c:N-W" and out.exists()
    code, err = _error(["pes", "--label", "A3B2_oP20_62_3c_2c:N-W"], capsys)
    assert code == 2 and "--write" in err
