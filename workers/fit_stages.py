"""The fit's stages after the estimator: document mixtures and quality, in chunks of documents.

Both stages report ``progress(stage, done, total)`` after every chunk of at most
``DOC_CHUNK`` documents, so a cancel request, the soft time limit or a lost lease (which
the progress callback raises) stop the job within one chunk's work, a few seconds at most.

The quality measures are those of :func:`gpu.quality.evaluate_model` (NPMI on the held-out
documents, held-out likelihood by document completion, diversity, token shares), computed
piecewise: the training documents' mixtures are the ones the ``doc_topic`` stage already
inferred, and the held-out documents are scored chunk by chunk (sums of log likelihood
and of scored tokens, divided at the end).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Progress = Callable[[str, int, int], None]
DOC_CHUNK = 2048
QUALITY_TOP_N = 10
DIVERSITY_TOP_N = 25


def doc_topic_in_chunks(transform: Callable[[Any], Any], counts, progress: Progress,
                        chunk: int = DOC_CHUNK) -> np.ndarray:
    """(D, k) mixtures of every row of ``counts`` by ``transform``, ``chunk`` rows at a time."""
    n_docs = int(counts.shape[0])
    progress("doc_topic", 0, n_docs)
    parts = []
    for start in range(0, n_docs, chunk):
        parts.append(np.asarray(transform(counts[start:start + chunk])))
        progress("doc_topic", min(start + chunk, n_docs), n_docs)
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, 0))


def quality_in_chunks(topic_word: np.ndarray, alpha: np.ndarray, train_doc_topic: np.ndarray, train_counts,
                      heldout_counts, *, seed: int, vocabulary: list[str], progress: Progress,
                      chunk: int = DOC_CHUNK, completion_alpha: np.ndarray | None = None) -> dict[str, Any]:
    """The quality dict of a fit (keys as :func:`gpu.quality.evaluate_model`, top words spelled out).

    alpha: (k,) the fitted prior, reported; completion_alpha: (k,) the alpha the held-out
    documents' halves are inferred with (the estimator's ``completion_alpha_``; alpha if None).
    """
    # Imported here, not at the top: the worker parent process must not load gpu/ before it
    # forks (tests/app/test_boundaries.py); this module is imported by workers.fit.
    from gpu.inference import infer_doc_topic
    from gpu.quality import (
        npmi_with_references,
        split_document_tokens,
        top_words,
        topic_diversity,
        topic_token_shares,
        word_log_likelihood,
    )

    n_heldout = int(heldout_counts.shape[0])
    total_steps = n_heldout + 1
    progress("quality", 0, total_steps)
    per_topic, npmi_mean, npmi_references = npmi_with_references(topic_word, train_counts, heldout_counts,
                                                                  top_n=QUALITY_TOP_N)
    progress("quality", 1, total_steps)
    split = split_document_tokens(heldout_counts, seed=seed)
    log_likelihood, n_tokens = 0.0, 0.0
    for start in range(0, n_heldout, chunk):
        rows = slice(start, start + chunk)
        mixtures = infer_doc_topic(split.observed[rows], topic_word,
                                   alpha if completion_alpha is None else completion_alpha)
        part, tokens = word_log_likelihood(split.scored[rows], mixtures, topic_word)
        log_likelihood, n_tokens = log_likelihood + float(part), n_tokens + float(tokens)
        progress("quality", 1 + min(start + chunk, n_heldout), total_steps)
    shares = topic_token_shares(train_doc_topic, np.asarray(train_counts.sum(axis=1)).ravel())
    top = top_words(topic_word, min(QUALITY_TOP_N, topic_word.shape[1]))
    return {
        "n_topics": int(topic_word.shape[0]),
        "npmi_mean": float(npmi_mean),
        "npmi_per_topic": [float(x) for x in per_topic],
        "npmi": npmi_references,
        "heldout_loglik": log_likelihood / n_tokens if n_tokens else None,
        "topic_diversity": float(topic_diversity(topic_word, top_n=DIVERSITY_TOP_N)),
        "alpha": [float(x) for x in alpha],
        "token_share": [float(x) for x in shares],
        "n_train_docs": int(train_counts.shape[0]),
        "n_heldout_docs": n_heldout,
        "topics": [{"index": i, "alpha": float(alpha[i]), "token_share": float(shares[i]),
                    "npmi": float(per_topic[i]), "top_words": [vocabulary[int(w)] for w in top[i]]}
                   for i in range(topic_word.shape[0])],
    }
