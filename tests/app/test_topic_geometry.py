"""app.services.topic_geometry against brute-force definitions."""
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from app.services import topic_geometry as geometry


def random_topics(k, v, seed=0):
    return np.random.default_rng(seed).dirichlet(np.full(v, 0.3), size=k)


def test_jensen_shannon_matches_scipy():
    topics = random_topics(6, 40)
    topics[0, :5] = 0  # zeros are allowed
    topics[0] /= topics[0].sum()
    expected = np.array([[jensenshannon(p, q, base=2) for q in topics] for p in topics])
    np.testing.assert_allclose(geometry.jensen_shannon_distances(topics), expected, atol=2e-4)


def test_classical_mds_recovers_planar_points():
    points = np.random.default_rng(1).normal(size=(7, 2))
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    coords = geometry.classical_mds(distances)
    np.testing.assert_allclose(np.linalg.norm(coords[:, None] - coords[None], axis=-1), distances, atol=1e-9)
    assert geometry.classical_mds(np.zeros((1, 1))).shape == (1, 2)


@pytest.mark.parametrize("relevance_lambda", [0.0, 0.3, 1.0])
def test_relevance_order_is_the_brute_force_ranking(relevance_lambda):
    topics = random_topics(4, 30, seed=2)
    topics[1, 7] = 0
    topics[1] /= topics[1].sum()
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    marginal = geometry.word_marginal(topics, shares)
    order, relevance = geometry.relevance_order(topics[1], marginal, relevance_lambda, 30)
    scores = [relevance_lambda * np.log(p) + (1 - relevance_lambda) * np.log(p / m) if p > 0 else -np.inf
              for p, m in zip(topics[1], marginal)]
    assert order.tolist() == sorted(range(30), key=lambda w: (-scores[w], w))
    assert order[-1] == 7 and relevance[-1] == -np.inf
    assert geometry.relevance_order(topics[1], marginal, relevance_lambda, 5)[0].tolist() == order[:5].tolist()


def test_matching_finds_the_permutation_and_shares_weigh_by_length():
    topics = random_topics(5, 50, seed=3)
    permutation = [3, 0, 4, 1, 2]
    pairs = geometry.match_topics(geometry.topic_similarity(topics, topics[permutation]))
    assert sorted((a, b) for a, b, _ in pairs) == sorted((permutation[b], b) for b in range(5))
    assert all(abs(s - 1) < 1e-9 for _, _, s in pairs)
    assert len(geometry.match_topics(geometry.topic_similarity(topics[:2], topics))) == 2
    shares = geometry.token_shares(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([10, 30]))
    np.testing.assert_allclose(shares, [25 / 40, 15 / 40])
