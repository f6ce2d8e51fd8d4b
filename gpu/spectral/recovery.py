"""From tensor eigenpairs back to LDA parameters (DESIGN.md section 3, "Recovery").

With T = sum_i lambda_i v_i^(x3) for the unscaled moments:
  alpha_i = 4 alpha0 (alpha0 + 1) / ((alpha0 + 2)^2 lambda_i^2)
  mu_i    = ((alpha0 + 2) / 2) lambda_i (W^T)^+ v_i
then each mu_i gets the sign whose simplex projection moves it least, is projected onto
the probability simplex, and topics are sorted by decreasing alpha.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu.backend import get_array_module, is_host, to_host


@dataclass(frozen=True)
class Recovered:
    """topic_word: (r, V) rows on the simplex; alpha: (r,); order: (r,) index of each row's
    tensor eigenpair; sign_flipped: (r,) whether -mu_i was kept. Sorted by decreasing alpha."""

    topic_word: Any
    alpha: np.ndarray
    order: np.ndarray
    sign_flipped: np.ndarray


def alpha_from_eigenvalues(eigenvalues: np.ndarray, alpha0: float) -> np.ndarray:
    """(r,) alpha_i = 4 a0 (a0+1) / ((a0+2)^2 lambda_i^2)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return 4.0 * alpha0 * (alpha0 + 1.0) / ((alpha0 + 2.0) ** 2 * lam**2)


def unwhitened_topics(pseudo_inverse: Any, eigenvalues: np.ndarray, eigenvectors: Any, alpha0: float) -> Any:
    """(r, V) raw mu_i = ((a0+2)/2) lambda_i (W^T)^+ v_i.

    pseudo_inverse: (V, k) (W^T)^+.  eigenvectors: (k, r).
    """
    xp = get_array_module(eigenvectors)
    scale = xp.asarray(((alpha0 + 2.0) / 2.0) * np.asarray(eigenvalues, dtype=np.float64))
    return (pseudo_inverse @ (eigenvectors.astype(xp.float64) * scale[None, :])).T


def project_rows_to_simplex(Y: Any, ordered: Any | None = None) -> Any:
    """(r, V) Euclidean projection of each row onto {x >= 0, sum x = 1} (sort-based).

    ordered: the rows of Y sorted in decreasing order, when already known.
    """
    xp = get_array_module(Y)
    n = Y.shape[1]
    if ordered is None:
        ordered = -xp.sort(-Y, axis=1)
    cumulative = xp.cumsum(ordered, axis=1) - 1.0
    ranks = xp.arange(1, n + 1, dtype=Y.dtype)
    support = ordered - cumulative / ranks[None, :] > 0
    rho = n - 1 - xp.argmax(support[:, ::-1], axis=1)
    theta = cumulative[xp.arange(Y.shape[0]), rho] / (rho + 1).astype(Y.dtype)
    return xp.maximum(Y - theta[:, None], 0.0)


def fix_signs_and_project(raw: Any) -> tuple[Any, Any]:
    """Choose per row the sign whose simplex projection moves it least; project.

    raw: (r, V). Returns ((r, V) projected rows, (r,) bool flipped). One sort serves both
    signs: -raw sorted decreasingly is raw's decreasing order reversed and negated.
    """
    xp = get_array_module(raw)
    ordered = -xp.sort(-raw, axis=1)
    plus = project_rows_to_simplex(raw, ordered)
    minus = project_rows_to_simplex(-raw, -ordered[:, ::-1])
    flipped = xp.linalg.norm(minus + raw, axis=1) < xp.linalg.norm(plus - raw, axis=1)
    return xp.where(flipped[:, None], minus, plus), flipped


def recover(
    pseudo_inverse: Any,
    eigenvalues: np.ndarray,
    eigenvectors: Any,
    alpha0: float,
    n_keep: int,
    *,
    n_threads: int = 1,
) -> Recovered:
    """Topics and alpha from the eigenpairs; keep the ``n_keep`` with the largest alpha, a
    component whose alpha exceeds alpha0 (impossible under LDA: a near-zero eigenvalue) ranked
    after every plausible one, so that with extra components it is the one dropped.

    On the CPU the rows are projected in ``n_threads`` chunks (NumPy sorts release the GIL).
    """
    alpha = alpha_from_eigenvalues(eigenvalues, alpha0)
    order = np.lexsort((-alpha, alpha > alpha0))[:n_keep]
    xp = get_array_module(eigenvectors)
    raw = unwhitened_topics(pseudo_inverse, eigenvalues[order], eigenvectors[:, xp.asarray(order)], alpha0)
    if is_host(xp) and n_threads > 1 and raw.shape[0] > 1:
        chunks = np.array_split(np.arange(raw.shape[0]), min(n_threads, raw.shape[0]))
        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            parts = list(pool.map(lambda rows: fix_signs_and_project(raw[rows]), chunks))
        topics = np.concatenate([part[0] for part in parts])
        flipped = np.concatenate([part[1] for part in parts])
    else:
        topics, flipped = fix_signs_and_project(raw)
    flipped_host = np.asarray(to_host(flipped))
    return Recovered(topic_word=topics, alpha=alpha[order], order=order, sign_flipped=flipped_host)
