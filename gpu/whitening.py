"""Whitening of M2 through a randomized range finder that applies M2 implicitly.

The range finder returns an orthonormal basis Q (V, m) whose span holds M2's top
eigenvectors; M2 restricted to it, Q^T M2 Q (m, m), comes out of the projection pass
(gpu.tensor.project_documents) and :func:`whitening_from_projection` turns it into
W = Q G with W^T M2 W = I_k. Nothing (V, V) is ever formed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu.backend import get_array_module
from gpu.moments import CorpusStats, apply_m2, sketch_m2_range
from gpu.passes import Progress


@dataclass(frozen=True)
class Whitening:
    """W = Q @ G, with W^T M2 W = I.

    Q:           (V, m) orthonormal basis (backend array, compute dtype).
    G:           (m, k) float64 host, eigenvectors of Q^T M2 Q scaled by eigenvalue^-1/2.
    unwhiten:    (m, k) float64 host, the same eigenvectors scaled by eigenvalue^+1/2, so
                 (W^T)^+ = Q @ unwhiten.
    eigenvalues: (m,) float64 host, eigenvalues of Q^T M2 Q in descending order; the first
                 k were kept.
    """

    Q: Any
    G: np.ndarray
    unwhiten: np.ndarray
    eigenvalues: np.ndarray

    @property
    def n_components(self) -> int:
        return int(self.G.shape[1])

    def matrix(self) -> Any:
        """(V, k) whitening matrix W (backend array, float64)."""
        xp = get_array_module(self.Q)
        return self.Q.astype(xp.float64) @ xp.asarray(self.G)


def orthonormalize(Y: Any) -> Any:
    """(V, m) orthonormal basis of the columns of Y (reduced QR)."""
    xp = get_array_module(Y)
    Q, _ = xp.linalg.qr(Y)
    return Q


def find_m2_range(
    stats: CorpusStats,
    n_columns: int,
    alpha0: float,
    *,
    seed: int,
    n_power_iter: int,
    blocks: list[tuple[int, int]],
    n_threads: int = 1,
    progress: Progress = None,
) -> Any:
    """(V, n_columns) orthonormal basis approximating M2's top eigenspace.

    Starts from a random sketch of E2's range (one sparse product per document), then
    runs ``n_power_iter`` subspace iterations Q <- orth(M2 Q) (two sparse products each).
    Returned in the compute dtype of the count matrix.
    """
    Y = sketch_m2_range(stats, n_columns, seed, blocks=blocks, n_threads=n_threads, progress=progress)
    Q = orthonormalize(Y)
    for _ in range(n_power_iter):
        Q = orthonormalize(apply_m2(stats, Q, alpha0, blocks=blocks, n_threads=n_threads, progress=progress))
    return Q.astype(stats.X.dtype)


def projected_m2(stats: CorpusStats, Q: Any, gram: np.ndarray, alpha0: float) -> tuple[np.ndarray, np.ndarray]:
    """(Q^T E2 Q, Q^T M2 Q), both (m, m) float64 host, from the projection pass' gram.

    gram = sum_d w2_d (Q^T c_d)(Q^T c_d)^T, so Q^T E2 Q = (gram - Q^T diag(X^T w2) Q) / D.
    """
    xp = get_array_module(Q)
    Q64 = Q.astype(xp.float64)
    diagonal = Q64.T @ (stats.word_w2[:, None] * Q64)
    m1_projected = Q64.T @ stats.m1
    e2 = (np.asarray(gram) - _host(diagonal)) / stats.n_docs
    mq = _host(m1_projected)
    m2 = e2 - (alpha0 / (alpha0 + 1.0)) * np.outer(mq, mq)
    return _symmetric(e2), _symmetric(m2)


def whitening_from_projection(Q: Any, m2_projected: np.ndarray, n_components: int, rank_tol: float) -> Whitening:
    """Whitening from the (m, m) restriction of M2 to span(Q).

    Raises ValueError when M2 has fewer than ``n_components`` eigenvalues above
    ``rank_tol`` times its largest (n_topics larger than M2's numerical rank).
    """
    eigenvalues, vectors = np.linalg.eigh(_symmetric(m2_projected))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = eigenvalues[order], vectors[:, order]
    top = float(eigenvalues[0]) if eigenvalues.size else 0.0
    threshold = max(top, 0.0) * rank_tol
    numerical_rank = int(np.sum(eigenvalues > threshold)) if top > 0 else 0
    if numerical_rank < n_components:
        shown = ", ".join(f"{value:.3g}" for value in eigenvalues[: n_components + 1])
        raise ValueError(
            f"n_topics is larger than M2's numerical rank: {n_components} components requested but "
            f"only {numerical_rank} eigenvalues of M2 exceed {rank_tol:g} x the largest "
            f"(leading eigenvalues: {shown})"
        )
    kept = eigenvalues[:n_components]
    G = vectors[:, :n_components] / np.sqrt(kept)
    unwhiten = vectors[:, :n_components] * np.sqrt(kept)
    return Whitening(Q=Q, G=G, unwhiten=unwhiten, eigenvalues=eigenvalues)


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return 0.5 * (matrix + matrix.T)


def _host(x: Any) -> np.ndarray:
    return x.get() if hasattr(x, "get") else np.asarray(x)
