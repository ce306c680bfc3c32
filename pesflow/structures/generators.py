"""Candidate generators: random placement, rattle, and the K-means sampler of GOFEE.

Bond rules (SPEC.md §2): no two atoms closer than ``min_factor`` × (r_cov,i + r_cov,j) and
every atom within ``max_factor`` × (r_cov,i + r_cov,j) of at least one other atom (template
atoms count as neighbours and obstacles; periodic images are seen through the minimum image).
The paper's rule, "60% of the average covalent radius, and one atom within 3× that", is
``min_factor = 0.3, max_factor = 0.9``; AGOX's is ``0.75, 1.25``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.geometry import get_distances

from pesflow.structures.problem import Problem

#: Candidate positions drawn at once per placement attempt (vectorized rejection sampling).
_BATCH = 128


class GenerationError(RuntimeError):
    """No structure satisfying the bond rules was found within the attempt limits."""


@dataclass(frozen=True)
class BondRule:
    """Distance rules for generated structures, in units of the sum of covalent radii.

    Parameters
    ----------
    min_factor
        No pair closer than ``min_factor * (r_i + r_j)``.
    max_factor
        Every atom has a neighbour within ``max_factor * (r_i + r_j)``.
    """

    min_factor: float = 0.3
    max_factor: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.min_factor < self.max_factor:
            raise ValueError(
                f"bond rule needs 0 < min_factor < max_factor, got {self.min_factor}, "
                f"{self.max_factor}"
            )

    @classmethod
    def paper(cls) -> BondRule:
        """60% of the average covalent radius; a neighbour within 3× that (the paper)."""
        return cls(0.3, 0.9)

    @classmethod
    def agox(cls) -> BondRule:
        """AGOX's 0.75–1.25 × the sum of covalent radii."""
        return cls(0.75, 1.25)

    def todict(self) -> dict:
        return {"min_factor": self.min_factor, "max_factor": self.max_factor}


def _radii(numbers: np.ndarray) -> np.ndarray:
    return covalent_radii[np.asarray(numbers, dtype=int)]


def _distances(points: np.ndarray, others: np.ndarray, atoms: Atoms) -> np.ndarray:
    """(len(points), len(others)) distances, minimum image in the periodic directions."""
    if len(points) == 0 or len(others) == 0:
        return np.zeros((len(points), len(others)))
    if atoms.pbc.any():
        return get_distances(points, others, cell=atoms.cell, pbc=atoms.pbc)[1]
    return np.linalg.norm(points[:, None, :] - others[None, :, :], axis=-1)


def bond_violations(
    atoms: Atoms, rule: BondRule, indices: Sequence[int] | None = None
) -> list[str]:
    """Describe every violation of ``rule`` by the atoms ``indices`` (default: all).

    A pair is checked when at least one of its atoms is in ``indices``; the neighbour rule
    is checked for the atoms in ``indices`` (against all atoms).
    """
    n = len(atoms)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=int)
    if n < 2 or len(idx) == 0:
        return []
    d = _distances(atoms.positions[idx], atoms.positions, atoms)
    r = _radii(atoms.numbers)
    rsum = r[idx][:, None] + r[None, :]
    d[np.arange(len(idx)), idx] = np.inf  # no self-pairs
    problems = []
    too_close = np.argwhere(d < rule.min_factor * rsum - 1e-9)
    for a, b in too_close:
        limit = rule.min_factor * rsum[a, b]
        problems.append(f"atoms {idx[a]} and {b} at {d[a, b]:.3f} Å < {limit:.3f} Å")
    lonely = ~(d <= rule.max_factor * rsum + 1e-9).any(axis=1)
    for a in np.flatnonzero(lonely):
        problems.append(
            f"atom {idx[a]} has no neighbour within {rule.max_factor} × the covalent sum "
            f"(nearest {d[a].min():.3f} Å)"
        )
    return problems


def random_structure(
    problem: Problem,
    rng: np.random.Generator,
    rule: BondRule | None = None,
    max_batches: int = 50,
    max_restarts: int = 100,
    placement: str = "uniform",
) -> Atoms:
    """Place the problem's atoms at random inside its confinement, obeying ``rule``.

    Atoms are placed one after another subject to the bond rule against the template and
    the atoms already placed (vectorized rejection sampling). ``placement="uniform"``
    draws each atom uniformly in the confinement (the paper); ``"grow"`` draws it in the
    shell between the rule's two distances around a random atom already there (AGOX's
    way; pair it with ``BondRule.agox()``). When an atom finds no place, the structure
    is started again.

    Raises
    ------
    GenerationError
        When ``max_restarts`` attempts all fail (confinement too small or rule too strict).
    """
    if placement not in ("uniform", "grow"):
        raise ValueError(f"placement must be 'uniform' or 'grow', got {placement!r}")
    rule = rule or BondRule.paper()
    template = problem.template
    numbers = Atoms(problem.symbols).numbers
    r_new = _radii(numbers)
    r_tpl = _radii(template.numbers)
    for _ in range(max_restarts):
        placed = np.empty((0, 3))
        for k in range(len(numbers)):
            others = np.vstack([template.positions, placed])
            r_others = np.concatenate([r_tpl, r_new[:k]])
            position = None
            for _ in range(max_batches):
                if placement == "grow" and len(others):
                    anchor = rng.integers(len(others), size=_BATCH)
                    rsum = r_new[k] + r_others[anchor]
                    radius = rsum * rng.uniform(rule.min_factor, rule.max_factor, _BATCH)
                    trial = others[anchor] + _uniform_ball(_BATCH, 1.0, rng, surface=True) * (
                        radius[:, None]
                    )
                    trial = trial[problem.confinement.contains(trial)]
                else:
                    trial = problem.confinement.sample(_BATCH, rng)
                if len(trial) == 0:
                    continue
                if len(others) == 0:
                    position = trial[0]
                    break
                d = _distances(trial, others, template)
                rsum = r_new[k] + r_others[None, :]
                ok = (d >= rule.min_factor * rsum).all(axis=1) & (
                    d <= rule.max_factor * rsum
                ).any(axis=1)
                if ok.any():
                    position = trial[np.argmax(ok)]
                    break
            if position is None:
                break
            placed = np.vstack([placed, position])
        else:
            return problem.assemble(placed)
    raise GenerationError(
        f"problem {problem.name!r}: could not place {len(numbers)} atoms with bond rule "
        f"{rule.todict()} in {max_restarts} attempts; enlarge the confinement or relax the rule"
    )


def _uniform_ball(
    n: int, radius: float, rng: np.random.Generator, surface: bool = False
) -> np.ndarray:
    """``n`` points uniform in a ball (or on its sphere with ``surface``)."""
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    if surface:
        return direction * radius
    return direction * (radius * rng.random(n) ** (1 / 3))[:, None]


def rattle(
    problem: Problem,
    atoms: Atoms,
    amplitude: float,
    rng: np.random.Generator,
    rule: BondRule | None = None,
    fraction: float = 1.0,
    max_batches: int = 8,
) -> Atoms:
    """Displace placed atoms uniformly within a sphere of radius ``amplitude`` (Å).

    Each selected atom (all, or each with probability ``fraction``, at least one) is moved
    in random order to a position inside the confinement that keeps the bond rule: no
    pair too close, the moved atom has a neighbour, and no other atom loses its last
    neighbour. An atom with no such position in ``max_batches`` × 128 draws stays put.
    When the input breaks the neighbour rule (a relaxed structure with bonds longer than
    ``max_factor`` × the covalent sum), the rule's neighbour distance is widened to the
    input's largest nearest-neighbour ratio, so the output is never less connected than
    the input; a valid input always gives a valid output.
    """
    rule = rule or BondRule.paper()
    new = atoms.copy()
    new.calc = None
    n_tpl = problem.n_template
    n = len(new)
    r = _radii(new.numbers)
    rsum = r[:, None] + r[None, :]
    d = _distances(new.positions, new.positions, new)
    np.fill_diagonal(d, np.inf)
    worst = float((d / rsum)[n_tpl:].min(axis=1).max()) if n > 1 else 0.0
    max_factor = max(rule.max_factor, worst)
    limit = max_factor * rsum
    placed = np.arange(n_tpl, n)
    chosen = placed[rng.random(len(placed)) < fraction] if fraction < 1 else placed.copy()
    if len(chosen) == 0:
        chosen = rng.choice(placed, size=1)
    for i in rng.permutation(chosen):
        neighbours = d <= limit  # current neighbour relation
        # atoms whose only neighbour is i must stay neighbours of i
        lonely = neighbours[:, i] & (neighbours.sum(axis=1) == 1)
        lonely[:n_tpl] = False
        dependants = np.flatnonzero(lonely)
        others = np.delete(np.arange(n), i)
        for _ in range(max_batches):
            trial = new.positions[i] + _uniform_ball(_BATCH, amplitude, rng)
            inside = problem.confinement.contains(trial)
            dt = _distances(trial, new.positions[others], new)
            ok = (
                inside
                & (dt >= rule.min_factor * rsum[i, others]).all(axis=1)
                & (dt <= limit[i, others]).any(axis=1)
            )
            if len(dependants):
                dep = np.searchsorted(others, dependants)
                ok &= (dt[:, dep] <= limit[i, dependants]).all(axis=1)
            if ok.any():
                j = np.argmax(ok)
                new.positions[i] = trial[j]
                d[i, others] = d[others, i] = dt[j]
                break
    return new


def kmeans_sample(
    structures: Sequence[Atoms],
    energies: Sequence[float],
    n_clusters: int,
    rng: np.random.Generator,
    feature: Callable[[Atoms], np.ndarray] | None = None,
    energy_window: float = 5.0,
) -> list[int]:
    """GOFEE's walker selection: K-means on the pool, lowest-energy member per cluster.

    Only structures with ``E <= E_min + energy_window * 2**i`` take part, with the
    smallest ``i`` that leaves at least ``n_clusters`` of them (AGOX). The number of
    clusters is ``min(n_clusters, len(pool))``.

    Returns
    -------
    list[int]
        Indices into ``structures`` of the chosen walkers, lowest energy first.
    """
    from sklearn.cluster import KMeans

    energies = np.asarray(energies, dtype=float)
    if len(structures) == 0:
        return []
    k = min(n_clusters, len(structures))
    window = energy_window
    while (keep := np.flatnonzero(energies <= energies.min() + window)).size < k:
        window *= 2
    feature = feature or sorted_distances
    x = np.array([feature(structures[i]) for i in keep])
    if k == 1:
        labels = np.zeros(len(keep), dtype=int)
    else:
        seed = int(rng.integers(2**31 - 1))
        labels = KMeans(n_clusters=k, init="k-means++", n_init=3, random_state=seed).fit_predict(x)
    chosen = []
    for label in np.unique(labels):
        members = keep[labels == label]
        chosen.append(int(members[np.argmin(energies[members])]))
    return sorted(chosen, key=lambda i: energies[i])


def sorted_distances(atoms: Atoms) -> np.ndarray:
    """Sorted pair distances: a cheap rotation- and permutation-invariant fingerprint."""
    d = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    return np.sort(d[np.triu_indices(len(atoms), 1)])
