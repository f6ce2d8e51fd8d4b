"""Refinement by zero-order collapsed variational Bayes (CVB0), ``method="cvb0"`` of
:func:`gpu.refine.refine_topics`."""
from __future__ import annotations

from typing import Any

import numpy as np

from gpu.backend import csr_row_indices, host_indptr, sparse_module_for, threads_for, to_host
from gpu.inference import batch_bounds, infer_gamma, map_batches
from gpu.passes import Progress
from gpu.quality import word_log_likelihood
from gpu.refine.alpha_rules import HELDOUT_SCALED_RULES, minka_polya_alpha, polish_alpha_scale, polya_alpha_shape
from gpu.refine.starts_and_scoring import HeldoutScorer, RefineResult, mixed_start, scoring_split, validated_start

CVB0_TEMPORARIES = 5  # (nnz, k) arrays alive at once in a CVB0 sweep


def cvb0_fits(X: Any, topic_word: Any, dtype: str, memory_budget: int) -> bool:
    """Whether CVB0's (nnz, k) responsibilities and temporaries fit in ``memory_budget`` bytes."""
    n_topics = int(np.shape(topic_word)[0]) if np.ndim(topic_word) == 2 else 1
    nnz = int(getattr(X, "nnz", np.count_nonzero(X) if isinstance(X, np.ndarray) else 0))
    return CVB0_TEMPORARIES * nnz * n_topics * np.dtype(dtype).itemsize <= memory_budget


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
        sparse = sparse_module_for(xp)
        self.xp, self.counts = xp, counts
        self.n_docs, self.n_words = counts.shape
        self.n_threads = threads_for(xp, n_threads)
        indptr_host = host_indptr(counts)
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
        self.rows = csr_row_indices(counts)
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

        word_counts = None
        for part in map_batches(work, [(i, i) for i in range(len(self.chunks))], self.n_threads):
            word_counts = part if word_counts is None else word_counts + part
        if word_counts is None:
            word_counts = xp.zeros((self.n_words, k), dtype=self.phi.dtype)
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

        for _ in map_batches(work, [(i, i) for i in range(len(self.chunks))], self.n_threads):
            pass  # each batch writes its own rows of ``new``
        self.phi = new
        return doc_counts, word_counts


def refine_cvb0(
    X: Any, topic_word: Any, alpha: Any, *, heldout: Any, max_sweeps: int, tol: float, seed: int,
    progress: Progress, eta: float, alpha_rule: str | None, patience: int, dtype: str, check_every: int,
    n_threads: int, start_mixing: float = 0.0,
) -> RefineResult:
    """CVB0 refinement (see :class:`_Cvb0State`); held-out likelihood checked every ``check_every`` sweeps."""
    xp, inputs = validated_start(X, topic_word, alpha, dtype)
    if start_mixing:
        inputs = mixed_start(inputs, start_mixing, xp)
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
        scorer = HeldoutScorer(scoring_split(heldout, seed), xp, dtype)
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
