"""Refinement by batched (incremental) variational EM, the default ``method="variational"`` of
:func:`gpu.refine.refine_topics`.

Each sweep runs the variational E-step of :mod:`gpu.refine.e_step` over every document
(warm-started from the previous sweep's Dirichlet parameters), which accumulates the expected
word-topic counts

    n_kw = beta_kw * sum_d E_dk c_dw / (E_d @ beta[:, w])      (E_d = exp(E[log theta_d])),

then sets beta_k proportional to n_k + topic_smoothing and
alpha by one of :mod:`gpu.refine.alpha_rules`. It stops when the held-out likelihood
(document completion) stops improving, or, without held-out documents, when the training
per-word likelihood does; the best state seen is returned.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu.backend import csr_on_module, get_array_module, host_indptr, is_host, to_host
from gpu.batched_inference import InferenceInputs, prior_gamma
from gpu.passes import Progress
from gpu.refine.e_step import e_step, incremental_chunks
from gpu.refine.alpha_rules import HELDOUT_SCALED_RULES, polish_alpha_scale, polya_alpha_shape, update_alpha
from gpu.refine.starts_and_scoring import (
    HeldoutScorer, RefineResult, mixed_start, scoring_split, seeded_row_sample,
    validated_start,
)

AUTO_START_MIXING = 0.5  # the mixed start start_mixing="auto" tries besides the start as given
ACTIVE_SPEEDUP_RATIO = 2  # k / n_active_topics from which the restricted E-step is used
CHUNK_STATS_DTYPE = np.float32  # each incremental chunk's kept (k, V) expected counts
# Refinement at scale (docs/decisions.md, "Refinement at scale"): from this many training
# documents, 2 final sweeps instead of 5, and start_mixing="auto" compares the two starts
# after one batch step over a sample of MIXING_SAMPLE_DOCS of them instead of a full sweep each
LARGE_CORPUS_DOCS = 50_000
FINAL_SWEEPS, FINAL_SWEEPS_AT_SCALE = 5, 2
MIXING_SAMPLE_DOCS = 20_000


def refine_variational(
    X: Any, topic_word: Any, alpha: Any, *, heldout: Any, max_sweeps: int, tol: float, seed: int,
    progress: Progress, topic_smoothing: float, alpha_rule: str | None, inner_iter: int, inner_tol: float,
    batch_size: int | None, patience: int, dtype: str, n_threads: int, pool: Any, n_chunks: int = 1,
    memory_budget: int = 2 << 30, final_sweeps: int | None = None, n_active_topics: int | None = None,
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
        scorer = HeldoutScorer(scoring_split(heldout, seed), xp, dtype, pool=pool)
    if start_mixing == "auto":  # both starts when held-out documents can tell them apart
        weights = (0.0, AUTO_START_MIXING) if scorer is not None else (0.0,)
    else:
        weights = (float(start_mixing),)

    def m_step(total_counts: Any, total_log_theta: Any, alpha: np.ndarray) -> tuple[Any, np.ndarray]:
        smoothed = xp.maximum(total_counts, 0.0) + topic_smoothing
        topics = (smoothed / smoothed.sum(axis=1, keepdims=True)).astype(dtype, copy=False)
        if alpha_rule == "minka" and n_docs:
            alpha = update_alpha(alpha, to_host(total_log_theta) / n_docs)
        return topics, alpha

    if final_sweeps is None:
        final_sweeps = FINAL_SWEEPS_AT_SCALE if n_docs >= LARGE_CORPUS_DOCS else FINAL_SWEEPS
    if len(weights) > 1 and n_docs >= LARGE_CORPUS_DOCS:
        weights = (_start_mixing_on_sample(inputs, start_alpha, weights, scorer, m_step, seed=seed, dtype=dtype,
                                           batch_size=batch_size, inner_iter=inner_iter, inner_tol=inner_tol,
                                           n_threads=n_threads, pool=pool),)

    indptr = host_indptr(counts)
    # each chunk keeps its (k, V) share of the expected counts (float32: CHUNK_STATS_DTYPE),
    # for each start tried at once: stay within the budget
    stats_bytes = np.dtype(CHUNK_STATS_DTYPE).itemsize * inputs.topic_word.size * len(weights)
    n_chunks = max(1, min(n_chunks, memory_budget // max(stats_bytes, 1)))
    chunks = incremental_chunks(indptr, n_chunks)
    # the GPU's batched E-step slices each chunk once; the host's reads the counts in place
    chunk_counts = {d0: counts[d0:d1] for d0, d1 in chunks} if not is_host(xp) else {}

    def chunk_e_step(d0: int, d1: int, state: _EmState, n_active: int | None) -> tuple[Any, Any, float, float]:
        chunk_inputs = InferenceInputs(counts=chunk_counts.get(d0, counts), topic_word=state.topics,
                                       alpha=xp.asarray(state.alpha, dtype=dtype), xp=xp)
        stats = e_step(
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
    swept_gamma = final_gamma is not None  # else every document is at the prior: no ranking of its topics
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
                n_active=n_active_topics if use_active and swept_gamma else None,
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


def _start_mixing_on_sample(inputs, start_alpha, weights, scorer, m_step, *, seed, dtype, batch_size, inner_iter,
                            inner_tol, n_threads, pool) -> float:
    """The weight of ``weights`` whose start scores best on the held-out documents after one
    batch EM step over a seeded sample of MIXING_SAMPLE_DOCS training documents (ties: the
    first); what start_mixing="auto" compares at scale instead of a full sweep from each."""
    xp = inputs.xp
    sample = seeded_row_sample(inputs.counts, MIXING_SAMPLE_DOCS, seed)
    lengths = xp.asarray(sample.sum(axis=1)).reshape(-1)
    alpha = xp.asarray(start_alpha, dtype=dtype)
    scores = []
    for weight in weights:
        start = mixed_start(inputs, weight, xp) if weight else inputs
        stats = e_step(InferenceInputs(counts=sample, topic_word=start.topic_word, alpha=alpha, xp=xp),
                       prior_gamma(alpha, lengths), batch_size=batch_size, inner_iter=inner_iter, inner_tol=inner_tol,
                       n_threads=n_threads, pool=pool, training_likelihood=False)
        topics, step_alpha = m_step(stats.expected_counts * start.topic_word, stats.log_theta_sum, start_alpha)
        scores.append(scorer(topics, step_alpha)[0])
    return weights[int(np.argmax(scores))]


def sum_as_float64(parts) -> Any:
    """The float64 sum of the arrays ``parts`` (the chunk statistics kept in CHUNK_STATS_DTYPE)."""
    total = None
    for part in parts:
        if total is None:
            total = get_array_module(part).asarray(part, dtype=np.float64).copy()
        else:
            total += part
    return total


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
                         inner_tol, n_threads, pool, n_active=None):
    """``n_sweeps`` batch EM sweeps over the training and held-out documents together,
    alpha fixed: the held-out documents chose when to stop; their words then inform the
    topics too. ``counts``: the validated (D, V) training counts; ``heldout``: (D_h, V).
    Training documents start from their last posteriors, held-out ones afresh (the first
    sweep gives every document twice the inner iterations); later sweeps start each from its
    previous one. With ``n_active``, the training documents update only their n_active topics
    of largest gamma, as in the incremental sweeps (their warm start ranks the topics); the
    held-out ones, starting afresh, update all. Each sweep is one E-step over each set, their
    statistics summed (no copy of the counts joins them). Returns (topics (k, V), training
    gamma (D, k))."""
    xp = get_array_module(counts)
    dtype = topics.dtype
    held = csr_on_module(heldout, xp).astype(dtype)
    held_lengths = xp.asarray(held.sum(axis=1)).reshape(-1).astype(dtype)
    parts = [(counts, train_gamma.astype(dtype, copy=False), n_active),  # gamma updated in place
             (held, prior_gamma(xp.asarray(alpha, dtype=dtype), held_lengths), None)]
    for sweep in range(n_sweeps):
        inputs = [InferenceInputs(counts=part, topic_word=topics, alpha=xp.asarray(alpha, dtype=dtype), xp=xp)
                  for part, _, _ in parts]
        stats = [e_step(part_inputs, gamma, batch_size=batch_size, inner_iter=(2 if sweep == 0 else 1) * inner_iter,
                         inner_tol=inner_tol, n_threads=n_threads, pool=pool, training_likelihood=False,
                         n_active=active)
                 for part_inputs, (_, gamma, active) in zip(inputs, parts)]
        expected = sum(s.expected_counts for s in stats) * topics.astype(xp.float64)
        topics, _ = m_step(expected, sum(s.log_theta_sum for s in stats), alpha)
    return topics, parts[0][1]
