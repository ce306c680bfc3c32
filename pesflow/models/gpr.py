"""Sparse Gaussian process regression on local environments, trained on total energies.

Notation (SPEC.md §1): ``X_m`` inducing environments, ``L`` the structure-by-atom summation
matrix, ``Σ = diag(σ_E² n_atoms)``. The subset-of-regressors (DTC) mean solves

    A α = (L K_nm)ᵀ Σ⁻¹ y,   A = K_mm + jitter·I + (L K_nm)ᵀ Σ⁻¹ (L K_nm).

``A`` is factorised in the stable form ``A = L_m B L_mᵀ`` with ``L_m = chol(K_mm + jitter·I)``
and ``B = I + V Vᵀ``, ``V = L_m⁻¹ (L K_nm)ᵀ Σ^{-1/2}``: ``B`` has all eigenvalues ≥ 1, so its
Cholesky factor stays accurate even when ``K_mm`` is nearly singular (duplicated
environments). All right-hand sides (mean and ensemble members) share the factorisation.

The projected-process variance of a structure's energy ``E = Σ_i ε(x_i)`` is

    σ² = 1ᵀ K_** 1 − vᵀ K_mm⁻¹ v + vᵀ A⁻¹ v,   v = K_m* 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular


@dataclass(frozen=True)
class Kernel:
    """Gaussian kernel k(x, x') = θ0 exp(−|x − x'|² / 2ℓ²)."""

    amplitude: float = 1.0
    length_scale: float = 40.0

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Kernel matrix between the rows of ``x`` and of ``y``."""
        sq = (
            np.einsum("ij,ij->i", x, x)[:, None]
            + np.einsum("ij,ij->i", y, y)[None, :]
            - 2.0 * (x @ y.T)
        )
        np.maximum(sq, 0.0, out=sq)
        sq *= -0.5 / self.length_scale**2
        return self.amplitude * np.exp(sq, out=sq)

    def gradient(self, k: np.ndarray, x: np.ndarray, y: np.ndarray, a: np.ndarray) -> np.ndarray:
        """∂/∂x_i of Σ_{i,j} k(x_i, y_j) a_j, for all i at once.

        Parameters
        ----------
        k
            ``self(x, y)``, shape (n, m).
        x, y
            Rows are feature vectors, shapes (n, F) and (m, F).
        a
            Coefficients, shape (m,).

        Returns
        -------
        ndarray, shape (n, F)
        """
        ka = k @ a
        return -(ka[:, None] * x - k @ (a[:, None] * y)) / self.length_scale**2


def cur_select(x: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``m`` rows sampled without replacement with probability ∝ leverage score.

    Leverage scores are the squared row norms of the left singular vectors (thin SVD),
    as in AGOX's CUR sparsifier, with a seeded generator.
    """
    n = x.shape[0]
    if n <= m:
        return np.arange(n)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    u = u[:, s > s[0] * 1e-12]
    score = np.einsum("ij,ij->i", u, u) + 1e-12
    chosen = rng.choice(n, size=m, replace=False, p=score / score.sum())
    return np.sort(chosen)


def random_select(x: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``m`` rows drawn uniformly without replacement (all rows if fewer)."""
    n = x.shape[0]
    if n <= m:
        return np.arange(n)
    return np.sort(rng.choice(n, size=m, replace=False))


SELECTORS = {"cur": cur_select, "random": random_select}


@dataclass
class SparseGPRFit:
    """The trained state needed to predict: inducing points and two Cholesky factors.

    Attributes
    ----------
    xm
        Inducing environments, shape (m, F).
    alpha
        Weights, shape (m, r): column 0 the mean, columns 1.. ensemble members.
    chol_mm
        Lower Cholesky factor of ``K_mm + jitter·I``.
    chol_b
        Lower Cholesky factor of ``B = I + V Vᵀ``.
    """

    xm: np.ndarray
    alpha: np.ndarray
    chol_mm: np.ndarray
    chol_b: np.ndarray


def fit_sparse_gpr(
    kernel: Kernel,
    xm: np.ndarray,
    lk: np.ndarray,
    y: np.ndarray,
    noise_var: np.ndarray,
    jitter: float = 1e-8,
) -> SparseGPRFit:
    """Solve the SoR/DTC system for all columns of ``y`` with one factorisation.

    Parameters
    ----------
    kernel
        The kernel.
    xm
        Inducing environments, shape (m, F).
    lk
        ``L K_nm``: per-structure sums of the kernel rows, shape (n_structures, m).
    y
        Targets, shape (n_structures, r).
    noise_var
        Per-structure noise variance σ_E² n_atoms, shape (n_structures,).
    jitter
        Added to the diagonal of ``K_mm`` (relative to the amplitude); raised tenfold
        until the Cholesky factorisation succeeds.
    """
    m = xm.shape[0]
    kmm = kernel(xm, xm)
    chol_mm = _cholesky(kmm, jitter * kernel.amplitude)
    scale = 1.0 / np.sqrt(noise_var)
    v = solve_triangular(chol_mm, (lk * scale[:, None]).T, lower=True, check_finite=False)
    b = v @ v.T
    b[np.diag_indices(m)] += 1.0
    chol_b = np.linalg.cholesky(b)
    rhs = v @ (y * scale[:, None])
    tmp = cho_solve((chol_b, True), rhs, check_finite=False)
    alpha = solve_triangular(chol_mm, tmp, lower=True, trans="T", check_finite=False)
    # C order everywhere, so a model read back from HDF5 runs the same BLAS paths (bitwise).
    c = np.ascontiguousarray
    return SparseGPRFit(xm=c(xm), alpha=c(alpha), chol_mm=c(chol_mm), chol_b=c(chol_b))


def _cholesky(k: np.ndarray, jitter: float) -> np.ndarray:
    eye = np.eye(k.shape[0])
    for _ in range(8):
        try:
            return cho_factor(k + jitter * eye, lower=True, check_finite=False)[0]
        except np.linalg.LinAlgError:
            jitter *= 10.0
    raise np.linalg.LinAlgError("K_mm is not positive definite even with a large jitter")


def projected_variance(
    fit: SparseGPRFit, kernel: Kernel, x: np.ndarray, k: np.ndarray, gradient: bool = False
) -> tuple[float, np.ndarray | None]:
    """Projected-process variance of the summed local energies of one structure.

    Parameters
    ----------
    fit, kernel
        The trained model.
    x
        The structure's environments, shape (n, F).
    k
        ``kernel(x, fit.xm)``, shape (n, m).
    gradient
        Also return ∂σ²/∂x, shape (n, F).
    """
    k0 = kernel(x, x)
    v = k.sum(axis=0)
    c = solve_triangular(fit.chol_mm, v, lower=True, check_finite=False)
    d = solve_triangular(fit.chol_b, c, lower=True, check_finite=False)
    var = float(k0.sum() - c @ c + d @ d)
    if not gradient:
        return var, None
    # w = (K_mm⁻¹ − A⁻¹) v = L_m⁻ᵀ (c − B⁻¹ c)
    binv_c = solve_triangular(fit.chol_b, d, lower=True, trans="T", check_finite=False)
    w = solve_triangular(fit.chol_mm, c - binv_c, lower=True, trans="T", check_finite=False)
    ones = np.ones(x.shape[0])
    grad = 2.0 * kernel.gradient(k0, x, x, ones) - 2.0 * kernel.gradient(k, x, fit.xm, w)
    return var, grad


def prior_variance(kernel: Kernel, x: np.ndarray, gradient: bool = False):
    """GP prior variance of the summed local energies (no training data) and its gradient."""
    k0 = kernel(x, x)
    var = float(k0.sum())
    if not gradient:
        return var, None
    return var, 2.0 * kernel.gradient(k0, x, x, np.ones(x.shape[0]))
