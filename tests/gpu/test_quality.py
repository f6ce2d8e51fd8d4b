import itertools
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from gpu.quality import (
    evaluate_model,
    heldout_log_likelihood,
    npmi_coherence,
    split_document_tokens,
    split_heldout,
    top_words,
    topic_diversity,
    topic_token_shares,
)
from gpu.synthetic import make_lda_corpus
from tests.gpu.test_inference import reference_doc_topic


def tiny_model(seed=0, n_topics=3, n_words=15):
    rng = np.random.default_rng(seed)
    topic_word = rng.dirichlet(np.full(n_words, 0.3), size=n_topics)
    alpha = rng.uniform(0.2, 1.0, size=n_topics)
    return topic_word, alpha


def tiny_counts(seed=0, n_docs=9, n_words=15, rate=0.8):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix(rng.poisson(rate, size=(n_docs, n_words)))


def brute_npmi(topic_word, counts, top_n):
    docs = [set(np.nonzero(row)[0]) for row in counts.toarray()]
    n = len(docs)
    per_topic = []
    for topic in topic_word:
        top = sorted(range(len(topic)), key=lambda w: (-topic[w], w))[:top_n]
        scores = []
        for a, b in itertools.combinations(top, 2):
            pa = sum(a in d for d in docs) / n
            pb = sum(b in d for d in docs) / n
            pab = sum(a in d and b in d for d in docs) / n
            if pab == 0:
                scores.append(-1.0)
            elif pab == 1:
                scores.append(1.0)
            else:
                scores.append(math.log(pab / (pa * pb)) / -math.log(pab))
        per_topic.append(sum(scores) / len(scores))
    return np.array(per_topic)


def test_npmi_matches_brute_force():
    topic_word, _ = tiny_model()
    counts = tiny_counts(rate=0.4)
    per_topic, mean = npmi_coherence(topic_word, counts, top_n=6)
    expected = brute_npmi(topic_word, counts, 6)
    np.testing.assert_allclose(per_topic, expected, atol=1e-12)
    assert mean == pytest.approx(expected.mean())


def test_npmi_edge_cases_never_and_always_cooccurring():
    # words 0,1 always together in every doc; word 2 never with word 3
    counts = sp.csr_matrix(np.array([[1, 2, 1, 0], [3, 1, 0, 1], [1, 1, 1, 0]]))
    topic_word = np.array([[0.5, 0.4, 0.05, 0.05], [0.05, 0.05, 0.5, 0.4]])
    per_topic, _ = npmi_coherence(topic_word, counts, top_n=2)
    np.testing.assert_allclose(per_topic, [1.0, -1.0])


def test_diversity_matches_brute_force():
    topic_word, _ = tiny_model(n_topics=4)
    top = [set(sorted(range(15), key=lambda w: (-t[w], w))[:5]) for t in topic_word]
    expected = len(set().union(*top)) / 20
    assert topic_diversity(topic_word, top_n=5) == pytest.approx(expected)
    same = np.tile(topic_word[:1], (3, 1))
    assert topic_diversity(same, top_n=5) == pytest.approx(1 / 3)


def test_top_words_order():
    tw = np.array([[0.1, 0.5, 0.1, 0.3]])
    assert top_words(tw, 3).tolist() == [[1, 3, 0]]


def test_token_shares_brute_force():
    doc_topic = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    lengths = np.array([10, 30, 60])
    expected = [(5 + 30 + 12) / 100, (5 + 0 + 48) / 100]
    np.testing.assert_allclose(topic_token_shares(doc_topic, lengths), expected)


def test_split_heldout_is_a_seeded_partition():
    counts = tiny_counts(n_docs=50)
    train, heldout = split_heldout(counts, 0.2, seed=3)
    assert len(heldout) == 10 and len(train) == 40
    assert sorted(np.concatenate([train, heldout]).tolist()) == list(range(50))
    again = split_heldout(counts, 0.2, seed=3)
    assert (again[1] == heldout).all()
    assert not (split_heldout(counts, 0.2, seed=4)[1] == heldout).all()
    with pytest.raises(ValueError, match="fraction"):
        split_heldout(counts, 1.5, seed=0)


def test_token_split_halves_add_up():
    counts = tiny_counts(n_docs=20, rate=2.0)
    split = split_document_tokens(counts, seed=1)
    assert ((split.observed + split.scored) != counts).nnz == 0
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    np.testing.assert_array_equal(np.asarray(split.observed.sum(axis=1)).ravel(), lengths // 2)
    other = split_document_tokens(counts, seed=2)
    assert (other.observed != split.observed).nnz > 0


def test_heldout_loglik_matches_brute_force():
    topic_word, alpha = tiny_model()
    counts = tiny_counts(rate=1.5)
    got = heldout_log_likelihood(topic_word, alpha, counts, seed=7, max_iter=5000, tol=1e-12)
    split = split_document_tokens(counts, seed=7)
    observed, scored = split.observed.toarray(), split.scored.toarray()
    total, n_tokens = 0.0, 0
    for d in range(counts.shape[0]):
        if observed[d].sum() > 0:
            theta = reference_doc_topic(observed[d], topic_word, alpha)
        else:
            theta = alpha / alpha.sum()
        for w in range(counts.shape[1]):
            for _ in range(int(scored[d, w])):
                total += math.log(theta @ topic_word[:, w])
                n_tokens += 1
    assert got == pytest.approx(total / n_tokens, rel=1e-8)


def test_true_topics_score_better_than_noise():
    corpus = make_lda_corpus(200, 100, 4, doc_length=80, seed=2)
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(100), size=4)
    true_ll = heldout_log_likelihood(corpus.topic_word, corpus.alpha, corpus.counts, seed=0)
    noise_ll = heldout_log_likelihood(noise, corpus.alpha, corpus.counts, seed=0)
    assert true_ll > noise_ll + 0.1
    assert npmi_coherence(corpus.topic_word, corpus.counts)[1] > npmi_coherence(noise, corpus.counts)[1]


def test_evaluate_model_is_json_and_consistent():
    corpus = make_lda_corpus(120, 60, 3, doc_length=40, seed=4)
    train, heldout = split_heldout(corpus.counts, 0.25, seed=0)
    report = evaluate_model(corpus.topic_word, corpus.alpha, corpus.counts[train], corpus.counts[heldout], seed=0)
    json.dumps(report)
    assert report["n_topics"] == 3 and len(report["topics"]) == 3
    assert sum(report["token_share"]) == pytest.approx(1.0)
    assert report["npmi_mean"] == pytest.approx(np.mean(report["npmi_per_topic"]))
    assert report["heldout_loglik"] < 0
    assert report["topics"][1]["alpha"] == pytest.approx(corpus.alpha[1])


def test_bad_inputs():
    topic_word, alpha = tiny_model()
    counts = tiny_counts()
    with pytest.raises(ValueError, match="columns"):
        npmi_coherence(topic_word, counts[:, :-1])
    with pytest.raises(ValueError, match="top_n"):
        npmi_coherence(topic_word, counts, top_n=1)
    bad = counts.toarray()
    bad[3, 2] = -1
    with pytest.raises(ValueError, match="document 3"):
        npmi_coherence(topic_word, bad)
    with pytest.raises(ValueError, match="integer"):
        heldout_log_likelihood(topic_word, alpha, counts * 0.5, seed=0)
