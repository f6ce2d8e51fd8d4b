"""Small corpora for service tests: synthetic LDA documents written as words "w123"."""
from __future__ import annotations

import numpy as np

from gpu.synthetic import SyntheticCorpus, make_lda_corpus


def synthetic_documents(n_docs=300, n_words=60, n_topics=3, doc_length=40, seed=0) -> tuple[list[dict], SyntheticCorpus]:
    """Documents ``{"id": "d0", "text": "w3 w17 ..."}`` drawn from LDA, with the truth."""
    truth = make_lda_corpus(n_docs, n_words, n_topics, alpha0=1.0, doc_length=doc_length, seed=seed,
                            topic_concentration=0.05)
    docs = []
    for d in range(n_docs):
        row = truth.counts.getrow(d)
        words = np.repeat(row.indices, row.data)
        docs.append({"id": f"d{d}", "text": " ".join(f"w{w}" for w in words)})
    return docs, truth


def topic_matrix_in_truth_order(topics: list[dict], n_words: int) -> np.ndarray:
    """(k, n_words) topic-word weights from the API's /topics answer (words "w<index>")."""
    matrix = np.zeros((len(topics), n_words))
    for i, topic in enumerate(topics):
        for entry in topic["words"]:
            matrix[i, int(entry["word"][1:])] = entry["weight"]
    return matrix
