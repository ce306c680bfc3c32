"""Parsl HTEx + SlurmProvider on a private single-node SLURM (tests/slurm_cluster.py).

The workers start in SLURM batch jobs, run a surrogate relaxation and a 2-rank GPAW
single point, and Parsl then shuts down cleanly: no job left in squeue, no worker left.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_apps import exercise_apps

from pesflow.executors import SiteConfig, parse_site

pytestmark = [pytest.mark.slurm, pytest.mark.mpi]


def slurm_site(dft: dict, surrogate_provider: dict | str | None = None) -> SiteConfig:
    provider = {"type": "slurm", "walltime": "00:10:00", "cores": 1}
    return parse_site(
        {
            "name": "test-slurm",
            "kind": "htex",
            "surrogate": {"workers": 1, "provider": surrogate_provider or provider},
            "dft": {"workers": 1, "ranks": 2, "provider": provider, **dft},
        },
        "test-slurm",
    )


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (here: the test's run dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and text in cmdline:
            found.append(int(proc.name))
    return found


def check_blocks(cluster, labels: tuple[str, ...]):
    """A ``while_loaded`` hook: the labels' workers live in running jobs of ``cluster``."""

    def check(dfk) -> None:
        running = set(cluster.jobs())
        for label in labels:
            executor = dfk.executors[label]
            managers = executor.connected_managers()
            assert managers, f"no workers connected for {label}"
            jobs = {executor.blocks_to_job_id[m["block_id"]] for m in managers}
            assert jobs <= running, (label, jobs, running)

    return check


def assert_clean_shutdown(cluster, run_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (cluster.jobs() or processes_mentioning(str(run_dir))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cluster.jobs() == []
    assert processes_mentioning(str(run_dir)) == []


def test_htex_slurm_runs_both_apps(slurm_cluster, tmp_path: Path, ag2_serial):
    # One core each: the surrogate block and the DFT block fit the node side by side.
    # SlurmProvider asks for one task per node, so mpiexec oversubscribes (SPEC.md §6);
    # --bind-to none as in site-configs/slurm.yaml.
    site = slurm_site({"launcher": "mpiexec", "mpi_args": ["--bind-to", "none"]})
    exercise_apps(site, tmp_path, ag2_serial, check_blocks(slurm_cluster, ("surrogate", "dft")))
    assert_clean_shutdown(slurm_cluster, tmp_path)
    scripts = [
        path for path in (tmp_path / "parsl").glob("*/submit_scripts/parsl.*")
        if path.suffix not in (".stdout", ".stderr")
    ]
    assert sorted(path.name.split(".")[1] for path in scripts) == ["dft", "surrogate"]
    for script in scripts:
        text = script.read_text()
        assert "#SBATCH --time=10\n" in text  # minutes
        assert "#SBATCH --cpus-per-task=1" in text
        assert "--exclusive" not in text


def test_htex_slurm_dft_with_srun(slurm_cluster, tmp_path: Path, ag2_serial):
    # srun needs as many tasks as ranks in the block; the surrogate stays local.
    site = slurm_site(
        {
            "launcher": "srun",
            "provider": {
                "type": "slurm",
                "walltime": "00:10:00",
                "scheduler_options": "#SBATCH --ntasks-per-node=2",
            },
        },
        surrogate_provider="local",
    )
    exercise_apps(site, tmp_path, ag2_serial, check_blocks(slurm_cluster, ("dft",)))
    assert_clean_shutdown(slurm_cluster, tmp_path)


def test_two_clusters_do_not_collide(slurm_cluster):
    """A second private SLURM (as a parallel test run would start) gets its own ports and
    directories, and stopping it leaves the first one running."""
    from slurm_cluster import SlurmCluster

    with SlurmCluster() as other:
        assert other.root != slurm_cluster.root
        assert set(other.ports.values()).isdisjoint(slurm_cluster.ports.values())
        assert f"SlurmctldPort={other.ports['SlurmctldPort']}" in other.conf.read_text()
        job = other.run("sbatch", "--wrap", "hostname", "-o", str(other.root / "job.out")).stdout
        assert job.startswith("Submitted batch job")
        assert slurm_cluster.jobs() == []  # the job went to the other cluster only
    assert not other.root.exists()
    assert slurm_cluster.run("sinfo", "-h", "-N", "-o", "%T").stdout.strip() == "idle"


def test_search_with_a_two_rank_gpaw_oracle_on_slurm(slurm_cluster, tmp_path: Path):
    """A short Δ-learning search: surrogate and 2-rank GPAW oracle workers in SLURM blocks."""
    import json

    from ase.io import read

    from pesflow.config import parse_run_config
    from pesflow.store.checkpoint import read_checkpoint
    from pesflow.workflows.search import run_search

    config = parse_run_config({
        "name": "ag2s-slurm",
        "problem": {"system": "ag2s_cluster", "x": 1, "box": 9, "confinement": 3},
        "prior": "repulsive",
        "model": {"settings": {"n_inducing": 50, "ensemble_size": 3}},
        "algorithm": {"name": "rss", "settings": {"steps": 10}},
        "oracle": {"kind": "gpaw", "settings": "fast", "retries": 1},
        "budget": {"oracle_calls": 2},
    })
    site = slurm_site({"launcher": "mpiexec", "mpi_args": ["--bind-to", "none"]})
    out = tmp_path / "run"
    run = run_search(config, site, out)
    assert_clean_shutdown(slurm_cluster, tmp_path)
    assert run.n_calls == 2 and not run.failures
    saved = read_checkpoint(out / "checkpoint.h5")
    assert len(saved.structures) == 2
    for atoms in saved.structures:
        task = out / "oracle" / atoms.info["oracle_hash"]
        result = json.loads((task / "result.json").read_text())
        assert result["status"] == "ok" and result["info"]["ranks"] == 2
        assert atoms.get_potential_energy() == result["energy"]
        assert "LCAO dzp PBE" in result["info"]["level_of_theory"]
    assert len(read(out / "evaluated.extxyz", ":")) == 2
    assert (out / "trace.png").is_file() and (out / "best.extxyz").is_file()
    scripts = [p for p in (out / "parsl").glob("*/submit_scripts/parsl.*")
               if p.suffix not in (".stdout", ".stderr", ".ec")]
    assert sorted(p.name.split(".")[1] for p in scripts) == ["dft", "surrogate"]
