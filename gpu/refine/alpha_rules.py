"""How refinement fits the Dirichlet prior alpha: Minka's fixed points and the held-out scale.

- :func:`update_alpha`: Dirichlet maximum likelihood from mean E[log theta] (fit_alpha="minka",
  variational).
- :func:`minka_polya_alpha` / :func:`polya_alpha_shape`: Dirichlet-multinomial fixed point on
  expected topic counts (fit_alpha="polya" reshapes alpha, its sum kept; "minka" in CVB0).
- :func:`polish_alpha_scale`: scale alpha by powers of sqrt(2) while the held-out score rises
  (fit_alpha="heldout" and "polya", once the sweeps stop).
Why these rules and defaults: docs/decisions.md, "Refinement: the alpha rule".
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import digamma as host_digamma
from scipy.special import polygamma as host_polygamma

from gpu.backend import digamma, to_host

POLYA_BLOCK_ROWS = 65_536  # documents per block of minka_polya_alpha's sums
POLYA_SHAPE_STEPS = 2  # fixed-point steps per sweep of fit_alpha="polya" (docs/decisions.md)
HELDOUT_SCALED_RULES = ("heldout", "polya")  # alpha rules that end with polish_alpha_scale
ALPHA_STEP = 2.0 ** 0.5  # factor per step of the held-out alpha scale search
ALPHA_MAX_STEPS = 6  # at most 8x up or down
ALPHA_MIN_GAIN = 1e-4  # nats/word a step must gain to be taken


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
