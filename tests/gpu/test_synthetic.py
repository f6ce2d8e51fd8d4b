import numpy as np

from gpu.matching import match_topics, mean_matched_l1
from gpu.synthetic import make_lda_corpus, zipf_weights


def test_corpus_shapes_and_truth():
    corpus = make_lda_corpus(500, 200, 5, alpha0=2.0, doc_length=50, seed=3)
    assert corpus.counts.shape == (500, 200)
    assert corpus.topic_word.shape == (5, 200)
    np.testing.assert_allclose(corpus.topic_word.sum(axis=1), 1.0)
    np.testing.assert_allclose(corpus.alpha.sum(), 2.0)
    mean_length = corpus.counts.sum() / 500
    assert 45 < mean_length < 55


def test_corpus_is_reproducible_and_seed_dependent():
    a = make_lda_corpus(100, 50, 3, seed=1)
    b = make_lda_corpus(100, 50, 3, seed=1)
    c = make_lda_corpus(100, 50, 3, seed=2)
    assert (a.counts != b.counts).nnz == 0
    assert (a.counts != c.counts).nnz > 0


def test_word_frequencies_follow_the_model():
    corpus = make_lda_corpus(4000, 30, 2, alpha0=1.0, doc_length=60, seed=0, chunk_docs=1000)
    expected = corpus.doc_topic.mean(axis=0) @ corpus.topic_word
    observed = np.asarray(corpus.counts.sum(axis=0)).ravel() / corpus.counts.sum()
    assert np.abs(observed - expected).sum() < 0.05


def test_zipf_weights():
    w = zipf_weights(10)
    assert abs(w.sum() - 1) < 1e-12 and w[0] / w[1] == 2.0


def test_matching_recovers_permutation():
    rng = np.random.default_rng(0)
    truth = rng.dirichlet(np.ones(20), size=4)
    perm = np.array([2, 0, 3, 1])
    rows, cols, l1 = match_topics(truth, truth[perm])
    assert np.all(perm[cols] == rows)
    assert mean_matched_l1(truth, truth[perm]) == 0.0
    assert mean_matched_l1(truth, truth[::-1] * 0 + 1 / 20) > 0
