"""The whitened third moment T = M3(W, W, W) (k, k, k), built blockwise, and T(I, u, u).

One pass over the documents projects each block onto the range-finder basis Q (m columns),
Y = X_b Q, and adds three partials:
- gram  = sum_d w2_d y_d y_d^T                      (m, m)   -> Q^T E2 Q (whitening)
- R_Q   = X^T diag(w3) Y                            (V, m)   -> r_t of DESIGN.md
- S_Q   = sum_d w3_d (y_d (x) y_d)_{i<=j} (x) y_d     (m(m+1)/2, m), unique pairs only
After whitening (W = Q G) the document term is S_Q projected by G in every mode and the
word terms come from the rows a_t of W blockwise over the vocabulary, so nothing of size
(V, k^2) or (D, k^2) is ever whole in memory. For large k, :class:`ImplicitTensor`
applies T(I, U, U) from P = X W without forming T.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu.backend import get_array_module
from gpu.moments import CorpusStats
from gpu.passes import Progress, run_pass
from gpu.whitening import Whitening

PAIR_BLOCK_ELEMENTS = 2**23  # entries of one (rows, pairs) block of pair products


@dataclass(frozen=True)
class DocumentProjection:
    """Partial sums of the projection pass (see module docstring), added over all documents.

    gram: (m, m) float64 host.  third: (m(m+1)/2, m) float64 host or None (implicit mode).
    word_third: (V, m) float64 backend array R_Q.  projected: (D, m) Y = X Q or None.
    """

    gram: np.ndarray
    third: np.ndarray | None
    word_third: Any
    projected: Any | None


def pair_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each unique pair i <= j of n indices (n(n+1)/2 each)."""
    return np.triu_indices(n)


def pair_products(Y: Any, rows: Any, cols: Any) -> Any:
    """(B, n(n+1)/2) products Y[:, i] * Y[:, j] over the unique pairs i <= j."""
    return Y[:, rows] * Y[:, cols]


def sum_pair_outer(Y: Any, Z: Any, rows: Any, cols: Any) -> Any:
    """sum_b (Y_b (x) Y_b)_{i<=j} (x) Z_b as a (n(n+1)/2, q) float64 array.

    Y: (B, n), Z: (B, q). Processed in row blocks so that the (rows, pairs) block of
    pair products stays below PAIR_BLOCK_ELEMENTS entries.
    """
    xp = get_array_module(Y)
    n_pairs = len(rows)
    step = max(64, PAIR_BLOCK_ELEMENTS // max(n_pairs, 1))
    total = xp.zeros((n_pairs, Z.shape[1]), dtype=xp.float64)
    for start in range(0, Y.shape[0], step):
        products = pair_products(Y[start : start + step], rows, cols)
        total += (products.T @ Z[start : start + step]).astype(xp.float64, copy=False)
    return total


def expand_pairs(pairs: Any, n: int) -> Any:
    """(n, n, q) array F with F[i, j] = F[j, i] = pairs[pair(i, j)] from a (n(n+1)/2, q) one."""
    xp = get_array_module(pairs)
    rows, cols = pair_index(n)
    rows, cols = xp.asarray(rows), xp.asarray(cols)
    full = xp.zeros((n, n, pairs.shape[1]), dtype=pairs.dtype)
    full[rows, cols] = pairs
    full[cols, rows] = pairs
    return full


def project_documents(
    stats: CorpusStats,
    Q: Any,
    *,
    blocks: list[tuple[int, int]],
    with_third: bool,
    keep_projection: bool,
    n_threads: int = 1,
    progress: Progress = None,
) -> DocumentProjection:
    """One pass: Y = X_b Q per block, adding gram, R_Q and (when ``with_third``) S_Q.

    Q: (V, m) compute dtype. With ``keep_projection`` the (D, m) Y is kept (implicit mode).
    """
    X, w2, w3 = stats.X, stats.doc_w2, stats.doc_w3
    xp = get_array_module(Q)
    m = Q.shape[1]
    rows, cols = (xp.asarray(index) for index in pair_index(m))
    kept: dict[int, Any] = {}

    def partial(start: int, stop: int) -> tuple[Any, ...]:
        block = X[start:stop]
        Y = block @ Q
        weighted3 = Y * w3[start:stop, None]
        gram = ((Y * w2[start:stop, None]).T @ Y).astype(xp.float64)
        word_third = (block.T @ weighted3).astype(xp.float64, copy=False)
        third = sum_pair_outer(Y, weighted3, rows, cols) if with_third else xp.zeros((1, 1))
        if keep_projection:
            kept[start] = Y
        return gram, word_third, third

    gram, word_third, third = run_pass(partial, blocks, n_threads=n_threads, stage="tensor", progress=progress)
    projected = xp.concatenate([kept[start] for start, _ in blocks], axis=0) if keep_projection else None
    return DocumentProjection(
        gram=_host(gram),
        third=_host(third) if with_third else None,
        word_third=word_third,
        projected=projected,
    )


@dataclass(frozen=True)
class TensorTerms:
    """The pieces of T = M3(W, W, W) other than the document sum (all float64).

    A:  (V, k) rows a_t of W.          Rp: (V, k) r_t - (2/3) s_t a_t (absorbs the +2 s term).
    e2: (k, k) W^T E2 W.               m:  (k,) W^T M1.
    n_docs: D.  alpha0: the Dirichlet concentration.
    """

    A: Any
    Rp: Any
    e2: Any
    m: Any
    n_docs: int
    alpha0: float


def tensor_terms(stats: CorpusStats, whitening: Whitening, projection: DocumentProjection, e2_projected: np.ndarray, alpha0: float) -> TensorTerms:
    """Whiten the vocabulary-sized pieces: A = Q G, R = R_Q G, e2 = G^T E2_Q G, m = W^T M1."""
    xp = get_array_module(whitening.Q)
    G = xp.asarray(whitening.G)
    A = whitening.Q.astype(xp.float64) @ G
    R = projection.word_third @ G
    Rp = R - (2.0 / 3.0) * stats.word_w3[:, None] * A
    e2 = xp.asarray(whitening.G.T @ e2_projected @ whitening.G)
    m = A.T @ stats.m1
    return TensorTerms(A=A, Rp=Rp, e2=e2, m=m, n_docs=stats.n_docs, alpha0=alpha0)


def word_tensor(terms: TensorTerms, dtype: Any, block_words: int = 8192) -> Any:
    """(k, k, k) sum_t a_t(x)a_t(x)r'_t + its two other placements, blockwise over words."""
    xp = get_array_module(terms.A)
    k = terms.A.shape[1]
    rows, cols = (xp.asarray(index) for index in pair_index(k))
    pairs = xp.zeros((len(rows), k), dtype=xp.float64)
    A, Rp = terms.A.astype(dtype), terms.Rp.astype(dtype)
    for start in range(0, A.shape[0], block_words):
        pairs += sum_pair_outer(A[start : start + block_words], Rp[start : start + block_words], rows, cols)
    F = expand_pairs(pairs, k)
    return F + F.transpose(0, 2, 1) + F.transpose(2, 0, 1)


def moment_corrections(terms: TensorTerms) -> Any:
    """(k, k, k) -a0/(a0+2) (E2(x)M1 + 2 placements) + 2 a0^2/((a0+1)(a0+2)) M1^(x3), whitened."""
    xp = get_array_module(terms.A)
    a0, e2, m = terms.alpha0, terms.e2, terms.m
    placements = e2[:, :, None] * m[None, None, :] + e2[:, None, :] * m[None, :, None] + m[:, None, None] * e2[None, :, :]
    cube = m[:, None, None] * m[None, :, None] * m[None, None, :]
    return -(a0 / (a0 + 2.0)) * placements + (2.0 * a0 * a0 / ((a0 + 1.0) * (a0 + 2.0))) * cube


def whitened_tensor(whitening: Whitening, projection: DocumentProjection, terms: TensorTerms, dtype: Any) -> Any:
    """T = M3(W, W, W) as a (k, k, k) float64 backend array, symmetrised."""
    xp = get_array_module(terms.A)
    m = whitening.Q.shape[1]
    G = whitening.G
    doc_q = expand_pairs(projection.third, m)  # (m, m, m) host
    doc = np.tensordot(doc_q, G, axes=([2], [0]))
    doc = np.tensordot(doc, G, axes=([1], [0])).transpose(0, 2, 1)
    doc = np.tensordot(G, doc, axes=([0], [0]))
    e3 = (xp.asarray(doc) - word_tensor(terms, dtype)) / terms.n_docs
    return symmetrize(e3 + moment_corrections(terms))


def symmetrize(T: Any) -> Any:
    """Average of a (k, k, k) array over the 6 permutations of its axes."""
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    return sum(T.transpose(p) for p in perms) / 6.0


class DenseTensor:
    """A formed symmetric (k, k, k) tensor: T(I, U, U) for many columns at once."""

    def __init__(self, T: Any):
        self.T = T
        self.dim = int(T.shape[0])
        self.xp = get_array_module(T)

    def apply(self, U: Any) -> Any:
        """(k, L) columns T(I, u_l, u_l) for U (k, L)."""
        k, L = U.shape
        TU = (self.T.reshape(k * k, k) @ U).reshape(k, k, L)
        return (TU * U[None, :, :]).sum(axis=1)


class ImplicitTensor:
    """T(I, U, U) straight from P = X W (D, k), never forming T (for large k).

    doc:  P^T (w3 * (P U)^2) / D
    word: [A^T (2 (A U) * (R' U)) + R'^T (A U)^2] / D
    plus the M1 corrections in closed form.
    """

    def __init__(self, P: Any, doc_w3: Any, terms: TensorTerms):
        self.P = P
        self.doc_w3 = doc_w3
        self.terms = terms
        self.dim = int(P.shape[1])
        self.xp = get_array_module(P)

    def apply(self, U: Any) -> Any:
        t = self.terms
        Pc = self.P
        PU = Pc @ U.astype(Pc.dtype)
        doc = (Pc.T @ (self.doc_w3[:, None] * PU * PU)).astype(U.dtype)
        AU, RU = t.A @ U, t.Rp @ U
        word = t.A.T @ (2.0 * AU * RU) + t.Rp.T @ (AU * AU)
        e2U = t.e2 @ U
        mU = t.m @ U
        a0 = t.alpha0
        corrections = -(a0 / (a0 + 2.0)) * (2.0 * e2U * mU[None, :] + t.m[:, None] * (U * e2U).sum(axis=0)[None, :])
        corrections += (2.0 * a0 * a0 / ((a0 + 1.0) * (a0 + 2.0))) * t.m[:, None] * (mU * mU)[None, :]
        return (doc - word) / t.n_docs + corrections


def _host(x: Any) -> np.ndarray:
    return x.get() if hasattr(x, "get") else np.asarray(x)
