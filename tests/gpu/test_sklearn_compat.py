"""SpectralLDA as a scikit-learn estimator: the common checks, a Pipeline and a grid search."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from gpu import SpectralLDA
from gpu.synthetic import make_lda_corpus

# tiny, fast fits: the bare spectral fit on the host, few restarts
CHECKED = SpectralLDA(n_topics=1, backend="numpy", refine=False, n_restarts=3, n_threads=1)
# The method of moments drops documents with fewer than 3 tokens (their third-moment weights
# 1 / (l (l-1) (l-2)) are undefined); these checks fit rows of uniform(0, 1) values over 1-3
# columns, whose every row sums to less than 3, so no document is usable and fit raises
# InvalidInput ("fewer than 3 usable documents"). Integer count data of that size fits.
SHORT_DOCUMENTS = "its data's rows sum to < 3 tokens: a moment method has no usable document"
EXPECTED_FAILED_CHECKS = {
    "check_fit_score_takes_y": SHORT_DOCUMENTS,
    "check_estimators_nan_inf": SHORT_DOCUMENTS,
    "check_estimator_sparse_tag": SHORT_DOCUMENTS,
    "check_estimator_sparse_array": SHORT_DOCUMENTS,
    "check_estimator_sparse_matrix": SHORT_DOCUMENTS,
    "check_fit2d_1feature": SHORT_DOCUMENTS,
}


@parametrize_with_checks([CHECKED], expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_common_checks(estimator, check):
    check(estimator)


def _documents(n_docs: int = 240, seed: int = 0) -> list[str]:
    corpus = make_lda_corpus(n_docs, 40, 3, alpha0=0.5, doc_length=40, seed=seed, topic_concentration=0.05)
    rows = [corpus.counts.getrow(d) for d in range(n_docs)]
    return [" ".join(f"w{w}" for w in np.repeat(row.indices, row.data)) for row in rows]


@pytest.mark.parametrize("refine", [False, True])
def test_pipeline_with_count_vectorizer_and_grid_search(refine):
    documents = _documents()
    pipe = make_pipeline(CountVectorizer(), SpectralLDA(n_topics=5, backend="numpy", refine=refine, seed=1))
    doc_topic = pipe.fit(documents).transform(documents[:10])
    assert doc_topic.shape == (10, 5)
    np.testing.assert_allclose(doc_topic.sum(axis=1), 1.0, atol=1e-6)
    model = pipe[-1]
    assert model.n_features_in_ == len(pipe[0].vocabulary_)
    assert np.isfinite(pipe.score(documents)) and model.perplexity(pipe[0].transform(documents)) > 1.0

    search = GridSearchCV(pipe, {"spectrallda__n_topics": [3, 5]}, cv=2).fit(documents)
    assert search.best_params_["spectrallda__n_topics"] in (3, 5)
    assert np.isfinite(search.best_score_)
    assert search.best_estimator_[-1].topic_word_.shape[0] == search.best_params_["spectrallda__n_topics"]


def test_score_is_the_document_completion_likelihood_and_perplexity_its_exponential():
    corpus = make_lda_corpus(300, 50, 3, alpha0=0.5, doc_length=60, seed=3)
    model = SpectralLDA(3, backend="numpy", seed=2).fit(corpus.counts)
    score = model.score(corpus.counts)
    assert score < 0 and model.perplexity(corpus.counts) == pytest.approx(np.exp(-score))
    # the true topics explain the documents at least about as well
    truth = SpectralLDA(3, backend="numpy")
    truth.topic_word_, truth.alpha_, truth.n_features_in_ = corpus.topic_word, corpus.alpha, 50
    truth.completion_alpha_ = corpus.alpha
    assert score > truth.score(corpus.counts) - 0.05
    # score scores with the completion-tuned alpha, not the prior
    prior_only = SpectralLDA(3, backend="numpy")
    prior_only.topic_word_, prior_only.n_features_in_ = model.topic_word_, 50
    prior_only.alpha_ = prior_only.completion_alpha_ = model.alpha_
    assert model.score(corpus.counts) >= prior_only.score(corpus.counts) - 1e-12
