"""gpu.quality.npmi_coherence against gensim's CoherenceModel(coherence="c_npmi") on the same
reference texts, the same top words and a window as long as the longest document (so that a
window is a document): the per-topic values agree to 1e-6.

Where a pair of top words never co-occurs, gensim adds epsilon=1e-12 to p(a, b) (a value
near -1 that depends on p(a) p(b)); npmi_coherence gives exactly -1 (its documented
convention). The corpus below is chosen so that every top-word pair co-occurs at least once,
which the test checks first.
"""
from __future__ import annotations

import numpy as np
from gensim.corpora import Dictionary
from gensim.models.coherencemodel import CoherenceModel

from gpu.quality import npmi_coherence, top_words
from gpu.synthetic import make_lda_corpus


def test_npmi_matches_gensim_c_npmi_with_a_document_window():
    corpus = make_lda_corpus(400, 80, 4, alpha0=1.0, doc_length=60, seed=3, topic_concentration=0.1)
    counts = corpus.counts.tocsr()
    texts = [[f"w{w}" for w in np.repeat(counts.indices[counts.indptr[d]:counts.indptr[d + 1]],
                                         counts.data[counts.indptr[d]:counts.indptr[d + 1]])]
             for d in range(counts.shape[0])]
    top_n = 8
    top = top_words(corpus.topic_word, top_n)
    present = (counts > 0).astype(np.int64)
    together = (present[:, np.unique(top)].T @ present[:, np.unique(top)]).toarray()
    assert together.min() > 0, "the test corpus must have every top-word pair co-occur"

    ours, ours_mean = npmi_coherence(corpus.topic_word, counts, top_n=top_n)

    dictionary = Dictionary(texts)
    model = CoherenceModel(topics=[[f"w{w}" for w in row] for row in top], texts=texts, dictionary=dictionary,
                           coherence="c_npmi", window_size=max(len(t) for t in texts), topn=top_n, processes=1)
    theirs = np.array(model.get_coherence_per_topic())
    assert np.abs(ours - theirs).max() < 1e-6, (ours, theirs)
    assert abs(ours_mean - model.aggregate_measures(theirs)) < 1e-6
