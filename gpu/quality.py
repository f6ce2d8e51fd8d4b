"""Measures of topic quality, one implementation shared by every system compared.

- NPMI coherence of each topic's top words from document co-occurrence in a reference corpus.
- Held-out per-word log likelihood by document completion.
- Topic diversity, per-topic token shares, and a seeded held-out split.

Count matrices are (D, V) CSR; topics are (k, V) rows on the simplex. Inputs on the GPU
are accepted where noted; the evaluation summary works on the host.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from gpu.backend import csr_on_module, csr_row_indices, get_array_module, host_indptr, rowwise_dot, to_host
from gpu.errors import InvalidInput
from gpu.inference import batch_bounds, gather_budget, infer_doc_topic, validate_inference_inputs

# Probability floor when scoring: a word a model gives probability 0 costs log(1e-300).
PROBABILITY_FLOOR = 1e-300


def _as_host_csr(counts: Any, name: str) -> sp.csr_matrix:
    counts = to_host(counts)
    if not sp.issparse(counts):
        counts = np.asarray(counts)
        if counts.ndim != 2:
            raise InvalidInput(f"{name} must be a 2-D (n_docs, n_words) matrix, got shape {counts.shape}")
        counts = sp.csr_matrix(counts)
    counts = counts.tocsr()
    if counts.nnz and (counts.data < 0).any():
        position = int(np.nonzero(counts.data < 0)[0][0])
        doc = int(np.searchsorted(counts.indptr, position, side="right")) - 1
        raise InvalidInput(f"{name} has a negative count in document {doc}")
    return counts


def _check_top_n(top_n: int, n_words: int) -> int:
    if not isinstance(top_n, (int, np.integer)) or top_n < 2:
        raise InvalidInput(f"top_n must be an integer >= 2, got {top_n!r}")
    return min(int(top_n), n_words)


def top_words(topic_word: Any, top_n: int) -> np.ndarray:
    """(k, top_n) word indices of each topic's most probable words, most probable first.

    Ties are broken by the lower word index, so the result is deterministic.
    """
    topic_word = np.asarray(to_host(topic_word), dtype=np.float64)
    return np.argsort(-topic_word, axis=1, kind="stable")[:, :top_n]


def npmi_coherence(topic_word: Any, reference_counts: Any, top_n: int = 10) -> tuple[np.ndarray, float]:
    """NPMI coherence of each topic's ``top_n`` words from document co-occurrence.

    p(a) and p(a, b) are the fractions of reference documents containing a (and b).
    NPMI(a, b) = log(p(a,b) / (p(a) p(b))) / -log p(a,b); -1 when the pair never co-occurs,
    1 when both words are in every document. Averaged over the top_n*(top_n-1)/2 pairs,
    then over topics.

    topic_word: (k, V); reference_counts: (D, V) counts (D >= 1).
    Returns (per_topic (k,), mean over topics).
    """
    topic_word = np.asarray(to_host(topic_word), dtype=np.float64)
    if topic_word.ndim != 2:
        raise InvalidInput(f"topic_word must be 2-D (n_topics, n_words), got shape {topic_word.shape}")
    reference = _as_host_csr(reference_counts, "reference_counts")
    if reference.shape[1] != topic_word.shape[1]:
        raise InvalidInput(
            f"reference_counts has {reference.shape[1]} columns (words) but topic_word has {topic_word.shape[1]}"
        )
    if reference.shape[0] == 0:
        raise InvalidInput("reference_counts has no documents")
    top_n = _check_top_n(top_n, topic_word.shape[1])
    top = top_words(topic_word, top_n)
    vocabulary, position = np.unique(top, return_inverse=True)
    position = position.reshape(top.shape)
    present = reference[:, vocabulary]
    present.data = (present.data > 0).astype(np.float64)
    present.eliminate_zeros()
    n_docs = reference.shape[0]
    joint = np.asarray((present.T @ present).todense()) / n_docs  # (u, u) co-document fractions
    marginal = np.diag(joint).copy()

    first, second = np.triu_indices(top_n, k=1)
    a, b = position[:, first], position[:, second]  # (k, pairs)
    p_ab, p_a, p_b = joint[a, b], marginal[a], marginal[b]
    npmi = np.full(p_ab.shape, -1.0)
    seen = p_ab > 0
    certain = seen & (p_ab >= 1.0)
    ordinary = seen & ~certain
    log_ab = np.log(p_ab[ordinary])
    npmi[ordinary] = (log_ab - np.log(p_a[ordinary]) - np.log(p_b[ordinary])) / -log_ab
    npmi[certain] = 1.0
    per_topic = npmi.mean(axis=1)
    return per_topic, float(per_topic.mean())


def topic_diversity(topic_word: Any, top_n: int = 25) -> float:
    """Fraction of distinct words among all topics' ``top_n`` words (1 = no overlap)."""
    topic_word = np.asarray(to_host(topic_word))
    top_n = _check_top_n(top_n, topic_word.shape[1])
    top = top_words(topic_word, top_n)
    return float(np.unique(top).size / top.size)


def topic_token_shares(doc_topic: Any, doc_lengths: Any) -> np.ndarray:
    """(k,) share of all tokens attributed to each topic: sum_d l_d theta_d / sum_d l_d.

    doc_topic: (D, k) rows on the simplex; doc_lengths: (D,) token counts.
    """
    doc_topic = np.asarray(to_host(doc_topic), dtype=np.float64)
    lengths = np.asarray(to_host(doc_lengths), dtype=np.float64).reshape(-1)
    if doc_topic.ndim != 2 or doc_topic.shape[0] != lengths.shape[0]:
        raise InvalidInput(
            f"doc_topic {doc_topic.shape} and doc_lengths {lengths.shape} must cover the same documents"
        )
    total = lengths.sum()
    if total <= 0:
        return np.zeros(doc_topic.shape[1])
    return lengths @ doc_topic / total


def split_heldout(counts: Any, fraction: float = 0.1, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of the documents: (train_rows, heldout_rows), both sorted.

    ``round(fraction * D)`` documents are held out (at least one when 0 < fraction and D >= 2,
    never all of them).
    """
    if not 0.0 <= fraction < 1.0:
        raise InvalidInput(f"fraction must be in [0, 1), got {fraction!r}")
    n_docs = int(counts.shape[0])
    n_heldout = int(round(fraction * n_docs))
    if fraction > 0 and n_docs >= 2:
        n_heldout = min(max(n_heldout, 1), n_docs - 1)
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(n_docs)
    return np.sort(permutation[n_heldout:]), np.sort(permutation[:n_heldout])


@dataclass(frozen=True)
class CompletionSplit:
    """Each document's tokens split in two halves for document completion.

    observed: (D, V) CSR, floor(l/2) tokens of each document (theta is inferred from these).
    scored:   (D, V) CSR, the other tokens (these are scored).
    """

    observed: sp.csr_matrix
    scored: sp.csr_matrix


def split_document_tokens(counts: Any, *, seed: int) -> CompletionSplit:
    """Split every document's tokens at random (seeded) into two halves.

    Tokens are expanded from the counts, shuffled within each document, and the first
    floor(l/2) go to ``observed``; ``observed + scored == counts``. Counts must be integers.
    """
    counts = _as_host_csr(counts, "counts")
    counts.sum_duplicates()
    data = counts.data
    if data.size and not np.all(np.equal(np.mod(data, 1), 0)):
        raise InvalidInput("document completion needs integer counts")
    data = data.astype(np.int64)
    n_docs, n_words = counts.shape
    rows = np.repeat(np.arange(n_docs), np.diff(counts.indptr))
    token_doc = np.repeat(rows, data)
    token_word = np.repeat(counts.indices, data)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(token_doc.size), token_doc))
    token_doc, token_word = token_doc[order], token_word[order]
    lengths = np.bincount(token_doc, minlength=n_docs)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rank = np.arange(token_doc.size) - starts[token_doc]
    first = rank < (lengths // 2)[token_doc]

    def build(mask: np.ndarray) -> sp.csr_matrix:
        matrix = sp.csr_matrix(
            (np.ones(int(mask.sum())), (token_doc[mask], token_word[mask])), shape=(n_docs, n_words)
        )
        matrix.sum_duplicates()
        return matrix

    return CompletionSplit(observed=build(first), scored=build(~first))


def word_log_likelihood(counts: Any, doc_topic: Any, topic_word: Any) -> tuple[float, float]:
    """(sum over tokens of log p(w | d), number of tokens), p(w | d) = doc_topic[d] @ topic_word[:, w].

    counts: (D, V) CSR; doc_topic: (D, k); topic_word: (k, V). NumPy or CuPy (all on one
    device). Probabilities are floored at PROBABILITY_FLOOR.
    """
    xp = get_array_module(topic_word)
    if counts.nnz == 0:
        return 0.0, 0.0
    # contiguous (V, k) rows gather fast; a transposed view would gather with a stride of V
    topic_word_t = xp.ascontiguousarray(topic_word.T)
    total = 0.0
    # row batches bound the (nnz, k) gathers by the inference's gather budget
    for start, stop in batch_bounds(host_indptr(counts), int(topic_word_t.shape[1]), None,
                                    elements=gather_budget(xp)):
        batch = counts[start:stop]
        rows = csr_row_indices(batch)
        probability = rowwise_dot(
            xp.take(doc_topic[start:stop], rows, axis=0), xp.take(topic_word_t, batch.indices, axis=0)
        ).astype(xp.float64)
        total += float((batch.data * xp.log(xp.maximum(probability, PROBABILITY_FLOOR))).sum())
    return total, float(counts.data.sum())


def completion_log_likelihood(
    split: CompletionSplit, topic_word: Any, alpha: Any, *, max_iter: int = 100, tol: float = 1e-4
) -> float:
    """Per-word log likelihood of ``split.scored`` given theta inferred from ``split.observed``."""
    xp = get_array_module(topic_word)
    observed = csr_on_module(split.observed, xp)
    inputs = validate_inference_inputs(observed, topic_word, alpha, name="heldout_counts")
    doc_topic = infer_doc_topic(inputs.counts, inputs.topic_word, inputs.alpha, max_iter=max_iter, tol=tol)
    scored = csr_on_module(split.scored, xp).astype(inputs.topic_word.dtype)
    total, n_tokens = word_log_likelihood(scored, doc_topic, inputs.topic_word)
    if n_tokens == 0:
        raise InvalidInput("heldout_counts has no tokens to score (every document has fewer than 2 tokens)")
    return total / n_tokens


def heldout_log_likelihood(
    topic_word: Any, alpha: Any, heldout_counts: Any, *, seed: int, max_iter: int = 100, tol: float = 1e-4
) -> float:
    """Held-out per-word log likelihood by document completion.

    Each held-out document's tokens are split at random (``seed``) into halves; theta is
    inferred from the first half with the topics fixed (:func:`gpu.inference.infer_doc_topic`),
    and the second half is scored: sum log(theta_d @ topic_word[:, w]) / number of scored tokens.

    topic_word: (k, V); alpha: (k,); heldout_counts: (D, V) integer counts.
    """
    topic_word = np.asarray(to_host(topic_word))
    return completion_log_likelihood(
        split_document_tokens(heldout_counts, seed=seed), topic_word, to_host(alpha), max_iter=max_iter, tol=tol
    )


def npmi_with_references(topic_word: Any, train: sp.csr_matrix, heldout: sp.csr_matrix,
                         top_n: int = 10) -> tuple[np.ndarray, float, dict]:
    """NPMI of each topic's ``top_n`` words (:func:`npmi_coherence`) on the held-out documents
    and on all documents (train + held-out, host CSR), each reference named and counted.

    Returns (held-out per-topic (k,), held-out mean, {"top_n", "heldout": {"n_documents",
    "mean", "per_topic"}, "all_documents": {...}}).
    """
    per_topic, mean = npmi_coherence(topic_word, heldout, top_n=top_n)
    all_per_topic, all_mean = npmi_coherence(topic_word, sp.vstack([train, heldout]).tocsr(), top_n=top_n)
    references = {
        "top_n": int(top_n),
        "heldout": {"n_documents": int(heldout.shape[0]), "mean": float(mean),
                    "per_topic": [float(x) for x in per_topic]},
        "all_documents": {"n_documents": int(train.shape[0] + heldout.shape[0]), "mean": float(all_mean),
                          "per_topic": [float(x) for x in all_per_topic]},
    }
    return per_topic, float(mean), references


def evaluate_model(
    topic_word: Any,
    alpha: Any,
    train_counts: Any,
    heldout_counts: Any,
    *,
    seed: int,
    top_n: int = 10,
    diversity_top_n: int = 25,
) -> dict:
    """All quality measures of one model, as a JSON-serialisable dict.

    NPMI uses the held-out documents as the reference corpus (npmi_mean, npmi_per_topic);
    ``npmi`` gives it with each reference named and counted: {"top_n", "heldout": {...},
    "all_documents": {...}}, each {"n_documents", "mean", "per_topic"} (all documents = train
    and held-out: a larger reference, comparable with tools that score on the whole corpus).
    Token shares come from inferring the training documents' mixtures. Keys: n_topics,
    npmi_mean, npmi_per_topic, npmi, heldout_loglik (per word), topic_diversity, alpha,
    token_share, topics (one dict per topic: index, alpha, token_share, npmi, top_words as word
    indices).
    """
    topic_word = np.asarray(to_host(topic_word), dtype=np.float64)
    alpha = np.asarray(to_host(alpha), dtype=np.float64).reshape(-1)
    train = _as_host_csr(train_counts, "train_counts")
    heldout = _as_host_csr(heldout_counts, "heldout_counts")
    per_topic, npmi_mean, npmi_references = npmi_with_references(topic_word, train, heldout, top_n=top_n)
    loglik = heldout_log_likelihood(topic_word, alpha, heldout, seed=seed)
    diversity = topic_diversity(topic_word, top_n=diversity_top_n)
    doc_topic = infer_doc_topic(train, topic_word, alpha)
    shares = topic_token_shares(doc_topic, np.asarray(train.sum(axis=1)).ravel())
    top = top_words(topic_word, _check_top_n(top_n, topic_word.shape[1]))
    topics = [
        {
            "index": i,
            "alpha": float(alpha[i]),
            "token_share": float(shares[i]),
            "npmi": float(per_topic[i]),
            "top_words": [int(w) for w in top[i]],
        }
        for i in range(topic_word.shape[0])
    ]
    return {
        "n_topics": int(topic_word.shape[0]),
        "npmi_mean": float(npmi_mean),
        "npmi_per_topic": [float(x) for x in per_topic],
        "npmi": npmi_references,
        "heldout_loglik": float(loglik),
        "topic_diversity": float(diversity),
        "alpha": [float(x) for x in alpha],
        "token_share": [float(x) for x in shares],
        "n_train_docs": int(train.shape[0]),
        "n_heldout_docs": int(heldout.shape[0]),
        "topics": topics,
    }
