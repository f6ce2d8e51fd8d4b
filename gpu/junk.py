"""Junk components of a spectral fit: the rules that tell them from topics.

A spectral fit on real text finds, besides topics, components made of a few rare tokens
(hex dumps, untranslated pages): the tensor power method finds them first, since their
eigenvalues are the largest, and their alpha is a tiny share of the mean. Over-provisioned
fits also recover components from noise directions of the whitening, which lose much of
their mass to the simplex projection, and near-duplicates of another topic.
"""
from __future__ import annotations

import numpy as np

JUNK_ALPHA_SHARE = 0.02  # alpha below this share of the mean alpha: "tiny_alpha"


def tiny_alpha(alpha: np.ndarray, share: float = JUNK_ALPHA_SHARE, among: np.ndarray | None = None) -> np.ndarray:
    """(r,) bool: alpha (r,) below ``share`` x the mean alpha of the components ``among``
    ((r,) bool, default all; none at all: nothing is tiny)."""
    among = np.ones(alpha.shape, dtype=bool) if among is None else among
    mean_alpha = float(alpha[among].mean()) if among.any() else 0.0
    return alpha < share * mean_alpha


def junk_components(alpha: np.ndarray, share: float = JUNK_ALPHA_SHARE, alpha0: float | None = None) -> list[float]:
    """Alphas (descending) of the junk components of a spectral fit (alpha (k,)): those
    :func:`drop_junk_topics` calls "tiny_alpha" (below ``share`` x the mean) and, given the
    fit's ``alpha0``, those above alpha0 (impossible under LDA: a near-zero tensor eigenvalue),
    the mean then taken over the plausible ones only (one alpha in the millions would make
    every other component look tiny)."""
    implausible = np.zeros(alpha.shape, dtype=bool) if alpha0 is None else alpha > alpha0
    junk = tiny_alpha(alpha, share, among=~implausible) | implausible
    return sorted((float(a) for a in alpha[junk]), reverse=True)


def topic_similarity(topic_word: np.ndarray) -> np.ndarray:
    """(k, k) cosine similarity between topics (rows)."""
    norms = np.linalg.norm(topic_word, axis=1)
    unit = topic_word / np.where(norms > 0, norms, 1.0)[:, None]
    return unit @ unit.T


def projection_loss(raw: np.ndarray, projected: np.ndarray) -> np.ndarray:
    """(r,) how far each raw (sign-fixed) topic is from a distribution: the larger of the
    share of its L1 mass moved by the simplex projection and |sum(raw) - 1|.

    Components recovered from noise directions of an over-provisioned whitening sum to
    0.5-0.8 and lose 0.2-0.5 of their mass to the projection; real topics sum to ~1 and
    lose ~0.1.
    """
    mass = np.abs(raw).sum(axis=1)
    moved = np.abs(projected - raw).sum(axis=1) / np.where(mass > 0, mass, 1.0)
    return np.maximum(moved, np.abs(raw.sum(axis=1) - 1.0))


def drop_junk_topics(
    topic_word: np.ndarray,
    alpha: np.ndarray,
    *,
    n_keep: int,
    projection_loss: np.ndarray | None = None,
    max_projection_loss: float = 0.2,
    min_alpha_share: float = JUNK_ALPHA_SHARE,
    max_similarity: float = 0.9,
) -> tuple[np.ndarray, list[dict]]:
    """Indices of topics to keep (largest alpha first, at most ``n_keep``) and what was dropped.

    topic_word: (r, V); alpha: (r,); projection_loss: optional (r,) from
    :func:`projection_loss`. A topic is junk when its projection loss exceeds
    ``max_projection_loss`` ("unrecoverable"), when its alpha is below ``min_alpha_share``
    x the mean alpha of the recoverable topics ("tiny_alpha"), or when its cosine similarity to a kept topic with
    larger alpha exceeds ``max_similarity`` ("duplicate", with duplicate_of). Beyond the
    ``n_keep`` best, the rest are dropped as "surplus". Indices refer to the input rows.
    """
    order = np.argsort(-alpha, kind="stable")
    similarity = topic_similarity(topic_word)
    recoverable = np.ones(alpha.shape, dtype=bool) if projection_loss is None else projection_loss <= max_projection_loss
    tiny = tiny_alpha(alpha, min_alpha_share, recoverable)
    kept: list[int] = []
    dropped: list[dict] = []
    for index in order:
        index = int(index)
        if not recoverable[index]:
            dropped.append({"index": index, "alpha": float(alpha[index]), "reason": "unrecoverable",
                            "projection_loss": float(projection_loss[index])})
            continue
        if tiny[index]:
            dropped.append({"index": index, "alpha": float(alpha[index]), "reason": "tiny_alpha"})
            continue
        twins = [j for j in kept if similarity[index, j] > max_similarity]
        if twins:
            dropped.append(
                {"index": index, "alpha": float(alpha[index]), "reason": "duplicate", "duplicate_of": twins[0],
                 "similarity": float(similarity[index, twins[0]])}
            )
            continue
        if len(kept) >= n_keep:
            dropped.append({"index": index, "alpha": float(alpha[index]), "reason": "surplus"})
            continue
        kept.append(index)
    return np.asarray(kept, dtype=np.int64), dropped
