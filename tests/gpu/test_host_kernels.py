"""The compiled host E-step (gpu.host_kernels) against the batched NumPy form that the GPU path
runs (gpu.inference), against the textbook restricted update, and its digamma against SciPy's."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import digamma

from gpu.host_kernels import _digamma, host_posteriors
from gpu.batched_inference import active_topic_batch, prior_gamma, variational_batch
from gpu.inference import validate_inference_inputs
from gpu.quality import word_log_likelihood
from tests.gpu.test_inference import brute_force_restricted_update


def _problem(seed: int, n_docs: int = 9, n_words: int = 25, k: int = 6):
    rng = np.random.default_rng(seed)
    topic_word = rng.dirichlet(np.full(n_words, 0.4), size=k)
    alpha = rng.uniform(0.05, 0.8, size=k)
    dense = rng.poisson(0.8, size=(n_docs, n_words)).astype(np.float64)
    dense[3] = 0  # an empty document
    return validate_inference_inputs(sp.csr_matrix(dense), topic_word, alpha), dense


@pytest.mark.parametrize("x", [1e-6, 0.03, 0.5, 1.0, 2.5, 5.99, 6.0, 17.0, 1e4])
def test_digamma_matches_scipy(x):
    assert _digamma(x) == pytest.approx(digamma(x), rel=1e-12, abs=1e-12)


def test_full_update_matches_the_batched_form_iteration_for_iteration():
    inputs, _ = _problem(1)
    counts = inputs.counts
    start = prior_gamma(inputs.alpha, np.asarray(counts.sum(axis=1)).reshape(-1))
    for max_iter in (1, 3, 40):
        want, _, _ = variational_batch(inputs, counts, gamma=start, max_iter=max_iter, tol=1e-300)
        got = start.copy()
        step = host_posteriors(counts, np.ascontiguousarray(inputs.topic_word.T), inputs.alpha, got,
                               max_iter=max_iter, tol=1e-300)
        assert step.iterations == max_iter
        np.testing.assert_allclose(got, want, rtol=1e-11)


def test_full_update_stops_each_document_at_its_tolerance():
    inputs, _ = _problem(2, n_docs=30)
    counts = inputs.counts
    start = prior_gamma(inputs.alpha, np.asarray(counts.sum(axis=1)).reshape(-1))
    got = start.copy()
    step = host_posteriors(counts, np.ascontiguousarray(inputs.topic_word.T), inputs.alpha, got, max_iter=500, tol=1e-6)
    assert 1 < step.iterations < 500
    # one more iteration from the returned state moves no posterior mean by tol or more
    again = got.copy()
    host_posteriors(counts, np.ascontiguousarray(inputs.topic_word.T), inputs.alpha, again, max_iter=1, tol=1e-300)
    moved = np.abs(again / again.sum(1, keepdims=True) - got / got.sum(1, keepdims=True)).max()
    assert moved < 1e-6


def test_active_update_matches_the_textbook_restricted_update_with_statistics():
    inputs, dense = _problem(3, k=8)
    rng = np.random.default_rng(5)
    gamma = inputs.alpha + rng.uniform(0, 6, size=(dense.shape[0], 8))
    n_active, n_iter = 3, 4
    got = gamma.copy()
    expected = np.zeros((dense.shape[1], 8))
    log_theta = np.zeros(8)
    step = host_posteriors(inputs.counts, np.ascontiguousarray(inputs.topic_word.T), inputs.alpha, got,
                           max_iter=n_iter, tol=1e-3, n_active=n_active, expected=expected, log_theta=log_theta,
                           want_loglik=True)
    total = np.zeros_like(inputs.topic_word)
    for d, row in enumerate(dense):
        active = np.argsort(-gamma[d])[:n_active]
        want_gamma, want_expected = brute_force_restricted_update(row, inputs.topic_word, inputs.alpha, gamma[d],
                                                                  active, n_iter)
        np.testing.assert_allclose(got[d], want_gamma, rtol=1e-10)
        total += want_expected
    np.testing.assert_allclose(expected.T, total, rtol=1e-9, atol=1e-12)
    want_log_theta = (digamma(got) - digamma(got.sum(axis=1, keepdims=True))).sum(axis=0)
    np.testing.assert_allclose(log_theta, want_log_theta, rtol=1e-10)
    # the training likelihood is that of the incoming gamma
    want_loglik, want_tokens = word_log_likelihood(inputs.counts, gamma / gamma.sum(1, keepdims=True), inputs.topic_word)
    assert step.loglik == pytest.approx(want_loglik, rel=1e-10)
    assert step.tokens == want_tokens
    # the batched form agrees as well
    batch_gamma, batch_expected = active_topic_batch(inputs, inputs.counts, gamma, n_active, n_iter)
    np.testing.assert_allclose(got, batch_gamma, rtol=1e-10)
    np.testing.assert_allclose(expected.T, batch_expected, rtol=1e-9, atol=1e-12)


def test_float32_topics_run_in_float32_close_to_float64():
    inputs, _ = _problem(4, n_docs=40, n_words=60, k=10)
    counts = inputs.counts
    start = prior_gamma(inputs.alpha, np.asarray(counts.sum(axis=1)).reshape(-1))
    exact, single = start.copy(), start.astype(np.float32)
    host_posteriors(counts, np.ascontiguousarray(inputs.topic_word.T), inputs.alpha, exact, max_iter=50, tol=1e-300)
    host_posteriors(counts, np.ascontiguousarray(inputs.topic_word.T, dtype=np.float32), inputs.alpha, single,
                    max_iter=50, tol=1e-300)
    np.testing.assert_allclose(single, exact, rtol=2e-4, atol=1e-5)


def test_a_focused_document_narrows_to_its_support_within_the_dropped_share():
    """Ten topics on disjoint word blocks; each document draws from two of them. With
    support_mass the other topics drop to their prior exactly, and the posterior means stay
    within the dropped share of the unnarrowed fixed point."""
    rng = np.random.default_rng(8)
    k, block = 10, 8
    topic_word = np.full((k, k * block), 1e-6)
    for t in range(k):
        topic_word[t, t * block:(t + 1) * block] = rng.dirichlet(np.ones(block))
    topic_word /= topic_word.sum(axis=1, keepdims=True)
    dense = np.zeros((12, k * block))
    for d in range(12):
        for t in (d % k, (d + 3) % k):
            dense[d, t * block:(t + 1) * block] += rng.multinomial(30, topic_word[t, t * block:(t + 1) * block] /
                                                                   topic_word[t, t * block:(t + 1) * block].sum())
    alpha = np.full(k, 0.1)
    inputs = validate_inference_inputs(sp.csr_matrix(dense), topic_word, alpha)
    start = prior_gamma(inputs.alpha, dense.sum(axis=1))
    exact, narrowed = start.copy(), start.copy()
    topics_t = np.ascontiguousarray(topic_word.T)
    host_posteriors(inputs.counts, topics_t, alpha, exact, max_iter=500, tol=1e-10)
    host_posteriors(inputs.counts, topics_t, alpha, narrowed, max_iter=500, tol=1e-10, support_mass=1e-3)
    at_prior = np.isclose(narrowed, alpha[None, :], rtol=0, atol=0)
    assert at_prior.sum(axis=1).min() >= k // 2  # every document was narrowed
    assert not np.isclose(exact, alpha[None, :], rtol=0, atol=0).any()
    means = narrowed / narrowed.sum(1, keepdims=True), exact / exact.sum(1, keepdims=True)
    assert np.abs(means[0] - means[1]).max() < 1e-3
