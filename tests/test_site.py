"""`pesflow site check`: valid configs print what would start; bad ones exit 2 on one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pesflow.cli import main

SITE_CONFIGS = Path(__file__).resolve().parents[1] / "site-configs"


def test_check_paper_config(capsys: pytest.CaptureFixture):
    assert main(["site", "check", str(SITE_CONFIGS / "paper-xeon-10core.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid site config" in out
    assert "surrogate: 10 single-core worker(s)" in out
    assert "dft: 1 worker(s), each launching 10-rank MPI jobs with mpiexec" in out


def test_check_slurm_config(capsys: pytest.CaptureFixture):
    assert main(["site", "check", str(SITE_CONFIGS / "slurm.yaml")]) == 0
    out = capsys.readouterr().out
    assert "slurm provider (partition=compute" in out
    assert "walltime=04:00:00" in out
    assert "note:" not in out  # 4 jobs x 10 ranks fit the 40 cores


def test_check_notes_oversubscription(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = tmp_path / "site.yaml"
    path.write_text("dft:\n  workers: 2\n  ranks: 10\n  provider: {type: slurm, cores: 16}\n")
    assert main(["site", "check", str(path)]) == 0
    assert "note: dft runs 2 x 10 ranks on 16 cores per node" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: htex\ndft:\n  rank: 3\n", "unknown key 'dft.rank' (allowed here: provider"),
        ("surrogate:\n  workers: many\n", "surrogate.workers: Input should be a valid integer"),
        ("dft: [1\n", "not valid YAML at line 2"),
    ],
)
def test_check_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture, text: str, expected: str):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    assert main(["site", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"pesflow site: error: site config {path}: ")
    assert expected in captured.err


def test_check_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["site", "check", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read it (No such file or directory)" in capsys.readouterr().err


def test_console_script(tmp_path: Path):
    script = Path(sys.executable).with_name("pesflow")
    script = script if script.exists() else shutil.which("pesflow")
    if script is None:
        pytest.skip("the pesflow console script is not installed (pip install -e .)")
    ok = subprocess.run(
        [str(script), "site", "check", str(SITE_CONFIGS / "local-htex.yaml")],
        capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "dft: 1 worker(s), each launching 2-rank MPI jobs" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("surrogate:\n  workers: 2\n  cores: 4\n")
    failed = subprocess.run(
        [str(script), "site", "check", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        f"pesflow site: error: site config {bad}: unknown key 'surrogate.cores' "
        "(allowed here: provider, workers)"
    )


def test_a_local_site_occupies_at_most_the_machines_cores(monkeypatch: pytest.MonkeyPatch):
    """CPU time = cores × wall: a local pool larger than the machine shares its cores."""
    from pesflow.executors.site import load_site
    from pesflow.workflows.search import site_cores

    local = load_site(SITE_CONFIGS / "local-htex.yaml")  # 2 workers + 1 x 2 ranks
    slurm = load_site(SITE_CONFIGS / "slurm.yaml")
    declared = site_cores(slurm)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert site_cores(local) == 2
    assert site_cores(slurm) == declared  # nodes elsewhere: what the site declares
    assert site_cores(local.model_copy(update={"cores": 8})) == 8  # said outright
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert site_cores(local) == 4
