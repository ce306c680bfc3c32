"""Corrupt or foreign run state (issue #8, item 4).

A real finished run directory is damaged in one way per test (truncated, tampered or
foreign checkpoint, tampered Δ-model file, unknown engine); ``pesflow resume`` and
``pesflow status`` must refuse it with exit status 2 and one line saying what is wrong,
load nothing half-way, and change no file in the directory. And nothing in pesflow may
unpickle a file from a run directory that someone else may have sent.
"""

from __future__ import annotations

import ast
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from search_runs import THREADS_SITE as SITE
from search_runs import tree_digest

from pesflow.cli import main
from pesflow.store.checkpoint import read_checkpoint, write_checkpoint

PESFLOW = Path(__file__).resolve().parents[1] / "pesflow"


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    """A private copy of the finished run, to damage."""
    path = tmp_path / "run"
    shutil.copytree(finished_run, path)
    return path


def refused(argv: list[str], run_dir: Path, capsys) -> str:
    """Run the CLI on ``run_dir``; assert exit 2, one line, no file changed; the line."""
    before = tree_digest(run_dir)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pesflow {argv[0]}: error: "), err
    assert tree_digest(run_dir) == before, "the run directory changed"
    return lines[0]


def resume_and_status(run_dir: Path, capsys) -> list[str]:
    return [refused(["resume", str(run_dir), "--quiet"], run_dir, capsys),
            refused(["status", str(run_dir), "--json"], run_dir, capsys)]


def model_file(run_dir: Path) -> Path:
    """The Δ-model version the checkpoint names (the one resume loads)."""
    version = int(read_checkpoint(run_dir / "checkpoint.h5").state["model_version"])
    path = run_dir / "models" / f"v{version:05d}.h5"
    assert path.is_file()
    return path


# ------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("cut", ["half", "last-byte", "all"])
def test_truncated_checkpoint_is_refused(run_dir, capsys, cut):
    checkpoint = run_dir / "checkpoint.h5"
    data = checkpoint.read_bytes()
    keep = {"half": len(data) // 2, "last-byte": len(data) - 1, "all": 0}[cut]
    checkpoint.write_bytes(data[:keep])
    for line in resume_and_status(run_dir, capsys):
        assert "is unreadable (truncated or not HDF5" in line and "it was not loaded" in line


def _rewrite_energy(path: Path) -> None:
    """Change a stored oracle energy with h5py, leaving the old digest in place."""
    with h5py.File(path, "r+") as h5:
        energies = h5["structures/energies"]
        energies[0] = energies[0] - 10.0  # a "better" result someone wishes they had


def _flip_position_bytes(path: Path) -> None:
    """Flip bytes inside the positions dataset's raw storage (the HDF5 structure stays valid)."""
    with h5py.File(path, "r") as h5:
        offset = h5["structures/positions"].id.get_offset()
    data = bytearray(path.read_bytes())
    for i in range(offset + 3, offset + 11):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tamper", [_rewrite_energy, _flip_position_bytes],
                         ids=["dataset-rewritten-with-h5py", "bytes-flipped-in-a-dataset"])
def test_tampered_checkpoint_fails_its_integrity_check(run_dir, capsys, tamper):
    checkpoint = run_dir / "checkpoint.h5"
    tamper(checkpoint)
    with h5py.File(checkpoint, "r") as h5:  # still a well-formed pesflow HDF5 file
        assert h5.attrs["format"] == "pesflow-checkpoint"
    for line in resume_and_status(run_dir, capsys):
        assert "failed its integrity check" in line and "it was not loaded" in line


def test_foreign_hdf5_file_is_not_a_checkpoint(run_dir, capsys):
    checkpoint = run_dir / "checkpoint.h5"
    checkpoint.unlink()
    with h5py.File(checkpoint, "w") as h5:
        h5.create_dataset("data", data=np.arange(10.0))
        h5.attrs["format"] = "someone-elses-format"
    for line in resume_and_status(run_dir, capsys):
        assert "is not a pesflow checkpoint" in line


def test_a_checkpoint_of_another_kind_is_not_a_search_checkpoint(run_dir, capsys):
    """A valid pesflow checkpoint whose state is not a search run's (e.g. hand-made)."""
    checkpoint = run_dir / "checkpoint.h5"
    saved = read_checkpoint(checkpoint)
    saved.state = {"format": "something-else", "engine": saved.state["engine"]}
    write_checkpoint(checkpoint, saved)
    line = refused(["resume", str(run_dir), "--quiet"], run_dir, capsys)
    assert "is not a pesflow search checkpoint" in line


def test_a_checkpoint_naming_an_unknown_engine_is_refused(run_dir, capsys):
    checkpoint = run_dir / "checkpoint.h5"
    saved = read_checkpoint(checkpoint)
    saved.state["engine"]["engine"] = "annealing"
    write_checkpoint(checkpoint, saved)  # a valid digest: only the content is wrong
    line = refused(["resume", str(run_dir), "--quiet"], run_dir, capsys)
    assert "unknown engine 'annealing'" in line


# ------------------------------------------------------------------------ Δ-model files


def test_a_model_file_of_another_format_is_refused(run_dir, capsys):
    with h5py.File(model_file(run_dir), "r+") as h5:
        h5.attrs["format"] = "someone-elses-model"
    line = refused(["resume", str(run_dir), "--quiet"], run_dir, capsys)
    assert "is not a pesflow Δ-model file" in line


@pytest.mark.parametrize("content", [b"not a model\n", b""], ids=["text", "empty"])
def test_a_model_file_that_is_not_hdf5_is_refused(run_dir, capsys, content):
    model_file(run_dir).write_bytes(content)
    line = refused(["resume", str(run_dir), "--quiet"], run_dir, capsys)
    assert "Δ-model" in line


# ------------------------------------------------------------------------ no pickle

#: Modules whose loaders run arbitrary code from a file.
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                    "marshal", "jsonpickle"}
#: (file relative to pesflow/, line) -> why a finding is not a risk. None today: nothing in
#: pesflow unpickles. (Parsl's own task transport pickles in memory between this process and
#: its workers; that is not a file in the run directory.)
ALLOWED: dict[tuple[str, int], str] = {}


def _name(node: ast.AST) -> str:
    """Dotted name of a call target (``np.load``), or '' when it is not a plain name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(source: str) -> list[tuple[int, str]]:
    """(line, what) for every way ``source`` could unpickle or build objects from a file."""
    tree = ast.parse(source)
    safe_loaders = {"SafeLoader", "CSafeLoader", "yaml.SafeLoader", "yaml.CSafeLoader"}
    for node in ast.walk(tree):  # YAML loaders defined here as subclasses of SafeLoader
        if isinstance(node, ast.ClassDef) and {_name(b) for b in node.bases} & safe_loaders:
            safe_loaders.add(node.name)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""])
            for module in modules:
                if module.split(".")[0] in PICKLING_MODULES:
                    found.append((node.lineno, f"imports {module}"))
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        last = name.rsplit(".", 1)[-1]
        if name.split(".")[0] in PICKLING_MODULES:
            found.append((node.lineno, f"calls {name}"))
        elif name in ("np.load", "numpy.load") and _is_true(_keyword(node, "allow_pickle")):
            found.append((node.lineno, f"{name}(allow_pickle=True)"))
        elif name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif last in ("read_pickle", "unsafe_load", "full_load", "unsafe_load_all"):
            found.append((node.lineno, f"calls {name}"))
        elif name in ("yaml.load", "yaml.load_all"):
            loader = _keyword(node, "Loader")
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            if loader is None or _name(loader) not in safe_loaders:
                found.append((node.lineno, f"{name} with a loader that is not a SafeLoader"))
        elif last in ("BasicMemoizer", "load_checkpoints") or (
            last == "Config" and (_keyword(node, "memoizer") or _keyword(node, "checkpoint_files")
                                  or _keyword(node, "checkpoint_mode"))):
            found.append((node.lineno, f"Parsl checkpointing ({name}): pickles in parsl/"))
    return found


def test_the_scanner_finds_what_it_looks_for():
    """The scan below can fail: each unsafe pattern in a sample is reported."""
    sample = """
import pickle
import numpy as np, torch, yaml
from joblib import load
from parsl.config import Config
np.load("x.npy", allow_pickle=True)
np.load("x.npy")
torch.load("m.pt")
torch.load("m.pt", weights_only=True)
yaml.load(text, Loader=yaml.Loader)
yaml.load(text, Loader=yaml.SafeLoader)
yaml.unsafe_load(text)
Config(executors=[], checkpoint_mode="task_exit")
"""
    lines = sorted(line for line, _ in unsafe_loads(sample))
    assert lines == [2, 4, 6, 8, 10, 12, 13]


def test_nothing_in_pesflow_unpickles_a_file():
    findings = []
    files = sorted(PESFLOW.rglob("*.py"))
    assert len(files) > 50  # the package, not an empty directory
    for path in files:
        relative = str(path.relative_to(PESFLOW))
        for line, what in unsafe_loads(path.read_text()):
            if (relative, line) not in ALLOWED:
                findings.append(f"pesflow/{relative}:{line}: {what}")
    assert findings == []


def test_parsl_checkpoints_in_a_run_dir_are_never_loaded(run_dir, tmp_path, capsys):
    """A pickle planted where Parsl looks for its checkpoints is not unpickled on resume.

    Parsl loads ``RUN_DIR/parsl/*/checkpoint/tasks.pkl`` only when checkpointing is
    configured; pesflow keeps its own state in HDF5 and leaves Parsl's off.
    """
    from pesflow.executors import parse_site
    from pesflow.executors.factory import build_config

    class Trap:  # unpickling it creates the marker file
        def __init__(self, marker: Path) -> None:
            self.marker = str(marker)

        def __reduce__(self):
            return (open, (self.marker, "w"))

    probe = tmp_path / "probe-marker"
    pickle.loads(pickle.dumps(Trap(probe)))
    assert probe.exists()  # the trap works: loading it would leave a marker

    marker = tmp_path / "unpickled"
    planted = run_dir / "parsl" / "000" / "checkpoint" / "tasks.pkl"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(pickle.dumps(Trap(marker)))
    config = build_config(parse_site(SITE), tmp_path / "other")
    assert config.memoizer is None  # Parsl's default memoizer: no checkpoint files, no mode
    assert main(["resume", str(run_dir), "--oracle-calls", "5", "--quiet"]) == 0
    assert read_checkpoint(run_dir / "checkpoint.h5").state["n_calls"] == 5
    assert not marker.exists()
