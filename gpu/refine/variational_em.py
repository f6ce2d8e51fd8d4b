"""Refinement by batched (incremental) variational EM, the default ``method="variational"`` of
:func:`gpu.refine.refine_topics`.

Each sweep runs the batched variational E-step of :mod:`gpu.inference` over every document
(warm-started from the previous sweep's Dirichlet parameters), accumulates the expected
word-topic counts

    n_kw = beta_kw * sum_d E_dk c_dw / (E_d @ beta[:, w])      (E_d = exp(E[log theta_d]))

with one sparse product per batch, then sets beta_k proportional to n_k + topic_smoothing and
alpha by one of :mod:`gpu.refine.alpha_rules`. It stops when the held-out likelihood
(document completion) stops improving, or, without held-out documents, when the training
per-word likelihood does; the best state seen is returned.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu.backend import (
    csr_on_module, csr_row_indices, digamma, get_array_module, host_indptr, is_host, threads_for,
    to_host,
)
from gpu.inference import (
    InferenceInputs,
    active_topic_batch,
    batch_bounds,
    map_batches,
    prior_gamma,
    scaled_counts,
    variational_batch,
)
from gpu.host_kernels import HostEStep, host_posteriors
from gpu.passes import Progress
from gpu.quality import split_document_tokens, word_log_likelihood
from gpu.refine.alpha_rules import HELDOUT_SCALED_RULES, polish_alpha_scale, polya_alpha_shape, update_alpha
from gpu.refine.starts_and_scoring import HeldoutScorer, RefineResult, mixed_start, validated_start

AUTO_START_MIXING = 0.5  # the mixed start start_mixing="auto" tries besides the start as given
ACTIVE_SPEEDUP_RATIO = 2  # k / n_active_topics from which the restricted E-step is used
HOST_ACCUMULATOR_BYTES = 1 << 30  # the host E-step's (V, k) float64 accumulators, all threads together
CHUNK_STATS_DTYPE = np.float32  # each incremental chunk's kept (k, V) expected counts


@dataclass
class _SweepStatistics:
    expected_counts: Any  # (k, V) without the beta_kw factor
    log_theta_sum: Any  # (k,)
    loglik: float
    tokens: float


def _e_step(inputs, gamma_all, *, batch_size, inner_iter, inner_tol, n_threads, pool=None,
            training_likelihood: bool = True, n_active: int | None = None,
            rows: tuple[int, int] | None = None) -> _SweepStatistics:
    """One pass over all documents, or over rows [start, stop) of ``inputs.counts`` with
    ``rows``; updates ``gamma_all`` (D, k) (or (stop - start, k)) in place.

    ``training_likelihood`` also scores the incoming state (one more pass over the nonzeros;
    without it loglik and tokens are 0). With ``n_active`` each document updates only its
    n_active topics of largest gamma (``inner_iter`` updates, no early exit). On the host
    the compiled per-document loop runs on ``n_threads`` contiguous ranges, each with its own
    (V, k) accumulator (:func:`_host_e_step`); on the GPU, batches of
    :func:`gpu.inference.variational_batch` / :func:`gpu.inference.active_topic_batch`.
    """
    if is_host(inputs.xp):
        return _host_e_step(inputs, gamma_all, inner_iter=inner_iter, inner_tol=inner_tol, n_threads=n_threads,
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
            expected = xp.asarray(scaled.T @ weights).astype(xp.float64)
        gamma_all[start:stop] = gamma
        log_theta = (digamma(xp, gamma) - digamma(xp, gamma.sum(axis=1, keepdims=True))).sum(axis=0).astype(xp.float64)
        return part, n, expected, log_theta

    bounds = batch_bounds(indptr, n_topics, batch_size, min_batches=2 * threads if threads > 1 else 1)
    expected = xp.zeros((n_words, n_topics), dtype=xp.float64)
    log_theta_sum = xp.zeros(n_topics, dtype=xp.float64)
    loglik, tokens = 0.0, 0.0
    for part, n, partial_expected, log_theta in map_batches(work, bounds, threads, pool):
        loglik, tokens = loglik + part, tokens + n
        expected += partial_expected
        log_theta_sum += log_theta
    return _SweepStatistics(expected.T, log_theta_sum, loglik, tokens)


def _host_e_step(inputs, gamma_all, *, inner_iter, inner_tol, n_threads, pool, training_likelihood, n_active, rows):
    """:func:`_e_step` on the host, on rows [first, last) of the counts (read in place):
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
    return _SweepStatistics(expected.T, log_theta_sum, loglik, tokens)


def sum_as_float64(parts) -> Any:
    """The float64 sum of the arrays ``parts`` (the chunk statistics kept in CHUNK_STATS_DTYPE)."""
    total = None
    for part in parts:
        if total is None:
            total = get_array_module(part).asarray(part, dtype=np.float64).copy()
        else:
            total += part
    return total


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


def refine_variational(
    X: Any, topic_word: Any, alpha: Any, *, heldout: Any, max_sweeps: int, tol: float, seed: int,
    progress: Progress, topic_smoothing: float, alpha_rule: str | None, inner_iter: int, inner_tol: float,
    batch_size: int | None, patience: int, dtype: str, n_threads: int, pool: Any, n_chunks: int = 1,
    memory_budget: int = 2 << 30, final_sweeps: int = 5, n_active_topics: int | None = None,
    start_mixing: float | str = 0.0,
) -> RefineResult:
    """Batched variational EM refinement (see :func:`refine_topics`)."""
    xp, inputs = validated_start(X, topic_word, alpha, dtype)
    dtype = inputs.topic_word.dtype
    counts = inputs.counts
    n_docs = counts.shape[0]
    start_alpha = to_host(inputs.alpha).astype(np.float64)
    lengths = xp.asarray(counts.sum(axis=1)).reshape(-1)

    def start_gamma() -> Any:  # (D, k) every document's posterior at the start
        return prior_gamma(xp.asarray(start_alpha, dtype=dtype), lengths)

    scorer = None
    if heldout is not None:
        scorer = HeldoutScorer(split_document_tokens(heldout, seed=seed), xp, dtype, pool=pool)
    if start_mixing == "auto":  # both starts when held-out documents can tell them apart
        weights = (0.0, AUTO_START_MIXING) if scorer is not None else (0.0,)
    else:
        weights = (float(start_mixing),)

    indptr = host_indptr(counts)
    # each chunk keeps its (k, V) share of the expected counts (float32: CHUNK_STATS_DTYPE),
    # for each start tried at once: stay within the budget
    stats_bytes = np.dtype(CHUNK_STATS_DTYPE).itemsize * inputs.topic_word.size * len(weights)
    n_chunks = max(1, min(n_chunks, memory_budget // max(stats_bytes, 1)))
    chunks = incremental_chunks(indptr, n_chunks)
    # the GPU's batched E-step slices each chunk once; the host's reads the counts in place
    chunk_counts = {d0: counts[d0:d1] for d0, d1 in chunks} if not is_host(xp) else {}

    def m_step(total_counts: Any, total_log_theta: Any, alpha: np.ndarray) -> tuple[Any, np.ndarray]:
        smoothed = xp.maximum(total_counts, 0.0) + topic_smoothing
        topics = (smoothed / smoothed.sum(axis=1, keepdims=True)).astype(dtype, copy=False)
        if alpha_rule == "minka" and n_docs:
            alpha = update_alpha(alpha, to_host(total_log_theta) / n_docs)
        return topics, alpha

    def chunk_e_step(d0: int, d1: int, state: _EmState, n_active: int | None) -> tuple[Any, Any, float, float]:
        chunk_inputs = InferenceInputs(counts=chunk_counts.get(d0, counts), topic_word=state.topics,
                                       alpha=xp.asarray(state.alpha, dtype=dtype), xp=xp)
        stats = _e_step(
            chunk_inputs, state.gamma[d0:d1], batch_size=batch_size, inner_iter=inner_iter, inner_tol=inner_tol,
            n_threads=n_threads, pool=pool, training_likelihood=scorer is None, n_active=n_active,
            rows=None if d0 in chunk_counts else (d0, d1),
        )
        # kept rounded to CHUNK_STATS_DTYPE; the float64 totals add and subtract exactly these values
        expected = (stats.expected_counts * state.topics).astype(CHUNK_STATS_DTYPE)
        return expected, stats.log_theta_sum, stats.loglik, stats.tokens

    def reshape_alpha(state: _EmState) -> None:
        """fit_alpha="polya": once a sweep, so every chunk's E-step of a sweep sees one alpha;
        the documents' expected topic counts are gamma minus the alpha they were computed with."""
        if alpha_rule == "polya":
            topic_counts = xp.maximum(state.gamma - xp.asarray(state.alpha, dtype=dtype)[None, :], 0.0)
            state.alpha = polya_alpha_shape(state.alpha, topic_counts, lengths, xp)

    def batch_sweep(weight: float) -> _EmState:
        """The first sweep, from the start mixed at ``weight``: a batch step that records
        each chunk's statistics (later sweeps replace them one chunk at a time)."""
        start = mixed_start(inputs, weight, xp) if weight else inputs
        state = _EmState(start.topic_word, start_alpha, start_gamma(), start_mixing=weight, start_topics=start.topic_word)
        state.start_score = scorer(state.topics, state.alpha)[0] if scorer is not None else None
        loglik, tokens = 0.0, 0.0
        for d0, d1 in chunks:
            expected, log_theta, part, n = chunk_e_step(d0, d1, state, None)
            state.chunk_stats[d0] = (expected, log_theta)
            loglik, tokens = loglik + part, tokens + n
        state.total_counts = sum_as_float64(c for c, _ in state.chunk_stats.values())
        state.total_log_theta = sum(t for _, t in state.chunk_stats.values())
        state.topics, state.alpha = m_step(state.total_counts, state.total_log_theta, state.alpha)
        state.train_loglik = loglik / tokens if tokens else 0.0
        reshape_alpha(state)
        state.score = scorer(state.topics, state.alpha)[0] if scorer is not None else None
        return state

    # restricting each document to its top topics pays only when they are few of k
    use_active = bool(n_active_topics) and ACTIVE_SPEEDUP_RATIO * n_active_topics <= inputs.topic_word.shape[0]
    heldout_history: list[float] = []
    train_history: list[float] = []
    stopped, sweeps, stalled = "max_sweeps", 0, 0  # stalled: sweeps in a row without a held-out gain >= tol
    best = None
    state = None
    if progress is not None:
        progress("refinement", 0, max_sweeps)
    for sweeps in range(1, max_sweeps + 1):
        if state is None:
            for weight in weights:  # the loser's statistics are dropped at once
                candidate = batch_sweep(weight)
                if state is None or candidate.score > state.score:
                    state = candidate
            del candidate
            if scorer is not None:
                heldout_history.append(state.start_score)
                best = (state.start_score, state.start_topics, start_alpha, None)  # None: start_gamma()
            else:
                train_history.append(state.train_loglik)
        else:
            # incremental (Neal & Hinton): a chunk's E-step replaces its share of the
            # statistics and the topics are re-estimated at once: len(chunks) M-steps a pass
            loglik, tokens = 0.0, 0.0
            for d0, d1 in chunks:
                expected, log_theta, part, n = chunk_e_step(d0, d1, state, n_active_topics if use_active else None)
                old_counts, old_log_theta = state.chunk_stats[d0]
                state.chunk_stats[d0] = (expected, log_theta)
                state.total_counts -= old_counts
                state.total_counts += expected
                del old_counts
                state.total_log_theta = state.total_log_theta - old_log_theta + log_theta
                state.topics, state.alpha = m_step(state.total_counts, state.total_log_theta, state.alpha)
                loglik, tokens = loglik + part, tokens + n
            reshape_alpha(state)
            if scorer is None:
                train_history.append(loglik / tokens if tokens else 0.0)
            else:
                state.score = scorer(state.topics, state.alpha)[0]
        if progress is not None:
            progress("refinement", sweeps, max_sweeps)

        if scorer is not None:
            score = state.score
            heldout_history.append(score)
            stalled = stalled + 1 if score < best[0] + tol else 0
            if score > best[0]:
                best = (score, state.topics, state.alpha, state.gamma.copy())
            if stalled >= patience:
                stopped = "heldout_worse" if score < best[0] else "converged"
                break
        else:
            best = (np.inf, state.topics, state.alpha, state.gamma)
            if len(train_history) >= 2 and train_history[-1] - train_history[-2] < tol:
                stopped = "converged"
                break

    if best is None:  # no sweep ran
        best = (None, inputs.topic_word, start_alpha, start_gamma())
        if scorer is not None:
            heldout_history.append(scorer(inputs.topic_word, start_alpha)[0])
    best_score, topics, final_alpha, final_gamma = best
    if final_gamma is None:
        final_gamma = start_gamma()
    start_mixing_used = state.start_mixing if state is not None else 0.0
    del state, best  # the chunk statistics are not needed past the sweeps
    alpha_scale, final_heldout, swept_all = 1.0, None, 0
    if scorer is not None and sweeps:
        final_heldout = best_score
        if alpha_rule in HELDOUT_SCALED_RULES:
            alpha_scale, final_heldout = polish_alpha_scale(scorer, topics, final_alpha, best_score)
            final_alpha = final_alpha * alpha_scale
        if final_sweeps:
            topics, final_gamma = _sweeps_with_heldout(
                counts, heldout, topics, final_alpha, final_gamma, final_sweeps, m_step=m_step, batch_size=batch_size,
                inner_iter=inner_iter, inner_tol=inner_tol, n_threads=n_threads, pool=pool,
            )
            swept_all = final_sweeps
    doc_topic = final_gamma / final_gamma.sum(axis=1, keepdims=True)
    topics = np.asarray(to_host(topics), dtype=np.float64)
    return RefineResult(
        topic_word=topics / topics.sum(axis=1, keepdims=True),
        alpha=np.asarray(final_alpha),
        sweeps=sweeps,
        heldout_history=heldout_history,
        train_history=train_history,
        doc_topic=np.asarray(to_host(doc_topic)),
        stopped=stopped,
        alpha_scale=float(alpha_scale),
        final_heldout=final_heldout,
        final_sweeps=swept_all,
        start_mixing=start_mixing_used,
        alpha_rule=alpha_rule,
    )


@dataclass
class _EmState:
    """One variational EM run: current topics (k, V) and alpha (k,), document posteriors
    gamma (D, k), each chunk's (expected counts (k, V), sum of E[log theta] (k,)) and their
    totals; the topics it started from, their mixing weight, and the held-out scores of
    the start and of the current state."""

    topics: Any
    alpha: np.ndarray
    gamma: Any
    start_mixing: float = 0.0
    chunk_stats: dict = field(default_factory=dict)
    total_counts: Any = None
    total_log_theta: Any = None
    start_topics: Any = None
    start_score: float | None = None
    score: float | None = None
    train_loglik: float = 0.0


def _sweeps_with_heldout(counts, heldout, topics, alpha, train_gamma, n_sweeps, *, m_step, batch_size, inner_iter,
                         inner_tol, n_threads, pool):
    """``n_sweeps`` batch EM sweeps over the training and held-out documents together,
    alpha fixed: the held-out documents chose when to stop; their words then inform the
    topics too. ``counts``: the validated (D, V) training counts; ``heldout``: (D_h, V).
    Training documents start from their last posteriors, held-out ones afresh (the first
    sweep gives every document twice the inner iterations); later sweeps start each from its
    previous one. Each sweep is one E-step over each set, their statistics summed (no copy of
    the counts joins them). Returns (topics (k, V), training gamma (D, k))."""
    xp = get_array_module(counts)
    dtype = topics.dtype
    held = csr_on_module(heldout, xp).astype(dtype)
    held_lengths = xp.asarray(held.sum(axis=1)).reshape(-1).astype(dtype)
    parts = [(counts, train_gamma.astype(dtype, copy=False)),  # updated in place
             (held, prior_gamma(xp.asarray(alpha, dtype=dtype), held_lengths))]
    for sweep in range(n_sweeps):
        inputs = [InferenceInputs(counts=part, topic_word=topics, alpha=xp.asarray(alpha, dtype=dtype), xp=xp)
                  for part, _ in parts]
        stats = [_e_step(part_inputs, gamma, batch_size=batch_size, inner_iter=(2 if sweep == 0 else 1) * inner_iter,
                         inner_tol=inner_tol, n_threads=n_threads, pool=pool, training_likelihood=False)
                 for part_inputs, (_, gamma) in zip(inputs, parts)]
        expected = sum(s.expected_counts for s in stats) * topics.astype(xp.float64)
        topics, _ = m_step(expected, sum(s.log_theta_sum for s in stats), alpha)
    return topics, parts[0][1]
