"""What both refinement algorithms share: their result, the starting point and the held-out scorer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu.backend import csr_on_module, get_array_module
from gpu.batched_inference import InferenceInputs
from gpu.inference import infer_gamma, validate_inference_inputs
from gpu.quality import CompletionSplit, split_document_tokens, word_log_likelihood


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


def seeded_row_sample(counts: Any, n_rows: int, seed: int) -> Any:
    """``counts`` (D, V) CSR itself when D <= n_rows, else n_rows of its rows drawn without
    replacement (seeded by ``seed`` and D), kept in their order, on the same device."""
    n_docs = int(counts.shape[0])
    if n_docs <= n_rows:
        return counts
    rows = np.sort(np.random.default_rng([seed, n_docs]).choice(n_docs, n_rows, replace=False))
    return counts[get_array_module(counts.data).asarray(rows)]


HELDOUT_SCORING_MAX_DOCS = 5_000  # held-out documents the scorer completes (a seeded sample beyond)


def scoring_split(heldout: Any, seed: int) -> CompletionSplit:
    """Document-completion halves (:func:`gpu.quality.split_document_tokens`) of the (D_h, V)
    held-out counts, or of a seeded sample of HELDOUT_SCORING_MAX_DOCS of them when there are
    more: the scorer runs after every sweep, and more documents only sharpen a comparison
    that is already clear (docs/decisions.md, "Refinement at scale")."""
    return split_document_tokens(seeded_row_sample(heldout, HELDOUT_SCORING_MAX_DOCS, seed), seed=seed)


class HeldoutScorer:
    """Document completion on fixed held-out halves, theta started afresh every time (20
    iterations at tol 1e-3; why: docs/decisions.md, "the held-out scorer starts theta afresh").

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


def corpus_word_distribution(counts: Any, xp: Any) -> Any:
    """(V,) float64 word frequencies of the (D, V) CSR ``counts`` plus a half pseudo-count
    each (so words absent from these documents keep some mass), on the simplex."""
    frequency = xp.asarray(counts.sum(axis=0), dtype=xp.float64).reshape(-1) + 0.5
    return frequency / frequency.sum()


def validated_start(X: Any, topic_word: Any, alpha: Any, dtype: str):
    """The refinement's starting point: topics cast to ``dtype`` and renormalised, then
    validated with the counts. Returns (array module, validated inputs)."""
    xp = get_array_module(X)
    topic_word = xp.asarray(topic_word).astype(dtype)
    topic_word /= topic_word.sum(axis=1, keepdims=True)
    return xp, validate_inference_inputs(X, topic_word, xp.asarray(alpha))


def mixed_start(inputs: InferenceInputs, weight: float, xp: Any) -> InferenceInputs:
    """``inputs`` with topics (1 - weight) * topic_word + weight * the counts'
    :func:`corpus_word_distribution` (same dtype, rows on the simplex)."""
    mixed = (1.0 - weight) * inputs.topic_word + weight * corpus_word_distribution(inputs.counts, xp)
    mixed = mixed.astype(inputs.topic_word.dtype)
    return InferenceInputs(counts=inputs.counts, topic_word=mixed / mixed.sum(axis=1, keepdims=True),
                           alpha=inputs.alpha, xp=xp)
