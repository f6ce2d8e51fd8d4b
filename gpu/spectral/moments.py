"""First-order statistics of a count matrix and the implicit action of M2 (DESIGN.md section 3).

Notation: X is the (D, V) CSR count matrix of the documents kept (length l >= 3), with
per-document weights w1 = 1/l, w2 = 1/(l (l-1)), w3 = 1/(l (l-1) (l-2)).
M1 = (1/D) X^T w1, and M2 is never formed: :func:`apply_m2` returns M2 @ Q for a (V, m) block.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from gpu.backend import get_array_module, is_host, to_host, transposed_product
from gpu.passes import Progress, row_slice, run_pass

MIN_DOC_LENGTH = 3


@dataclass(frozen=True)
class CorpusStats:
    """What every later pass needs about the kept documents.

    X:         (D, V) CSR counts of the kept documents (compute dtype).
    doc_w2:    (D,) 1/(l (l-1)), compute dtype.
    doc_w3:    (D,) 1/(l (l-1) (l-2)), compute dtype.
    m1:        (V,) float64, M1 = mean_d c_d / l_d.
    word_w2:   (V,) float64, X^T w2 (the diagonal correction of E2, times D).
    word_w3:   (V,) float64, X^T w3 (the diagonal correction of E3, times D).
    n_docs:    D, documents kept.
    n_dropped: documents dropped for having fewer than 3 tokens.
    """

    X: Any
    doc_w2: Any
    doc_w3: Any
    m1: Any
    word_w2: Any
    word_w3: Any
    n_docs: int
    n_dropped: int
    work_dtype: Any = None  # the passes' precision when not X's: blocks are cast as they are read

    @property
    def dtype(self) -> np.dtype:
        """The precision the passes over these statistics compute in."""
        return np.dtype(self.work_dtype or self.X.dtype)

    def rows(self, start: int, stop: int) -> Any:
        """Rows start:stop of the counts in :attr:`dtype` (a view on the host when X has it;
        a cast copy of the block alone otherwise)."""
        block = row_slice(self.X, start, stop)
        return block if block.dtype == self.dtype else block.astype(self.dtype)

    def in_precision(self, dtype: Any) -> CorpusStats:
        """These statistics for passes in ``dtype`` (the same object when X already has it):
        the document weights cast, the counts cast block by block as each pass reads them,
        so no second copy of the count matrix is ever whole."""
        if self.dtype == np.dtype(dtype):
            return self
        return dataclasses.replace(self, work_dtype=np.dtype(dtype), doc_w2=self.doc_w2.astype(dtype),
                                   doc_w3=self.doc_w3.astype(dtype))


def document_lengths(X: Any) -> Any:
    """(D,) float64 token count of each row of a (D, V) sparse matrix."""
    xp = get_array_module(X)
    return xp.asarray(X.sum(axis=1), dtype=xp.float64).ravel()


def corpus_stats(
    X: Any,
    *,
    blocks_for: Any,
    n_threads: int = 1,
    progress: Progress = None,
) -> CorpusStats:
    """Drop documents shorter than 3 tokens and compute M1 and the diagonal corrections.

    X: (D_all, V) CSR counts. ``blocks_for(n_rows)`` gives the row blocks of a pass.
    """
    xp = get_array_module(X)
    lengths = document_lengths(X)
    keep = lengths >= MIN_DOC_LENGTH
    n_kept = int(keep.sum())
    n_dropped = int(X.shape[0] - n_kept)
    if n_dropped:
        keep_index = xp.flatnonzero(keep)
        X = X[keep_index]
        lengths = lengths[keep_index]
    weights = xp.stack(
        [
            1.0 / lengths,
            1.0 / (lengths * (lengths - 1.0)),
            1.0 / (lengths * (lengths - 1.0) * (lengths - 2.0)),
        ],
        axis=1,
    ) if n_kept else xp.zeros((0, 3))

    def partial(start: int, stop: int) -> tuple[Any]:
        block = row_slice(X, start, stop).astype(xp.float64)
        return (transposed_product(block, weights[start:stop]),)

    if n_kept:
        (word_sums,) = run_pass(partial, blocks_for(n_kept), n_threads=n_threads, stage="moments", progress=progress)
    else:
        word_sums = xp.zeros((X.shape[1], 3))
    word_sums = xp.asarray(word_sums)
    dtype = X.dtype
    return CorpusStats(
        X=X,
        doc_w2=weights[:, 1].astype(dtype),
        doc_w3=weights[:, 2].astype(dtype),
        m1=word_sums[:, 0] / max(n_kept, 1),
        word_w2=word_sums[:, 1],
        word_w3=word_sums[:, 2],
        n_docs=n_kept,
        n_dropped=n_dropped,
    )


def apply_m2(
    stats: CorpusStats,
    Q: Any,
    alpha0: float,
    *,
    blocks: list[tuple[int, int]],
    n_threads: int = 1,
    stage: str = "whitening",
    progress: Progress = None,
    keep_projection: dict[int, Any] | None = None,
) -> Any:
    """M2 @ Q for a (V, m) block Q, never forming the (V, V) matrix.

    M2 Q = (1/D) [X^T (w2 * (X Q)) - diag(X^T w2) Q] - alpha0/(alpha0+1) M1 (M1^T Q).
    Returns (V, m) float64. With ``keep_projection`` (a dict), X_b Q of each block is
    stored under the block's first row, so a later pass can reuse it.
    """
    w2 = stats.doc_w2
    Qc = Q.astype(stats.dtype, copy=False)

    def partial(start: int, stop: int) -> tuple[Any]:
        block = stats.rows(start, stop)
        projected = block @ Qc
        if keep_projection is not None:
            keep_projection[start] = projected
            projected = projected * w2[start:stop, None]
        else:
            projected *= w2[start:stop, None]
        return (transposed_product(block, projected),)

    (total,) = run_pass(partial, blocks, n_threads=n_threads, stage=stage, progress=progress)
    xp = get_array_module(Q)
    Q64 = Q.astype(xp.float64, copy=False)  # Q is float64; Qc is its compute-dtype copy
    result = (total.astype(xp.float64, copy=False) - stats.word_w2[:, None] * Q64) / stats.n_docs
    result -= (alpha0 / (alpha0 + 1.0)) * xp.outer(stats.m1, stats.m1 @ Q64)
    return result


def sketch_assignments(seed: int, start: int, stop: int, n_columns: int, chunk_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Bucket (int64) and sign (+-1.0) of rows start:stop of a CountSketch matrix Omega (D, m).

    Rows are drawn in fixed chunks of ``chunk_rows`` seeded by (seed, chunk index), so a pass
    gives the same sketch whatever its block size or backend.
    """
    first, last = start // chunk_rows, (stop - 1) // chunk_rows
    buckets, signs = [], []
    for chunk in range(first, last + 1):
        rng = np.random.default_rng([seed, chunk])
        buckets.append(rng.integers(0, n_columns, size=chunk_rows))
        signs.append(rng.integers(0, 2, size=chunk_rows) * 2.0 - 1.0)
    offset = start - first * chunk_rows
    window = slice(offset, offset + stop - start)
    return np.concatenate(buckets)[window], np.concatenate(signs)[window]


def sketch_m2_range(
    stats: CorpusStats,
    n_columns: int,
    seed: int,
    *,
    blocks: list[tuple[int, int]],
    n_threads: int = 1,
    progress: Progress = None,
) -> Any:
    """(V, m) float64 random vectors X^T diag(sqrt(w2)) Omega from the range of E2's square root.

    E2 ~ (1/D) X^T diag(w2) X, so this is a half power step of the range finder for M2.
    Omega (D, m) is a CountSketch (one +-1 per row in a random column), so the pass costs
    O(nnz) instead of a dense product with m columns; the Krylov rounds that follow make up
    for the cruder start.
    """
    X = stats.X
    xp = get_array_module(X)
    root_w2 = xp.sqrt(stats.doc_w2)

    def partial(start: int, stop: int) -> tuple[Any]:
        buckets, signs = sketch_assignments(seed, start, stop, n_columns)
        values = xp.asarray(signs.astype(stats.dtype)) * root_w2[start:stop]
        rows, columns = xp.arange(stop - start), xp.asarray(buckets)
        block = stats.rows(start, stop)
        if is_host(xp):
            omega = sp.csr_matrix((values, (rows, columns)), shape=(stop - start, n_columns))
            return ((block.T @ omega).toarray(),)
        # on the GPU a dense Omega keeps to the sparse-dense product cupyx does best
        dense = xp.zeros((stop - start, n_columns), dtype=stats.dtype)
        dense[rows, columns] = values
        return (transposed_product(block, dense),)

    (total,) = run_pass(partial, blocks, n_threads=n_threads, stage="whitening", progress=progress)
    return xp.asarray(total).astype(xp.float64, copy=False)


def concentration_from_pairs(
    stats: CorpusStats,
    topic_word: Any,
    alpha: Any,
    *,
    blocks: list[tuple[int, int]],
    n_threads: int = 1,
    progress: Progress = None,
) -> float | None:
    """alpha0 = sum(alpha) of LDA estimated from the pair moment, given topics and alpha's shape.

    Under LDA with topics M = topic_word^T (V, k), alpha = alpha0 p (p on the simplex) and
    m = M p, the expected pair co-occurrence is
        E2 = 1/(alpha0 + 1) M diag(p) M^T + alpha0/(alpha0 + 1) m m^T.
    Taken back to topic coordinates with the pseudo-inverse M^+ = (M^T M)^+ M^T (one pass
    gives E2 M: :func:`apply_m2` at alpha0 = 0), with q = M^+ M1 (M1 the data mean),
        M^+ E2 M^+T - q q^T = c (diag(p) - q q^T),   c = 1 / (alpha0 + 1),
    and c is fitted by least squares over the off-diagonal entries. (Projecting on M instead
    of M^+ mixes in the topics' overlaps, which dominate on Zipf-shaped vocabularies whose
    frequent words every topic shares.) Returns alpha0 = 1/c - 1, or None when the fit gives
    no c in (0, 1) (no evidence of a Dirichlet prior).

    topic_word: (k, V) rows on the simplex, on the device of ``stats.X``; alpha: (k,) > 0.
    """
    xp = get_array_module(stats.X)
    M = xp.asarray(topic_word, dtype=xp.float64).T
    pair_image = apply_m2(stats, M, 0.0, blocks=blocks, n_threads=n_threads, stage="concentration",
                          progress=progress)
    gram_inverse = np.linalg.pinv(np.asarray(to_host(M.T @ M), dtype=np.float64), hermitian=True)
    projected = np.asarray(to_host(M.T @ pair_image), dtype=np.float64)
    projected = gram_inverse @ (0.5 * (projected + projected.T)) @ gram_inverse
    mean = gram_inverse @ np.asarray(to_host(M.T @ xp.asarray(stats.m1, dtype=xp.float64)), dtype=np.float64)
    shape = np.asarray(to_host(alpha), dtype=np.float64)
    shape = shape / shape.sum()
    outer = np.outer(mean, mean)
    model = np.diag(shape) - outer
    data = projected - outer
    off = ~np.eye(len(shape), dtype=bool)
    denominator = float(np.sum(model[off] ** 2))
    if len(shape) < 2 or denominator <= 0:
        return None
    c = float(np.sum(data[off] * model[off]) / denominator)
    if not 0.0 < c < 1.0:
        return None
    return 1.0 / c - 1.0
