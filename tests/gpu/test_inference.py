import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import digamma

from gpu.batched_inference import active_topic_batch, variational_batch
from gpu.inference import infer_doc_topic, validate_inference_inputs
from gpu.synthetic import make_lda_corpus


def reference_doc_topic(counts_row: np.ndarray, topic_word: np.ndarray, alpha: np.ndarray, iters: int = 2000) -> np.ndarray:
    """One document, textbook mean-field updates with the explicit phi matrix (words x topics)."""
    words = np.nonzero(counts_row)[0]
    c = counts_row[words].astype(float)
    gamma = alpha + c.sum() / len(alpha)
    for _ in range(iters):
        elog = digamma(gamma) - digamma(gamma.sum())
        log_phi = np.log(topic_word[:, words].T + 1e-300) + elog[None, :]
        phi = np.exp(log_phi - log_phi.max(axis=1, keepdims=True))
        phi /= phi.sum(axis=1, keepdims=True)
        new_gamma = alpha + (c[:, None] * phi).sum(axis=0)
        if np.abs(new_gamma - gamma).max() < 1e-12:
            gamma = new_gamma
            break
        gamma = new_gamma
    return gamma / gamma.sum()


def tiny_problem(seed=0, n_docs=7, n_words=12, n_topics=3):
    rng = np.random.default_rng(seed)
    topic_word = rng.dirichlet(np.full(n_words, 0.5), size=n_topics)
    alpha = rng.uniform(0.1, 1.0, size=n_topics)
    dense = rng.poisson(1.0, size=(n_docs, n_words))
    dense[2] = 0  # an empty document
    return sp.csr_matrix(dense), topic_word, alpha


def test_matches_per_document_reference():
    X, topic_word, alpha = tiny_problem()
    got = infer_doc_topic(X, topic_word, alpha, max_iter=5000, tol=1e-12)
    dense = X.toarray()
    for d in range(X.shape[0]):
        if dense[d].sum() == 0:
            continue
        np.testing.assert_allclose(got[d], reference_doc_topic(dense[d], topic_word, alpha), atol=1e-8)


def test_empty_document_gets_prior_mean_and_rows_on_simplex():
    X, topic_word, alpha = tiny_problem(seed=1)
    got = infer_doc_topic(X, topic_word, alpha)
    np.testing.assert_allclose(got[2], alpha / alpha.sum())
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    assert (got >= 0).all()


def test_batching_does_not_change_the_answer():
    X, topic_word, alpha = tiny_problem(seed=2, n_docs=11)
    whole = infer_doc_topic(X, topic_word, alpha, tol=1e-10, max_iter=2000)
    batched = infer_doc_topic(X, topic_word, alpha, tol=1e-10, max_iter=2000, batch_size=3)
    np.testing.assert_allclose(whole, batched, atol=1e-8)


def test_float32_close_to_float64():
    X, topic_word, alpha = tiny_problem(seed=3)
    d64 = infer_doc_topic(X, topic_word, alpha, tol=1e-7, max_iter=1000)
    tw32 = topic_word.astype(np.float32)
    tw32 /= tw32.sum(axis=1, keepdims=True)
    d32 = infer_doc_topic(X, tw32, alpha, tol=1e-5, max_iter=1000)
    assert d32.dtype == np.float32
    np.testing.assert_allclose(d32, d64, atol=1e-3)


def test_recovers_true_mixtures_on_synthetic_data():
    corpus = make_lda_corpus(300, 400, 4, alpha0=1.0, doc_length=400, seed=5)
    got, iterations = infer_doc_topic(corpus.counts, corpus.topic_word, corpus.alpha, return_iterations=True)
    assert 1 <= iterations <= 100
    error = np.abs(got - corpus.doc_topic).sum(axis=1).mean()
    assert error < 0.1, error
    # the prior mean is a far worse guess: the data carry the information
    prior = np.abs(corpus.alpha / corpus.alpha.sum() - corpus.doc_topic).sum(axis=1).mean()
    assert error < prior / 5


def test_symmetric_scalar_alpha_and_dense_input():
    X, topic_word, _ = tiny_problem(seed=4)
    a = infer_doc_topic(X.toarray(), topic_word, 0.3)
    b = infer_doc_topic(X, topic_word, np.full(3, 0.3))
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda X, tw, a: (X[:, :-1], tw, a), "columns"),
        (lambda X, tw, a: (X, tw, a[:-1]), "alpha has 2 entries"),
        (lambda X, tw, a: (X, tw, np.array([0.5, 0.0, 0.5])), r"alpha\[1\]"),
        (lambda X, tw, a: (X, tw * 1.1, a), "sum to 1"),
        (lambda X, tw, a: (X, np.vstack([tw[:2], -tw[2:]]), a), "topic 2"),
        (lambda X, tw, a: (X, tw[0], a), "2-D"),
    ],
)
def test_bad_input_raises_value_error_naming_it(mutate, message):
    X, topic_word, alpha = tiny_problem()
    args = mutate(X, topic_word, alpha)
    with pytest.raises(ValueError, match=message):
        infer_doc_topic(*args)


def test_negative_count_names_the_document():
    X, topic_word, alpha = tiny_problem()
    dense = X.toarray()
    dense[4, 0] = -1
    with pytest.raises(ValueError, match="document 4"):
        infer_doc_topic(sp.csr_matrix(dense), topic_word, alpha)


@pytest.mark.parametrize("kwargs", [{"max_iter": 0}, {"tol": 0.0}, {"batch_size": 0}])
def test_bad_iteration_parameters(kwargs):
    X, topic_word, alpha = tiny_problem()
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        infer_doc_topic(X, topic_word, alpha, **kwargs)


def test_threads_do_not_change_the_answer():
    corpus = make_lda_corpus(400, 80, 4, doc_length=30, seed=8)
    one = infer_doc_topic(corpus.counts, corpus.topic_word, corpus.alpha, batch_size=37)
    from gpu.inference import infer_gamma, validate_inference_inputs

    inputs = validate_inference_inputs(corpus.counts, corpus.topic_word, corpus.alpha)
    gamma, _ = infer_gamma(inputs, n_threads=3)
    np.testing.assert_allclose(gamma / gamma.sum(axis=1, keepdims=True), one, atol=1e-4)


def test_cupy_matches_numpy_when_a_gpu_is_present():
    from gpu.backend import gpu_available

    if not gpu_available():
        pytest.skip("no CUDA device: the CuPy path runs on the GPU machine only")
    import cupy
    import cupyx.scipy.sparse as cupy_sparse

    X, topic_word, alpha = tiny_problem(seed=6, n_docs=40)
    expected = infer_doc_topic(X, topic_word, alpha, tol=1e-8, max_iter=500)
    got = infer_doc_topic(
        cupy_sparse.csr_matrix(X.astype(np.float64)), cupy.asarray(topic_word), cupy.asarray(alpha), tol=1e-8, max_iter=500
    )
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(got), expected, atol=1e-6)


def brute_force_restricted_update(row, topic_word, alpha, gamma, active, n_iter):
    """The textbook per-document update with phi = 0 outside ``active`` topics (dense)."""
    words = np.nonzero(row)[0]
    gamma = gamma.astype(np.float64).copy()
    inactive = np.setdiff1d(np.arange(len(alpha)), active)
    gamma[inactive] = alpha[inactive]
    for _ in range(n_iter):
        log_weights = digamma(gamma[active]) - digamma(gamma.sum())
        phi = np.exp(log_weights)[None, :] * topic_word[active][:, words].T  # (words, m)
        phi /= phi.sum(axis=1, keepdims=True)
        gamma[active] = alpha[active] + (row[words, None] * phi).sum(axis=0)
    log_weights = digamma(gamma[active]) - digamma(gamma.sum())
    phi = np.exp(log_weights)[None, :] * topic_word[active][:, words].T
    phi /= phi.sum(axis=1, keepdims=True)
    expected = np.zeros_like(topic_word)
    expected[np.ix_(active, words)] = (row[words, None] * phi).T / topic_word[np.ix_(active, words)]
    return gamma, expected


def test_active_topic_updates_match_a_dense_restricted_update():
    rng = np.random.default_rng(4)
    k, n_words, n_active = 7, 20, 3
    topic_word = rng.dirichlet(np.ones(n_words), size=k)
    alpha = rng.uniform(0.05, 0.5, size=k)
    dense = rng.poisson(0.7, size=(8, n_words)).astype(np.float64)
    dense[2] = 0  # an empty document keeps its prior
    gamma = alpha + rng.uniform(0, 6, size=(8, k))
    inputs = validate_inference_inputs(sp.csr_matrix(dense), topic_word, alpha)
    got_gamma, got_expected = active_topic_batch(inputs, inputs.counts, gamma, n_active, 4)
    expected_total = np.zeros_like(topic_word)
    for d, row in enumerate(dense):
        active = np.argsort(-gamma[d])[:n_active]
        want_gamma, want_expected = brute_force_restricted_update(row, topic_word, alpha, gamma[d], active, 4)
        np.testing.assert_allclose(got_gamma[d], want_gamma, rtol=1e-10)
        expected_total += want_expected
    np.testing.assert_allclose(got_expected, expected_total, rtol=1e-9, atol=1e-12)
    # with every topic active it is the full update
    full_gamma, _ = active_topic_batch(inputs, inputs.counts, gamma, k, 4)
    reference, _, _ = variational_batch(inputs, inputs.counts, gamma=gamma, max_iter=4, tol=1e-300)
    np.testing.assert_allclose(full_gamma, reference, rtol=1e-10)
