"""The variational E-step of refinement over a range of documents: each document's posterior
(warm-started Dirichlet parameters) and the expected word-topic counts it contributes,

    n_kw = beta_kw * sum_d E_dk c_dw / (E_d @ beta[:, w])      (E_d = exp(E[log theta_d])),

returned without the beta_kw factor. On the host, the compiled per-document loop of
:mod:`gpu.host_kernels` on threads over contiguous ranges; on the GPU, batches of
:func:`gpu.batched_inference.variational_batch` / :func:`gpu.batched_inference.active_topic_batch`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu.backend import csr_row_indices, digamma, host_indptr, is_host, threads_for, transposed_product
from gpu.batched_inference import active_topic_batch, scaled_counts, variational_batch
from gpu.host_kernels import HostEStep, host_posteriors
from gpu.inference import batch_bounds, gather_budget, map_batches
from gpu.quality import word_log_likelihood

HOST_ACCUMULATOR_BYTES = 1 << 30  # the host E-step's (V, k) float64 accumulators, all threads together


@dataclass
class SweepStatistics:
    expected_counts: Any  # (k, V) without the beta_kw factor
    log_theta_sum: Any  # (k,)
    loglik: float
    tokens: float


def e_step(inputs, gamma_all, *, batch_size, inner_iter, inner_tol, n_threads, pool=None,
            training_likelihood: bool = True, n_active: int | None = None,
            rows: tuple[int, int] | None = None) -> SweepStatistics:
    """One pass over all documents, or over rows [start, stop) of ``inputs.counts`` with
    ``rows``; updates ``gamma_all`` (D, k) (or (stop - start, k)) in place.

    ``training_likelihood`` also scores the incoming state (one more pass over the nonzeros;
    without it loglik and tokens are 0). With ``n_active`` each document updates only its
    n_active topics of largest gamma (``inner_iter`` updates, no early exit). On the host
    the compiled per-document loop runs on ``n_threads`` contiguous ranges, each with its own
    (V, k) accumulator (:func:`host_e_step`); on the GPU, batches of
    :func:`gpu.batched_inference.variational_batch` / :func:`gpu.batched_inference.active_topic_batch`.
    """
    if is_host(inputs.xp):
        return host_e_step(inputs, gamma_all, inner_iter=inner_iter, inner_tol=inner_tol, n_threads=n_threads,
                            pool=pool, training_likelihood=training_likelihood, n_active=n_active,
                            rows=rows or (0, inputs.counts.shape[0]))
    xp = inputs.xp
    counts, topic_word = inputs.counts, inputs.topic_word
    if rows is not None:
        counts = counts[rows[0]:rows[1]]
    n_topics, n_words = topic_word.shape
    topic_word_t = topic_word.T.copy()
    indptr = host_indptr(counts)
    threads = threads_for(xp, n_threads)

    def work(start: int, stop: int) -> tuple[float, float, Any, Any]:
        batch = counts[start:stop]
        # training likelihood of the incoming state (theta from the warm start, current topics)
        warm = gamma_all[start:stop]
        part, n = 0.0, 0.0
        if training_likelihood:
            part, n = word_log_likelihood(batch, warm / warm.sum(axis=1, keepdims=True), topic_word)
        if n_active:
            gamma, expected = active_topic_batch(inputs, batch, warm, n_active, inner_iter)
            expected = expected.T
        else:
            gamma, _, weights = variational_batch(
                inputs, batch, gamma=warm, max_iter=inner_iter, tol=inner_tol, check_every=5
            )
            scaled = scaled_counts(xp, batch, csr_row_indices(batch), weights, topic_word_t)
            expected = xp.asarray(transposed_product(scaled, weights)).astype(xp.float64)
        gamma_all[start:stop] = gamma
        log_theta = (digamma(xp, gamma) - digamma(xp, gamma.sum(axis=1, keepdims=True))).sum(axis=0).astype(xp.float64)
        return part, n, expected, log_theta

    bounds = batch_bounds(indptr, n_topics, batch_size, min_batches=2 * threads if threads > 1 else 1,
                          elements=gather_budget(xp))
    expected = xp.zeros((n_words, n_topics), dtype=xp.float64)
    log_theta_sum = xp.zeros(n_topics, dtype=xp.float64)
    loglik, tokens = 0.0, 0.0
    for part, n, partial_expected, log_theta in map_batches(work, bounds, threads, pool):
        loglik, tokens = loglik + part, tokens + n
        expected += partial_expected
        log_theta_sum += log_theta
    return SweepStatistics(expected.T, log_theta_sum, loglik, tokens)


def host_e_step(inputs, gamma_all, *, inner_iter, inner_tol, n_threads, pool, training_likelihood, n_active, rows):
    """:func:`e_step` on the host, on rows [first, last) of the counts (read in place):
    ``n_threads`` contiguous document ranges of about equal nonzeros (fewer where their (V, k)
    float64 accumulators would pass HOST_ACCUMULATOR_BYTES), each run by
    :func:`gpu.host_kernels.host_posteriors` on its own thread."""
    counts, topic_word = inputs.counts, inputs.topic_word
    first, last = rows
    n_topics, n_words = topic_word.shape
    topic_word_t = np.ascontiguousarray(topic_word.T)
    alpha = np.asarray(inputs.alpha, dtype=np.float64)
    parts = max(1, min(n_threads, HOST_ACCUMULATOR_BYTES // max(8 * n_words * n_topics, 1)))
    bounds = incremental_chunks(counts.indptr[first:last + 1] - counts.indptr[first], parts)

    def work(start: int, stop: int) -> tuple[HostEStep, np.ndarray, np.ndarray]:
        expected = np.zeros((n_words, n_topics))
        log_theta = np.zeros(n_topics)
        step = host_posteriors(counts, topic_word_t, alpha, gamma_all[start:stop], max_iter=inner_iter,
                               tol=inner_tol, n_active=n_active or 0, expected=expected, log_theta=log_theta,
                               want_loglik=training_likelihood, rows=(first + start, first + stop))
        return step, expected, log_theta

    expected = log_theta_sum = None
    loglik, tokens = 0.0, 0.0
    for step, partial_expected, log_theta in map_batches(work, bounds, len(bounds), pool):
        loglik, tokens = loglik + step.loglik, tokens + step.tokens
        expected = partial_expected if expected is None else expected + partial_expected
        log_theta_sum = log_theta if log_theta_sum is None else log_theta_sum + log_theta
    if expected is None:
        expected, log_theta_sum = np.zeros((n_words, n_topics)), np.zeros(n_topics)
    return SweepStatistics(expected.T, log_theta_sum, loglik, tokens)


def incremental_chunks(indptr: np.ndarray, n_chunks: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) splitting the (D+1,) CSR ``indptr`` into at most ``n_chunks``
    non-empty ranges of about equal nonzeros (one range [0, D) for n_chunks=1 or D=0)."""
    n_docs = len(indptr) - 1
    if n_docs <= 0 or n_chunks <= 1:
        return [(0, max(n_docs, 0))]
    targets = np.asarray(indptr[-1], dtype=np.float64) * np.arange(1, n_chunks) / n_chunks
    cuts = np.searchsorted(np.asarray(indptr), targets, side="left")
    edges = np.unique(np.concatenate([[0], np.clip(cuts, 1, n_docs - 1) if n_docs > 1 else [], [n_docs]]).astype(int))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
