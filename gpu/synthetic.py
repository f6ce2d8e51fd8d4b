"""Synthetic corpora drawn from the LDA generative model, with the truth kept.

Used by tests (known truth) and benchmarks. Randomness comes only from ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class SyntheticCorpus:
    """A corpus drawn from LDA together with the parameters it was drawn from.

    counts:     (D, V) CSR matrix of word counts (int32 data).
    topic_word: (k, V) true topic-word distributions, rows sum to 1.
    alpha:      (k,) true Dirichlet parameters, ``alpha.sum() == alpha0``.
    doc_topic:  (D, k) the topic mixtures the documents were drawn from.
    """

    counts: sp.csr_matrix
    topic_word: np.ndarray
    alpha: np.ndarray
    doc_topic: np.ndarray


def zipf_weights(n_words: int, exponent: float = 1.0) -> np.ndarray:
    """(V,) word weights proportional to 1 / rank**exponent, summing to 1."""
    weights = 1.0 / np.arange(1, n_words + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def make_lda_corpus(
    n_docs: int,
    n_words: int,
    n_topics: int,
    alpha0: float = 1.0,
    doc_length: float = 100.0,
    *,
    seed: int = 0,
    topic_concentration: float = 0.1,
    word_weights: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
    chunk_docs: int = 20_000,
) -> SyntheticCorpus:
    """Draw a corpus from LDA.

    Topics ~ Dirichlet(topic_concentration * V * word_weights) (word_weights uniform by
    default, e.g. :func:`zipf_weights` for a Zipf-shaped vocabulary); alpha defaults to
    alpha0 split unevenly (weights uniform in [0.5, 1.5]); document lengths are
    Poisson(doc_length); each token draws a topic from the document's mixture and a word
    from that topic. Documents are generated in chunks so memory stays bounded.
    """
    rng = np.random.default_rng(seed)
    if word_weights is None:
        word_weights = np.full(n_words, 1.0 / n_words)
    concentration = np.maximum(topic_concentration * n_words * np.asarray(word_weights), 1e-6)
    topic_word = rng.dirichlet(concentration, size=n_topics)
    if alpha is None:
        raw = rng.uniform(0.5, 1.5, size=n_topics)
        alpha = alpha0 * raw / raw.sum()
    alpha = np.asarray(alpha, dtype=np.float64)
    doc_topic = rng.dirichlet(alpha, size=n_docs) if n_docs else np.zeros((0, n_topics))
    topic_cdf = np.cumsum(topic_word, axis=1)
    topic_cdf[:, -1] = 1.0

    blocks = []
    for start in range(0, n_docs, chunk_docs):
        theta = doc_topic[start : start + chunk_docs]
        lengths = rng.poisson(doc_length, size=theta.shape[0])
        doc_of_token = np.repeat(np.arange(theta.shape[0]), lengths)
        theta_cdf = np.cumsum(theta, axis=1)
        theta_cdf[:, -1] = 1.0
        u = rng.random(doc_of_token.size)
        topic_of_token = (u[:, None] > theta_cdf[doc_of_token]).sum(axis=1)
        words = np.empty(doc_of_token.size, dtype=np.int64)
        u = rng.random(doc_of_token.size)
        for topic in range(n_topics):
            mask = topic_of_token == topic
            words[mask] = np.searchsorted(topic_cdf[topic], u[mask], side="right")
        np.minimum(words, n_words - 1, out=words)
        block = sp.csr_matrix(
            (np.ones(doc_of_token.size, dtype=np.int32), (doc_of_token, words)),
            shape=(theta.shape[0], n_words),
        )
        block.sum_duplicates()
        blocks.append(block)
    counts = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_words), dtype=np.int32)
    counts.data = counts.data.astype(np.int32)
    return SyntheticCorpus(counts=counts, topic_word=topic_word, alpha=alpha, doc_topic=doc_topic)


def with_junk_documents(counts: sp.csr_matrix, n_docs: int = 8, n_words: int = 2, length: int = 200,
                        seed: int = 1) -> sp.csr_matrix:
    """(D + n_docs, V + n_words) int64 CSR: ``counts`` with ``n_words`` new words (the last
    columns) and ``n_docs`` documents of ``length`` tokens made of them alone, like the hex
    dumps of real documentation, which a spectral fit turns into a component with a tiny alpha."""
    rng = np.random.default_rng(seed)
    counts = sp.csr_matrix(counts).astype(np.int64)
    junk = np.zeros((n_docs, counts.shape[1] + n_words), dtype=np.int64)
    junk[:, counts.shape[1]:] = rng.multinomial(length, np.full(n_words, 1.0 / n_words), size=n_docs)
    widened = sp.hstack([counts, sp.csr_matrix((counts.shape[0], n_words), dtype=np.int64)])
    return sp.vstack([widened, sp.csr_matrix(junk)], format="csr")
