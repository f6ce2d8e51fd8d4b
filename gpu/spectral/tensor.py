"""The whitened third moment T = M3(W, W, W) (k, k, k), built blockwise, and T(I, u, u).

One pass over the documents computes, per block, P = X_b W (B, k) and adds the partials
- third = sum_d w3_d p_d (x) p_d (x) p_d               (k, k, k), using its symmetry
- R     = X^T diag(w3) P                              (V, k), the r_t of DESIGN.md
The word terms come from the rows a_t of W, blockwise over the vocabulary, and the M1
terms from m = W^T M1 and W^T E2 W = I + alpha0/(alpha0+1) m m^T. Nothing of size
(V, k^2) or (D, k^2) is ever whole in memory. For large k, :class:`ImplicitTensor`
applies T(I, U, U) from P = X W without forming T.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gpu.backend import get_array_module, is_host, transposed_product
from gpu.passes import Progress, row_slice, run_pass
from gpu.spectral.moments import CorpusStats


@dataclass(frozen=True)
class WhitenedSums:
    """Sums over documents of the tensor pass.

    third:      (k, k, k) float64 backend array sum_d w3_d p_d (x) p_d (x) p_d; None in implicit mode.
    word_third: (V, k) float64 backend array R = X^T diag(w3) X W.
    projected:  (D, k) P = X W (compute dtype) in implicit mode, else None.
    """

    third: Any | None
    word_third: Any
    projected: Any | None


PAIR_BLOCK_ELEMENTS = 2**22  # entries of one (rows, pairs) block of pair products (CPU)
GPU_PAIR_BLOCK_ELEMENTS = 2**26  # larger blocks on a GPU: fewer, bigger kernels


def sum_pair_outer(Y: Any, Z: Any) -> Any:
    """(n, n, q) float64 F[i, j] = sum_b Y_bi Y_bj Z_b, symmetric in (i, j).

    Y: (B, n), Z: (B, q). Only the unique pairs i <= j are multiplied: per row block and
    index i, the products Y_bi Y_bj (j >= i) as one (rows, n - i) array and one matrix
    product with Z. Row blocks keep that array below PAIR_BLOCK_ELEMENTS / 4 entries, near
    the cache (gathering all pairs of a block at once cost 10x the matrix products).
    """
    xp = get_array_module(Y)
    n, q = Y.shape[1], Z.shape[1]
    budget = PAIR_BLOCK_ELEMENTS if is_host(xp) else GPU_PAIR_BLOCK_ELEMENTS
    step = max(64, budget // max(4 * n, 1))
    full = xp.zeros((n, n, q), dtype=xp.float64)
    for start in range(0, Y.shape[0], step):
        block, weights = Y[start : start + step], Z[start : start + step]
        for i in range(n):
            full[i, i:] += ((block[:, i : i + 1] * block[:, i:]).T @ weights).astype(xp.float64, copy=False)
    for i in range(n):
        full[i + 1 :, i] = full[i, i + 1 :]
    return full


SYMMETRIC_GROUP = 24  # index-group size of :func:`sum_symmetric_cube`


def sum_symmetric_cube(P: Any, weighted: Any) -> Any:
    """(k, k, k) float64 sum_b weighted_b (x) P_b (x) P_b for weighted = w * P (symmetric).

    Indices are cut into groups of SYMMETRIC_GROUP; only group triples a <= b <= c are
    multiplied (pair products of groups a, b against all columns of groups >= b, one
    matrix product each), about half the work of the unique-pair form, and the other
    group triples are filled by symmetry.
    """
    xp = get_array_module(P)
    n_rows, k = P.shape
    edges = list(range(0, k, SYMMETRIC_GROUP)) + [k]
    groups = list(zip(edges[:-1], edges[1:]))
    budget = PAIR_BLOCK_ELEMENTS if is_host(xp) else GPU_PAIR_BLOCK_ELEMENTS
    step = max(64, budget // (SYMMETRIC_GROUP * SYMMETRIC_GROUP))
    cube = xp.zeros((k, k, k), dtype=xp.float64)
    for a, (a0, a1) in enumerate(groups):
        for b0, b1 in groups[a:]:
            part = xp.zeros(((a1 - a0) * (b1 - b0), k - b0), dtype=xp.float64)
            for start in range(0, n_rows, step):
                rows = slice(start, start + step)
                left = (weighted[rows, a0:a1, None] * P[rows, None, b0:b1]).reshape(-1, (a1 - a0) * (b1 - b0))
                part += (left.T @ P[rows, b0:]).astype(xp.float64, copy=False)
            cube[a0:a1, b0:b1, b0:] = part.reshape(a1 - a0, b1 - b0, k - b0)
    full = xp.zeros_like(cube)
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    for a, ga in enumerate(groups):
        for b in range(a, len(groups)):
            for c in range(b, len(groups)):
                trio = (ga, groups[b], groups[c])
                block = cube[ga[0] : ga[1], groups[b][0] : groups[b][1], groups[c][0] : groups[c][1]]
                for perm in perms:
                    target = tuple(slice(*trio[axis]) for axis in perm)
                    full[target] = block.transpose(perm)
    return full


def whitened_document_sums(
    stats: CorpusStats,
    W: Any,
    *,
    blocks: list[tuple[int, int]],
    with_third: bool,
    keep_projection: bool,
    n_threads: int = 1,
    progress: Progress = None,
    cached: Callable[[int], Any] | None = None,
) -> WhitenedSums:
    """One pass: P = X_b W per block, adding R and (when ``with_third``) the third moment.

    W: (V, k) whitening matrix. With ``keep_projection`` the (D, k) P is kept (implicit mode).
    ``cached(start)``, when given, returns the block's P computed earlier (or None).
    """
    X, w3 = stats.X, stats.doc_w3
    xp = get_array_module(W)
    Wc = W.astype(X.dtype)
    kept: dict[int, Any] = {}

    def partial(start: int, stop: int) -> tuple[Any, ...]:
        block = row_slice(X, start, stop)
        P = cached(start) if cached is not None else None
        if P is None:
            P = block @ Wc
        weighted = P * w3[start:stop, None]
        word_third = transposed_product(block, weighted).astype(xp.float64, copy=False)
        third = sum_symmetric_cube(P, weighted) if with_third else xp.zeros((1, 1))
        if keep_projection:
            kept[start] = P
        return word_third, third

    word_third, third = run_pass(partial, blocks, n_threads=n_threads, stage="tensor", progress=progress)
    projected = xp.concatenate([kept[start] for start, _ in blocks], axis=0) if keep_projection else None
    return WhitenedSums(third=third if with_third else None, word_third=word_third, projected=projected)


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


def tensor_terms(stats: CorpusStats, W: Any, sums: WhitenedSums, alpha0: float) -> TensorTerms:
    """Whitened vocabulary-sized pieces: A = W, R' = R - (2/3) s A, m = W^T M1, e2 = W^T E2 W.

    W^T E2 W = W^T M2 W + alpha0/(alpha0+1) m m^T and W^T M2 W = I by construction.
    """
    xp = get_array_module(W)
    Rp = sums.word_third - (2.0 / 3.0) * stats.word_w3[:, None] * W
    m = W.T @ stats.m1
    e2 = xp.eye(W.shape[1]) + (alpha0 / (alpha0 + 1.0)) * xp.outer(m, m)
    return TensorTerms(A=W, Rp=Rp, e2=e2, m=m, n_docs=stats.n_docs, alpha0=alpha0)


def word_tensor(terms: TensorTerms, dtype: Any, *, n_threads: int = 1, block_words: int = 8192) -> Any:
    """(k, k, k) sum_t a_t(x)a_t(x)r'_t + its two other placements, blockwise over words."""
    A, Rp = terms.A.astype(dtype), terms.Rp.astype(dtype)

    def partial(start: int, stop: int) -> tuple[Any]:
        return (sum_pair_outer(A[start:stop], Rp[start:stop]),)

    blocks = [(start, min(A.shape[0], start + block_words)) for start in range(0, A.shape[0], block_words)]
    (F,) = run_pass(partial, blocks, n_threads=n_threads, stage="tensor")
    return F + F.transpose(0, 2, 1) + F.transpose(2, 0, 1)


def moment_corrections(terms: TensorTerms) -> Any:
    """(k, k, k) -a0/(a0+2) (E2(x)M1 + 2 placements) + 2 a0^2/((a0+1)(a0+2)) M1^(x3), whitened."""
    a0, e2, m = terms.alpha0, terms.e2, terms.m
    placements = e2[:, :, None] * m[None, None, :] + e2[:, None, :] * m[None, :, None] + m[:, None, None] * e2[None, :, :]
    cube = m[:, None, None] * m[None, :, None] * m[None, None, :]
    return -(a0 / (a0 + 2.0)) * placements + (2.0 * a0 * a0 / ((a0 + 1.0) * (a0 + 2.0))) * cube


def whitened_tensor(sums: WhitenedSums, terms: TensorTerms, dtype: Any, *, n_threads: int = 1) -> Any:
    """T = M3(W, W, W) as a (k, k, k) float64 backend array, symmetrised."""
    e3 = (sums.third - word_tensor(terms, dtype, n_threads=n_threads)) / terms.n_docs
    return symmetrize(e3 + moment_corrections(terms))


def symmetrize(T: Any) -> Any:
    """Average of a (k, k, k) array over the 6 permutations of its axes."""
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    return sum(T.transpose(p) for p in perms) / 6.0


class DenseTensor:
    """A formed symmetric (k, k, k) tensor: T(I, U, U) for many columns at once.

    Iterates run in T's dtype (float32 halves the memory traffic of each application).
    """

    def __init__(self, T: Any):
        self.xp = get_array_module(T)
        self.T = self.xp.array(T, order="C", copy=True)  # deflate() changes it in place
        self.dim = int(T.shape[0])
        self._unfolded = self.T.reshape(self.dim * self.dim, self.dim)
        self.dtype = self.T.dtype

    def deflate(self, value: float, vector: Any) -> None:
        """T <- T - value v(x)v(x)v for a (k,) or (k, 1) vector v."""
        v = vector.reshape(-1)
        self.T -= value * (v[:, None, None] * v[None, :, None] * v[None, None, :])

    def apply(self, U: Any) -> Any:
        """(k, L) columns T(I, u_l, u_l) for U (k, L)."""
        k, L = U.shape
        TU = (self._unfolded @ U).reshape(k, k, L)
        if is_host(self.xp):  # one contraction, not a (k, k, L) product and a strided sum: half the time at k=100
            return np.einsum("ijl,jl->il", TU, U)
        return (TU * U[None, :, :]).sum(axis=1)  # CuPy: one fused reduction (its einsum would batch tiny products)


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
        self.dtype = np.dtype(np.float64)

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
