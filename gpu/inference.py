"""Document-topic inference with topics fixed (mean-field variational inference): input
validation, batching of the documents, and :func:`infer_doc_topic` over all of them.

Each batch runs the fixed point of :mod:`gpu.batched_inference` (its docstring has the
formulas): on the host as the compiled per-document loop of :mod:`gpu.host_kernels` on
threads, on a GPU as :func:`gpu.batched_inference.variational_batch`, batch after batch.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from gpu.backend import get_array_module, host_indptr, is_host, sparse_module_for, threads_for
from gpu.batched_inference import InferenceInputs, prior_gamma, variational_batch
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
