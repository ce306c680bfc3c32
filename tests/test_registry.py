"""The uMLIP registry: real models, real weights from the wheels, a real MACE file."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.cluster import Icosahedron

from pesflow.cli import main
from pesflow.errors import InputError
from pesflow.models import MODELS, get_calculator


def ag4s2() -> Atoms:
    """A compact Ag4S2 cluster: S atoms capping a distorted Ag4 square."""
    atoms = Atoms(
        "Ag4S2",
        positions=[[0, 0, 0], [2.9, 0, 0], [2.9, 2.9, 0.3], [0, 2.9, -0.2], [1.45, 1.45, 1.6],
                   [1.5, 1.4, -1.7]],
        cell=[15.0] * 3,
    )
    atoms.center()
    return atoms


def finite_difference_forces(atoms: Atoms, step: float) -> np.ndarray:
    forces = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            energies = []
            for sign in (1, -1):
                displaced = atoms.copy()
                displaced.calc = atoms.calc
                displaced.positions[i, k] += sign * step
                energies.append(displaced.get_potential_energy())
            forces[i, k] = -(energies[0] - energies[1]) / (2 * step)
    return forces


# float32 models: energies carry ~1e-6 relative noise (|E| ~ 10 eV → ~1e-5 eV). A central
# difference with h = 0.01 Å turns that into ~1e-3 eV/Å of noise, while its truncation error
# (h²/6 · E''') stays below ~1e-3 eV/Å for these bond lengths; 0.02 eV/Å is a few times both.
@pytest.mark.parametrize("name", ["chgnet", "sevennet-0"])
def test_umlip_forces_match_finite_differences(name: str) -> None:
    atoms = ag4s2()
    atoms.calc = get_calculator(name)
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    assert np.isfinite(energy) and -40 < energy / len(atoms) < 0  # bound, per-atom eV scale
    assert np.abs(forces).max() > 0.05  # not a relaxed structure: the check has teeth
    numeric = finite_difference_forces(atoms, step=0.01)
    np.testing.assert_allclose(forces, numeric, atol=0.02)


def test_standins_and_parameters() -> None:
    cluster = Icosahedron("Cu", 2)
    cluster.positions *= 2 ** (1 / 6) * 2.5 / 2.55
    cluster.calc = get_calculator("lj")
    lj = cluster.get_potential_energy()
    cluster.calc = get_calculator("morse:rho0=3")
    soft = cluster.get_potential_energy()
    cluster.calc = get_calculator("morse", rho0=3.0)
    assert soft == pytest.approx(cluster.get_potential_energy())
    assert lj != pytest.approx(soft)
    # The LJ stand-in is not shifted at a 3σ cutoff: LJ13 relaxes to the published minimum.
    from ase.optimize import BFGS

    cluster.calc = get_calculator("lj")
    BFGS(cluster, logfile=None).run(fmax=1e-4)
    assert cluster.get_potential_energy() == pytest.approx(-44.326801, abs=1e-4)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("nonsense", "available: chgnet"),
        ("mace-mp-0", "needs a model file"),
        ("mace:/does/not/exist.model", "not found"),
        ("lj:sigmax=2", "no parameter 'sigmax'"),
        ("morse:rho0", "key=value"),
    ],
)
def test_bad_model_names_give_one_clear_error(spec: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        get_calculator(spec)


def test_models_command_lists_offline_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert name in out
    assert main(["models", "--check", "mace:/nope.model"]) == 2
    assert "not found" in capsys.readouterr().err


def _tiny_mace_file(path) -> None:
    """Build a small MACE model with random weights and save it the way MACE saves models."""
    import torch
    from e3nn import o3
    from mace import modules

    torch.manual_seed(0)
    interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=5.0, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=interaction, interaction_cls_first=interaction, num_interactions=2,
        num_elements=2, hidden_irreps=o3.Irreps("8x0e + 8x1o"), MLP_irreps=o3.Irreps("8x0e"),
        atomic_energies=np.array([-1.5, -3.0]), avg_num_neighbors=4.0,
        atomic_numbers=[16, 47], correlation=2, gate=torch.nn.functional.silu,
        atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    )
    torch.save(model.to(torch.float64), path)


def test_mace_model_file_loads_through_the_registry(tmp_path) -> None:
    path = tmp_path / "tiny.model"
    _tiny_mace_file(path)
    atoms = ag4s2()
    atoms.calc = get_calculator(f"mace:{path}")
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    assert np.isfinite(energy) and forces.shape == (6, 3)
    # Atomic energies enter as the baseline: 4 Ag (-3.0) + 2 S (-1.5) plus the interaction part.
    assert energy != pytest.approx(4 * -3.0 + 2 * -1.5)
    # float64 model: finite differences agree tightly.
    np.testing.assert_allclose(forces, finite_difference_forces(atoms, 1e-4), atol=1e-5)
    # The same file through the mace-mpa-0 name (a user's downloaded file) and the path argument.
    atoms.calc = get_calculator("mace-mpa-0", path=path)
    assert atoms.get_potential_energy() == pytest.approx(energy)
