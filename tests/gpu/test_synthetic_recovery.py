"""Known-truth recovery on the issue's configuration: D=20,000, V=5,000, k=20, alpha0=1."""
import numpy as np
import pytest

from gpu import fit_spectral_lda
from gpu.matching import match_topics
from gpu.synthetic import make_lda_corpus


@pytest.mark.slow
def test_recovers_topics_and_alpha_of_a_synthetic_lda_corpus():
    corpus = make_lda_corpus(20_000, 5_000, 20, alpha0=1.0, doc_length=100, seed=0)
    result = fit_spectral_lda(corpus.counts, 20, 1.0, seed=0, backend="numpy")
    true_index, learned_index, l1 = match_topics(corpus.topic_word, result.topic_word)
    assert l1.mean() <= 0.15
    assert abs(result.alpha.sum() - 1.0) <= 0.25
    relative = np.abs(result.alpha[learned_index] - corpus.alpha[true_index]) / corpus.alpha[true_index]
    assert relative.max() <= 0.5
    assert result.diagnostics["all_converged"]
