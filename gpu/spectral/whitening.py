"""Whitening of M2 through a randomized block Krylov range finder that applies M2 implicitly.

Starting from a CountSketch Q_0 of E2's range (one O(nnz) pass), each of ``n_krylov_blocks``
rounds applies M2 to the newest block, Z_{i+1} = M2 Q_i (two sparse products per document),
and orthogonalises Z_{i+1} against all earlier blocks to get Q_{i+1}. The basis
K = [Q_0 .. Q_{b-1}] (V, b m) is orthonormal and its image M2 K = [Z_1 .. Z_b] is known, so
the Rayleigh-Ritz matrix K^T M2 K needs no further pass. When the products X K are kept
(projection cache), the last round needs only X Q_{b-1}: K^T M2 Q_{b-1} follows from them.
Its top k eigenpairs (theta, E) give W = K E diag(theta)^-1/2, with W^T M2 W = I_k.
Nothing (V, V) is ever formed.

With a word scale s (V,), all of this runs on S M2 S (S = diag(s)) and W = S K E diag(theta)^-1/2,
which still has W^T M2 W = I_k. With exact moments of rank k every whitening of M2's range
recovers the same topics; with sampled moments the subspace kept decides which topics the
tensor can see. M2's own top subspace is dominated by the most frequent words, so on real
text it yields broad, overlapping topics; s_w = (M1_w / max M1)^-power (:func:`word_scale`)
gives specific, less frequent words a say (python3-doc text, k=50, bench/quality.py: mean
NPMI after refinement 0.139 -> 0.170 with power 0.2).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu.backend import get_array_module, to_host
from gpu.errors import InvalidInput
from gpu.spectral.moments import CorpusStats, apply_m2, sketch_m2_range
from gpu.passes import Progress, run_pass, sub_progress


@dataclass(frozen=True)
class Whitening:
    """W = basis @ G, with W^T M2 W = I.

    basis:       (V, n) orthonormal Krylov basis of the scaled space (backend array, compute dtype).
    G:           (n, k) float64 host: Ritz vectors scaled by Ritz value^-1/2.
    unwhiten:    (n, k) float64 host: Ritz vectors scaled by Ritz value^+1/2, so that
                 (W^T)^+ = basis @ unwhiten.
    eigenvalues: (n,) float64 host: Ritz values of M2 (of S M2 S with a word scale) on the
                 basis (estimates of its top eigenvalues), descending; the first k were kept.
    word_scale:  (V,) s of S = diag(s), or None (identity): W = S basis G and
                 (W^T)^+ = S^-1 basis unwhiten.
    projections: X_b S K of each row block (by first row), or None.
    ritz_vectors: (n, n) float64 host: the Ritz vectors of all ``eigenvalues`` (G and unwhiten
                 are their first k columns, scaled), so that :meth:`with_components` can
                 whiten for another number of components from the same basis.
    """

    basis: Any
    G: np.ndarray
    unwhiten: np.ndarray
    eigenvalues: np.ndarray
    projections: dict[int, list[Any]] | None = None
    word_scale: Any = None
    ritz_vectors: np.ndarray | None = None

    def with_components(self, n_components: int, rank_tol: float) -> "Whitening":
        """The whitening for the top ``n_components`` Ritz pairs of the same basis (no pass
        over the data); InvalidInput beyond M2's numerical rank on it."""
        G, unwhiten = scaled_ritz_vectors(self.eigenvalues, self.ritz_vectors, n_components, rank_tol)
        return dataclasses.replace(self, G=G, unwhiten=unwhiten)

    def cached_projection(self, start: int) -> Any | None:
        """(B, k) X_b W for the block starting at row ``start`` from the kept X_b S K, or None."""
        if self.projections is None:
            return None
        parts = self.projections[start]
        xp = get_array_module(parts[0])
        return xp.concatenate(parts, axis=1) @ xp.asarray(self.G).astype(parts[0].dtype)

    @property
    def n_components(self) -> int:
        return int(self.G.shape[1])

    def matrix(self) -> Any:
        """(V, k) whitening matrix W (backend array, float64)."""
        xp = get_array_module(self.basis)
        W = (self.basis @ xp.asarray(self.G).astype(self.basis.dtype)).astype(xp.float64)
        return W if self.word_scale is None else W * self.word_scale[:, None]

    def pseudo_inverse_transpose(self) -> Any:
        """(V, k) (W^T)^+ = S^-1 U diag(theta)^1/2, mapping whitened vectors back to word space."""
        xp = get_array_module(self.basis)
        inverse = (self.basis @ xp.asarray(self.unwhiten).astype(self.basis.dtype)).astype(xp.float64)
        return inverse if self.word_scale is None else inverse / self.word_scale[:, None]


def word_scale(m1: Any, power: float) -> Any | None:
    """(V,) float64 s_w = (M1_w / max M1)^-power for the scaled whitening (module docstring),
    or None for power 0. Words absent from the corpus get the rarest present word's scale
    (their rows of M2 are zero, so any finite value does)."""
    if power == 0:
        return None
    xp = get_array_module(m1)
    frequency = xp.asarray(m1, dtype=xp.float64)
    present = frequency[frequency > 0]
    if present.size == 0:
        return None
    relative = xp.maximum(frequency, present.min()) / present.max()
    return relative ** (-float(power))


RANK_EPS = 1e-10  # columns whose norm falls below this fraction of the input's are dropped


def orthonormalize(Y: Any, against: Any | None = None) -> Any:
    """(V, r) orthonormal basis of span(Y) minus span(against), r <= Y's column count.

    Gram-matrix orthonormalisation done twice (like CholeskyQR2: matrix products instead of
    Householder QR), with directions of relative size below RANK_EPS dropped, so a block
    that lies (numerically) in ``against`` (V, n, orthonormal) or is rank-deficient shrinks.
    """
    xp = get_array_module(Y)
    scale = float(xp.max(xp.sum(Y * Y, axis=0))) if Y.shape[1] else 0.0
    for _ in range(2):
        if against is not None and against.shape[1]:
            Y = Y - against @ (against.T @ Y)
        gram = Y.T @ Y
        gram = gram.get() if hasattr(gram, "get") else np.asarray(gram)
        values, vectors = np.linalg.eigh(0.5 * (gram + gram.T))
        keep = values > RANK_EPS * max(scale, 1e-300)
        Y = Y @ xp.asarray(vectors[:, keep] / np.sqrt(values[keep]))
        scale = 1.0
    return Y


def krylov_whitening(
    stats: CorpusStats,
    n_components: int,
    n_columns: int,
    alpha0: float,
    *,
    seed: int,
    n_krylov_blocks: int,
    rank_tol: float,
    blocks: list[tuple[int, int]],
    n_threads: int = 1,
    progress: Progress = None,
    cache_projections: bool = False,
    scale: Any = None,
) -> Whitening:
    """Whitening for the top ``n_components`` eigenpairs of M2, or of S M2 S with a word
    ``scale`` s (V,) (see module docstring).

    With ``cache_projections`` the products X_b Q_i computed while applying M2 are kept
    (D x b m floats), so the tensor pass gets P = X W without another sparse product.

    n_columns: m, columns per Krylov block (k plus oversampling). Cost: 1 + 2 b sparse
    products per document for b = ``n_krylov_blocks`` >= 1 (2 b with ``cache_projections``).
    Raises InvalidInput when fewer than ``n_components`` Ritz values exceed rank_tol x the
    largest (n_topics larger than M2's numerical rank).
    """
    grand_total = (1 + n_krylov_blocks) * len(blocks)
    Y = sketch_m2_range(
        stats, n_columns, seed, blocks=blocks, n_threads=n_threads, progress=sub_progress(progress, 0, grand_total)
    )
    xp = get_array_module(Y)
    work_dtype = stats.dtype  # float32 fits halve the dense work of the basis as well
    s = None if scale is None else xp.asarray(scale).astype(work_dtype)[:, None]

    def scaled(block: Any) -> Any:
        """S block: M2 is applied to S Q and its image scaled by S again (S M2 S Q)."""
        return block if s is None else block * s

    Y = scaled(Y)
    newest = orthonormalize(Y.astype(work_dtype))
    # K fills one (V, b m) buffer block by block (no concatenated copies), and each image
    # M2 Q_j is dropped once K^T M2 Q_j, its column block of the Rayleigh matrix, is taken
    buffer = xp.empty((int(newest.shape[0]), n_krylov_blocks * int(newest.shape[1])), dtype=work_dtype)
    filled = 0
    column_blocks: list[tuple[int, int, np.ndarray]] = []  # (first column, width, K^T M2 Q_j (filled, width))
    kept: list[dict[int, Any]] = []
    for round_index in range(n_krylov_blocks):
        width = int(newest.shape[1])
        buffer[:, filled:filled + width] = newest
        first, filled = filled, filled + width
        basis = buffer[:, :filled]
        kept.append({})
        round_progress = sub_progress(progress, (1 + round_index) * len(blocks), grand_total)
        if cache_projections and round_index + 1 == n_krylov_blocks:
            # last block: its image is only needed inside K^T M2 K, which the kept X K give
            # with one sparse product instead of two
            column = projected_m2_block(
                stats, kept, scaled(newest), scaled(basis), alpha0,
                blocks=blocks, n_threads=n_threads, progress=round_progress,
            )
            column_blocks.append((first, width, np.asarray(to_host(column), dtype=np.float64)))
            break
        image = scaled(
            apply_m2(
                stats, scaled(newest), alpha0, blocks=blocks, n_threads=n_threads, progress=round_progress,
                keep_projection=kept[-1] if cache_projections else None,
            ).astype(work_dtype)
        )
        column_blocks.append((first, width, np.asarray(to_host(basis.T @ image), dtype=np.float64)))
        if round_index + 1 < n_krylov_blocks:
            newest = orthonormalize(image, basis)
            del image
            if newest.shape[1] == 0:  # the Krylov space is exhausted (tiny vocabularies)
                if progress is not None:
                    progress("whitening", grand_total, grand_total)
                break
    basis = buffer[:, :filled]
    rayleigh = _symmetric_from_column_blocks(column_blocks, filled)
    projections = {start: [part[start] for part in kept] for start, _ in blocks} if cache_projections else None
    whitening = whitening_from_rayleigh(basis, rayleigh, n_components, rank_tol, projections)
    if scale is None:
        return whitening
    return dataclasses.replace(whitening, word_scale=xp.asarray(scale, dtype=xp.float64))


def _symmetric_from_column_blocks(column_blocks: list[tuple[int, int, np.ndarray]], n: int) -> np.ndarray:
    """(n, n) K^T M2 K from its column blocks K[:, :c+w]^T M2 Q_j (rows up to the block's own
    columns, the only part of K that existed when Q_j's image was taken); the rest of each
    block row is its mirror image (M2 is symmetric)."""
    rayleigh = np.zeros((n, n))
    for first, width, column in column_blocks:
        rows = column.shape[0]
        rayleigh[:rows, first:first + width] = column
        rayleigh[first:first + width, :first] = column[:first].T
    return rayleigh


def projected_m2_block(
    stats: CorpusStats,
    kept: list[dict[int, Any]],
    Q_last: Any,
    basis: Any,
    alpha0: float,
    *,
    blocks: list[tuple[int, int]],
    n_threads: int = 1,
    progress: Progress = None,
) -> Any:
    """(n, m) float64 K^T M2 Q_last from one pass computing X_b Q_last (kept in ``kept[-1]``)
    (with a word scale the caller passes S K and S Q_last).

    K^T M2 Q = (1/D) [(X K)^T (w2 * X Q) - K^T diag(X^T w2) Q] - a0/(a0+1) (K^T M1)(M1^T Q),
    with X K assembled from the products kept by earlier rounds. basis: K (V, n), whose
    last m columns are Q_last.
    """
    w2 = stats.doc_w2
    xp = get_array_module(Q_last)
    Qc = Q_last.astype(stats.dtype, copy=False)

    def partial(start: int, stop: int) -> tuple[Any]:
        projected = stats.rows(start, stop) @ Qc
        kept[-1][start] = projected
        left = xp.concatenate([part[start] for part in kept], axis=1)
        return ((left.T @ (projected * w2[start:stop, None])).astype(xp.float64, copy=False),)

    (total,) = run_pass(partial, blocks, n_threads=n_threads, stage="whitening", progress=progress)
    K64, Q64 = basis.astype(xp.float64), Q_last.astype(xp.float64)
    diagonal = K64.T @ (stats.word_w2[:, None] * Q64)
    mean_term = xp.outer(K64.T @ stats.m1, stats.m1 @ Q64)
    return (total - diagonal) / stats.n_docs - (alpha0 / (alpha0 + 1.0)) * mean_term


def whitening_from_rayleigh(
    basis: Any,
    rayleigh: np.ndarray,
    n_components: int,
    rank_tol: float,
    projections: dict[int, list[Any]] | None = None,
) -> Whitening:
    """Whitening from the (n, n) Rayleigh-Ritz matrix basis^T M2 basis."""
    eigenvalues, vectors = np.linalg.eigh(0.5 * (rayleigh + rayleigh.T))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = eigenvalues[order], vectors[:, order]
    G, unwhiten = scaled_ritz_vectors(eigenvalues, vectors, n_components, rank_tol)
    return Whitening(basis=basis, G=G, unwhiten=unwhiten, eigenvalues=eigenvalues, projections=projections,
                     ritz_vectors=vectors)


def numerical_rank(eigenvalues: np.ndarray, rank_tol: float) -> int:
    """How many of the (n,) descending ``eigenvalues`` exceed rank_tol x the largest (0 when
    none is positive)."""
    top = float(eigenvalues[0]) if eigenvalues.size else 0.0
    return int(np.sum(eigenvalues > top * rank_tol)) if top > 0 else 0


def scaled_ritz_vectors(eigenvalues: np.ndarray, vectors: np.ndarray, n_components: int,
                        rank_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(G, unwhiten), each (n, n_components): the top Ritz vectors (columns of ``vectors``,
    ``eigenvalues`` descending) scaled by Ritz value^-1/2 and ^+1/2; InvalidInput beyond the
    :func:`numerical_rank`."""
    rank = numerical_rank(eigenvalues, rank_tol)
    if rank < n_components:
        shown = ", ".join(f"{value:.3g}" for value in eigenvalues[: n_components + 1])
        raise InvalidInput(
            f"n_topics is larger than M2's numerical rank: {n_components} components requested but "
            f"only {rank} eigenvalues of M2 exceed {rank_tol:g} x the largest "
            f"(leading eigenvalues: {shown})"
        )
    kept = eigenvalues[:n_components]
    return vectors[:, :n_components] / np.sqrt(kept), vectors[:, :n_components] * np.sqrt(kept)
