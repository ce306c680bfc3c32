"""`pesflow bench`: a tiny campaign through the real coordinator (threads site, LJ7).

The judge is checked against an independent ASE relaxation of the stored structures, the
resume path by extending censored repeats and counting what the oracle computed.
"""

from __future__ import annotations

import copy
import json
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.calculators.lj import LennardJones
from ase.cluster import Icosahedron
from ase.io import read, write
from search_runs import (
    HTEX_SITE,
    THREADS_SITE,
    assert_nothing_lost_or_repeated,
    performed,
    pesflow,
    recorded_and_in_flight,
    tree_digest,
)

from pesflow.cli import main
from pesflow.executors.leftovers import leftover_processes
from pesflow.models.registry import LJ_DEFAULTS, get_calculator
from pesflow.store.checkpoint import read_checkpoint
from pesflow.structures.identity import local_minimum_energy
from pesflow.workflows.bench import (
    Criterion,
    GraphSuccess,
    cpu_clock,
    lj_energy_gradient,
    lj_local_minimum,
    load_campaign,
    plan_campaign,
)

E_LJ7 = -16.505384  # Cambridge Cluster Database, ε = 1
E_LJ13 = -44.326801

#: Three cells: LJ7 (basin test) with RSS and REX on a Morse prior + Δ-model, and LJ7
#: with an energy no structure reaches (every repeat censored) with RSS in the prior alone.
TINY = {
    "name": "tiny",
    "repeats": 2,
    "seed": 1,
    "deterministic": True,
    "oracle": {"kind": "calculator", "model": "lj"},
    "model_settings": {"n_inducing": 100, "ensemble_size": 3},
    "problems": [
        {"name": "LJ7", "problem": {"system": "lj_cluster", "n": 7},
         "success": {"criterion": "basin", "energy": E_LJ7},
         "budget": {"oracle_calls": 6}},
        {"name": "LJ7-never", "problem": {"system": "lj_cluster", "n": 7},
         "success": {"criterion": "energy", "energy": -30.0, "threshold": 0.01},
         "budget": {"oracle_calls": 3}},
    ],
    "algorithms": [
        {"name": "RSS", "algorithm": "rss"},
        {"name": "REX", "algorithm": "rex",
         "settings": {"n_walkers": 3, "oracle_interval": 2, "oracle_count": 2,
                      "oracle_from": 3, "steps": 15}},
    ],
    "priors": [
        {"name": "morse6", "prior": "morse:rho0=6"},
        {"name": "morse6-alone", "prior": "morse:rho0=6", "delta": False},
    ],
    "exclude": [
        {"problem": "LJ7", "prior": "morse6-alone"},
        {"problem": "LJ7-never", "prior": "morse6"},
        {"problem": "LJ7-never", "algorithm": "REX"},
    ],
    "quick": {"repeats": 1, "budget": {"oracle_calls": 2}, "problems": ["LJ7-never"]},
}
CELLS = {"LJ7": ["RSS/morse6", "REX/morse6"], "LJ7-never": ["RSS/morse6-alone"]}


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bench(tmp_path: Path, campaign: dict, out: Path, *extra: str) -> int:
    config = _write(tmp_path / "campaign.yaml", campaign)
    site = _write(tmp_path / "site.yaml", THREADS_SITE)
    return main(["bench", str(config), "--site", str(site), "--out", str(out), "--quiet",
                 *extra])


def _repeat_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/*/*/r*/run.yaml"))


def _oracle_basin(atoms) -> float:
    """The basin energy by ASE's own L-BFGS on ASE's LJ calculator (independent check)."""
    return local_minimum_energy(atoms, LennardJones(**LJ_DEFAULTS))


def test_tiny_campaign_judges_keeps_finished_repeats_and_grows(tmp_path):
    out = tmp_path / "out"
    assert _bench(tmp_path, TINY, out) == 0
    results = json.loads((out / "results.json").read_text())
    assert {p: sorted(r["cells"]) for p, r in results["problems"].items()} == {
        p: sorted(c) for p, c in CELLS.items()}
    for problem in results["problems"].values():
        for cell in problem["cells"].values():
            assert cell["repeats"] == cell["finished"] == 2 and cell["failed"] == 0
            assert cell["successes"] + cell["censored"] == 2
            assert cell["seeds"] == [1, 2]
    assert (out / "LJ7.png").stat().st_size > 0 and (out / "LJ7-never.png").exists()

    # Nothing reaches E = -30: every repeat censored after exactly its budget.
    never = results["problems"]["LJ7-never"]["cells"]["RSS/morse6-alone"]
    assert never["successes"] == 0 and never["calls_at_end"] == [3, 3]
    assert never["curve_calls"]["cdf"][-1] == 0.0
    # ... and the table says so: 2 repeats, 0 successes, "0 %" at 3 calls with the exact
    # binomial band of 0 of 2 (0-84 %)
    table = (out / "LJ7-never-table.md").read_text().splitlines()
    assert table[0].startswith("| LJ7-never, morse:rho0=6 alone | repeats | successes |")
    assert "success by 3 calls" in table[0]
    assert table[2].startswith("| RSS | 2 | 0 |") and "| 0 % (0–84) | – |" in table[2]
    lj7_table = (out / "LJ7-table.md").read_text()
    for label, cell in results["problems"]["LJ7"]["cells"].items():
        algorithm = label.split("/")[0]
        assert f"| {algorithm} | 2 | {cell['successes']} |" in lj7_table

    # LJ7's basin is reached: each verdict agrees with an independent ASE relaxation.
    lj7 = results["problems"]["LJ7"]["cells"]
    assert sum(c["successes"] for c in lj7.values()) >= 1
    for path in _repeat_dirs(out / "LJ7"):
        record = json.loads((path / "bench.json").read_text())
        frames = read(path / "evaluated.extxyz", ":")
        assert [e["call"] for e in record["evaluations"]] == [f.info["call"] for f in frames]
        success = record["success"]
        for row, atoms in zip(record["evaluations"], frames, strict=True):
            if row["success"] is None:
                assert success is not None and row["call"] > success["call"]
                continue
            assert abs(_oracle_basin(atoms) - E_LJ7) <= 1e-3 if row["success"] else \
                abs(_oracle_basin(atoms) - E_LJ7) > 1e-3
        if success is not None:
            assert success["call"] <= record["oracle_calls"] <= 6
            assert record["stop_reason"] == "stop condition met"
            assert success["cpu_time"] == pytest.approx(
                cpu_clock(record["sessions"], success["wall_time"]))
        else:
            assert record["oracle_calls"] == 6
    # 2 cores, 2 repeats at once: one core-second per second; once nothing is left to
    # start and a repeat has finished, the one still running has both cores
    shares = [[s["cores"] for s in json.loads((p / "bench.json").read_text())["sessions"]]
              for p in _repeat_dirs(out)]
    assert all(share in ([1.0], [1.0, 2.0]) for share in shares), shares
    assert [1.0, 2.0] in shares
    sessions = json.loads((out / "sessions.json").read_text())
    core_seconds = sum(json.loads((p / "bench.json").read_text())["cpu_time"]
                       for p in _repeat_dirs(out))
    assert core_seconds <= sessions[0]["cpu_allocated_s"]
    assert len(sessions) == 1 and sessions[0]["state"] == "ended"
    assert sessions[0]["repeats_finished"] == 6 and sessions[0]["cpu_used_s"] > 0

    # The same command again: every repeat is kept as it is.
    before = {p: tree_digest(p) for p in _repeat_dirs(out)}
    assert _bench(tmp_path, TINY, out) == 0
    assert {p: tree_digest(p) for p in _repeat_dirs(out)} == before
    assert len(json.loads((out / "sessions.json").read_text())) == 1  # nothing to run

    # --report rebuilds the same results from the records alone (and --results copies them).
    (out / "results.json").unlink()
    assert _bench(tmp_path, TINY, out, "--report", "--results", str(tmp_path / "pub")) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["problems"] == results["problems"]
    assert (tmp_path / "pub" / "results.json").read_bytes() == (out / "results.json").read_bytes()
    assert sorted(p.name for p in (tmp_path / "pub").iterdir()) == [
        "LJ7-never-table.md", "LJ7-never.png", "LJ7-table.md", "LJ7.png", "repeats",
        "results.json", "sessions.json"]

    # One repeat more per cell: the new ones run, the old ones stay untouched.
    assert _bench(tmp_path, TINY, out, "--repeats", "3") == 0
    grown = _repeat_dirs(out)
    assert sorted(set(grown) - set(before)) == sorted(
        out / p / c / "r02" for p, cells in CELLS.items() for c in cells)
    assert {p: tree_digest(p) for p in before} == before
    results = json.loads((out / "results.json").read_text())
    for problem in results["problems"].values():
        for cell in problem["cells"].values():
            assert cell["repeats"] == cell["finished"] == 3 and cell["seeds"] == [1, 2, 3]


def test_quick_then_full_extends_censored_repeats_by_resuming_them(tmp_path):
    campaign = copy.deepcopy(TINY)
    campaign["problems"] = [TINY["problems"][1]]  # LJ7-never: censored, so it is extended
    campaign["exclude"] = []
    campaign["algorithms"] = [TINY["algorithms"][0]]
    campaign["priors"] = [TINY["priors"][1]]
    campaign["repeats"] = 1
    out = tmp_path / "out"
    assert _bench(tmp_path, campaign, out, "--quick") == 0
    run = out / "LJ7-never" / "RSS" / "morse6-alone" / "r00"
    first = json.loads((run / "bench.json").read_text())
    assert first["oracle_calls"] == 2 and first["success"] is None
    assert json.loads((out / "results.json").read_text())["size"] == "quick"

    assert _bench(tmp_path, campaign, out) == 0  # budget 3: the same run goes on
    record = json.loads((run / "bench.json").read_text())
    assert record["oracle_calls"] == 3 and len(record["sessions"]) == 2
    # a repeat that runs alone is booked for all the sitting's cores
    sitting_cores = [s["cores"] for s in json.loads((out / "sessions.json").read_text())]
    assert [s["cores"] for s in record["sessions"]] == sitting_cores
    assert [e["call"] for e in record["evaluations"]] == [1, 2, 3]
    assert record["evaluations"][:2] == first["evaluations"]
    # the oracle computed each evaluation once: the first two were not redone
    performed = (run / "oracle" / "performed.log").read_text().splitlines()
    assert len(performed) == 3
    assert yaml.safe_load((run / "run.yaml").read_text())["budget"]["oracle_calls"] == 3
    assert len(json.loads((out / "sessions.json").read_text())) == 2


@pytest.mark.slow
def test_sigkill_mid_campaign_then_rerun_loses_and_repeats_nothing(tmp_path):
    budget = 8
    campaign = copy.deepcopy(TINY)
    campaign.update(repeats=2, exclude=[], algorithms=[TINY["algorithms"][0]],
                    priors=[TINY["priors"][1]],
                    oracle={"kind": "calculator", "model": "lj", "delay": 0.5})
    campaign["problems"] = [{**TINY["problems"][1], "budget": {"oracle_calls": budget}}]
    config = _write(tmp_path / "campaign.yaml", campaign)
    site = _write(tmp_path / "site.yaml", HTEX_SITE)
    out = tmp_path / "out"
    args = ("bench", str(config), "--site", str(site), "--out", str(out), "--parallel", "2")
    runs = [out / "LJ7-never" / "RSS" / "morse6-alone" / f"r{r:02d}" for r in (0, 1)]
    coordinator = pesflow(*args)
    deadline = time.monotonic() + 300
    while sum(sum(performed(run).values()) for run in runs) < 5:
        assert coordinator.poll() is None, coordinator.stdout.read()
        assert time.monotonic() < deadline, "the campaign made no progress"
        time.sleep(0.2)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    before = {}
    for run in runs:
        recorded, interruptible = recorded_and_in_flight(
            read_checkpoint(run / "checkpoint.h5"), {"standin": "lj"})
        assert len(recorded) < budget
        before[run] = (set(recorded), interruptible)
    assert leftover_processes(out), "a SIGKILLed coordinator leaves its HTEx processes"

    rerun = pesflow(*args)
    output, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, output
    assert not leftover_processes(out)
    for run in runs:
        assert_nothing_lost_or_repeated(run, budget, *before[run])
        record = json.loads((run / "bench.json").read_text())
        assert record["finished"] and record["success"] is None
        assert [e["call"] for e in record["evaluations"]] == list(range(1, budget + 1))
        # the killed sitting and the rerun, then both cores for the one left running
        assert [s["cores"] for s in record["sessions"]] in ([1.0, 1.0], [1.0, 1.0, 2.0])
    sessions = json.loads((out / "sessions.json").read_text())
    assert [s["state"] for s in sessions] == ["running", "ended"]
    cells = json.loads((out / "results.json").read_text())["problems"]["LJ7-never"]["cells"]
    assert cells["RSS/morse6-alone"]["calls_at_end"] == [budget, budget]


BAD = [
    (lambda c: c.update(colour="red"), "unknown key 'colour'"),
    (lambda c: c["algorithms"][1].update(algorithm="simulated_annealing"),
     "algorithms.REX.algorithm: unknown algorithm"),
    (lambda c: c["priors"].append({"name": "morse6", "prior": "lj"}), "given twice"),
    (lambda c: c["quick"].update(priors=["nope"]), "quick.priors: no prior named 'nope'"),
    (lambda c: c["problems"][0]["success"].update(threshold=-1),
     "problems.LJ7.success.threshold"),
    (lambda c: c["problems"][0]["success"].update(tolerance=1), "unknown key"),
    (lambda c: c["priors"][0].update(name="a/b"), "not a usable name"),
    (lambda c: c["priors"][0].update(prior="chgnet-9"), "unknown model"),
    (lambda c: c["algorithms"][0].update(settings={"stepz": 3}), "stepz"),
    (lambda c: c.update(oracle={"kind": "gpaw"}), "basin test"),
    (lambda c: c["problems"][0].update(success={"criterion": "graph", "structure": "no.xyz"}),
     "no file at"),
    (lambda c: c["problems"][0]["success"].update(criterion="graph", structure="x.xyz"),
     "unknown key 'problems.LJ7.success.energy' (allowed here: candidates, relax_fmax, "
     "relax_steps, bond_factor, tolerance, criterion, structure)"),
    (lambda c: c.update(exclude=[{"algorithm": "RSS"}, {"algorithm": "REX"}]),
     "every cell is excluded"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m for _, m in BAD])
def test_a_bad_campaign_exits_2_with_one_line_and_creates_nothing(tmp_path, capsys, change,
                                                                  message):
    campaign = copy.deepcopy(TINY)
    for entry in campaign["problems"]:
        entry["success"] = dict(entry["success"])
    change(campaign)
    out = tmp_path / "out"
    assert _bench(tmp_path, campaign, out) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not out.exists()


def test_bad_command_lines_exit_2_and_create_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    no_quick = {k: v for k, v in TINY.items() if k != "quick"}
    assert _bench(tmp_path, no_quick, out, "--quick") == 2
    assert "--quick needs a 'quick' block" in capsys.readouterr().err
    assert _bench(tmp_path, TINY, out, "--parallel", "0") == 2
    assert _bench(tmp_path, TINY, out, "--repeats", "0") == 2
    assert _bench(tmp_path, TINY, out, "--only", "LJ8/*") == 2
    assert "--only 'LJ8/*' matches no cell of campaign tiny" in capsys.readouterr().err
    assert not out.exists()
    # a directory that is not a campaign's is left alone
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _bench(tmp_path, TINY, out) == 2
    assert "not a pesflow bench directory" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_only_runs_the_matching_cells_and_reports_every_cell(tmp_path):
    out = tmp_path / "out"
    assert _bench(tmp_path, TINY, out, "--only", "LJ7-never/*", "--repeats", "1") == 0
    ran = {p.relative_to(out).parts[:3] for p in _repeat_dirs(out)}
    assert ran == {("LJ7-never", "RSS", "morse6-alone")}
    results = json.loads((out / "results.json").read_text())
    cells = {problem: {key: cell["finished"] for key, cell in entry["cells"].items()}
             for problem, entry in results["problems"].items()}
    assert cells == {"LJ7": {"RSS/morse6": 0, "REX/morse6": 0},
                     "LJ7-never": {"RSS/morse6-alone": 1}}


def test_a_changed_cell_is_refused_instead_of_mixing_searches(tmp_path, capsys):
    out = tmp_path / "out"
    campaign = copy.deepcopy(TINY)
    campaign["quick"]["budget"] = {"oracle_calls": 1}
    assert _bench(tmp_path, campaign, out, "--quick") == 0
    before = tree_digest(out / "LJ7-never")
    campaign["priors"][1]["prior"] = "morse:rho0=5"
    assert _bench(tmp_path, campaign, out, "--quick") == 2
    assert "was run with another prior" in capsys.readouterr().err
    assert tree_digest(out / "LJ7-never") == before


# ------------------------------------------------------------------- success, no runs


@pytest.mark.parametrize("rc", [50.0, 6.0])
def test_numpy_lj_matches_ase_energy_and_forces(rc):
    rng = np.random.default_rng(3)
    atoms = Icosahedron("Cu", 2)
    atoms.positions = atoms.positions * 2.5 * 2 ** (1 / 6) / 2.55 + rng.normal(0, 0.2, (13, 3))
    calc = LennardJones(sigma=2.5, epsilon=1.0, rc=rc)
    atoms.calc = calc
    energy, gradient = lj_energy_gradient(atoms.positions.ravel(), 13, 2.5, 1.0, rc)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(-gradient.reshape(13, 3), atoms.get_forces(), atol=1e-9)


def test_numpy_relaxation_reaches_the_minimum_ase_reaches():
    rng = np.random.default_rng(4)
    atoms = Icosahedron("Cu", 2)
    atoms.positions = atoms.positions * 2.5 * 2 ** (1 / 6) / 2.55
    ico = lj_local_minimum(atoms, **{k: LJ_DEFAULTS[k] for k in ("sigma", "epsilon", "rc")})
    assert ico == pytest.approx(E_LJ13, abs=1e-4)
    for _ in range(3):
        shaken = atoms.copy()
        shaken.positions += rng.normal(0, 0.35, (13, 3))
        fast = lj_local_minimum(shaken, 2.5, 1.0, 50.0)
        assert fast == pytest.approx(_oracle_basin(shaken), abs=1e-4)


def test_graph_criterion_recognises_the_icosahedron(tmp_path):
    atoms = Icosahedron("Cu", 2)
    atoms.positions = atoms.positions * 2.5 * 2 ** (1 / 6) / 2.55
    relaxed = atoms.copy()
    relaxed.calc = get_calculator("lj")
    from ase.optimize import LBFGS

    LBFGS(relaxed, logfile=None).run(fmax=1e-4)
    write(tmp_path / "ico.xyz", relaxed)
    criterion = Criterion(GraphSuccess(criterion="graph", structure=tmp_path / "ico.xyz"),
                          oracle=None)
    moved = relaxed.copy()
    moved.rotate(40, "z")
    moved.translate([3.0, -1.0, 2.0])
    assert criterion.check(moved, 0.0) == (True, None)
    capped = relaxed.copy()
    capped.positions[12] += [2.0, 0.0, 0.0]  # one atom pulled off the surface
    assert criterion.check(capped, 0.0) == (False, None)


def test_cpu_clock_follows_each_sessions_share_of_the_cores():
    sessions = [{"wall_from": 0.0, "cores": 2.0}, {"wall_from": 10.0, "cores": 0.5}]
    assert cpu_clock(sessions, 5.0) == 10.0
    assert cpu_clock(sessions, 10.0) == 20.0
    assert cpu_clock(sessions, 14.0) == 22.0


def test_the_standin_campaign_is_valid_and_sized():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign" / "standins.yaml"
    campaign = load_campaign(path)
    full = plan_campaign(campaign, "/nonexistent/out")
    assert {c.problem.name for c in full.cells} == {"LJ26", "LJ38"}
    assert {c.algorithm.algorithm for c in full.cells} == {"rss", "basin_hopping", "gofee",
                                                           "rex"}
    assert {c.prior.prior for c in full.cells} >= {"morse:rho0=6", "morse:rho0=3",
                                                   "repulsive"}
    assert {c.prior.delta for c in full.cells} == {True, False}
    assert campaign.repeats >= 10 and len(full.repeats) == len(full.cells) * campaign.repeats
    energies = {p.name: p.success.energy for p in campaign.problems}
    assert energies == {"LJ26": -108.315616, "LJ38": -173.928427}
    quick = plan_campaign(campaign, "/nonexistent/out", quick=True)
    assert len(quick.repeats) < len(full.repeats) // 10


def test_the_real_ag2s_campaign_is_valid_and_leaves_its_references_to_after_the_runs():
    from pesflow.workflows.bench import chosen_after_runs

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign" / "ag2s.yaml"
    campaign = load_campaign(path)
    full = plan_campaign(campaign, "/nonexistent/out")
    assert campaign.oracle.kind == "gpaw"
    assert {c.key for c in full.cells} >= {"Ag4S2/RSS/chgnet", "Ag4S2/REX/chgnet",
                                           "Ag4S2/GOFEE/chgnet", "Ag4S2/REX/repulsive",
                                           "Ag8S4/REX/chgnet", "Ag8S4/GOFEE/chgnet"}
    assert all(chosen_after_runs(p.success) for p in campaign.problems)


def test_the_surface_standin_campaign_compares_algorithms_on_a_close_prior():
    from pesflow.workflows.bench import chosen_after_runs

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign" / "surface-standin.yaml"
    campaign = load_campaign(path)
    full = plan_campaign(campaign, "/nonexistent/out")
    assert campaign.oracle.model == "emt" and campaign.repeats >= 10
    close = {c.algorithm.algorithm for c in full.cells if c.prior.name == "morse"}
    assert close == {"rss", "basin_hopping", "gofee", "rex"}
    assert {c.key for c in full.cells} >= {"Au4-Ag111/REX/morse-alone", "Au4-Ag111/REX/repulsive"}
    (problem,) = campaign.problems
    assert problem.success.criterion == "energy" and chosen_after_runs(problem.success)
    assert problem.success.candidates >= 2  # distinct graphs are relaxed for the reference


def _campaign_script(name: str):
    """A script of benchmarks/campaign/ loaded as a module (they are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_agox_runners_copy_of_the_basin_test_matches_pesflows():
    """agox_runner.py (AGOX's venv, no pesflow) carries a copy of the numpy LJ basin test;
    both sides of the side-by-side benchmark must judge alike."""
    runner = _campaign_script("agox_runner")
    atoms = Icosahedron("Cu", 2)
    atoms.positions = atoms.positions * 1.1 + np.random.default_rng(5).normal(0, 0.3, (13, 3))
    sigma, epsilon, rc = LJ_DEFAULTS["sigma"], LJ_DEFAULTS["epsilon"], LJ_DEFAULTS["rc"]
    x = atoms.positions.ravel()
    ours, theirs = (f(x, 13, sigma, epsilon, rc) for f in
                    (lj_energy_gradient, runner.lj_energy_gradient))
    assert ours[0] == theirs[0]
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert runner.lj_local_minimum(atoms.positions, sigma, epsilon, rc) == \
        lj_local_minimum(atoms, sigma, epsilon, rc)


def test_the_agox_runners_surface_stand_in_is_pesflows():
    """agox_runner.py rebuilds the EMT surface stand-in without pesflow: its slab,
    confinement, prior, Δ-model, GOFEE settings and reference must be the campaign's."""
    from pesflow.structures.problem import emt_surface

    runner = _campaign_script("agox_runner")
    campaign_dir = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign"
    campaign = load_campaign(campaign_dir / "surface-standin.yaml")
    (entry,) = campaign.problems
    assert entry.name == runner.SURFACE["name"]
    problem = emt_surface(adsorbates=runner.SURFACE["adsorbates"])
    assert problem.symbols == entry.problem.build().symbols
    slab, cell, corner = runner.surface_slab()
    assert slab.get_chemical_symbols() == problem.template.get_chemical_symbols()
    np.testing.assert_allclose(slab.positions, problem.template.positions, atol=1e-12)
    np.testing.assert_allclose(slab.cell.array, problem.template.cell.array, atol=1e-12)
    assert list(slab.pbc) == list(problem.template.pbc)
    np.testing.assert_allclose(cell, problem.confinement.cell, atol=1e-12)
    np.testing.assert_allclose(corner, problem.confinement.corner, atol=1e-12)
    priors = {p.name: p.prior for p in campaign.priors}
    assert priors["morse"] == "morse:" + ",".join(
        f"{k}={v:g}" for k, v in runner.SURFACE_PRIOR.items())
    assert campaign.model_settings == runner.SURFACE_MODEL
    settings = {a.algorithm: a.settings for a in campaign.algorithms}
    assert settings["gofee"] == runner.SURFACE_GOFEE
    assert {k: runner.REX[k] for k in settings["rex"]} == settings["rex"]
    assert runner.SURFACE_SUCCESS["threshold"] == entry.success.threshold
    results = json.loads((campaign_dir / "surface-standin" / "results.json").read_text())
    reference = results["problems"][entry.name]["reference"]["energy"]
    assert runner.SURFACE_SUCCESS["energy"] == reference
    # pesflow's side-by-side sitting: the same problem and cells, the reference fixed
    sitting = load_campaign(campaign_dir / "surface-standin-sitting13.yaml")
    (again,) = sitting.problems
    assert again.problem == entry.problem and again.success.energy == reference
    assert sitting.model_settings == campaign.model_settings
    assert {a.algorithm: a.settings for a in sitting.algorithms} == {
        k: v for k, v in settings.items() if k in ("gofee", "rex")}
    assert {p.name: p.prior for p in sitting.priors} == {"morse": priors["morse"]}


def _agox_database(path: Path, rows: int) -> None:
    """A database with AGOX's tables (the columns the runner touches) and ``rows``
    structures, each with a key-value row."""
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("create table structures (id integer primary key autoincrement, "
                "energy real, iteration int)")
    con.execute("create table float_key_values (key text, value real, id integer)")
    for i in range(rows):
        cur = con.execute("insert into structures values (NULL, ?, ?)", (-float(i), i // 2))
        con.execute("insert into float_key_values values ('time', 1.0, ?)", (cur.lastrowid,))
    con.commit()
    con.close()


def test_an_unfinished_agox_gofee_repeat_resumes_only_where_its_files_fit(tmp_path):
    """agox_runner resumes an unfinished GOFEE repeat from resume.json when the record
    asks for the same repeat and the frames and database reach the resume point; it
    drops the database rows of the unfinished iteration. Anything else is run afresh."""
    import sqlite3

    runner = _campaign_script("agox_runner")
    base = {"format": runner.RECORD_FORMAT, "problem": "LJ38", "algorithm": "AGOX-GOFEE",
            "engine": "gofee", "seed": 1, "settings": {"a": 1},
            "budget": {"oracle_calls": 200}, "early_stop": True}
    repeat = tmp_path / "r00"
    repeat.mkdir()
    (repeat / runner.RECORD).write_text(json.dumps({**base, "finished": False}))
    (repeat / runner.FRAMES).write_text("x" * 100)
    _agox_database(repeat / runner.DATABASE, 9)
    assert runner.repeat_status(repeat, base) == "redo"  # no resume point yet
    point = {"iteration": 4, "candidates": 8, "database_rows": 8,
             "journal": {"frames_bytes": 80, "calls": 8}}
    (repeat / runner.CHECKPOINT).write_text(json.dumps(point))
    assert runner.repeat_status(repeat, base) == "resume"
    assert runner.repeat_status(repeat, {**base, "seed": 2}) == "redo"
    rex = {**base, "engine": "rex", "algorithm": "AGOX-REX"}
    (repeat / runner.RECORD).write_text(json.dumps({**rex, "finished": False}))
    assert runner.repeat_status(repeat, rex) == "redo"  # REX walkers are not on disk

    assert runner.resume_point(repeat) == point
    for frames_bytes, rows, why in ((101, 8, "shorter"), (80, 10, "has 9 rows")):
        (repeat / runner.CHECKPOINT).write_text(json.dumps(
            {**point, "database_rows": rows, "journal": {"frames_bytes": frames_bytes}}))
        with pytest.raises(runner.ResumeError, match=why):
            runner.resume_point(repeat)
    (repeat / runner.DATABASE).unlink()
    with pytest.raises(runner.ResumeError, match="missing"):
        runner.resume_point(repeat)
    assert not (repeat / runner.DATABASE).exists()  # not made by looking

    _agox_database(repeat / runner.DATABASE, 9)
    runner.drop_database_rows_after(repeat / runner.DATABASE, 8)
    with sqlite3.connect(repeat / runner.DATABASE) as con:
        assert [r[0] for r in con.execute("select id from structures")] == list(range(1, 9))
        assert con.execute("select max(id) from float_key_values").fetchone()[0] == 8


AGOX_PYTHON = Path(__file__).resolve().parents[1] / ".venv-agox" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not AGOX_PYTHON.exists(),
                    reason="needs AGOX's venv .venv-agox (docs/BENCHMARKS.md, AGOX side)")
def test_an_agox_gofee_repeat_killed_mid_run_resumes_to_an_unbroken_repeats_calls(tmp_path):
    """A GOFEE repeat killed (SIGKILL) after its 7th oracle call and started again makes
    the very calls an unbroken repeat with the same seed makes (about 3 min)."""
    import os
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign" / "agox_runner.py"
    command = [str(AGOX_PYTHON), str(script), "--problem", "LJ26", "--algorithm", "gofee",
               "--repeats", "1", "--budget", "10", "--run-to-budget", "--out"]
    subprocess.run([*command, str(tmp_path / "unbroken")], check=True, timeout=900)
    killed = subprocess.Popen([*command, str(tmp_path / "broken")], start_new_session=True)
    repeat = tmp_path / "broken" / "LJ26" / "AGOX-GOFEE" / "morse6" / "r00"
    try:
        deadline = time.monotonic() + 600
        while not (repeat / "evaluations.extxyz").exists() or \
                (repeat / "evaluations.extxyz").read_text().count("\n26\n") < 6:
            assert killed.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    assert (repeat / "resume.json").exists()
    assert not json.loads((repeat / "record.json").read_text())["finished"]
    subprocess.run([*command, str(tmp_path / "broken")], check=True, timeout=900)

    record = json.loads((repeat / "record.json").read_text())
    assert record["finished"] and record["oracle_calls"] == 10
    first, resumed = record["sittings"]
    assert first["from_call"] == 0 and 0 < resumed["from_call"] < 10 and resumed["exact"]
    unbroken = read(tmp_path / "unbroken" / repeat.relative_to(tmp_path / "broken")
                    / "evaluations.extxyz", ":")
    broken = read(repeat / "evaluations.extxyz", ":")
    assert [a.info["call"] for a in broken] == list(range(1, 11))
    for a, b in zip(unbroken, broken, strict=True):
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.positions, b.positions)


def test_agox_compare_refuses_a_repeat_whose_fixed_slab_moved(tmp_path):
    """The side-by-side judge checks each AGOX evaluation holds pesflow's fixed slab."""
    from pesflow.errors import InputError
    from pesflow.structures.problem import emt_surface

    compare = _campaign_script("agox_compare")
    problem = emt_surface(adsorbates="Au2")
    atoms = problem.assemble(problem.confinement.sample(2, np.random.default_rng(0)))
    atoms.calc = get_calculator("emt")
    energy = atoms.get_potential_energy()
    atoms.info.update(call=1, wall_time=1.0, cpu_time=1.0)
    write(tmp_path / compare.FRAMES, atoms, format="extxyz")
    record = {"seed": 1, "oracle_calls": 1, "wall_time": 1.0, "cpu_time": 1.0,
              "budget": {"oracle_calls": 1}, "success": None}

    class Energy:  # the energy criterion: success within 0.05 eV of a given energy
        def check(self, atoms, e):
            return e <= energy + 0.05, None

    judged = compare.judge_repeat(tmp_path, record, Energy(), problem.template)
    assert judged["success"]["call"] == 1 and judged["best_energy"] == pytest.approx(energy)
    atoms.positions[3, 2] += 0.01  # one slab atom moved
    write(tmp_path / compare.FRAMES, atoms, format="extxyz")
    with pytest.raises(InputError, match="fixed atoms"):
        compare.judge_repeat(tmp_path, record, Energy(), problem.template)


def test_the_rex_target_counts_overlapping_bands_as_equal_and_needs_a_success():
    """agox_compare.py's verdict on issue #7's target, from two REX cells' repeats."""
    from pesflow.search.success import success_curve

    compare = _campaign_script("agox_compare")

    def cell(successes: list, seconds_per_call: float) -> dict:
        ends = [c if c is not None else 100 for c in successes]
        return {"finished": len(successes), "calls_at_end": ends,
                "wall_s_at_end": [seconds_per_call * n for n in ends],
                "curve_calls": success_curve(successes, ends).todict()}

    ten = [None] * 10
    ahead = compare.rex_target(100, cell([10, 40, 90, *ten[3:]], 2.0), cell(ten, 9.0))
    assert ahead["holds"] and ahead["either_succeeds"]
    assert [b["calls"] for b in ahead["budgets"]] == [25, 50, 100]
    assert ahead["wall_s_per_call"]["ratio"] == pytest.approx(4.5)
    assert "holds" in compare.target_text("LJ26", ahead)
    # behind by one success: the bands overlap, so it counts as equal
    close = compare.rex_target(100, cell([30, *ten[1:]], 2.0), cell([20, 30, *ten[2:]], 9.0))
    assert close["holds"] and close["budgets"][1]["pesflow"][0] < close["budgets"][1]["agox"][0]
    # far behind: 0 of 10 against 10 of 10 at 100 calls
    behind = compare.rex_target(100, cell(ten, 2.0), cell([60] * 10, 9.0))
    assert not behind["holds"] and not behind["budgets"][2]["at_least"]
    assert "does not hold" in compare.target_text("LJ26", behind)
    # neither succeeds: equal bands, yet the target cannot be shown
    none = compare.rex_target(100, cell(ten, 2.0), cell(ten, 9.0))
    assert not none["holds"] and all(b["at_least"] for b in none["budgets"])
    assert "cannot be shown" in compare.target_text("LJ38", none)
    # slower per call
    assert not compare.rex_target(100, cell([10] * 10, 9.5), cell(ten, 9.0))["holds"]
    assert compare.rex_target(100, None, cell(ten, 9.0)) is None


def _lj7_rss_campaign(success: dict) -> dict:
    """TINY cut to one cell, LJ7 with RSS on Morse ρ0 = 6 + Δ, 2 repeats of 3 calls."""
    campaign = {k: v for k, v in copy.deepcopy(TINY).items() if k not in ("exclude", "quick")}
    campaign["problems"] = [{"name": "LJ7", "problem": {"system": "lj_cluster", "n": 7},
                             "success": success, "budget": {"oracle_calls": 3}}]
    campaign["algorithms"] = campaign["algorithms"][:1]
    campaign["priors"] = campaign["priors"][:1]
    return campaign


def test_a_reference_chosen_after_the_runs_is_relaxed_once_and_judges_every_repeat(tmp_path):
    from pesflow.structures.identity import same_graph

    campaign = _lj7_rss_campaign({"criterion": "graph", "candidates": 2})
    out = tmp_path / "out"
    assert _bench(tmp_path, campaign, out) == 0
    folder = out / "LJ7" / "reference"
    chosen = json.loads((folder / "reference.json").read_text())
    reference = read(folder / "reference.extxyz")
    # the lowest evaluation over both repeats was a candidate, relaxed in the oracle
    records = {p.name: json.loads((p / "bench.json").read_text()) for p in _repeat_dirs(out)}
    assert all(r["oracle_calls"] == 3 for r in records.values())  # nothing judged mid-run
    assert any(r["success"] for r in records.values())  # at least the source's repeat
    lowest = min(e["energy"] for r in records.values() for e in r["evaluations"])
    assert chosen["sources"][0]["energy"] == pytest.approx(lowest)
    check = reference.copy()
    check.calc = LennardJones(**LJ_DEFAULTS)
    assert np.linalg.norm(check.get_forces(), axis=1).max() < 0.05
    assert check.get_potential_energy() == pytest.approx(chosen["energy"], abs=1e-9)
    assert chosen["energy"] <= min(c["relaxed_energy"] for c in chosen["candidates"])
    # every repeat judged by graph identity with it, first match = success
    for name, record in records.items():
        saved = read_checkpoint(out / "LJ7" / "RSS" / "morse6" / name / "checkpoint.h5")
        matches = [meta["call"] for meta, atoms in zip(saved.state["evaluations"],
                                                       saved.structures, strict=True)
                   if same_graph(atoms, reference)]
        assert record["reference"] == chosen["digest"]
        assert (record["success"] or {}).get("call") == (min(matches) if matches else None)
    results = json.loads((out / "results.json").read_text())
    assert results["problems"]["LJ7"]["reference"]["digest"] == chosen["digest"]
    # a second report relaxes nothing again
    points = sorted(p.name for p in (folder / "oracle").iterdir())
    assert _bench(tmp_path, campaign, out, "--report") == 0
    assert sorted(p.name for p in (folder / "oracle").iterdir()) == points
    assert json.loads((folder / "reference.json").read_text()) == chosen


def test_reference_candidates_are_relaxed_at_once_as_the_site_allows(tmp_path, monkeypatch):
    """Each candidate's relaxation is a chain of oracle points (minutes each with GPAW):
    they run side by side, as many as the site runs oracle jobs at once."""
    import threading

    from pesflow.executors.site import parse_site
    from pesflow.workflows import bench

    campaign = _lj7_rss_campaign({"criterion": "graph", "candidates": 2})
    out = tmp_path / "out"
    assert _bench(tmp_path, campaign, out) == 0
    sequential = json.loads((out / "LJ7" / "reference" / "reference.json").read_text())
    shutil.rmtree(out / "LJ7" / "reference")

    # the real LJ oracle, but each relaxation's first point waits for the other's: run
    # one after the other, the first waits in vain and the barrier breaks
    both_started = threading.Barrier(2, timeout=60)
    real = bench._reference_calculator

    def meeting(*args):
        calculator = real(*args)
        calculate, met = calculator.calculate, []

        def calculate_after_meeting(*call, **kwargs):
            if not met:
                met.append(True)
                both_started.wait()
            return calculate(*call, **kwargs)

        calculator.calculate = calculate_after_meeting
        return calculator

    monkeypatch.setattr(bench, "_reference_calculator", meeting)
    two = parse_site({**THREADS_SITE, "dft": {"workers": 2, "ranks": 1}, "cores": 2})
    assert bench.reference_slots(load_campaign(out / "campaign.yaml").oracle, two) == 2
    plan = plan_campaign(load_campaign(out / "campaign.yaml"), out)
    chosen = bench.settle_reference(plan, "LJ7", two)
    assert not both_started.broken
    # the same reference and figures as the one-at-a-time relaxation
    drop = ("seconds",)
    assert [{k: v for k, v in c.items() if k not in drop} for c in chosen["candidates"]] == \
        [{k: v for k, v in c.items() if k not in drop} for c in sequential["candidates"]]
    assert chosen["digest"] == sequential["digest"]


def test_a_report_that_relaxes_a_reference_books_its_cpu_time(tmp_path):
    campaign = _lj7_rss_campaign({"criterion": "graph", "candidates": 2})
    out = tmp_path / "out"
    assert _bench(tmp_path, campaign, out) == 0
    sittings = json.loads((out / "sessions.json").read_text())
    shutil.rmtree(out / "LJ7" / "reference")  # as if the sitting was stopped before it
    assert _bench(tmp_path, campaign, out, "--report") == 0
    booked = json.loads((out / "sessions.json").read_text())
    assert booked[:len(sittings)] == sittings and len(booked) == len(sittings) + 1
    points = sum(p.is_dir() for p in (out / "LJ7" / "reference" / "oracle").iterdir())
    assert booked[-1]["reference_points"] == points > 0
    assert booked[-1]["state"] == "ended" and booked[-1]["repeats_finished"] == 0
    assert booked[-1]["cores"] == sittings[0]["cores"]  # booked like a sitting of the site
    assert booked[-1]["cpu_allocated_s"] == pytest.approx(
        booked[-1]["cores"] * booked[-1]["wall_s"])
    results = json.loads((out / "results.json").read_text())
    assert results["cpu_hours"]["allocated"] == pytest.approx(
        sum(s["cpu_allocated_s"] for s in booked) / 3600)
    # a report that computes nothing books nothing
    assert _bench(tmp_path, campaign, out, "--report") == 0
    assert json.loads((out / "sessions.json").read_text()) == booked


def test_reference_slots_follow_the_site():
    import os

    from pesflow.executors.site import load_site
    from pesflow.workflows.bench import reference_slots

    root = Path(__file__).resolve().parents[1]
    gpaw = load_campaign(root / "benchmarks" / "campaign" / "ag2s.yaml").oracle
    shared, htex = (load_site(root / "site-configs" / f"{name}.yaml")
                    for name in ("local-shared", "local-htex"))
    assert reference_slots(gpaw, None) == 1
    # 2 single-core workers, as many at once as the machine has cores for
    assert reference_slots(gpaw, shared) == min(2, os.cpu_count())
    # one 2-rank GPAW job at a time, as in the runs
    assert reference_slots(gpaw, htex) == 1


def test_repeats_waiting_for_a_reference_are_reported_as_not_judged(tmp_path, capsys):
    campaign = _lj7_rss_campaign({"criterion": "graph"})
    campaign["algorithms"] = copy.deepcopy(TINY["algorithms"])  # RSS and REX
    out, results_dir = tmp_path / "out", tmp_path / "published"
    # RSS finishes; the reference waits for REX's repeats
    config = _write(tmp_path / "campaign.yaml", campaign)
    site = _write(tmp_path / "site.yaml", THREADS_SITE)
    assert main(["bench", str(config), "--site", str(site), "--out", str(out),
                 "--only", "LJ7/RSS/*", "--results", str(results_dir)]) == 0
    said = capsys.readouterr().out
    assert said.count("to be judged once every repeat finished") == 2, said
    assert "LJ7 RSS/morse6: 0/2 found (2 planned), median calls to success –; 2 not judged yet" \
        in said
    assert _bench(tmp_path, campaign, out, "--report") == 0  # nor from a report
    assert not (out / "LJ7" / "reference").exists()
    results = json.loads((out / "results.json").read_text())
    rss = results["problems"]["LJ7"]["cells"]["RSS/morse6"]
    assert (rss["finished"], rss["judged"], rss["successes"], rss["censored"]) == (2, 0, 0, 0)
    assert "curve_calls" not in rss and rss["calls_at_end"] == [3, 3]
    table = (out / "LJ7-table.md").read_text()
    assert "| RSS | 2 | – | not judged yet |" in table and "REX" not in table
    assert not (out / "LJ7.png").exists() and not (results_dir / "LJ7.png").exists()
    # the rest finishes: the reference is chosen and every repeat judged
    assert _bench(tmp_path, campaign, out, "--results", str(results_dir)) == 0
    results = json.loads((results_dir / "results.json").read_text())
    cells = results["problems"]["LJ7"]["cells"]
    assert results["problems"]["LJ7"]["reference"]["digest"]
    for cell in cells.values():
        assert cell["judged"] == cell["finished"] == 2
        assert cell["successes"] + cell["censored"] == 2 and "curve_calls" in cell
    assert "not judged" not in (out / "LJ7-table.md").read_text()
    assert (results_dir / "LJ7.png").exists()


def test_an_energy_reference_chosen_after_the_runs_judges_by_its_energy(tmp_path):
    from pesflow.structures.identity import same_graph

    campaign = _lj7_rss_campaign({"criterion": "energy", "threshold": 0.3, "candidates": 2})
    out = tmp_path / "out"
    assert _bench(tmp_path, campaign, out) == 0
    folder = out / "LJ7" / "reference"
    chosen = json.loads((folder / "reference.json").read_text())
    assert len(chosen["candidates"]) == 2
    # the candidates are the lowest evaluations of distinct graphs
    def structure(source):
        saved = read_checkpoint(out / source["repeat"] / "checkpoint.h5")
        return next(atoms for meta, atoms in zip(saved.state["evaluations"], saved.structures,
                                                 strict=True) if meta["call"] == source["call"])

    first, second = chosen["sources"]
    assert first["energy"] <= second["energy"]
    assert not same_graph(structure(first), structure(second))
    assert chosen["energy"] == min(c["relaxed_energy"] for c in chosen["candidates"])
    assert chosen["energy"] < chosen["sources"][0]["energy"]  # relaxed below the raw one
    for path in _repeat_dirs(out):
        record = json.loads((path / "bench.json").read_text())
        hits = [e["call"] for e in record["evaluations"]
                if e["energy"] <= chosen["energy"] + 0.3]
        assert (record["success"] or {}).get("call") == (min(hits) if hits else None)


def test_published_results_carry_finished_repeats_to_another_machine(tmp_path, capsys):
    """--out is lost between sittings (another machine): the next sitting restores the
    finished repeats from --results, runs only the rest, chooses the reference from all
    of them; a report on a third machine rebuilds the same results without any oracle."""
    campaign = _lj7_rss_campaign({"criterion": "graph"})
    campaign["algorithms"] = copy.deepcopy(TINY["algorithms"])  # RSS and REX
    pub = tmp_path / "published"
    assert _bench(tmp_path, campaign, tmp_path / "a", "--only", "LJ7/RSS/*",
                  "--results", str(pub)) == 0
    rss = {p.name: (p / "bench.json").read_bytes() for p in _repeat_dirs(tmp_path / "a")}
    assert sorted(p.name for p in (pub / "repeats/LJ7/RSS/morse6/r00").iterdir()) == [
        "bench.json", "evaluations.json", "run.yaml"]

    b = tmp_path / "b"  # another machine: only the published directory came along
    assert _bench(tmp_path, campaign, b, "--results", str(pub)) == 0
    for name, record in rss.items():
        restored = b / "LJ7/RSS/morse6" / name
        assert (restored / "restored.json").exists() and not (restored / "checkpoint.h5").exists()
        # run once, on the first machine; judged here against the reference
        assert json.loads((restored / "bench.json").read_text())["sessions"] == \
            json.loads(record)["sessions"]
        judged = json.loads((restored / "bench.json").read_text())
        assert judged["reference"] and len(judged["evaluations"]) == 3
        assert judged["evaluations"][0]["success"] is not None  # judged from the archive
    assert (b / "LJ7/REX/morse6/r00/checkpoint.h5").exists()
    results = json.loads((pub / "results.json").read_text())
    chosen = results["problems"]["LJ7"]["reference"]
    assert chosen["finished_repeats"] == 4  # the restored RSS repeats were candidates too
    for cell in results["problems"]["LJ7"]["cells"].values():
        assert cell["judged"] == cell["finished"] == 2
    assert results["cpu_hours"]["sessions"] == 2  # both machines' sittings
    assert len(json.loads((pub / "sessions.json").read_text())) == 2

    c = tmp_path / "c"  # a third machine: a report only
    capsys.readouterr()
    assert _bench(tmp_path, campaign, c, "--report", "--results", str(tmp_path / "pub-c")) == 2
    assert "holds no campaign.yaml" in capsys.readouterr().err
    assert not c.exists()
    assert _bench(tmp_path, campaign, c, "--report", "--results", str(pub)) == 0
    assert not (c / "LJ7/reference/oracle").exists()  # the reference came along, not relaxed
    again = json.loads((pub / "results.json").read_text())
    assert again["problems"] == results["problems"]
    # published again elsewhere from restored repeats: the archive is whole there too
    assert _bench(tmp_path, campaign, c, "--report", "--results", str(tmp_path / "pub2")) == 0
    assert tree_digest(tmp_path / "pub2" / "repeats") == tree_digest(pub / "repeats")


def test_results_published_before_repeats_were_archived_are_kept(tmp_path, capsys):
    pub, a, b = tmp_path / "published", tmp_path / "a", tmp_path / "b"
    assert _bench(tmp_path, TINY, a, "--results", str(pub)) == 0
    before = json.loads((pub / "results.json").read_text())
    figure = (pub / "LJ7.png").read_bytes()
    shutil.rmtree(pub / "repeats")  # as published by pesflow before it archived repeats
    (pub / "sessions.json").unlink()
    capsys.readouterr()
    assert main(["bench", str(tmp_path / "campaign.yaml"), "--site", str(tmp_path / "site.yaml"),
                 "--out", str(b), "--only", "LJ7-never/*", "--results", str(pub)]) == 0
    assert "LJ7: kept as published (published earlier" in capsys.readouterr().out
    after = json.loads((pub / "results.json").read_text())
    kept = after["problems"]["LJ7"]
    assert kept.pop("kept").startswith("published earlier") and kept == before["problems"]["LJ7"]
    assert (pub / "LJ7.png").read_bytes() == figure
    assert "kept" not in after["problems"]["LJ7-never"]  # rebuilt: as many repeats as before
    assert after["cpu_hours"]["sessions"] == 2  # the earlier total and this sitting
    assert after["cpu_hours"]["allocated"] > before["cpu_hours"]["allocated"]

    # a restored censored repeat cannot run past its budget: refused before anything is written
    bigger = copy.deepcopy(TINY)
    bigger["problems"][1]["budget"] = {"oracle_calls": 4}
    c = tmp_path / "c"
    assert _bench(tmp_path, TINY, c, "--only", "LJ7-never/*", "--results", str(pub)) == 0
    shutil.rmtree(c)
    capsys.readouterr()
    assert _bench(tmp_path, bigger, c, "--only", "LJ7-never/*", "--results", str(pub)) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be extended here" in err and len(err.splitlines()) == 1
    assert not c.exists()
    # nor are a quick run's results published over the full ones
    assert _bench(tmp_path, TINY, c, "--quick", "--results", str(pub)) == 2
    assert "full-size results" in capsys.readouterr().err and not c.exists()
