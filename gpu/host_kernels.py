"""Compiled host kernels (Numba) for the variational E-step: one document at a time, each to
its own convergence, with the document's topic rows gathered once into a small scratch.

The fixed point is the one of :mod:`gpu.inference` (the NumPy/CuPy batched form, which the
GPU path runs): for counts c_w, topics beta (k x V) and prior alpha,

    E_k   = exp(digamma(gamma_k) - digamma(sum_j gamma_j))
    gamma = alpha + E * sum_w beta[:, w] c_w / (E @ beta[:, w])

Why a compiled loop on the host: the batched NumPy form gathers nnz x k values from the
(V, k) topics on every iteration and keeps converged documents in the batch until they leave
its working set; per document, the gathered rows stay in cache across iterations and the
sums over k vectorise. Figures: docs/decisions.md, "Compiled host E-step".

The kernels release the GIL (callers run contiguous document ranges on threads, each with its
own accumulators) and are compiled once per dtype combination, cached on disk by Numba.
Arrays: CSR ``indptr`` (n+1,), ``indices`` (nnz,), ``data`` (nnz,) of the document range;
``topic_word_t`` (V, k) C-contiguous; ``alpha`` (k,); ``gamma`` (n, k) warm start, updated in
place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

# reassociation lets the k-long dot products vectorise; no flag that assumes finite values
_FAST = {"reassoc", "contract", "arcp", "nsz"}
# the smallest normaliser, by precision (as gpu.inference floors it)
_FLOOR = math.sqrt(np.finfo(np.float64).tiny)
_FLOOR32 = math.sqrt(np.finfo(np.float32).tiny)
PROBABILITY_FLOOR = 1e-300  # gpu.quality's floor of p(w | d) in log likelihoods
SUPPORT_WARMUP = 3  # full iterations between a document's tries to go on with its support alone


@njit(cache=True, nogil=True, fastmath=_FAST)
def _digamma(x: float) -> float:
    """digamma(x) for x > 0: the recurrence up to 6, its sum of 1/(x + i) kept as one fraction
    (one division), then the asymptotic series to x^-16 (error < 1e-13)."""
    numerator, denominator = 0.0, 1.0
    while x < 6.0:
        numerator = numerator * x + denominator
        denominator *= x
        x += 1.0
    inverse_square = 1.0 / (x * x)
    series = inverse_square * (1.0 / 12 - inverse_square * (1.0 / 120 - inverse_square * (
        1.0 / 252 - inverse_square * (1.0 / 240 - inverse_square * (1.0 / 132 - inverse_square * (
            691.0 / 32760 - inverse_square * (1.0 / 12 - inverse_square * 3617.0 / 8160)))))))
    return math.log(x) - 0.5 / x - series - numerator / denominator


@njit(cache=True, nogil=True, fastmath=_FAST)
def _weights(gamma, extra, out) -> None:
    """out = exp(digamma(gamma) - digamma(sum(gamma) + extra)) for one document's (m,) gamma."""
    total = extra
    for t in range(gamma.shape[0]):
        total += gamma[t]
    shift = _digamma(total)
    for t in range(gamma.shape[0]):
        out[t] = math.exp(_digamma(gamma[t]) - shift)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _iterate(rows, counts, alpha, gamma, weights, extra, max_iter, tol, check, floor) -> int:
    """The fixed point on one document restricted to m topics: ``rows`` (nnz_d, m) the topic
    probabilities of its words, ``counts`` (nnz_d,), ``alpha``/``gamma``/``weights`` (m,)
    (gamma updated in place, weights left at exp(E[log theta]) of the final gamma), ``extra``
    the prior mass of the topics left out. With ``check`` it stops once no entry of the
    posterior mean moves by ``tol`` or more; returns the iterations run."""
    m = gamma.shape[0]
    accumulated = np.empty(m, dtype=weights.dtype)
    mean = np.empty(m)
    total = extra
    for t in range(m):
        total += gamma[t]
    for t in range(m):
        mean[t] = gamma[t] / total
    iterations = 0
    for iterations in range(1, max_iter + 1):
        accumulated[:] = 0.0
        for j in range(rows.shape[0]):
            norm = weights[0] * rows[j, 0]
            for t in range(1, m):
                norm += weights[t] * rows[j, t]
            ratio = counts[j] / max(norm, floor)
            for t in range(m):
                accumulated[t] += ratio * rows[j, t]
        total = extra
        for t in range(m):
            gamma[t] = alpha[t] + weights[t] * accumulated[t]
            total += gamma[t]
        _weights(gamma, extra, weights)
        if not check:
            continue
        moved = 0.0
        for t in range(m):
            updated = gamma[t] / total
            moved = max(moved, abs(updated - mean[t]))
            mean[t] = updated
        if moved < tol:
            break
    return iterations


@njit(cache=True, nogil=True, fastmath=_FAST)
def _iterate_on_support(rows, counts, alpha, gamma, weights, max_iter, tol, floor, support_mass, buffer) -> int:
    """Go on with the fixed point of one document (all k topics: ``rows`` (nnz_d, k), ``alpha``,
    ``gamma`` and ``weights`` (k,), updated in place) on its support alone: the fewest topics of
    largest expected count (gamma - alpha) holding 1 - ``support_mass`` of it, when they are at
    most half of the k (else on all topics); the others drop to their prior. ``buffer`` holds at
    least nnz_d x k values. Returns the iterations run."""
    n_topics = gamma.shape[0]
    order = np.argsort(alpha - gamma)  # largest expected count first
    total = 0.0
    for t in range(n_topics):
        total += gamma[t] - alpha[t]
    covered, size = 0.0, 0
    while size < n_topics and covered < (1.0 - support_mass) * total:
        covered += gamma[order[size]] - alpha[order[size]]
        size += 1
    size = max(size, 1)
    if 2 * size > n_topics:
        return -1
    support = order[:size]
    local = buffer[: rows.shape[0] * size].reshape((rows.shape[0], size))
    for j in range(rows.shape[0]):
        for t in range(size):
            local[j, t] = rows[j, support[t]]
    local_alpha = np.empty(size)
    local_gamma = np.empty(size)
    local_weights = np.empty(size, dtype=weights.dtype)
    extra = 0.0
    for t in range(n_topics):
        extra += alpha[t]
    for t in range(size):
        local_alpha[t] = alpha[support[t]]
        local_gamma[t] = gamma[support[t]]
        extra -= local_alpha[t]
    _weights(local_gamma, extra, local_weights)
    iterations = _iterate(local, counts, local_alpha, local_gamma, local_weights, extra, max_iter, tol, True, floor)
    for t in range(n_topics):
        gamma[t] = alpha[t]
    for t in range(size):
        gamma[support[t]] = local_gamma[t]
    _weights(gamma, 0.0, weights)
    return iterations


@njit(cache=True, nogil=True, fastmath=_FAST)
def posterior_range(indptr, indices, data, topic_word_t, alpha, gamma, max_iter, tol, n_active,
                    expected, log_theta, want_loglik, floor_value, support_mass):
    """Run the E-step on every document of a CSR range; returns (most iterations run, training
    log likelihood of the incoming gamma, its tokens).

    n_active = 0: the full update, each document until its posterior mean moves less than
    ``tol`` (at most ``max_iter`` iterations), as :func:`gpu.batched_inference.variational_batch`.
    n_active = m > 0: each document updates only its m topics of largest incoming gamma, for
    exactly ``max_iter`` iterations, the others kept at their prior (phi = 0 there), as
    :func:`gpu.batched_inference.active_topic_batch`.
    support_mass > 0 (full update only): after every SUPPORT_WARMUP full iterations, a document
    whose topics of largest expected count hold 1 - support_mass of its expected counts, in at
    most half of the k topics, goes on with those alone (the others at their prior) to convergence.
    expected: (V, k) float64 accumulator of sum_d E_dk c_dw / (E_d @ beta[:, w]) at the final
    state (a (0, 0) array skips it); log_theta: (k,) float64 accumulator of
    sum_d E_q[log theta_d] (a (0,) array skips it). want_loglik: also score the incoming
    gamma, sum c_dw log(theta_d @ beta[:, w]) with theta = gamma / sum(gamma).
    """
    n_docs = indptr.shape[0] - 1
    n_topics = topic_word_t.shape[1]
    m = n_active if 0 < n_active < n_topics else n_topics
    alpha_total = 0.0
    for t in range(n_topics):
        alpha_total += alpha[t]
    longest = 0
    for d in range(n_docs):
        longest = max(longest, indptr[d + 1] - indptr[d])
    scratch = topic_word_t.dtype  # the inner loops run in the topics' precision
    rows = np.empty((longest, m), dtype=scratch)
    counts = np.empty(longest, dtype=scratch)
    topics = np.arange(n_topics)
    local_alpha = np.empty(m)
    local_gamma = np.empty(m)
    weights = np.empty(m, dtype=scratch)
    floor = np.full(1, floor_value, dtype=scratch)[0]
    prune = m == n_topics and support_mass > 0.0
    support_buffer = np.empty(longest * n_topics if prune else 0, dtype=scratch)
    most, loglik, tokens = 0, 0.0, 0.0
    for d in range(n_docs):
        start, stop = indptr[d], indptr[d + 1]
        size = stop - start
        if want_loglik and size:
            total = 0.0
            for t in range(n_topics):
                total += gamma[d, t]
            for j in range(start, stop):
                probability = 0.0
                for t in range(n_topics):
                    probability += gamma[d, t] * topic_word_t[indices[j], t]
                loglik += data[j] * math.log(max(probability / total, PROBABILITY_FLOOR))
                tokens += data[j]
        if m < n_topics:
            topics = np.argsort(-gamma[d])[:m]
        extra = alpha_total
        for t in range(m):
            local_alpha[t] = alpha[topics[t]]
            local_gamma[t] = gamma[d, topics[t]]
            extra -= local_alpha[t]
        if m == n_topics:
            extra = 0.0
        for j in range(size):
            counts[j] = data[start + j]
            if m == n_topics:  # contiguous copies vectorise; an index array does not
                rows[j] = topic_word_t[indices[start + j]]
            else:
                for t in range(m):
                    rows[j, t] = topic_word_t[indices[start + j], topics[t]]
        _weights(local_gamma, extra, weights)
        if prune:
            iterations = 0
            while iterations < max_iter:  # full rounds until converged or the support is small
                budget = min(SUPPORT_WARMUP, max_iter - iterations)
                done = _iterate(rows[:size], counts[:size], local_alpha, local_gamma, weights, 0.0, budget, tol, True,
                                floor)
                iterations += done
                if done < budget or iterations >= max_iter:
                    break
                narrowed = _iterate_on_support(rows[:size], counts[:size], local_alpha, local_gamma, weights,
                                               max_iter - iterations, tol, floor, support_mass, support_buffer)
                if narrowed >= 0:
                    iterations += narrowed
                    break
        else:
            iterations = _iterate(rows[:size], counts[:size], local_alpha, local_gamma, weights, extra,
                                  max_iter, tol, m == n_topics, floor)
        most = max(most, iterations)
        if m < n_topics:
            for t in range(n_topics):
                gamma[d, t] = alpha[t]
        for t in range(m):
            gamma[d, topics[t]] = local_gamma[t]
        if log_theta.shape[0]:
            total = 0.0
            for t in range(n_topics):
                total += gamma[d, t]
            shift = _digamma(total)
            for t in range(n_topics):
                log_theta[t] += _digamma(gamma[d, t]) - shift
        if expected.shape[0]:
            for j in range(size):
                norm = 0.0
                for t in range(m):
                    norm += weights[t] * rows[j, t]
                ratio = counts[j] / max(norm, floor)
                target = expected[indices[start + j]]
                if m == n_topics:
                    for t in range(m):
                        target[t] += ratio * weights[t]
                else:
                    for t in range(m):
                        target[topics[t]] += ratio * weights[t]
    return most, loglik, tokens


@dataclass
class HostEStep:
    """What :func:`host_posteriors` returns: the most iterations a document ran, and the
    training log likelihood of the incoming gamma with its tokens (0.0 unless asked)."""

    iterations: int
    loglik: float
    tokens: float


def host_posteriors(counts: Any, topic_word_t: np.ndarray, alpha: np.ndarray, gamma: np.ndarray, *,
                    max_iter: int, tol: float, n_active: int = 0, expected: np.ndarray | None = None,
                    log_theta: np.ndarray | None = None, want_loglik: bool = False,
                    support_mass: float = 0.0, rows: tuple[int, int] | None = None) -> HostEStep:
    """The E-step on the documents of the (n, V) SciPy CSR ``counts`` (see :func:`posterior_range`),
    or on its rows [start, stop) with ``rows`` (read in place, no copy; gamma then has stop - start rows).

    topic_word_t: (V, k) C-contiguous float32 or float64 (the precision of the inner loops);
    alpha: (k,); gamma: (n, k) C-contiguous warm start, updated in place; expected: optional
    (V, k) float64 accumulator; log_theta: optional (k,) float64 accumulator.
    """
    dtype = topic_word_t.dtype
    start, stop = (0, counts.shape[0]) if rows is None else rows
    return HostEStep(*posterior_range(
        counts.indptr[start:stop + 1], counts.indices, counts.data.astype(dtype, copy=False), topic_word_t,
        np.asarray(alpha, dtype=np.float64), gamma, int(max_iter), float(tol), int(n_active or 0),
        np.zeros((0, 0)) if expected is None else expected, np.zeros(0) if log_theta is None else log_theta,
        bool(want_loglik), _FLOOR32 if dtype == np.float32 else _FLOOR, float(support_mass),
    ))

