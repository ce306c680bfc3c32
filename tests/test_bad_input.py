"""A corpus of malformed inputs (issue #8, item 5): run configs, site configs, structure
files and s2DPES options.

Every row is one kind of mistake. Each must end the command with exit status 2 and one
line on stderr that names the problem, create no ``--out`` directory, and leave every file
of a directory the command was pointed at byte-for-byte as it was.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.spacegroup import crystal
from pes_inputs import PARTIAL_CIF
from search_runs import LJ7_RUN as RUN
from search_runs import THREADS_SITE as SITE
from search_runs import tree_digest

from pesflow.cli import main

BINARY = bytes(range(256)) * 4


@dataclass
class Inputs:
    """Writes one case's input files into ``root``; records directories to keep unchanged."""

    root: Path
    request: pytest.FixtureRequest
    watched: list[Path] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.root / "out"

    def file(self, name: str, content: str | bytes) -> str:
        path = self.root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)

    def run_config(self, **changes) -> str:
        data = {**RUN, **changes}
        return self.file("run.yaml", yaml.safe_dump({k: v for k, v in data.items()
                                                     if v is not None}))

    def site(self, data: dict | None = None) -> str:
        return self.file("site.yaml", yaml.safe_dump(SITE if data is None else data))

    def run(self, config: str, site: str | None = None) -> list[str]:
        """``pesflow run CONFIG --site SITE --out OUT``."""
        return ["run", config, "--site", site or self.site(), "--out", str(self.out)]

    def watch(self, path: Path) -> str:
        self.watched.append(path)
        return str(path)

    def run_dir(self) -> str:
        """A copy of a finished run directory, which the command must leave alone."""
        path = self.root / "existing-run"
        shutil.copytree(self.request.getfixturevalue("finished_run"), path)
        return self.watch(path)

    def plain_dir(self) -> str:
        path = self.root / "mine"
        path.mkdir()
        (path / "notes.txt").write_text("not a run\n")
        return self.watch(path)

    def structure(self, atoms: Atoms, name: str = "s.extxyz") -> str:
        path = self.root / name
        write(path, atoms)
        return str(path)

    def bite(self) -> str:
        """Bi2Te3-like R-3m: Te1 on 3a is fixed, Bi1 and Te2 on 6c have a free z."""
        atoms = crystal(["Bi", "Te", "Te"], basis=[(0, 0, 0.4), (0, 0, 0), (0, 0, 0.79)],
                        spacegroup=166, cellpar=[4.38, 4.38, 30.5, 90, 90, 120])
        return self.structure(atoms, "bite.cif")

    def cuau(self) -> str:
        """CuAu in Pnma (Cu1 and Au1 on 4c: x and z free); EMT knows both elements."""
        atoms = crystal(["Cu", "Au"], basis=[(0.1, 0.25, 0.3), (0.35, 0.25, 0.7)],
                        spacegroup=62, cellpar=[6.5, 4.2, 7.5, 90, 90, 90])
        return self.structure(atoms, "cuau.cif")

    def pes(self, *options: str, structure: str | None = None) -> list[str]:
        """``pesflow pes CUAU --out OUT ...`` with two valid DOFs unless ``options`` give them."""
        dofs = [] if "--dof" in options else ["--dof", "Cu1.x", "--dof", "Au1.z"]
        return ["pes", structure or self.cuau(), *dofs, "--model", "lj", "--no-plot",
                "--out", str(self.out), *options]

    def dft(self, atoms_or_path: Atoms | str) -> list[str]:
        path = (atoms_or_path if isinstance(atoms_or_path, str)
                else self.structure(atoms_or_path))
        return ["dft", path, "--settings", "fast", "--ranks", "1", "--out", str(self.out)]


def _with_energy(atoms: Atoms, energy: float | None) -> Atoms:
    if energy is not None:
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
    return atoms


def _pretrain(inputs: Inputs, atoms: Atoms) -> list[str]:
    data = inputs.structure(atoms, "pretrain.extxyz")
    return inputs.run(inputs.run_config(model={"pretrain": data}))


def _dropped(key: str) -> dict:
    return {k: v for k, v in RUN.items() if k != key}


@dataclass(frozen=True)
class Case:
    """One kind of bad input: how to make it (returns argv) and a phrase the message has."""

    kind: str
    argv: Callable[[Inputs], list[str]]
    expect: str


REX = RUN["algorithm"]
GOOD_YAML = yaml.safe_dump(RUN)

CASES = [
    # ------------------------------------------------------------------ run configs
    Case("run-config-file-missing",
         lambda i: i.run(str(i.root / "nope.yaml")), "cannot read it (No such file"),
    Case("run-config-is-a-directory",
         lambda i: i.run(str(i.root)), "is a directory, not a YAML file"),
    Case("run-config-empty-file",
         lambda i: i.run(i.file("run.yaml", "")), "got nothing"),
    Case("run-config-binary-file",
         lambda i: i.run(i.file("run.yaml", BINARY)), "not a text file (binary content)"),
    Case("run-config-yaml-syntax-error",
         lambda i: i.run(i.file("run.yaml", "problem: {system: lj_cluster, n: 7\nprior: lj\n")),
         "not valid YAML at line"),
    Case("run-config-key-given-twice",
         lambda i: i.run(i.file("run.yaml", GOOD_YAML + "seed: 1\nseed: 2\n")),
         "key 'seed' appears twice"),
    Case("run-config-list-instead-of-mapping",
         lambda i: i.run(i.file("run.yaml", "- problem\n- prior\n")),
         "expected a mapping with problem"),
    Case("run-config-section-missing",
         lambda i: i.run(i.file("run.yaml", yaml.safe_dump(_dropped("oracle")))),
         "oracle: missing (required)"),
    Case("run-config-section-wrong-type",
         lambda i: i.run(i.run_config(model={"settings": "fast"})), "model.settings"),
    Case("run-unknown-algorithm-setting",
         lambda i: i.run(i.run_config(algorithm={"name": "rex", "settings": {"n_walker": 3}})),
         "n_walker"),
    Case("run-walkers-wrong-type",
         lambda i: i.run(i.run_config(
             algorithm={"name": "rex", "settings": {**REX["settings"], "n_walkers": "three"}})),
         "n_walkers"),
    Case("run-oracle-budget-absurd",
         lambda i: i.run(i.run_config(budget={"oracle_calls": 10**12})),
         "budget.oracle_calls: Input should be less than or equal to 10000000"),
    Case("run-wall-time-zero",
         lambda i: i.run(i.run_config(budget={"wall_time": "0s"})),
         "budget.wall_time: Input should be greater than 0"),
    Case("run-oracle-retries-out-of-range",
         lambda i: i.run(i.run_config(oracle={"kind": "calculator", "model": "lj",
                                              "retries": 100})),
         "oracle.retries"),
    Case("run-device-not-a-choice",
         lambda i: i.run(i.run_config(device="tpu")), "device: Input should be 'cpu', 'cuda'"),
    Case("run-contradictory-model-options",
         lambda i: i.run(i.run_config(model={"delta": False, "settings": {"n_inducing": 10}})),
         "need delta: true"),
    Case("run-prior-unknown-model",
         lambda i: i.run(i.run_config(prior="gpt-5")), "unknown model 'gpt-5'"),
    Case("run-prior-bad-option",
         lambda i: i.run(i.run_config(prior="morse:rho0=6+repulsive:radius=3")),
         "cannot read repulsive prior option 'radius=3'"),
    Case("run-prior-lacks-an-element",
         lambda i: i.run(i.run_config(problem={"system": "ag2s_cluster", "x": 1},
                                      prior="emt", oracle={"kind": "calculator",
                                                           "model": "lj"})),
         "prior: model 'emt' has no parameters for S"),
    Case("run-unknown-element-symbol",
         lambda i: i.run(i.run_config(problem={"system": "emt_cluster", "formula": "Qq4"})),
         "unknown element 'Qq' in its composition"),
    Case("run-atoms-do-not-fit-the-confinement",
         lambda i: i.run(i.run_config(problem={"system": "emt_cluster", "formula": "Cu200",
                                               "confinement": 2})),
         "200 atoms (Cu200) cannot fit"),
    Case("run-gpaw-basis-not-installed",
         lambda i: i.run(i.run_config(oracle={"kind": "gpaw", "settings": {"basis": "sz"}})),
         "GPAW has no Cu.sz.basis"),
    Case("run-pretrain-without-energies",
         lambda i: _pretrain(i, _with_energy(Atoms("Cu2", [(0, 0, 0), (0, 0, 2.5)]), None)),
         "has no energy"),
    Case("run-pretrain-foreign-elements",
         lambda i: _pretrain(i, _with_energy(Atoms("Au2", [(0, 0, 0), (0, 0, 2.5)]), -1.0)),
         "has ['Au'], which the problem (Cu7) does not"),
    Case("run-pretrained-not-a-model-file",
         lambda i: i.run(i.run_config(model={"pretrained": i.file("m.h5", "not hdf5\n")})),
         "is not an HDF5 file"),
    Case("run-name-shell-metacharacters",
         lambda i: i.run(i.run_config(name="lj7`reboot`")), "metacharacters"),
    Case("run-out-is-a-file",
         lambda i: ["run", i.run_config(), "--site", i.site(), "--out",
                    i.file("out", "a file\n")],
         "exists and is not a directory"),
    Case("run-into-a-finished-run-dir-without-force",
         lambda i: ["run", i.run_config(), "--site", i.site(), "--out", i.run_dir()],
         "continue it with `pesflow resume"),
    # ------------------------------------------------------------------ site configs
    Case("site-unknown-key",
         lambda i: i.run(i.run_config(), i.site({**SITE, "surogate": {"workers": 1}})),
         "unknown key 'surogate' (allowed here: name, description, kind"),
    Case("site-ranks-zero",
         lambda i: i.run(i.run_config(), i.site({**SITE, "dft": {"ranks": 0}})),
         "dft.ranks: Input should be greater than or equal to 1"),
    Case("site-walltime-format",
         lambda i: i.run(i.run_config(), i.site({"kind": "htex", "dft": {"provider": {
             "type": "slurm", "walltime": "2 hours"}}})),
         "give SLURM's format HH:MM:SS, MM:SS or D-HH:MM:SS"),
    Case("site-slurm-only-key-on-local",
         lambda i: i.run(i.run_config(), i.site({"kind": "htex", "surrogate": {"provider": {
             "type": "local", "partition": "debug"}}})),
         "partition only apply to 'type: slurm'"),
    Case("site-threads-with-slurm-provider",
         lambda i: i.run(i.run_config(), i.site({**SITE, "dft": {"provider": "slurm"}})),
         "dft cannot use a slurm provider"),
    # The dft bash app quotes every MPI argument (shlex.join), so metacharacters there are
    # inert; the launcher itself is a fixed choice, so a command cannot be smuggled in.
    Case("site-launcher-not-allowed",
         lambda i: i.run(i.run_config(), i.site({**SITE, "dft": {
             "launcher": "mpirun -np 4; rm -rf ~"}})),
         "dft.launcher: Input should be 'mpiexec' or 'srun'"),
    Case("site-blocks-inconsistent",
         lambda i: i.run(i.run_config(), i.site({"kind": "htex", "surrogate": {"provider": {
             "min_blocks": 3, "max_blocks": 1}}})),
         "need min_blocks <= max_blocks"),
    Case("site-no-accelerators",
         lambda i: i.run(i.run_config(), i.site({**SITE, "gpu": {"accelerators": 0}})),
         "give at least one accelerator"),
    Case("site-binary-file",
         lambda i: i.run(i.run_config(), i.file("site.yaml", BINARY)),
         "not a text file (binary content)"),
    # ------------------------------------------------------------ existing run dirs
    Case("resume-not-a-run-dir",
         lambda i: ["resume", i.plain_dir()], "is not a pesflow run directory (no run.yaml)"),
    Case("resume-with-a-bad-site",
         lambda i: ["resume", i.run_dir(), "--site", i.site({**SITE, "dft": {"ranks": "all"}})],
         "dft.ranks: Input should be a valid integer"),
    Case("resume-oracle-calls-zero",
         lambda i: ["resume", i.run_dir(), "--oracle-calls", "0"],
         "--oracle-calls must be at least 1"),
    Case("status-no-such-dir",
         lambda i: ["status", str(i.root / "nowhere")], "no run directory at"),
    # ------------------------------------------------------------------ structure files
    Case("structure-empty-file",
         lambda i: i.dft(i.file("empty.extxyz", "")), "structure file is empty"),
    Case("structure-binary-file",
         lambda i: i.dft(i.file("junk.extxyz", BINARY)), "cannot read a structure from"),
    Case("structure-without-atoms",
         lambda i: i.dft(i.file("none.xyz", "0\n\n")), "no atoms in"),
    Case("structure-overlapping-atoms",
         lambda i: i.dft(Atoms("Cu2", [(0, 0, 0), (0, 0, 0.1)], cell=[8, 8, 8])),
         "atoms 0 and 1 are 0.10 Å apart"),
    Case("structure-element-without-gpaw-dataset",
         lambda i: i.dft(Atoms("Tc2", [(0, 0, 0), (0, 0, 2.2)], cell=[8, 8, 8])),
         "GPAW has no Tc.PBE"),
    Case("structure-partial-occupancy",
         lambda i: i.pes(structure=i.file("partial.cif", PARTIAL_CIF)), "partially occupied"),
    Case("structure-molecule-for-a-crystal-slice",
         lambda i: i.pes(structure=i.structure(Atoms("Cu2", [(0, 0, 0), (0, 0, 2.3)]))),
         "periodic"),
    Case("structure-element-unknown-to-the-model",
         lambda i: ["pes", i.bite(), "--dof", "Bi1.z", "--dof", "Te2.z", "--model", "emt",
                    "--out", str(i.out)],
         "--model: model 'emt' has no parameters for Bi, Te"),
    # ------------------------------------------------------------------ s2DPES options
    Case("pes-unknown-dof",
         lambda i: i.pes("--dof", "Cu1.x", "--dof", "Cu9.z"), "unknown DOF 'Cu9.z'"),
    Case("pes-dof-fixed-by-symmetry",
         lambda i: i.pes("--dof", "Cu1.x", "--dof", "Cu1.y"), "'Cu1.y' is fixed by symmetry"),
    Case("pes-dof-given-once",
         lambda i: i.pes("--dof", "Cu1.x"), "exactly two --dof"),
    Case("pes-same-dof-twice",
         lambda i: i.pes("--dof", "Cu1.x", "--dof", "Cu1.x"), "the two DOFs must differ"),
    Case("pes-steps-below-two",
         lambda i: i.pes("--steps", "1"), "steps for Cu1.x must be at least 2"),
    Case("pes-absurd-grid",
         lambda i: i.pes("--steps", "100000"), "use fewer --steps"),
    Case("pes-range-reversed",
         lambda i: i.pes("--range", "0.8", "0.2", "--range", "0", "1"),
         "range for Cu1.x must have start < stop"),
    Case("pes-range-not-finite",
         lambda i: i.pes("--range", "0", "inf", "--range", "0", "1"),
         "range for Cu1.x must be finite numbers"),
    Case("pes-one-range-for-two-dofs",
         lambda i: i.pes("--range", "0", "0.5"), "give one --range and one --steps per DOF"),
    Case("pes-radius-scale-negative",
         lambda i: i.pes("--radius-scale", "-0.35"), "radius scale must be positive"),
    Case("pes-radius-syntax",
         lambda i: i.pes("--radius", "Cu:1.2"), "cannot read --radius 'Cu:1.2'"),
    Case("pes-same-model-twice",
         lambda i: i.pes("--model", "lj"), "models must differ"),
    Case("pes-slice-file-unknown-key",
         lambda i: ["pes", "--config", i.file("slice.yaml", f"structure: {i.cuau()}\n"
                                                              "dofs: [Cu1.x, Au1.z]\ngrid: 5\n"),
                    "--out", str(i.out)],
         "grid: Extra inputs are not permitted"),
    Case("pes-out-is-not-a-slice-dir",
         lambda i: ["pes", i.cuau(), "--dof", "Cu1.x", "--dof", "Au1.z", "--model", "lj",
                    "--steps", "3", "--out", i.plain_dir()],
         "exists and is not a slice directory"),
]


def test_the_corpus_has_at_least_30_distinct_kinds():
    kinds = [case.kind for case in CASES]
    assert len(kinds) == len(set(kinds)) >= 30
    areas = {kind.split("-")[0] for kind in kinds}
    assert {"run", "site", "structure", "pes"} <= areas


@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(case, tmp_path, capsys, request):
    inputs = Inputs(tmp_path, request)
    argv = case.argv(inputs)
    before = {path: tree_digest(path) for path in inputs.watched}
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pesflow {argv[0]}: error: "), err
    assert case.expect in lines[0], err
    assert not inputs.out.exists() or inputs.out.is_file()
    for path, digest in before.items():
        assert tree_digest(path) == digest, f"{path} changed"
