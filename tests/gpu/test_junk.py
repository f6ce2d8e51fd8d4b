import numpy as np

from gpu.junk import (
    JUNK_ALPHA_SHARE,
    drop_junk_topics,
    junk_components,
    projection_loss,
    tiny_alpha,
)


def test_drop_junk_topics_reports_each_reason():
    rng = np.random.default_rng(0)
    topics = rng.dirichlet(np.ones(50), size=5)
    topics[3] = 0.97 * topics[0] + 0.03 * topics[1]  # near-duplicate of topic 0
    alpha = np.array([1.0, 0.8, 0.6, 0.5, 0.001])
    loss = np.array([0.05, 0.05, 0.6, 0.05, 0.05])
    keep, dropped = drop_junk_topics(topics, alpha, n_keep=1, projection_loss=loss)
    assert keep.tolist() == [0]
    reasons = {d["index"]: d["reason"] for d in dropped}
    assert reasons == {1: "surplus", 2: "unrecoverable", 3: "duplicate", 4: "tiny_alpha"}
    assert [d for d in dropped if d["index"] == 3][0]["duplicate_of"] == 0
    raw = np.array([[0.5, 0.5, 0.0], [1.0, -1.0, 0.5], [0.3, 0.3, 0.0]])
    projected = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    # moved share 1.5 / 2.5 beats |0.5 - 1|; the third row moved 0.4 / 0.6 of its mass
    np.testing.assert_allclose(projection_loss(raw, projected), [0.0, 1.5 / 2.5, 0.4 / 0.6])


def test_junk_components_are_the_tiny_alpha_drops():
    rng = np.random.default_rng(1)
    alpha = np.concatenate([rng.uniform(0.05, 0.3, size=17), [1e-4, 1.5e-3, 5e-4]])
    topics = rng.dirichlet(np.ones(30), size=alpha.size)
    # brute force: below 2% of the mean of all alphas
    expected = sorted((a for a in alpha if a < JUNK_ALPHA_SHARE * alpha.sum() / alpha.size), reverse=True)
    assert junk_components(alpha) == expected and len(expected) == 3
    _, dropped = drop_junk_topics(topics, alpha, n_keep=alpha.size, max_similarity=1.0)
    assert [d["alpha"] for d in dropped if d["reason"] == "tiny_alpha"] == expected
    # the mean is over the components named, and an empty set calls nothing tiny
    among = alpha > 0.1
    assert tiny_alpha(alpha, 0.5, among).tolist() == (alpha < 0.5 * alpha[among].mean()).tolist()
    assert not tiny_alpha(alpha, 0.5, np.zeros(alpha.size, dtype=bool)).any()
    assert junk_components(np.full(4, 0.25)) == []


def test_an_alpha_above_alpha0_is_junk_and_does_not_make_the_others_look_tiny():
    alpha = np.array([1.6e6, 0.3, 0.2, 0.1, 0.001])
    # against the mean of all five, every plausible component would be "tiny"
    assert junk_components(alpha) == [0.3, 0.2, 0.1, 0.001]
    # given alpha0, the impossible one is junk and the mean is that of the plausible ones
    assert junk_components(alpha, alpha0=1.0) == [1.6e6, 0.001]
    assert junk_components(np.array([0.5, 0.3, 0.2]), alpha0=1.0) == []
