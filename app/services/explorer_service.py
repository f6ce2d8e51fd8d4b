"""What the explorer's endpoints do with a ready model: the intertopic map, a topic's terms
by relevance, a topic's top documents, the topics of a word, labels, and the comparison of
two models of one corpus. Routes (app.api.explorer_routes) check the tenant and readiness;
the numerics are in app.services.topic_geometry.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.artifacts.model_artifact import load_alpha, load_doc_topic, load_topic_word
from app.core.api_errors import ApiError
from app.core.context import ServiceContext
from app.core.db import transaction
from app.core.tables import ModelRow
from app.ingest import Corpus
from app.ingest.store import read_snippets
from app.services import topic_geometry
from app.services.model_service import corpus_of, ready_model


def labels_of(row: ModelRow) -> dict[int, str]:
    """{topic: label} of a model (topics without a label are absent)."""
    return {int(topic): str(label) for topic, label in (row.topic_labels or {}).items()}


def check_topic(row: ModelRow, topic: int) -> None:
    k = int(row.n_topics or len(row.alpha or []))
    if not 0 <= topic < k:
        raise ApiError(422, "topic_out_of_range", f"topic={topic} is out of range: model {row.id!r} has topics 0..{k - 1}")


def _shares_and_marginal(ctx: ServiceContext, row: ModelRow) -> tuple[np.ndarray, np.ndarray]:
    """Token shares (k,) and p(w) (V,), computed once per model and process."""
    def compute():
        corpus = corpus_of(ctx, row)
        folder = ctx.layout.model_dir(row.id)
        lengths = np.asarray(corpus.counts.sum(axis=1)).ravel()
        shares = topic_geometry.token_shares(load_doc_topic(folder), lengths)
        return shares, topic_geometry.word_marginal(load_topic_word(folder), shares)

    return ctx.derived(("shares", row.id, row.checksum), compute)


def topic_map(ctx: ServiceContext, row: ModelRow) -> list[dict[str, Any]]:
    """Per topic: 2-D position (classical MDS of Jensen-Shannon distances), share of tokens,
    alpha, NPMI coherence (None when the fit measured none) and label. The positions are
    computed once per model and process."""
    folder = ctx.layout.model_dir(row.id)
    alpha = load_alpha(folder)
    shares = _shares_and_marginal(ctx, row)[0]
    coords = ctx.derived(("map", row.id, row.checksum), lambda: topic_geometry.classical_mds(
        topic_geometry.jensen_shannon_distances(load_topic_word(folder))))
    coherence = (row.quality or {}).get("npmi_per_topic") or [None] * len(alpha)
    labels = labels_of(row)
    return [{"topic": t, "x": float(coords[t, 0]), "y": float(coords[t, 1]), "share": float(shares[t]),
             "alpha": float(alpha[t]), "coherence": None if coherence[t] is None else float(coherence[t]),
             "label": labels.get(t)} for t in range(len(alpha))]


def topic_terms(ctx: ServiceContext, row: ModelRow, topic: int, relevance_lambda: float,
                top_n: int) -> list[dict[str, Any]]:
    """The topic's ``top_n`` terms by relevance at ``relevance_lambda`` with p(w|t) and p(w)."""
    check_topic(row, topic)
    marginal = _shares_and_marginal(ctx, row)[1]  # first: it loads the corpus once for both
    topic_row = np.asarray(load_topic_word(ctx.layout.model_dir(row.id), mmap=True)[topic])
    corpus = corpus_of(ctx, row)
    order, relevance = topic_geometry.relevance_order(topic_row, marginal, relevance_lambda, top_n)
    return [{"word": corpus.vocabulary[w], "weight": float(topic_row[w]), "overall": float(marginal[w]),
             "relevance": float(r) if np.isfinite(r) else None} for w, r in zip(order.tolist(), relevance.tolist())]


def topic_documents(ctx: ServiceContext, row: ModelRow, topic: int, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` training documents with the largest weight on ``topic``: id, weight,
    text snippet (None for bag-of-words corpora) and full topic mixture."""
    check_topic(row, topic)
    doc_topic = load_doc_topic(ctx.layout.model_dir(row.id))
    column = np.asarray(doc_topic[:, topic], dtype=np.float64)
    limit = min(limit, column.size)
    rows = np.argpartition(-column, limit - 1)[:limit] if limit < column.size else np.arange(column.size)
    rows = rows[np.lexsort((rows, -column[rows]))].tolist()
    corpus = corpus_of(ctx, row)
    snippets = read_snippets(corpus.path, rows) or [None] * len(rows)
    return [{"doc_id": str(corpus.doc_ids[r]), "weight": float(column[r]), "snippet": snippet,
             "topics": [float(x) for x in doc_topic[r]]} for r, snippet in zip(rows, snippets)]


def term_topics(ctx: ServiceContext, row: ModelRow, term: str) -> tuple[str, list[dict[str, Any]]]:
    """The topics that use ``term`` (exact, else lower-cased): p(w|t) and p(t|w) =
    share_t p(w|t) / p(w), sorted by p(t|w); 422 when the vocabulary lacks it."""
    corpus = corpus_of(ctx, row)
    index = _term_index(corpus, term)
    topic_word = load_topic_word(ctx.layout.model_dir(row.id), mmap=True)
    column = np.asarray(topic_word[:, index], dtype=np.float64)
    joint = _shares_and_marginal(ctx, row)[0] * column
    total = joint.sum()
    posterior = joint / total if total > 0 else np.zeros_like(joint)
    order = np.lexsort((np.arange(column.size), -posterior))
    labels = labels_of(row)
    return corpus.vocabulary[index], [
        {"topic": int(t), "weight": float(column[t]), "topic_share": float(posterior[t]), "label": labels.get(int(t))}
        for t in order.tolist() if column[t] > 0]


def _term_index(corpus: Corpus, term: str) -> int:
    vocabulary = corpus.vocabulary
    for candidate in dict.fromkeys((term, term.strip(), term.strip().lower())):
        position = _sorted_position(vocabulary, candidate)
        if position is not None:
            return position
    raise ApiError(422, "unknown_term", f"term {term[:100]!r} is not in the model's vocabulary "
                                        f"({len(vocabulary)} terms)")


def _sorted_position(vocabulary: list[str], term: str) -> int | None:
    """Index of ``term`` in a vocabulary stored in sorted order (a linear scan otherwise)."""
    low, high = 0, len(vocabulary)
    while low < high:
        middle = (low + high) // 2
        if vocabulary[middle] < term:
            low = middle + 1
        else:
            high = middle
    if low < len(vocabulary) and vocabulary[low] == term:
        return low
    try:
        return vocabulary.index(term)
    except ValueError:
        return None


def set_label(ctx: ServiceContext, tenant_id: str, model_id: str, topic: int, label: str | None) -> dict[int, str]:
    """Store (or, for None / blank, remove) a topic's label; returns all the model's labels."""
    with transaction(ctx.sessions) as session:
        row = ready_model(session, tenant_id, model_id)
        check_topic(row, topic)
        labels = {str(t): value for t, value in labels_of(row).items()}
        if label is None or not label.strip():
            labels.pop(str(topic), None)
        else:
            labels[str(topic)] = label.strip()
        row.topic_labels = labels
        return labels_of(row)


def compare(ctx: ServiceContext, session: Session, tenant_id: str, model_a: str, model_b: str) -> list[dict[str, Any]]:
    """Topics of two ready models of the same corpus matched one to one (Hungarian
    algorithm on Bhattacharyya similarity of their word distributions)."""
    first, second = ready_model(session, tenant_id, model_a), ready_model(session, tenant_id, model_b)
    if first.corpus_id != second.corpus_id:
        raise ApiError(422, "different_corpora", f"models {model_a!r} and {model_b!r} were fitted on different corpora "
                                                 f"({first.corpus_id!r}, {second.corpus_id!r}); compare models of one corpus")
    a = load_topic_word(ctx.layout.model_dir(first.id))
    b = load_topic_word(ctx.layout.model_dir(second.id))
    labels_a, labels_b = labels_of(first), labels_of(second)
    pairs = topic_geometry.match_topics(topic_geometry.topic_similarity(a, b))
    return [{"topic_a": ta, "topic_b": tb, "similarity": s, "label_a": labels_a.get(ta), "label_b": labels_b.get(tb)}
            for ta, tb, s in pairs]
