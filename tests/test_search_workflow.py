"""The Parsl search coordinator: agreement with the serial runner, async runs, outputs,
failures, locking, and `pesflow run|resume|status` (issue #5)."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.io import read
from search_runs import LJ7_RUN

from pesflow.cli import main
from pesflow.config import parse_run_config
from pesflow.executors import parse_site, parsl_session
from pesflow.models.delta import DeltaModel
from pesflow.models.priors import make_prior
from pesflow.models.registry import get_calculator
from pesflow.search.engines import ENGINES
from pesflow.search.runner import SerialRunner
from pesflow.store.checkpoint import read_checkpoint
from pesflow.workflows.search import SearchRun, drive, run_search

THREADS = {"name": "threads", "kind": "threads", "surrogate": {"workers": 2},
           "dft": {"workers": 1, "ranks": 1}}
HTEX = {"name": "htex", "kind": "htex", "surrogate": {"workers": 2, "provider": "local"},
        "dft": {"workers": 1, "ranks": 1, "provider": "local"}}

REX = {"name": "rex", "settings": {"n_walkers": 3, "oracle_interval": 2, "oracle_count": 2,
                                   "oracle_from": 3, "steps": 15, "swap_interval": 2}}
GOFEE = {"name": "gofee", "settings": {"n_candidates": 3, "n_walkers": 2, "steps": 15}}


def lj_config(algorithm: dict, calls: int = 6, **extra) -> dict:
    """LJ7 with a Morse ρ0 = 6 prior and a small Δ-model: seconds per run."""
    return {**LJ7_RUN, "name": "lj7", "algorithm": algorithm,
            "budget": {"oracle_calls": calls}, "seed": 3, **extra}


def serial_reference(data: dict):
    config = parse_run_config(data)
    problem = config.problem.build()
    engine = ENGINES[config.algorithm.name](problem, config.algorithm.settings, config.seed)
    model = DeltaModel(problem.species, make_prior(config.prior), config.model.delta_settings(),
                       seed=config.seed)
    runner = SerialRunner(engine, get_calculator(config.oracle.model), model,
                          budget=config.budget.oracle_calls)
    return runner.run()


def same_search(a, b) -> None:
    assert [e.call for e in a] == [e.call for e in b]
    np.testing.assert_allclose([e.energy for e in a], [e.energy for e in b], rtol=0, atol=1e-9)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.atoms.positions, y.atoms.positions, atol=1e-9)


@pytest.mark.parametrize("algorithm", [REX, GOFEE], ids=["rex", "gofee"])
@pytest.mark.parametrize("site", [THREADS, HTEX], ids=["threads", "htex"])
def test_deterministic_mode_reproduces_the_serial_runner(tmp_path, algorithm, site):
    data = lj_config(algorithm)
    reference = serial_reference(data)
    run = run_search(parse_run_config(data), parse_site(site), tmp_path / "run",
                     deterministic=True)
    assert run.n_calls == 6 and len(reference) == len(run.evaluations) > 0
    same_search(reference, run.evaluations)


def test_async_run_on_a_surface_writes_every_output(tmp_path):
    data = {
        "name": "emt-surface", "problem": {"system": "emt_surface", "adsorbates": "Au2"},
        "prior": "emt", "model": {"settings": {"n_inducing": 100, "ensemble_size": 3}},
        "algorithm": {"name": "rss", "settings": {"n_parallel": 2, "steps": 20}},
        "oracle": {"kind": "calculator", "model": "emt"}, "budget": {"oracle_calls": 4},
    }
    run = run_search(parse_run_config(data), parse_site(THREADS), tmp_path / "run")
    out = tmp_path / "run"
    assert run.n_calls == 4 and run.stop_reason == "oracle budget spent"
    for name in ("run.yaml", "site.yaml", "checkpoint.h5", "evaluated.extxyz", "best.extxyz",
                 "summary.json", "trace.png", "pesflow.log"):
        assert (out / name).is_file(), name
    evaluated = read(out / "evaluated.extxyz", ":")
    saved = read_checkpoint(out / "checkpoint.h5")
    assert len(evaluated) == len(saved.structures) == 4
    energies = [a.get_potential_energy() for a in evaluated]
    best = read(out / "best.extxyz")
    assert best.get_potential_energy() == pytest.approx(min(energies))
    slab = run.problem.template
    for atoms in evaluated:  # the template never moves
        np.testing.assert_allclose(atoms.positions[: len(slab)], slab.positions, atol=1e-9)
        assert atoms.pbc.tolist() == [True, True, False]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["oracle_calls"] == {"done": 4, "budget": 4, "pending": 0, "failed": 0}
    assert summary["best"]["energy"] == pytest.approx(min(energies))
    assert summary["model_version"] == run.model.version >= 1
    hashes = [a.info["oracle_hash"] for a in saved.structures]
    assert len(set(hashes)) == 4 and all((out / "oracle" / h / "result.json").is_file()
                                         for h in hashes)


def test_workers_load_each_model_version_once(tmp_path):
    from parsl import python_app

    from pesflow.apps.search import surrogate_app
    from pesflow.models.loaded import SurrogateRef
    from pesflow.search.tasks import SurrogateEnergyTask
    from pesflow.structures.problem import lj_cluster

    problem = lj_cluster(4)
    model = DeltaModel(problem.species, make_prior("morse"), seed=0)
    atoms = problem.assemble(np.array([[0, 0, 0], [2.8, 0, 0], [0, 2.8, 0], [0, 0, 2.8]])
                             + problem.confinement.corner + 2)
    atoms.calc = get_calculator("lj")
    atoms.get_potential_energy()
    model.add_data([atoms])
    model.train()
    model.save(tmp_path / "v1.h5")
    ref = SurrogateRef("morse", 1, str(tmp_path / "v1.h5"))

    @python_app(executors=["surrogate"])
    def loads() -> int:
        from pesflow.models.loaded import model_loads

        return model_loads()

    site = parse_site({**THREADS, "surrogate": {"workers": 1}})
    with parsl_session(site, tmp_path):
        before = loads().result()
        energies = [surrogate_app(SurrogateEnergyTask(i, atoms, 1), ref).result()[0].energy
                    for i in range(5)]
        assert loads().result() == before + 1
    assert np.ptp(energies) == 0 and energies[0] == pytest.approx(model.predict(atoms)[0])

    # runs sharing a worker (benchmark repeats) keep their own versions: no reloads when
    # tasks of three runs alternate, one reload after a run's version is evicted by two newer
    from pesflow.models.loaded import model_loads, surrogate_calculator

    paths = []
    for run in ("a", "b", "c"):
        (tmp_path / run).mkdir()
        paths.append(str(tmp_path / run / "v1.h5"))
        model.save(paths[-1])
    start = model_loads()
    for _ in range(3):
        for path in paths:
            surrogate_calculator(SurrogateRef("morse", 1, path))
    assert model_loads() == start + 3
    for version in (2, 3):
        model.save(tmp_path / "a" / f"v{version}.h5")
        surrogate_calculator(SurrogateRef("morse", version, str(tmp_path / "a" / f"v{version}.h5")))
    surrogate_calculator(SurrogateRef("morse", 1, paths[1]))
    assert model_loads() == start + 5  # b's model was kept
    surrogate_calculator(SurrogateRef("morse", 1, paths[0]))
    assert model_loads() == start + 6  # a's v1 was evicted by a's v2 and v3


def test_a_failing_oracle_is_retried_then_recorded_and_the_search_ends(tmp_path):
    """EMT has no parameters for S: every evaluation fails, is retried, then recorded."""
    data = {
        "problem": {"system": "ag2s_cluster", "x": 1, "box": 10, "confinement": 5},
        "prior": "repulsive", "algorithm": {"name": "rss", "settings": {"steps": 5}},
        "oracle": {"kind": "calculator", "model": "emt", "retries": 1},
        "budget": {"oracle_calls": 2},
    }
    run = run_search(parse_run_config(data), parse_site(THREADS), tmp_path / "run")
    assert run.n_calls == 2 and not run.evaluations
    assert len(run.failures) == 2
    for failure in run.failures:
        assert failure["attempts"] == 2 and "NotImplementedError" in failure["reason"]
    lines = (tmp_path / "run" / "oracle" / "performed.log").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(x)["status"] == "crashed" for x in lines)
    log = (tmp_path / "run" / "pesflow.log").read_text()
    assert "retrying" in log and "failed after 2 attempt(s)" in log


def test_a_surrogate_task_that_raises_is_dropped_with_its_reason(tmp_path, caplog):
    data = lj_config(REX)
    run = SearchRun.start(parse_run_config(data), parse_site(THREADS), tmp_path / "run")
    try:
        import queue

        events: queue.Queue = queue.Queue()
        task = run.engine.propose()[0]
        future: Future = Future()
        future.set_exception(OSError("model file vanished"))
        from pesflow.workflows.search import _Submitted

        run.submitted[task.id] = _Submitted(task, future, attempts=1)
        with caplog.at_level("INFO", logger="pesflow"):
            run.take(task.id, future, events)
        assert run.counts["surrogate_failed"] == 1
        assert "model file vanished" in caplog.text
        run.commit()  # the engine takes the error result and goes on
        assert task.id not in {t.id for t in run.engine.in_flight()}
    finally:
        run.close(clean=False)


def test_a_run_whose_surrogate_always_fails_stops_with_a_message(tmp_path, capsys,
                                                                 monkeypatch):
    """A prior that raises on every call (a broken model file, a GPU out of memory): no
    candidate ever reaches the oracle. Before the guard the engine re-proposed forever
    without a word. The fault is injected into ASE's Morse calculator; the run is real."""
    from ase.calculators.morse import MorsePotential

    from pesflow.workflows import search

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (injected)")

    monkeypatch.setattr(MorsePotential, "calculate", broken)
    monkeypatch.setattr(search, "SURROGATE_FAILURES_IN_A_ROW", 12)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(lj_config(REX)))
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(THREADS))
    status = main(["run", str(tmp_path / "run.yaml"), "--site", str(tmp_path / "site.yaml"),
                   "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert "the last 12 surrogate tasks all failed" in err and "injected" in err
    assert "pesflow resume" in err and len(err.strip().splitlines()) == 1
    assert read_checkpoint(tmp_path / "run" / "checkpoint.h5").state["n_calls"] == 0
    log = (tmp_path / "run" / "pesflow.log").read_text()
    assert log.count("dropped: RuntimeError: CUDA out of memory (injected)") >= 12


def test_a_model_out_of_memory_is_resubmitted_then_stops_the_run(tmp_path, capsys,
                                                                  monkeypatch):
    """A prior out of memory (a GPU shared by too many workers) says nothing about the
    candidate: its task is run again, not dropped, and if memory stays short the run stops
    at once with what to change; a resume with memory to spare finishes it. The failure is
    a real failed allocation inside ASE's Morse calculator (numpy's MemoryError)."""
    from ase.calculators.morse import MorsePotential

    from pesflow.workflows import search

    def full(*args, **kwargs):
        np.empty(1 << 57, dtype=np.uint8)  # 128 PiB: no machine has it

    (tmp_path / "run.yaml").write_text(yaml.safe_dump(lj_config(REX)))
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(THREADS))
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(MorsePotential, "calculate", full)
        status = main(["run", str(tmp_path / "run.yaml"), "--site",
                       str(tmp_path / "site.yaml"), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1
    times = search.OUT_OF_RESOURCES_RETRIES + 1
    assert "ran out of memory or device on surrogate_relax task" in err
    assert f"{times} times (ModelOutOfResources: MemoryError: Unable to allocate" in err
    assert f"pesflow resume {out}" in err
    log = (out / "pesflow.log").read_text()
    assert "resubmitting (1 of" in log and "dropped" not in log
    assert read_checkpoint(out / "checkpoint.h5").state["n_calls"] == 0
    assert main(["resume", str(out), "--quiet"]) == 0
    assert read_checkpoint(out / "checkpoint.h5").state["n_calls"] == 6


def test_a_second_coordinator_is_refused_while_a_run_holds_the_dir(tmp_path, capsys):
    data = lj_config(REX)
    run = SearchRun.start(parse_run_config(data), parse_site(THREADS), tmp_path / "run")
    try:
        assert main(["resume", str(tmp_path / "run")]) == 2
        assert "in use by pid" in capsys.readouterr().err
    finally:
        run.close(clean=False)


def test_resume_extends_the_budget_and_records_each_result_once(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(lj_config(REX, calls=4)))
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(THREADS))
    out = tmp_path / "run"
    assert main(["run", str(config), "--site", str(site), "--out", str(out), "--quiet"]) == 0
    assert main(["resume", str(out), "--oracle-calls", "8", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", str(out), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["oracle_calls"]["done"] == 8 and status["sessions"] == 2
    assert len(status["engine"]["walkers"]) == 3
    saved = read_checkpoint(out / "checkpoint.h5")
    hashes = [a.info["oracle_hash"] for a in saved.structures]
    assert len(hashes) == len(set(hashes)) == 8
    _learnt_once(out)
    assert main(["status", str(out)]) == 0
    assert "oracle calls" in capsys.readouterr().out


def _learnt_once(run_dir: Path) -> None:
    """The checkpoint's model version was trained on every evaluation, each exactly once."""
    from pesflow.workflows.search import load_run_model

    saved = read_checkpoint(run_dir / "checkpoint.h5")
    model = load_run_model(run_dir)
    assert model.version == saved.state["model_version"]
    assert saved.state["trained_on"] == len(saved.structures) == model.n_train
    learnt = sorted(np.round(a.positions, 6).tobytes() for a in model._structures)
    assert learnt == sorted(np.round(a.positions, 6).tobytes() for a in saved.structures)


def test_a_model_killed_mid_training_learns_the_rest_on_resume(tmp_path):
    """Background training: a checkpoint may name a model trained on fewer evaluations
    than it records (the coordinator died while the next training ran). The resumed run
    trains on the rest with its first new data, and its final model has learnt each
    evaluation once."""
    from pesflow.store.checkpoint import Checkpoint, write_checkpoint
    from pesflow.workflows.search import load_run_model

    out = tmp_path / "run"
    run_search(parse_run_config(lj_config(REX, calls=4)), parse_site(THREADS), out)
    _learnt_once(out)
    saved = read_checkpoint(out / "checkpoint.h5")
    model = load_run_model(out)
    lagging = DeltaModel(model.species, model.prior, model.settings, seed=0)
    lagging.add_data(saved.structures[:2])
    lagging.train()
    lagging.version = saved.state["model_version"] + 1
    lagging.save(out / "models" / f"v{lagging.version:05d}.h5")
    state = {**saved.state, "model_version": lagging.version, "trained_on": 2}
    write_checkpoint(out / "checkpoint.h5", Checkpoint(state, saved.structures))
    assert load_run_model(out).n_train == 2

    assert main(["resume", str(out), "--oracle-calls", "6", "--quiet"]) == 0
    _learnt_once(out)
    assert read_checkpoint(out / "checkpoint.h5").state["n_calls"] == 6


def test_parsl_gets_a_window_of_surrogate_tasks_not_a_whole_round(tmp_path):
    """Parsl launches tasks in submission order from one thread: a round of 12 walkers is
    handed over two at a time (2 × 1 worker), so oracle tasks never queue behind it."""
    import queue

    wide = {"name": "rex", "settings": {"n_walkers": 12, "oracle_interval": 1,
                                        "oracle_count": 2, "oracle_from": 3, "steps": 5}}
    site = parse_site({**THREADS, "surrogate": {"workers": 1}})
    run = SearchRun.start(parse_run_config(lj_config(wide, calls=4)), site, tmp_path / "run")
    in_parsl = []
    with parsl_session(site, tmp_path):
        events: queue.Queue = queue.Queue()
        run.fill(events)
        assert run.surrogate_window == 2
        assert len(run.submitted) == 2 and len(run.held_surrogate) == 10
        while not run.finished:
            run.take(*events.get(timeout=60)[1:], events)
            in_parsl.append(sum(s.future is not None and s.task.kind != "oracle"
                                for s in run.submitted.values()))
            run.commit(events)
            run.fill(events)
        run.close()
    assert max(in_parsl) <= 2 and run.n_calls == 4
    assert run.counts["surrogate_tasks"] >= 24  # two rounds of 12 walkers went through


def test_a_shared_pool_runs_oracle_tasks_on_the_surrogate_workers(tmp_path):
    """``dft: {shared: true}``: one HTEx pool for both kinds of task; no dft executor."""
    site = parse_site({"kind": "htex", "surrogate": {"workers": 2, "provider": "local"},
                       "dft": {"shared": True, "ranks": 1}})
    run = run_search(parse_run_config(lj_config(REX, calls=6)), site, tmp_path / "run")
    assert run.n_calls == 6 and run.stop_reason == "oracle budget spent"
    assert run.counts["oracle_tasks"] >= 3 and not run.failures
    assert run.cores == 2 and run.oracle_backlog >= 2
    executors = {p.name for p in (tmp_path / "run" / "parsl").glob("*/*") if p.is_dir()}
    assert "surrogate" in executors and "dft" not in executors


def test_many_runs_share_one_parsl_session(tmp_path):
    runs = [SearchRun.start(parse_run_config({**lj_config(REX, calls=4), "seed": seed}),
                            parse_site(THREADS), tmp_path / f"r{seed}") for seed in (1, 2, 3)]
    with parsl_session(parse_site(THREADS), tmp_path):
        drive(runs)
    assert [r.n_calls for r in runs] == [4, 4, 4]
    firsts = {round(r.evaluations[0].energy, 6) for r in runs}
    assert len(firsts) == 3  # different seeds, different searches


# ------------------------------------------------------------------- bad input, run dirs


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"problem": {"system": "lj_cluster", "n": 1}}, "at least 2 atoms"),
        ({"problem": {"system": "ag2s_cluster", "x": 0}}, "X >= 1"),
        ({"problem": {"system": "lj_cluster", "atoms": 5}}, "has no option 'atoms'"),
        ({"problem": {"system": "graphene"}}, "unknown system 'graphene'"),
        ({"budget": {"oracle_calls": -3}}, "budget.oracle_calls"),
        ({"budget": {}}, "oracle_calls and/or wall_time"),
        ({"budget": {"wall_time": "soon"}}, "cannot read duration"),
        ({"prior": "mace:/no/such/model.model"}, "/no/such/model.model"),
        ({"prior": "chgnet; rm -rf /"}, "metacharacters"),
        ({"algorithm": {"name": "annealing"}}, "unknown algorithm 'annealing'"),
        ({"algorithm": {"name": "rex", "settings": {"n_walkers": 1}}}, "n_walkers"),
        ({"oracle": {"kind": "vasp"}}, "oracle"),
        ({"oracle": {"kind": "gpaw", "settings": {"mode": "fd"}}}, "oracle"),
        ({"model": {"pretrain": "/no/such.extxyz"}}, "/no/such.extxyz"),
        ({"model": {"settings": {"kernal": {}}}}, "model.settings"),
        ({"seed": "abc"}, "seed"),
    ],
)
def test_bad_run_configs_exit_2_before_anything_starts(tmp_path, capsys, change, message):
    config = _write(tmp_path / "bad.yaml", {**lj_config(REX), **change})
    out = tmp_path / "never"
    assert main(["run", str(config), "--site", str(_write(tmp_path / "s.yaml", THREADS)),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_an_existing_run_dir_is_kept_without_force_and_replaced_with_it(tmp_path, capsys):
    config = _write(tmp_path / "run.yaml", lj_config(REX, calls=2))
    site = _write(tmp_path / "site.yaml", THREADS)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["run", str(config), "--site", str(site), "--out", str(out), "--force"]) == 2
    assert "left alone" in capsys.readouterr().err and (out / "notes.txt").exists()
    (out / "notes.txt").unlink()
    assert main(["run", str(config), "--site", str(site), "--out", str(out), "--quiet"]) == 0
    before = (out / "checkpoint.h5").read_bytes()
    assert main(["run", str(config), "--site", str(site), "--out", str(out)]) == 2
    assert "pesflow resume" in capsys.readouterr().err
    assert (out / "checkpoint.h5").read_bytes() == before
    assert main(["run", str(config), "--site", str(site), "--out", str(out), "--force",
                 "--quiet"]) == 0
    assert read_checkpoint(out / "checkpoint.h5").state["n_calls"] == 2


EXAMPLES = sorted(Path(__file__).parents[1].glob("examples/runs/*.yaml"))


def test_the_example_run_configs_are_there():
    names = {p.stem for p in EXAMPLES}
    assert {"ag2s2-rex-demo", "lj13-rex-standin", "emt-surface-gofee"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_run_configs_are_valid(path):
    from pesflow.config import load_run_config

    config = load_run_config(path)
    config.check()  # builds the problem and settings, checks model files and GPAW data
    assert config.name == path.stem
