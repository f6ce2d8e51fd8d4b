"""Document-topic inference with topics fixed: batched mean-field variational inference.

For a document with counts c (length V), topics beta (k x V) and Dirichlet prior alpha (k,),
the variational posterior q(theta) = Dirichlet(gamma) satisfies the fixed point

    E_dk  = exp(digamma(gamma_dk) - digamma(sum_j gamma_dj))
    gamma = alpha + E_d * (beta @ (c / (E_d @ beta)))          (elementwise in k)

(the word-topic responsibilities phi are never formed). A batch of documents is updated
at once: the normaliser E_d @ beta is evaluated only at the nonzeros of the sparse count
matrix (a gather of nnz x k), and the sums over words are one sparse-times-dense product.
The same code runs on NumPy/SciPy and on CuPy/cupyx, chosen from the input.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gpu.backend import (
    csr_row_indices,
    digamma,
    get_array_module,
    host_indptr,
    is_host,
    rowwise_dot,
    sparse_module_for,
    sparse_module_of,
    threads_for,
    transposed_product,
)
from gpu.errors import InvalidInput
from gpu.host_kernels import host_posteriors
from gpu.passes import default_threads

# A batch holds about this many gathered elements (nonzeros times topics) per temporary.
DEFAULT_GATHER_BUDGET = 1 << 22
# On a GPU, larger batches: at DEFAULT_GATHER_BUDGET a batch of NYTimes-sized documents at
# k=100 is ~180 documents and its kernels are launch-bound. 2^25 elements are 128 MiB per
# float32 temporary (the fixed point keeps about three), well inside the default 2 GiB budget.
GPU_GATHER_BUDGET = 1 << 25
SIMPLEX_TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-6}  # times sqrt(V)


@dataclass(frozen=True)
class InferenceInputs:
    """Validated inputs on one array module.

    counts:     (D, V) CSR matrix, float dtype, nonnegative.
    topic_word: (k, V) dense, rows on the simplex.
    alpha:      (k,) dense, positive.
    """

    counts: Any
    topic_word: Any
    alpha: Any
    xp: Any


def validate_inference_inputs(X: Any, topic_word: Any, alpha: Any, *, name: str = "X") -> InferenceInputs:
    """Check shapes, signs and normalisation; convert to CSR with the topics' float dtype.

    Raises InvalidInput naming the argument (and document index / topic index) at fault.
    """
    xp = get_array_module(topic_word)
    host_dense = is_host(xp) and isinstance(X, np.ndarray)
    if get_array_module(X) is not xp and not host_dense:
        raise InvalidInput(f"{name} and topic_word must live on the same device (NumPy or CuPy)")
    sparse = sparse_module_for(xp)
    topic_word = xp.asarray(topic_word)
    if topic_word.ndim != 2:
        raise InvalidInput(f"topic_word must be 2-D (n_topics, n_words), got shape {tuple(topic_word.shape)}")
    dtype = topic_word.dtype if topic_word.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    topic_word = topic_word.astype(dtype, copy=False)
    n_topics, n_words = (int(s) for s in topic_word.shape)
    if n_topics == 0 or n_words == 0:
        raise InvalidInput(f"topic_word must be non-empty, got shape {(n_topics, n_words)}")
    if not bool(xp.isfinite(topic_word).all()):
        raise InvalidInput("topic_word contains NaN or infinite entries")
    if bool((topic_word < 0).any()):
        topic = int(xp.nonzero((topic_word < 0).any(axis=1))[0][0])
        raise InvalidInput(f"topic_word has negative entries (first in topic {topic})")
    row_error = xp.abs(topic_word.sum(axis=1) - 1.0)
    tolerance = SIMPLEX_TOLERANCE[np.dtype(dtype)] * max(1.0, n_words ** 0.5)
    if bool((row_error > tolerance).any()):
        topic = int(xp.argmax(row_error))
        raise InvalidInput(
            f"topic_word rows must sum to 1: topic {topic} sums to {float(topic_word[topic].sum())!r}"
        )

    alpha = xp.asarray(alpha, dtype=dtype).reshape(-1) if np.ndim(alpha) else xp.full(n_topics, float(alpha), dtype=dtype)
    if alpha.shape[0] != n_topics:
        raise InvalidInput(f"alpha has {alpha.shape[0]} entries but topic_word has {n_topics} topics")
    if not bool(xp.isfinite(alpha).all()) or bool((alpha <= 0).any()):
        topic = int(xp.argmin(xp.where(xp.isfinite(alpha), alpha, -1.0)))
        raise InvalidInput(f"alpha must be finite and > 0: alpha[{topic}] = {float(alpha[topic])!r}")

    if sparse.issparse(X):
        counts = X.tocsr()
    elif host_dense:
        if X.ndim != 2:
            raise InvalidInput(f"{name} must be 2-D (n_docs, n_words), got shape {X.shape}")
        counts = sparse.csr_matrix(X)
    else:
        raise InvalidInput(f"{name} must be a sparse (n_docs, n_words) count matrix, got {type(X).__name__}")
    if counts.shape[1] != n_words:
        raise InvalidInput(f"{name} has {counts.shape[1]} columns (words) but topic_word has {n_words}")
    # read in place when the dtype matches: nothing downstream writes into the counts
    counts = counts.astype(dtype) if counts.dtype != dtype else counts
    if counts.nnz:
        data = counts.data
        bad = ~xp.isfinite(data) | (data < 0)
        if bool(bad.any()):
            position = int(xp.nonzero(bad)[0][0])
            doc = int(xp.searchsorted(counts.indptr, position, side="right")) - 1
            raise InvalidInput(f"{name} has a negative or non-finite count in document {doc}")
    return InferenceInputs(counts=counts, topic_word=topic_word, alpha=alpha, xp=xp)


def gather_budget(xp: Any) -> int:
    """Gathered elements (nonzeros times topics) per batch temporary on the device of ``xp``."""
    return DEFAULT_GATHER_BUDGET if is_host(xp) else GPU_GATHER_BUDGET


def batch_bounds(
    indptr: np.ndarray, n_topics: int, batch_size: int | None, min_batches: int = 1,
    elements: int = DEFAULT_GATHER_BUDGET,
) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of the batches; sized by ``batch_size`` or by the gather
    budget ``elements`` (:func:`gather_budget` of the device), and (without ``batch_size``)
    at least ``min_batches`` of them when there are enough nonzeros, so that threads have
    work to share."""
    n_docs = len(indptr) - 1
    if n_docs == 0:
        return []
    if batch_size is not None:
        return [(s, min(s + batch_size, n_docs)) for s in range(0, n_docs, batch_size)]
    budget = max(elements // max(n_topics, 1), 1)
    if min_batches > 1:
        budget = min(budget, max(int(indptr[-1]) // min_batches + 1, 4096))
    bounds, start = [], 0
    while start < n_docs:
        stop = int(np.searchsorted(indptr, indptr[start] + budget, side="right")) - 1
        stop = min(max(stop, start + 1), n_docs)
        bounds.append((start, stop))
        start = stop
    return bounds


def map_batches(
    work: Callable[[int, int], Any], bounds: list[tuple[int, int]], n_threads: int, pool: Executor | None = None
) -> Iterator[Any]:
    """work(start, stop) for each batch, yielded in batch order, on ``n_threads`` threads
    (NumPy's gathers and SciPy's sparse products release the GIL), in ``pool`` when given
    (callers looping over many passes keep one pool). At most 2 x n_threads batches are in
    flight or finished and not yet taken, so a caller that folds each result into a running
    sum holds that many partial results, whatever the number of batches. Exceptions
    propagate when their batch's turn comes."""
    if n_threads <= 1 or len(bounds) <= 1:
        for start, stop in bounds:
            yield work(start, stop)
        return
    executor = pool if pool is not None else ThreadPoolExecutor(max_workers=n_threads)
    pending: deque = deque()
    try:
        for start, stop in bounds:
            pending.append(executor.submit(work, start, stop))
            if len(pending) >= 2 * n_threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        if pool is None:
            executor.shutdown(wait=True)


def prior_gamma(alpha: Any, lengths: Any) -> Any:
    """(n, k) the usual start of the variational fixed point: alpha (k,) plus an even share
    of each document's length (n,) (same array module and dtype as alpha)."""
    return alpha[None, :] + (lengths / alpha.shape[0])[:, None]


def expected_topic_weights(xp: Any, gamma: Any) -> Any:
    """(n, k) exp(E_q[log theta]) for Dirichlet(gamma) rows."""
    return xp.exp(digamma(xp, gamma) - digamma(xp, gamma.sum(axis=1, keepdims=True)))


def scaled_counts(xp: Any, counts: Any, rows: Any, weights: Any, topic_word_t: Any, gathered: Any = None) -> Any:
    """CSR with entries c_dw / (weights_d @ topic_word[:, w]), same sparsity as ``counts``.

    counts: (n, V) CSR; rows: (nnz,) row of each entry; weights: (n, k);
    topic_word_t: (V, k); gathered: optional (nnz, k) topic_word_t[counts.indices], for
    callers that reuse it across iterations. Words of zero probability under every topic
    get a floor normaliser (they then contribute nothing, since their topic column is zero).
    """
    if gathered is None:
        gathered = xp.take(topic_word_t, counts.indices, axis=0)
    return csr_with_data(counts, count_ratios(xp, counts, rows, weights, gathered))


def csr_with_data(counts: Any, data: Any) -> Any:
    """A CSR matrix with the structure of ``counts`` (shared, not copied) and entries
    ``data`` (nnz,), flagged canonical when ``counts`` is: a fresh cupyx matrix is not, and
    cupyx checks the flag (a kernel and a device synchronisation) before every product."""
    sparse = sparse_module_of(counts)
    out = sparse.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)
    if counts.has_canonical_format:
        out.has_canonical_format = True
    return out


def count_ratios(xp: Any, counts: Any, rows: Any, weights: Any, gathered: Any) -> Any:
    """(nnz,) c_dw / (weights_d . gathered_dw) for every stored entry of the CSR ``counts``:
    rows (nnz,) the row of each entry, weights (n, m), gathered (nnz, m) the topic
    probabilities of each entry's word under the same m topics. A normaliser below the
    square root of the dtype's smallest normal number is raised to it (words of zero
    probability under every topic then contribute nothing)."""
    norm = rowwise_dot(xp.take(weights, rows, axis=0), gathered)
    floor = float(np.sqrt(np.finfo(norm.dtype).tiny))
    return counts.data / xp.maximum(norm, floor)


def variational_batch(
    inputs: InferenceInputs,
    counts: Any,
    *,
    gamma: Any = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    check_every: int = 1,
) -> tuple[Any, int, Any]:
    """Run the fixed point on one batch of documents.

    counts: (n, V) CSR batch. gamma: optional (n, k) warm start.
    Returns (gamma (n, k), iterations run, weights (n, k) = exp(E[log theta]) of that gamma).
    A document is done when no entry of its posterior mean moved more than ``tol`` since the
    previous check; done documents leave the working set (checked every ``check_every``
    iterations, since each check synchronises a GPU).
    """
    xp = inputs.xp
    alpha, topic_word = inputs.alpha, inputs.topic_word
    topic_word_t = topic_word.T.copy()  # (V, k) C-ordered: a word's topics side by side for the gathers
    # the products' operand: cupyx multiplies by a Fortran-ordered (V, k), which topic_word.T already is
    product_t = topic_word_t if is_host(xp) else topic_word.T
    if gamma is None:
        gamma = prior_gamma(alpha, xp.asarray(counts.sum(axis=1)).reshape(-1))
    gamma = gamma.copy()
    weights = expected_topic_weights(xp, gamma)
    active = None  # row indices still iterating; None means all rows
    work_counts, work_gamma, work_weights = counts, gamma, weights
    rows = csr_row_indices(work_counts)
    gathered = xp.take(topic_word_t, work_counts.indices, axis=0)  # (nnz, k), fixed while the rows are
    mean = work_gamma / work_gamma.sum(axis=1, keepdims=True)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        scaled = scaled_counts(xp, work_counts, rows, work_weights, topic_word_t, gathered)
        work_gamma = alpha[None, :] + work_weights * xp.asarray(scaled @ product_t)
        work_weights = expected_topic_weights(xp, work_gamma)
        if iterations % check_every and iterations != max_iter:
            continue
        new_mean = work_gamma / work_gamma.sum(axis=1, keepdims=True)
        moving = xp.abs(new_mean - mean).max(axis=1) >= tol if work_gamma.shape[0] else xp.zeros(0, dtype=bool)
        if active is None:
            gamma, weights = work_gamma, work_weights
        else:
            gamma[active] = work_gamma
            weights[active] = work_weights
        n_moving = int(moving.sum())
        if n_moving == 0:
            break
        if n_moving < moving.shape[0]:
            keep = xp.nonzero(moving)[0]
            active = keep if active is None else active[keep]
            work_counts = work_counts[keep]
            work_gamma, work_weights, new_mean = work_gamma[keep], work_weights[keep], new_mean[keep]
            rows = csr_row_indices(work_counts)
            gathered = xp.take(topic_word_t, work_counts.indices, axis=0)
        mean = new_mean
    return gamma, iterations, weights


def active_topic_batch(
    inputs: InferenceInputs, counts: Any, gamma: Any, n_active: int, n_iter: int
) -> tuple[Any, Any]:
    """Variational updates restricted to each document's ``n_active`` topics with the largest
    gamma; the other topics keep their prior (phi = 0 there, gamma = alpha).

    With k topics this gathers (nnz, n_active) instead of (nnz, k) per iteration: documents
    use a few topics each, so for k well above n_active the updates are several times
    cheaper and nearly the same (python3-doc text, k=50, n_active=10: expected counts within
    0.1% in L1 of the full update).

    counts: (n, V) CSR batch; gamma: (n, k) warm start (its ranking picks the topics).
    Returns (gamma (n, k), expected counts (k, V) float64 without the topic_word factor:
    sum_d E_dk c_dw / (E_d @ topic_word[:, w]) over the active (d, k)).
    """
    xp = inputs.xp
    alpha, topic_word = inputs.alpha, inputs.topic_word
    n_docs = counts.shape[0]
    n_topics = alpha.shape[0]
    sparse = sparse_module_for(xp)
    active = xp.argpartition(-gamma, n_active - 1, axis=1)[:, :n_active]  # (n, m)
    rows = csr_row_indices(counts)
    topic_word_t = xp.ascontiguousarray(topic_word.T)  # (V, k): a word's topics side by side
    gathered = topic_word_t[counts.indices[:, None], active[rows]]  # (nnz, m)
    active_alpha = alpha[active]
    inactive_alpha = alpha.sum() - active_alpha.sum(axis=1, keepdims=True)
    own_row = xp.arange(n_docs)[:, None]
    active_gamma = gamma[own_row, active]
    # sums over each document's entries as one sparse product: (n, nnz) incidence @ (nnz, m)
    incidence = sparse.csr_matrix(
        (xp.ones(counts.nnz, dtype=gathered.dtype), xp.arange(counts.nnz, dtype=counts.indptr.dtype), counts.indptr),
        shape=(n_docs, counts.nnz),
    )

    def weights_of(values: Any) -> Any:  # exp(E[log theta]) of the active topics (n, m)
        return xp.exp(digamma(xp, values) - digamma(xp, values.sum(axis=1, keepdims=True) + inactive_alpha))

    def ratio_of(weights: Any) -> Any:  # c_dw / (E_d @ topic_word[:, w]) over the active topics (nnz,)
        return count_ratios(xp, counts, rows, weights, gathered).astype(gathered.dtype, copy=False)

    weights = weights_of(active_gamma)
    for _ in range(n_iter):
        active_gamma = active_alpha + weights * xp.asarray(incidence @ (gathered * ratio_of(weights)[:, None]))
        weights = weights_of(active_gamma)
    full = xp.broadcast_to(alpha[None, :], gamma.shape).astype(gamma.dtype)
    full[own_row, active] = active_gamma
    # expected counts at the final state, as the full E-step computes them: the count ratios
    # times each document's weights (zero off its active topics), summed over documents by a
    # transposed product (no atomic adds on a GPU, so the sums are reproducible)
    full_weights = xp.zeros((n_docs, n_topics), dtype=xp.float64)
    full_weights[own_row, active] = weights
    ratios = csr_with_data(counts, ratio_of(weights).astype(xp.float64))
    expected = xp.asarray(transposed_product(ratios, full_weights)).T
    return full, expected


def infer_gamma(
    inputs: InferenceInputs,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    batch_size: int | None = None,
    gamma_init: Any = None,
    n_threads: int | None = None,
    pool: Executor | None = None,
) -> tuple[Any, int]:
    """(D, k) variational Dirichlet parameters for all documents, and the most iterations any document ran.

    Host batches run the compiled per-document loop (:func:`gpu.host_kernels.host_posteriors`,
    each document narrowed to the topics holding 1 - ``tol`` of its expected counts once they
    are at most half of k) on ``n_threads`` threads (None: all usable cores); GPU batches run
    :func:`variational_batch` in turn.
    """
    xp = inputs.xp
    counts = inputs.counts
    n_docs, n_topics = counts.shape[0], inputs.alpha.shape[0]
    gamma = xp.empty((n_docs, n_topics), dtype=inputs.topic_word.dtype)
    check_every = 1 if is_host(xp) else 5
    indptr = host_indptr(counts)
    threads = threads_for(xp, n_threads or default_threads())

    host_topics = np.ascontiguousarray(inputs.topic_word.T) if is_host(xp) else None

    def work(start: int, stop: int) -> int:
        warm = None if gamma_init is None else gamma_init[start:stop]
        if host_topics is not None:
            batch = counts[start:stop]
            gamma[start:stop] = prior_gamma(inputs.alpha, xp.asarray(batch.sum(axis=1)).reshape(-1)) if warm is None else warm
            # a document's support may drop topics holding a share ``tol`` of its expected counts:
            # the posterior means move by about that much, as within the tolerance itself
            return host_posteriors(batch, host_topics, inputs.alpha, gamma[start:stop], max_iter=max_iter, tol=tol,
                                   support_mass=tol).iterations
        batch_gamma, iterations, _ = variational_batch(
            inputs, counts[start:stop], gamma=warm, max_iter=max_iter, tol=tol, check_every=check_every
        )
        gamma[start:stop] = batch_gamma
        return iterations

    bounds = batch_bounds(indptr, n_topics, batch_size, min_batches=2 * threads if threads > 1 else 1,
                          elements=gather_budget(xp))
    return gamma, max(map_batches(work, bounds, threads, pool), default=0)


def _check_iteration_parameters(max_iter: int, tol: float, batch_size: int | None) -> None:
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise InvalidInput(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not np.isfinite(tol) or tol <= 0:
        raise InvalidInput(f"tol must be > 0, got {tol!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise InvalidInput(f"batch_size must be None or an integer >= 1, got {batch_size!r}")


def infer_doc_topic(
    X: Any,
    topic_word: Any,
    alpha: Any,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    batch_size: int | None = None,
    return_iterations: bool = False,
) -> Any:
    """Document-topic mixtures with the topics held fixed.

    Parameters
    ----------
    X : (D, V) sparse CSR count matrix (SciPy or cupyx; a dense NumPy array is accepted).
    topic_word : (k, V) topic-word distributions, rows on the simplex (same device as X).
    alpha : (k,) Dirichlet prior, all entries > 0 (a scalar means a symmetric prior).
    max_iter : most fixed-point iterations per batch.
    tol : stop a batch when no posterior-mean entry moves more than this.
    batch_size : documents per batch; None sizes batches by a memory budget.
    return_iterations : also return the most iterations any batch ran.

    Returns
    -------
    doc_topic : (D, k) posterior-mean mixtures gamma / gamma.sum(1); rows sum to 1. Empty
        documents get the prior mean alpha / alpha.sum().
    iterations : int, only with ``return_iterations``.
    """
    _check_iteration_parameters(max_iter, tol, batch_size)
    inputs = validate_inference_inputs(X, topic_word, alpha)
    gamma, iterations = infer_gamma(inputs, max_iter=max_iter, tol=tol, batch_size=batch_size)
    doc_topic = gamma / gamma.sum(axis=1, keepdims=True)
    if return_iterations:
        return doc_topic, iterations
    return doc_topic
