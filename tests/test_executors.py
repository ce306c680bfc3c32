"""Site configs: validation messages and the parsl.Config they build (nothing started)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
from parsl.launchers import SingleNodeLauncher, SrunLauncher
from parsl.providers import LocalProvider, SlurmProvider

from pesflow.errors import InputError
from pesflow.executors import build_config, load_site, parse_site

SITE_CONFIGS = Path(__file__).resolve().parents[1] / "site-configs"
SHIPPED = sorted(SITE_CONFIGS.glob("*.yaml"))


def no_slurm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Building a SlurmProvider runs `sacct`; hide the SLURM commands so it fails at once
    (Parsl then falls back to squeue). The real SLURM path is in test_slurm.py."""
    empty = tmp_path / "no-slurm-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_shipped_configs_present():
    names = {path.name for path in SHIPPED}
    needed = {"local-threads.yaml", "local-htex.yaml", "slurm.yaml", "paper-xeon-10core.yaml"}
    assert needed <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path):
    site = load_site(path)
    assert site.name == path.stem
    # every site runs oracle tasks: on dft workers, or on shared surrogate workers
    assert {"surrogate", "dft"} <= set(site.labels()) or site.dft.shared
    assert "surrogate" in site.labels()
    assert any("surrogate" in line for line in site.summary())


def test_paper_config_is_the_papers_setup():
    site = load_site(SITE_CONFIGS / "paper-xeon-10core.yaml")
    assert site.kind == "htex"
    assert site.surrogate.workers == 10
    assert (site.dft.workers, site.dft.ranks) == (1, 10)


def test_threads_config(tmp_path: Path):
    site = load_site(SITE_CONFIGS / "local-threads.yaml")
    config = build_config(site, tmp_path)
    by_label = {ex.label: ex for ex in config.executors}
    assert set(by_label) == {"surrogate", "dft", "gpu"}
    assert all(isinstance(ex, ThreadPoolExecutor) for ex in by_label.values())
    assert by_label["gpu"].max_threads == 1
    assert by_label["surrogate"].max_threads == site.surrogate.workers
    assert config.run_dir == str(tmp_path.resolve() / "parsl")
    assert site.resource_specification(priority=3) == {}


def test_htex_local_config(tmp_path: Path):
    site = load_site(SITE_CONFIGS / "local-htex.yaml")
    config = build_config(site, tmp_path / "run")
    by_label = {ex.label: ex for ex in config.executors}
    surrogate, dft = by_label["surrogate"], by_label["dft"]
    assert isinstance(surrogate, HighThroughputExecutor)
    assert isinstance(surrogate.provider, LocalProvider)
    assert surrogate.max_workers_per_node == site.surrogate.workers
    assert dft.max_workers_per_node == site.dft.workers
    # Workers use this environment's Python and run single-threaded.
    assert str(Path(sys.executable).parent) in dft.provider.worker_init
    assert "OMP_NUM_THREADS=1" in surrogate.provider.worker_init
    assert (tmp_path / "run" / "parsl").is_dir()
    assert site.resource_specification(priority=3) == {"priority": 3}


def test_shared_pool_builds_no_dft_executor(tmp_path: Path):
    site = load_site(SITE_CONFIGS / "local-shared.yaml")
    config = build_config(site, tmp_path / "run")
    assert [ex.label for ex in config.executors] == ["surrogate"]
    assert site.oracle_workers == site.surrogate.workers == 2
    assert config.strategy_period == 1  # initial blocks start within a second of load
    assert any("surrogate workers (shared)" in line for line in site.summary())


def test_slurm_config_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    no_slurm(monkeypatch, tmp_path)
    site = load_site(SITE_CONFIGS / "slurm.yaml")
    config = build_config(site, tmp_path)
    by_label = {ex.label: ex for ex in config.executors}
    provider = by_label["dft"].provider
    assert isinstance(provider, SlurmProvider)
    assert provider.cores_per_node == site.dft.provider.cores
    assert provider.walltime == site.dft.provider.walltime
    assert "--partition=compute" in provider.scheduler_options
    assert "--exclusive" not in provider.scheduler_options
    assert isinstance(provider.launcher, SingleNodeLauncher)


def test_lost_blocks_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Heartbeats (when a cancelled block's tasks fail) and the SLURM status interval (when
    a new block is started) reach Parsl; Parsl's values are the defaults."""
    no_slurm(monkeypatch, tmp_path)
    shipped = {ex.label: ex for ex in build_config(load_site(SITE_CONFIGS / "slurm.yaml"),
                                                   tmp_path / "a").executors}
    assert (shipped["dft"].heartbeat_period, shipped["dft"].heartbeat_threshold) == (30, 120)
    assert shipped["dft"].provider.status_polling_interval == 60
    site = parse_site({
        "heartbeat_period": 2, "heartbeat_threshold": 9,
        "dft": {"provider": {"type": "slurm", "poll_interval": 7}},
    })
    dft = {ex.label: ex for ex in build_config(site, tmp_path / "b").executors}["dft"]
    assert (dft.heartbeat_period, dft.heartbeat_threshold) == (2, 9)
    assert dft.provider.status_polling_interval == 7
    assert "workers lost after 9 s without a heartbeat" in site.summary()[0]


def test_multi_node_blocks_use_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    no_slurm(monkeypatch, tmp_path)
    site = parse_site({"surrogate": {"workers": 4, "provider": {"type": "slurm", "nodes": 3}}})
    executor = build_config(site, tmp_path).executors[0]
    assert isinstance(executor.provider.launcher, SrunLauncher)
    assert executor.provider.nodes_per_block == 3


def test_gpu_label(tmp_path: Path):
    site = parse_site({"gpu": {"accelerators": ["0", "1"]}})
    gpu = {ex.label: ex for ex in build_config(site, tmp_path).executors}["gpu"]
    assert list(gpu.available_accelerators) == ["0", "1"]
    assert site.gpu.workers == 2
    assert "OMP_NUM_THREADS=1" not in gpu.provider.worker_init
    shipped = load_site(SITE_CONFIGS / "local-gpu.yaml")
    assert shipped.gpu.workers == 1
    with pytest.raises(InputError, match=r"gpu\.accelerators: Value error, give at least one"):
        parse_site({"gpu": {"accelerators": []}})
    # Several workers share one GPU when its ID is repeated (s2DPES: graph building is
    # CPU-bound, so one worker leaves the GPU idle).
    shared = parse_site({"gpu": {"accelerators": ["0", "0", "0"]}})
    gpu = {ex.label: ex for ex in build_config(shared, tmp_path).executors}["gpu"]
    assert list(gpu.available_accelerators) == ["0", "0", "0"] and shared.gpu.workers == 3


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"dft": {"rank": 10}}, "unknown key 'dft.rank' (allowed here: provider, workers, ranks"),
        ({"surogate": {}}, "unknown key 'surogate' (allowed here: name, description, kind"),
        (
            {"dft": {"provider": {"type": "slurm", "partion": "x"}}},
            "unknown key 'dft.provider.partion' (allowed here: type, partition",
        ),
        ({"dft": {"ranks": "ten"}}, "dft.ranks: Input should be a valid integer"),
        ({"dft": {"ranks": 0}}, "dft.ranks: Input should be greater than or equal to 1"),
        ({"kind": "mpi"}, "kind: Input should be 'threads' or 'htex'"),
        ({"dft": {"launcher": "aprun"}}, "dft.launcher: Input should be 'mpiexec' or 'srun'"),
        ({"surrogate": {"provider": {"partition": "a"}}}, "partition only apply to 'type: slurm'"),
        (
            {"kind": "threads", "dft": {"provider": "slurm"}},
            "kind 'threads' runs everything in this process; dft cannot use a slurm provider",
        ),
        ({"dft": {"provider": {"type": "slurm", "walltime": "4h"}}}, "dft.provider.walltime"),
        ({"dft": {"provider": {"poll_interval": 5}}}, "poll_interval only apply to 'type: slurm'"),
        (
            {"heartbeat_period": 30, "heartbeat_threshold": 30},
            "heartbeat_period (30 s) must be shorter than heartbeat_threshold (30 s)",
        ),
        ({"dft": {"shared": True}}, "shared: true runs each oracle task on one surrogate "
                                     "worker's core, but ranks is 10: set 'ranks: 1'"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_site_configs(data, expected: str):
    with pytest.raises(InputError) as error:
        parse_site(data, "my-site.yaml")
    message = str(error.value)
    assert message.startswith("site config my-site.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_unreadable_and_invalid_yaml(tmp_path: Path):
    with pytest.raises(InputError, match=r"missing\.yaml: cannot read it"):
        load_site(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dft: [1\n")
    with pytest.raises(InputError, match=r"bad\.yaml: not valid YAML at line 2"):
        load_site(bad)


def test_empty_file_gives_defaults(tmp_path: Path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    site = load_site(empty)
    assert (site.kind, site.dft.ranks, site.dft.launcher) == ("htex", 10, "mpiexec")
