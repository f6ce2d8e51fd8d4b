"""Topic recovery error: Hungarian matching of learned to true topics by L1 distance."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def l1_distances(true_topics: np.ndarray, learned_topics: np.ndarray) -> np.ndarray:
    """(k_true, k_learned) matrix of L1 distances between rows of two (k, V) matrices."""
    true_topics = np.asarray(true_topics, dtype=np.float64)
    learned_topics = np.asarray(learned_topics, dtype=np.float64)
    # one true topic at a time: O(k V) memory, not the (k, k, V) broadcast
    return np.stack([np.abs(row[None, :] - learned_topics).sum(axis=1) for row in true_topics]).reshape(
        true_topics.shape[0], learned_topics.shape[0])


def match_topics(true_topics: np.ndarray, learned_topics: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match rows with the assignment that minimises total L1 distance.

    Returns (true_index, learned_index, l1) arrays of length min(k_true, k_learned).
    """
    cost = l1_distances(true_topics, learned_topics)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols, cost[rows, cols]


def mean_matched_l1(true_topics: np.ndarray, learned_topics: np.ndarray) -> float:
    """Mean L1 distance between true and learned topics after Hungarian matching."""
    return float(match_topics(true_topics, learned_topics)[2].mean())
