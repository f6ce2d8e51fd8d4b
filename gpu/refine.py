"""Refinement of spectral topics by batched variational EM.

Each sweep runs the batched variational E-step of :mod:`gpu.inference` over every document
(warm-started from the previous sweep's Dirichlet parameters), accumulates the expected
word-topic counts

    n_kw = beta_kw * sum_d E_dk c_dw / (E_d @ beta[:, w])      (E_d = exp(E[log theta_d]))

with one sparse product per batch, then sets beta_k proportional to n_k + topic_smoothing and
alpha by Minka's fixed point, or its shape by the Dirichlet-multinomial fixed point on the
expected topic counts and its scale on held-out documents. It stops when the held-out
likelihood (document completion) stops improving, or, without held-out documents, when the
training per-word likelihood does; the best state seen is returned.
``method="cvb0"`` runs zero-order collapsed variational Bayes instead (:class:`_Cvb0State`).
NumPy/SciPy on the host (batches on threads), CuPy/cupyx when the counts are on the GPU.
"""
from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma as host_digamma
from scipy.special import polygamma as host_polygamma

from gpu.backend import get_array_module, to_host
from gpu.inference import (
    InferenceInputs,
    active_topic_batch,
    batch_bounds,
    default_threads,
    digamma,
    infer_gamma,
    map_batches,
    prior_gamma,
    row_of_nonzeros,
    scaled_counts,
    validate_inference_inputs,
    variational_batch,
)
from gpu.quality import csr_on_module, split_document_tokens, word_log_likelihood

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RefineResult:
    """Outcome of :func:`refine_topics`.

    topic_word:       (k, V) refined topics (rows on the simplex; strictly positive after a sweep), host NumPy.
    alpha:            (k,) refined Dirichlet prior, host NumPy.
    sweeps:           EM sweeps run.
    heldout_history:  held-out per-word log likelihood before the first sweep and after each
                      (empty without held-out documents).
    train_history:    training per-word log likelihood at the start of each sweep (variational:
                      only without held-out documents, where it decides when to stop).
    doc_topic:        (D, k) training mixtures from the last E-step (host NumPy).
    stopped:          "converged", "heldout_worse" or "max_sweeps".
    method:           "cvb0" or "variational" (the one that ran).
    alpha_scale:      factor the held-out alpha rule applied to the best state's alpha
                      (1.0 when it found none better or did not run).
    final_heldout:    held-out per-word log likelihood of the best state with the scaled
                      alpha (None without held-out documents).
    final_sweeps:     batch sweeps over the training and held-out documents together
                      that produced the returned topics after the held-out documents
                      stopped the refinement (0: none ran).
    start_mixing:     weight of the corpus word distribution in the start the sweeps ran
                      from (0.0: the start as given).
    alpha_rule:       how alpha was fitted: "polya", "heldout", "minka" or None (kept), with
                      fit_alpha="auto" resolved.
    """

    topic_word: np.ndarray
    alpha: np.ndarray
    sweeps: int
    heldout_history: list[float] = field(default_factory=list)
    train_history: list[float] = field(default_factory=list)
    doc_topic: np.ndarray | None = None
    stopped: str = "max_sweeps"
    method: str = "variational"
    alpha_scale: float = 1.0
    final_heldout: float | None = None
    final_sweeps: int = 0
    start_mixing: float = 0.0
    alpha_rule: str | None = None


def inverse_digamma(values: np.ndarray, newton_steps: int = 5) -> np.ndarray:
    """Elementwise y with digamma(y) = values (Minka's start and Newton steps)."""
    values = np.asarray(values, dtype=np.float64)
    y = np.where(values >= -2.22, np.exp(values) + 0.5, -1.0 / (values - host_digamma(1.0)))
    for _ in range(newton_steps):
        y = y - (host_digamma(y) - values) / host_polygamma(1, y)
    return y


def update_alpha(alpha: np.ndarray, mean_log_theta: np.ndarray, iterations: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Maximise the Dirichlet likelihood given (k,) mean E[log theta]: Minka's fixed point.

    alpha <- inverse_digamma(digamma(sum(alpha)) + mean_log_theta), repeated to convergence.
    """
    alpha = np.asarray(alpha, dtype=np.float64).copy()
    for _ in range(iterations):
        new = np.maximum(inverse_digamma(host_digamma(alpha.sum()) + mean_log_theta), 1e-8)
        if np.abs(new - alpha).max() < tol * max(1.0, alpha.max()):
            return new
        alpha = new
    return alpha


@dataclass
class _SweepStatistics:
    expected_counts: Any  # (k, V) without the beta_kw factor
    log_theta_sum: Any  # (k,)
    loglik: float
    tokens: float


def _e_step(inputs, gamma_all, *, batch_size, inner_iter, inner_tol, n_threads, pool=None,
            training_likelihood: bool = True, n_active: int | None = None) -> _SweepStatistics:
    """One pass over all documents; updates ``gamma_all`` (D, k) in place.

    Host batches run on ``n_threads`` threads and their partial sums are added afterwards.
    ``training_likelihood`` also scores the incoming state on the batch (one more gather of
    nnz x k; without it loglik and tokens are 0). With ``n_active`` each document updates
    only its n_active topics of largest gamma (:func:`gpu.inference.active_topic_batch`,
    ``inner_iter`` updates, no early exit).
    """
    xp = inputs.xp
    counts, topic_word = inputs.counts, inputs.topic_word
    n_topics, n_words = topic_word.shape
    topic_word_t = topic_word.T.copy()
    indptr = counts.indptr if xp is np else counts.indptr.get()
    threads = 1 if xp is not np else n_threads

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
                inputs, batch, gamma=warm, max_iter=inner_iter, tol=inner_tol, check_every=1 if xp is np else 5
            )
            scaled = scaled_counts(xp, batch, row_of_nonzeros(xp, batch), weights, topic_word_t)
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


class _HeldoutScorer:
    """Document completion on fixed held-out halves, theta started afresh every time: warm
    starts from the previous sweep's theta scored the same topics up to 0.05 nats/word lower
    than :func:`gpu.quality.heldout_log_likelihood` on python3-doc text, which misled the
    stopping rule and the alpha rescaling (20 iterations at tol 1e-3 score about 0.003
    nats/word below its 100 at 1e-4, the same for every state compared, in a fifth of the time).

    observed / scored: (D_h, V) CSR on the compute device. Returns per-word log likelihood.
    """

    def __init__(self, split: Any, xp: Any, dtype: Any, max_iter: int = 20, tol: float = 1e-3, pool: Any = None):
        self.observed = csr_on_module(split.observed, xp).astype(dtype)
        self.scored = csr_on_module(split.scored, xp).astype(dtype)
        self.xp, self.dtype, self.max_iter, self.tol = xp, dtype, max_iter, tol
        self.pool = pool

    def __call__(self, topic_word: Any, alpha: np.ndarray, *, keep: bool = True) -> tuple[float, Any]:
        inputs = validate_inference_inputs(self.observed, topic_word, self.xp.asarray(alpha, dtype=self.dtype))
        gamma, _ = infer_gamma(inputs, max_iter=self.max_iter, tol=self.tol, pool=self.pool)
        total, n_tokens = word_log_likelihood(self.scored, gamma / gamma.sum(axis=1, keepdims=True), inputs.topic_word)
        return (total / n_tokens if n_tokens else 0.0), gamma


def _check_refine_parameters(max_sweeps, tol, topic_smoothing, inner_iter, patience) -> None:
    if not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
    if not isinstance(max_sweeps, (int, np.integer)) or max_sweeps < 0:
        raise ValueError(f"max_sweeps must be an integer >= 0, got {max_sweeps!r}")
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if not np.isfinite(topic_smoothing) or topic_smoothing <= 0:
        raise ValueError(f"topic_smoothing must be > 0, got {topic_smoothing!r}")
    if not isinstance(inner_iter, (int, np.integer)) or inner_iter < 1:
        raise ValueError(f"inner_iter must be an integer >= 1, got {inner_iter!r}")


METHOD_DEFAULTS = {
    # variational, chosen on python3-doc text (bench/quality.py) with the fresh-start held-out
    # scorer: eta 0.01 and 8 incremental chunks beat eta 0.1 and batch EM at k=50; gains per
    # sweep fall below 2e-3 nats/word after ~8-11 sweeps, and later ones add < 0.01; 4 warm
    # inner iterations per sweep score the same as 5 (3 lose 0.004 nats/word at k=20).
    # Stopping after 2 sweeps in a row gaining < 1e-3 (not the first gaining < 2e-3), with 5
    # final sweeps (not 3), gained 0.0018 nats/word at linux-doc k=20 and 50 and python3-doc
    # k=20, 0.0006 at python3-doc k=50 (5 seeds each), for 1-2 more sweeps
    "variational": {"max_sweeps": 20, "topic_smoothing": 0.01, "check_every": 1, "n_chunks": 8, "inner_iter": 4, "patience": 2, "tol": 1e-3,
                    "start_mixing": "auto"},
    "cvb0": {"max_sweeps": 100, "topic_smoothing": 0.01, "check_every": 10, "n_chunks": 1, "inner_iter": 5, "patience": 2, "tol": 5e-4,
             "start_mixing": 0.0},
}
CVB0_TEMPORARIES = 5  # (nnz, k) arrays alive at once in a CVB0 sweep
POLYA_BLOCK_ROWS = 65_536  # documents per block of minka_polya_alpha's sums
# fixed-point steps per sweep of fit_alpha="polya", warm-started from the previous sweep's
# alpha: on python3-doc text 2 and 20 give the same held-out likelihood
POLYA_SHAPE_STEPS = 2


def cvb0_fits(X: Any, topic_word: Any, dtype: str, memory_budget: int) -> bool:
    """Whether CVB0's (nnz, k) responsibilities and temporaries fit in ``memory_budget`` bytes."""
    n_topics = int(np.shape(topic_word)[0]) if np.ndim(topic_word) == 2 else 1
    nnz = int(getattr(X, "nnz", np.count_nonzero(X) if isinstance(X, np.ndarray) else 0))
    return CVB0_TEMPORARIES * nnz * n_topics * np.dtype(dtype).itemsize <= memory_budget


def minka_polya_alpha(
    alpha: np.ndarray, doc_topic_counts: Any, doc_lengths: Any, xp: Any, iterations: int = 20,
    block_rows: int = POLYA_BLOCK_ROWS,
) -> np.ndarray:
    """Dirichlet-multinomial maximum likelihood alpha from (D, k) expected topic counts
    (Minka's fixed point: alpha_k <- alpha_k sum_d [psi(n_dk + alpha_k) - psi(alpha_k)] /
    sum_d [psi(n_d + alpha0) - psi(alpha0)]), ``iterations`` steps from ``alpha``.
    doc_lengths: (D,) n_d. The sums run over ``block_rows`` documents at a time, so the
    float64 temporaries stay (block_rows, k) whatever D is."""
    alpha = np.asarray(alpha, dtype=np.float64).copy()
    lengths = doc_lengths.astype(xp.float64)
    n_docs = doc_topic_counts.shape[0]
    for _ in range(iterations):
        a = xp.asarray(alpha)
        numerator = np.zeros_like(alpha)
        for start in range(0, n_docs, block_rows):
            counts = doc_topic_counts[start:start + block_rows].astype(xp.float64)
            numerator += to_host((digamma(xp, counts + a[None, :]) - digamma(xp, a)[None, :]).sum(axis=0))
        denominator = float((digamma(xp, lengths + alpha.sum()) - float(host_digamma(alpha.sum()))).sum())
        if denominator <= 0:
            break
        alpha = np.maximum(alpha * numerator / denominator, 1e-8)
    return alpha


def polya_alpha_shape(
    alpha: np.ndarray, doc_topic_counts: Any, doc_lengths: Any, xp: Any, steps: int = POLYA_SHAPE_STEPS
) -> np.ndarray:
    """alpha (k,) with its shape moved ``steps`` fixed-point steps of :func:`minka_polya_alpha`
    towards the Dirichlet-multinomial fit of the (D, k) expected topic counts (doc_lengths:
    (D,)), and its sum kept (the held-out rescaling sets that)."""
    shaped = minka_polya_alpha(alpha, doc_topic_counts, doc_lengths, xp, iterations=steps)
    return shaped * (float(np.sum(alpha)) / float(shaped.sum()))


class _Cvb0State:
    """Zero-order collapsed variational Bayes (CVB0) over the nonzeros of a CSR count matrix.

    phi: (nnz, k) responsibilities of each (document, word) entry; the expected counts are
    N_dk = sum_w c_dw phi_dwk (D, k), N_wk = sum_d c_dw phi_dwk (V, k), N_k = sum_w N_wk.
    A sweep updates every entry at once from the counts of the previous sweep, leaving out
    one token of the entry itself:
        phi_dwk ~ (N_wk - phi_dwk + eta) / (N_k - phi_dwk + V eta) * (N_dk - phi_dwk + alpha_k)
    Entries are processed in chunks of whole documents (on threads on the host): per chunk,
    N_dk of its documents and its share of N_wk are sparse products with the chunk's
    (documents x entries) and (entries x words) incidence matrices.
    """

    def __init__(self, counts: Any, xp: Any, dtype: Any, n_threads: int = 1):
        sparse = importlib.import_module("cupyx.scipy.sparse") if xp is not np else sp
        self.xp, self.counts = xp, counts
        self.n_docs, self.n_words = counts.shape
        self.n_threads = n_threads if xp is np else 1
        indptr_host = counts.indptr if xp is np else counts.indptr.get()
        self.chunks = []
        for d0, d1 in batch_bounds(indptr_host, 1, None, min_batches=2 * self.n_threads if self.n_threads > 1 else 1):
            e0, e1 = int(indptr_host[d0]), int(indptr_host[d1])
            n_entries = e1 - e0
            ones = xp.ones(n_entries, dtype=dtype)
            docs = sparse.csr_matrix(
                (ones, xp.arange(n_entries, dtype=counts.indices.dtype), counts.indptr[d0 : d1 + 1] - e0),
                shape=(d1 - d0, n_entries),
            )
            words = sparse.csr_matrix(
                (ones, counts.indices[e0:e1], xp.arange(n_entries + 1, dtype=counts.indices.dtype)),
                shape=(n_entries, self.n_words),
            )
            self.chunks.append((d0, d1, e0, e1, docs, words.T.tocsr()))
        self.rows = row_of_nonzeros(xp, counts)
        self.cols = counts.indices
        self.data = counts.data[:, None]
        self.phi: Any = None

    def start(self, doc_topic: Any, topic_word: Any) -> None:
        """phi_dwk proportional to theta_dk beta_kw."""
        xp = self.xp
        phi = xp.take(doc_topic, self.rows, axis=0) * xp.take(topic_word.T, self.cols, axis=0)
        self.phi = phi / xp.maximum(phi.sum(axis=1, keepdims=True), 1e-30)

    def expected_counts(self) -> tuple[Any, Any]:
        """(N_dk (D, k), N_wk (V, k)) from the current responsibilities."""
        xp = self.xp
        k = self.phi.shape[1]
        doc_counts = xp.zeros((self.n_docs, k), dtype=self.phi.dtype)

        def work(index: int, _: int) -> Any:
            d0, d1, e0, e1, docs, words = self.chunks[index]
            weighted = self.phi[e0:e1] * self.data[e0:e1]
            doc_counts[d0:d1] = xp.asarray(docs @ weighted)
            return xp.asarray(words @ weighted)

        partials = map_batches(work, [(i, i) for i in range(len(self.chunks))], self.n_threads)
        word_counts = partials[0] if partials else xp.zeros((self.n_words, k), dtype=self.phi.dtype)
        for part in partials[1:]:
            word_counts = word_counts + part
        return doc_counts, word_counts

    def sweep(self, alpha: Any, eta: float) -> tuple[Any, Any]:
        """One parallel CVB0 update; returns the counts (N_dk, N_wk) it started from."""
        xp = self.xp
        doc_counts, word_counts = self.expected_counts()
        denominator_base = word_counts.sum(axis=0)[None, :] + self.n_words * eta
        new = xp.empty_like(self.phi)

        def work(index: int, _: int) -> None:
            _, _, e0, e1, _, _ = self.chunks[index]
            phi = self.phi[e0:e1]
            part = (xp.take(word_counts, self.cols[e0:e1], axis=0) - phi + eta) / (denominator_base - phi)
            part *= xp.take(doc_counts, self.rows[e0:e1], axis=0) - phi + alpha[None, :]
            xp.maximum(part, 1e-30, out=part)
            part /= part.sum(axis=1, keepdims=True)
            new[e0:e1] = part

        map_batches(work, [(i, i) for i in range(len(self.chunks))], self.n_threads)
        self.phi = new
        return doc_counts, word_counts


def _refine_cvb0(
    X: Any, topic_word: Any, alpha: Any, *, heldout: Any, max_sweeps: int, tol: float, seed: int,
    progress: Progress | None, eta: float, alpha_rule: str | None, patience: int, dtype: str, check_every: int,
    n_threads: int, start_mixing: float = 0.0,
) -> RefineResult:
    """CVB0 refinement (see :class:`_Cvb0State`); held-out likelihood checked every ``check_every`` sweeps."""
    xp, inputs = _validated_start(X, topic_word, alpha, dtype)
    if start_mixing:
        inputs = _mixed_start(inputs, start_mixing, xp)
    dtype = inputs.topic_word.dtype
    counts = inputs.counts.astype(dtype)
    counts.sum_duplicates()
    current_alpha = to_host(inputs.alpha).astype(np.float64)
    lengths = xp.asarray(counts.sum(axis=1)).reshape(-1)
    state = _Cvb0State(counts, xp, dtype, n_threads=n_threads)
    gamma, _ = infer_gamma(inputs, max_iter=20, tol=1e-3)
    state.start(gamma / gamma.sum(axis=1, keepdims=True), inputs.topic_word)

    def topics_from(word_counts: Any) -> Any:
        smoothed = word_counts.T + eta
        return (smoothed / smoothed.sum(axis=1, keepdims=True)).astype(dtype)

    scorer = None
    heldout_history: list[float] = []
    if heldout is not None:
        scorer = _HeldoutScorer(split_document_tokens(heldout, seed=seed), xp, dtype)
        first, _ = scorer(inputs.topic_word, current_alpha)
        heldout_history.append(first)
    best = (heldout_history[0] if heldout_history else -np.inf, inputs.topic_word, current_alpha, gamma)
    train_history: list[float] = []
    stopped, stalled, sweeps = "max_sweeps", 0, 0
    if progress is not None:
        progress("refinement", 0, max_sweeps)
    for sweeps in range(1, max_sweeps + 1):
        state.sweep(xp.asarray(current_alpha, dtype=dtype), eta)
        if progress is not None:
            progress("refinement", sweeps, max_sweeps)
        if sweeps % check_every and sweeps != max_sweeps:
            continue
        doc_counts, word_counts = state.expected_counts()
        topics = topics_from(word_counts)
        if alpha_rule == "minka":
            current_alpha = minka_polya_alpha(current_alpha, doc_counts, lengths, xp)
        elif alpha_rule == "polya":
            current_alpha = polya_alpha_shape(current_alpha, doc_counts, lengths, xp)
        doc_gamma = doc_counts + xp.asarray(current_alpha, dtype=dtype)[None, :]
        total, n_tokens = word_log_likelihood(counts, doc_gamma / doc_gamma.sum(axis=1, keepdims=True), topics)
        train_history.append(total / n_tokens if n_tokens else 0.0)
        if scorer is None:
            best = (np.inf, topics, current_alpha, doc_gamma)
            if len(train_history) >= 2 and train_history[-1] - train_history[-2] < tol:
                stopped = "converged"
                break
            continue
        score, _ = scorer(topics, current_alpha)
        heldout_history.append(score)
        stalled = stalled + 1 if score < best[0] + tol else 0
        if score > best[0]:
            best = (score, topics, current_alpha, doc_counts + xp.asarray(current_alpha, dtype=dtype)[None, :])
        if stalled >= patience:
            stopped = "heldout_worse" if score < best[0] else "converged"
            break

    best_score, topics, final_alpha, final_gamma = best
    alpha_scale, final_heldout = 1.0, (best_score if scorer is not None and sweeps else None)
    if alpha_rule in HELDOUT_SCALED_RULES and final_heldout is not None:
        alpha_scale, final_heldout = polish_alpha_scale(scorer, topics, final_alpha, best_score)
        final_alpha = final_alpha * alpha_scale
    topics = np.asarray(to_host(topics), dtype=np.float64)
    doc_topic = final_gamma / final_gamma.sum(axis=1, keepdims=True)
    return RefineResult(
        topic_word=topics / topics.sum(axis=1, keepdims=True), alpha=np.asarray(final_alpha), sweeps=sweeps,
        heldout_history=heldout_history, train_history=train_history, doc_topic=np.asarray(to_host(doc_topic)),
        stopped=stopped, method="cvb0", alpha_scale=float(alpha_scale), final_heldout=final_heldout,
        alpha_rule=alpha_rule,
    )


def refine_topics(
    X: Any,
    topic_word: Any,
    alpha: Any,
    *,
    heldout: Any = None,
    max_sweeps: int | None = None,
    tol: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    topic_smoothing: float | None = None,
    fit_alpha: bool | str = "auto",
    inner_iter: int | None = None,
    inner_tol: float = 1e-3,
    batch_size: int | None = None,
    patience: int | None = None,
    dtype: str = "float32",
    n_threads: int | None = None,
    method: str = "variational",
    check_every: int | None = None,
    memory_budget: int = 2 << 30,
    n_chunks: int | None = None,
    final_sweeps: int = 5,
    n_active_topics: int | None = 8,
    start_mixing: float | str | None = None,
) -> RefineResult:
    """Refine topics by variational EM (or CVB0), starting from ``topic_word`` and ``alpha``.

    Parameters
    ----------
    X : (D, V) CSR training counts (SciPy, or cupyx to run on the GPU).
    topic_word : (k, V) starting topics, rows on the simplex (e.g. the spectral estimate).
    alpha : (k,) starting Dirichlet prior, > 0.
    heldout : optional (D_h, V) counts of held-out documents; their document-completion
        likelihood (tokens split with ``seed``) decides when to stop.
    max_sweeps : most EM sweeps (0 returns the start unchanged).
    tol : a sweep improves when the monitored per-word log likelihood rises by at least this (nats).
    patience : with held-out documents, stop after this many sweeps in a row without improving
        (the best held-out state is returned); without them, stop at the first such sweep.
    progress : called as progress("refinement", sweeps_done, max_sweeps); its exceptions propagate.
    topic_smoothing : pseudo-count added to every expected word-topic count (keeps topics > 0).
    fit_alpha : how alpha changes: "minka" (or True) re-estimates it each sweep by Minka's
        fixed point on the variational posteriors (which tends to shrink it); "heldout"
        keeps its shape and, once the sweeps stop, scales the best state's alpha by powers
        of sqrt(2) while that raises the held-out likelihood (:func:`polish_alpha_scale`;
        on python3-doc text rescaling during the sweeps gained nothing over this);
        "polya" also re-estimates its shape after every sweep, its sum kept, by
        :data:`POLYA_SHAPE_STEPS` steps of Minka's Dirichlet-multinomial fixed point on the
        documents' expected topic counts (:func:`polya_alpha_shape`), then scales it like
        "heldout" (on python3-doc text +0.003-0.005 nats/word over "heldout" at k=20 and
        k=50, on every one of 5 seeds and 2 splits: the spectral alpha shape starves some
        topics); False keeps it; "auto" is "polya" with held-out documents and "minka" without.
    n_active_topics : variational only: after the first sweep, each document's E-step updates
        only its n_active_topics topics of largest posterior weight and leaves the others at
        their prior (:func:`gpu.inference.active_topic_batch`), when k >= ACTIVE_SPEEDUP_RATIO
        times that (below, the full update is as cheap). Documents use a few topics each,
        so this changes the sweeps little and makes them several times cheaper at large k.
        None or 0: always the full update.
    final_sweeps : variational only, with held-out documents: after stopping (and the alpha
        scaling), run this many batch sweeps over the training and held-out documents
        together, alpha fixed, and return their topics (held-out documents only choose when
        to stop). On python3-doc text one such sweep raised the likelihood of documents
        outside both sets by 0.003-0.008 nats/word, and three by another 0.003 (k=50, 5
        seeds) for 0.1 s each; five (the default) by about 0.001 more than three on
        linux-doc text. ``heldout_history`` describes the states before them.
    inner_iter, inner_tol : E-step fixed-point iterations per sweep (warm-started) and tolerance.
    batch_size : documents per E-step batch (None: sized by memory).
    dtype : "float32" (default: E-steps about 5x faster, memory-bound gathers) or "float64";
        expected counts are always accumulated in float64.
    n_threads : threads for host E-step batches (None: all usable cores).
    method : "variational" (batched variational EM, the default) or "cvb0" (zero-order
        collapsed variational Bayes: cheaper sweeps, more of them; keeps nnz x k
        responsibilities, so beyond ``memory_budget`` bytes it falls back to "variational"; the
        budget also caps variational ``n_chunks``).
        On python3-doc text (bench/quality.py) CVB0 reached a better held-out likelihood at
        k=20 and a worse one at k=50, in 3-5x the time.
    check_every : sweeps between held-out checks (default 1 for variational, 10 for cvb0).
    n_chunks : variational only: after a first batch sweep, each sweep visits the documents in
        this many chunks of about equal nonzeros and re-estimates the topics after each chunk
        (incremental EM: the chunk's previous share of the expected counts is replaced), so a
        pass over the corpus makes n_chunks M-steps. 1 is plain batch EM. Each chunk keeps a
        (k, V) float64 share of the statistics, so fewer chunks are used beyond ``memory_budget``.
    start_mixing : "auto", or a weight in [0, 1) of the training documents' word
        distribution (:func:`corpus_word_distribution`) mixed into every starting topic
        before the first sweep (not with max_sweeps=0, which returns the start as given).
        Spectral topics are clipped at zero (about 3/4 of the (topic, word) entries on
        python3-doc text) and EM keeps a topic's zero words near zero, so on real text an
        unmixed start locks words out of topics; where the start is accurate (synthetic LDA
        corpora) mixing throws information away that the sweeps do not win back. "auto"
        (variational, with held-out documents) runs the first sweep from the start as given
        and from the start mixed at :data:`AUTO_START_MIXING` and goes on with whichever
        scores better on the held-out documents (without them: the start as given; cvb0: 0).
        On python3-doc text it picks the mixed start: held-out +0.005 nats/word (k=50) in 6
        sweeps instead of 10; on synthetic corpora, the start as given. Default "auto" for
        variational, 0 for cvb0.
    Defaults of max_sweeps, tol, topic_smoothing, check_every, inner_iter, patience, n_chunks
    and start_mixing depend on ``method`` (:data:`METHOD_DEFAULTS`).

    Returns
    -------
    RefineResult
    """
    if method not in ("cvb0", "variational"):
        raise ValueError(f"method must be 'cvb0' or 'variational', got {method!r}")
    if method == "cvb0" and not cvb0_fits(X, topic_word, dtype, memory_budget):
        method = "variational"  # CVB0 keeps nnz x k responsibilities; too big for the budget
    defaults = METHOD_DEFAULTS[method]
    max_sweeps = defaults["max_sweeps"] if max_sweeps is None else max_sweeps
    topic_smoothing = defaults["topic_smoothing"] if topic_smoothing is None else topic_smoothing
    check_every = defaults["check_every"] if check_every is None else check_every
    inner_iter = defaults["inner_iter"] if inner_iter is None else inner_iter
    patience = defaults["patience"] if patience is None else patience
    n_chunks = defaults["n_chunks"] if n_chunks is None else n_chunks
    tol = defaults["tol"] if tol is None else tol
    start_mixing = defaults["start_mixing"] if start_mixing is None else start_mixing
    if start_mixing != "auto" and (
        isinstance(start_mixing, bool) or not isinstance(start_mixing, (int, float, np.integer, np.floating))
        or not 0 <= start_mixing < 1
    ):
        raise ValueError(f"start_mixing must be 'auto' or a number in [0, 1), got {start_mixing!r}")
    if method == "cvb0" and start_mixing == "auto":
        start_mixing = 0.0
    if n_active_topics is not None and (not isinstance(n_active_topics, (int, np.integer)) or n_active_topics < 0):
        raise ValueError(f"n_active_topics must be None or an integer >= 0, got {n_active_topics!r}")
    if isinstance(final_sweeps, bool) or not isinstance(final_sweeps, (int, np.integer)) or final_sweeps < 0:
        raise ValueError(f"final_sweeps must be an integer >= 0, got {final_sweeps!r}")
    if not isinstance(n_chunks, (int, np.integer)) or n_chunks < 1:
        raise ValueError(f"n_chunks must be an integer >= 1, got {n_chunks!r}")
    _check_refine_parameters(max_sweeps, tol, topic_smoothing, inner_iter, patience)
    if not isinstance(check_every, (int, np.integer)) or check_every < 1:
        raise ValueError(f"check_every must be an integer >= 1, got {check_every!r}")
    alpha_rule = {True: "minka", False: None, None: None}.get(fit_alpha, fit_alpha) if isinstance(fit_alpha, (bool, type(None))) else fit_alpha
    if alpha_rule == "auto":
        alpha_rule = "polya" if heldout is not None else "minka"
    if alpha_rule not in ("minka", "heldout", "polya", None):
        raise ValueError(f"fit_alpha must be 'auto', 'minka', 'heldout', 'polya', True or False, got {fit_alpha!r}")
    if alpha_rule in HELDOUT_SCALED_RULES and heldout is None:
        raise ValueError(f"fit_alpha={alpha_rule!r} needs held-out documents (heldout=...)")
    if str(dtype) not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if method == "cvb0":
        return _refine_cvb0(
            X, topic_word, alpha, heldout=heldout, max_sweeps=max_sweeps, tol=tol, seed=seed, progress=progress,
            eta=topic_smoothing, alpha_rule=alpha_rule, patience=patience, dtype=dtype, check_every=check_every,
            n_threads=n_threads or default_threads(), start_mixing=start_mixing,
        )
    n_threads = n_threads or default_threads()
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        return _refine_variational(
            X, topic_word, alpha, heldout=heldout, max_sweeps=max_sweeps, tol=tol, seed=seed, progress=progress,
            topic_smoothing=topic_smoothing, alpha_rule=alpha_rule, inner_iter=inner_iter, inner_tol=inner_tol,
            batch_size=batch_size, patience=patience, dtype=dtype, n_threads=n_threads, pool=pool,
            n_chunks=n_chunks, memory_budget=memory_budget, final_sweeps=final_sweeps,
            n_active_topics=n_active_topics, start_mixing=start_mixing,
        )


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


def _refine_variational(
    X: Any, topic_word: Any, alpha: Any, *, heldout: Any, max_sweeps: int, tol: float, seed: int,
    progress: Progress | None, topic_smoothing: float, alpha_rule: str | None, inner_iter: int, inner_tol: float,
    batch_size: int | None, patience: int, dtype: str, n_threads: int, pool: Any, n_chunks: int = 1,
    memory_budget: int = 2 << 30, final_sweeps: int = 5, n_active_topics: int | None = None,
    start_mixing: float | str = 0.0,
) -> RefineResult:
    """Batched variational EM refinement (see :func:`refine_topics`)."""
    xp, inputs = _validated_start(X, topic_word, alpha, dtype)
    dtype = inputs.topic_word.dtype
    counts = inputs.counts
    n_docs = counts.shape[0]
    start_alpha = to_host(inputs.alpha).astype(np.float64)
    lengths = xp.asarray(counts.sum(axis=1)).reshape(-1)

    def start_gamma() -> Any:  # (D, k) every document's posterior at the start
        return prior_gamma(xp.asarray(start_alpha, dtype=dtype), lengths)

    scorer = None
    if heldout is not None:
        scorer = _HeldoutScorer(split_document_tokens(heldout, seed=seed), xp, dtype, pool=pool)
    if start_mixing == "auto":  # both starts when held-out documents can tell them apart
        weights = (0.0, AUTO_START_MIXING) if scorer is not None else (0.0,)
    else:
        weights = (float(start_mixing),)

    indptr = counts.indptr if xp is np else counts.indptr.get()
    # each chunk keeps its (k, V) float64 share of the expected counts, for each start tried
    # at once: stay within the budget
    n_chunks = max(1, min(n_chunks, memory_budget // max(8 * inputs.topic_word.size * len(weights), 1)))
    chunks = incremental_chunks(indptr, n_chunks)
    chunk_counts = {d0: counts[d0:d1] for d0, d1 in chunks}

    def m_step(total_counts: Any, total_log_theta: Any, alpha: np.ndarray) -> tuple[Any, np.ndarray]:
        smoothed = xp.maximum(total_counts, 0.0) + topic_smoothing
        topics = (smoothed / smoothed.sum(axis=1, keepdims=True)).astype(dtype, copy=False)
        if alpha_rule == "minka" and n_docs:
            alpha = update_alpha(alpha, to_host(total_log_theta) / n_docs)
        return topics, alpha

    def chunk_e_step(d0: int, d1: int, state: _EmState, n_active: int | None) -> tuple[Any, Any, float, float]:
        chunk_inputs = validate_inference_inputs(chunk_counts[d0], state.topics, xp.asarray(state.alpha, dtype=dtype))
        stats = _e_step(
            chunk_inputs, state.gamma[d0:d1], batch_size=batch_size, inner_iter=inner_iter, inner_tol=inner_tol,
            n_threads=n_threads, pool=pool, training_likelihood=scorer is None, n_active=n_active,
        )
        return stats.expected_counts * state.topics.astype(xp.float64), stats.log_theta_sum, stats.loglik, stats.tokens

    def reshape_alpha(state: _EmState) -> None:
        """fit_alpha="polya": once a sweep, so every chunk's E-step of a sweep sees one alpha;
        the documents' expected topic counts are gamma minus the alpha they were computed with."""
        if alpha_rule == "polya":
            topic_counts = xp.maximum(state.gamma - xp.asarray(state.alpha, dtype=dtype)[None, :], 0.0)
            state.alpha = polya_alpha_shape(state.alpha, topic_counts, lengths, xp)

    def batch_sweep(weight: float) -> _EmState:
        """The first sweep, from the start mixed at ``weight``: a batch step that records
        each chunk's statistics (later sweeps replace them one chunk at a time)."""
        start = _mixed_start(inputs, weight, xp) if weight else inputs
        state = _EmState(start.topic_word, start_alpha, start_gamma(), start_mixing=weight, start_topics=start.topic_word)
        state.start_score = scorer(state.topics, state.alpha)[0] if scorer is not None else None
        loglik, tokens = 0.0, 0.0
        for d0, d1 in chunks:
            expected, log_theta, part, n = chunk_e_step(d0, d1, state, None)
            state.chunk_stats[d0] = (expected, log_theta)
            loglik, tokens = loglik + part, tokens + n
        state.total_counts = sum(c for c, _ in state.chunk_stats.values())
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
                best = (state.start_score, state.start_topics, start_alpha, start_gamma())
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
                state.total_counts = state.total_counts - old_counts + expected
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
    alpha_scale, final_heldout, swept_all = 1.0, None, 0
    if scorer is not None and sweeps:
        final_heldout = best_score
        if alpha_rule in HELDOUT_SCALED_RULES:
            alpha_scale, final_heldout = polish_alpha_scale(scorer, topics, final_alpha, best_score)
            final_alpha = final_alpha * alpha_scale
        if final_sweeps:
            topics, final_gamma = _sweeps_with_heldout(
                X, heldout, topics, final_alpha, final_gamma, final_sweeps, m_step=m_step, batch_size=batch_size,
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
        start_mixing=state.start_mixing if state is not None else 0.0,
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


HELDOUT_SCALED_RULES = ("heldout", "polya")  # alpha rules that end with polish_alpha_scale
AUTO_START_MIXING = 0.5  # the mixed start start_mixing="auto" tries besides the start as given
ACTIVE_SPEEDUP_RATIO = 2  # k / n_active_topics from which the restricted E-step is used
ALPHA_STEP = 2.0 ** 0.5  # factor per step of the held-out alpha scale search
ALPHA_MAX_STEPS = 6  # at most 8x up or down
ALPHA_MIN_GAIN = 1e-4  # nats/word a step must gain to be taken


def polish_alpha_scale(scorer, topics, alpha: np.ndarray, score: float) -> tuple[float, float]:
    """Scale alpha (shape kept) by ALPHA_STEP up, or else down, while the held-out score
    rises by at least ALPHA_MIN_GAIN. Returns (factor, its held-out score)."""
    factor = 1.0
    for step in (ALPHA_STEP, 1.0 / ALPHA_STEP):
        moved = False
        for _ in range(ALPHA_MAX_STEPS):
            trial, _ = scorer(topics, alpha * factor * step)
            if trial < score + ALPHA_MIN_GAIN:
                break
            factor, score, moved = factor * step, trial, True
        if moved:
            break
    return factor, score


def _sweeps_with_heldout(X, heldout, topics, alpha, train_gamma, n_sweeps, *, m_step, batch_size, inner_iter,
                         inner_tol, n_threads, pool):
    """``n_sweeps`` batch EM sweeps over the training and held-out documents together,
    alpha fixed: the held-out documents chose when to stop; their words then inform the
    topics too. Training documents start from their last posteriors, held-out ones afresh
    (the first sweep gives every document twice the inner iterations); later sweeps start
    each from its previous one. Returns (topics (k, V), training gamma (D, k))."""
    xp = get_array_module(X)
    sparse = importlib.import_module("cupyx.scipy.sparse") if xp is not np else sp
    dtype = topics.dtype
    heldout = csr_on_module(heldout, xp)
    everything = sparse.vstack([X, heldout]).tocsr()
    inputs = validate_inference_inputs(everything, topics, xp.asarray(alpha, dtype=dtype))
    held_lengths = xp.asarray(heldout.sum(axis=1)).reshape(-1).astype(dtype)
    fresh = prior_gamma(xp.asarray(alpha, dtype=dtype), held_lengths)
    gamma = xp.concatenate([train_gamma.astype(dtype), fresh], axis=0)
    for sweep in range(n_sweeps):
        stats = _e_step(
            inputs, gamma, batch_size=batch_size, inner_iter=(2 if sweep == 0 else 1) * inner_iter,
            inner_tol=inner_tol, n_threads=n_threads, pool=pool, training_likelihood=False,
        )
        topics, _ = m_step(stats.expected_counts * inputs.topic_word.astype(xp.float64), stats.log_theta_sum, alpha)
        inputs = InferenceInputs(counts=inputs.counts, topic_word=topics, alpha=inputs.alpha, xp=xp)
    return topics, gamma[: X.shape[0]]


def corpus_word_distribution(counts: Any, xp: Any) -> Any:
    """(V,) float64 word frequencies of the (D, V) CSR ``counts`` plus a half pseudo-count
    each (so words absent from these documents keep some mass), on the simplex."""
    frequency = xp.asarray(counts.sum(axis=0), dtype=xp.float64).reshape(-1) + 0.5
    return frequency / frequency.sum()


def _validated_start(X: Any, topic_word: Any, alpha: Any, dtype: str):
    """The refinement's starting point: topics cast to ``dtype`` and renormalised, then
    validated with the counts. Returns (array module, validated inputs)."""
    xp = get_array_module(X)
    topic_word = xp.asarray(topic_word).astype(dtype)
    topic_word /= topic_word.sum(axis=1, keepdims=True)
    return xp, validate_inference_inputs(X, topic_word, xp.asarray(alpha))


def _mixed_start(inputs: InferenceInputs, weight: float, xp: Any) -> InferenceInputs:
    """``inputs`` with topics (1 - weight) * topic_word + weight * the counts'
    :func:`corpus_word_distribution` (same dtype, rows on the simplex)."""
    mixed = (1.0 - weight) * inputs.topic_word + weight * corpus_word_distribution(inputs.counts, xp)
    mixed = mixed.astype(inputs.topic_word.dtype)
    return InferenceInputs(counts=inputs.counts, topic_word=mixed / mixed.sum(axis=1, keepdims=True),
                           alpha=inputs.alpha, xp=xp)
