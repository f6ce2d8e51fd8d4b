"""A fitted model in the forms other tools read as they are.

- :func:`export_zip`: ``topic-terms.csv`` (topic, alpha, label, rank, term_id, term, weight)
  and ``doc-topics.csv`` (doc_id, topic_0 .. topic_{k-1}), Comprehend-style.
- :func:`export_npz`: every array of the model in one compressed ``.npz`` (``numpy.load``
  reads it without ``allow_pickle``).
- :func:`pyldavis_data`: a JSON-ready dict whose fields go straight into
  ``pyLDAvis.prepare(**data)``.

Text cells in the CSVs (terms, document ids) are written as JSON string literals
(``"cat"``, with the quotes inside the cell): ``pandas.read_csv`` with its default options
turns a bare ``nan``, ``null``, ``NA`` or ``None`` into a missing value even when the CSV
quotes it, but never a cell that starts with a quote character. ``json.loads`` gives the
exact term back, and reading then writing the file with pandas' defaults keeps it byte for byte.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np

from app.artifacts.model_artifact import top_words


@dataclass(frozen=True)
class ModelExport:
    """Everything an export writes. Shapes: topic_word (k, V), alpha (k,), doc_topic (D, k),
    vocabulary (V,) in column order, doc_ids (D,) in row order, doc_lengths (D,) tokens per
    training document, term_frequency (V,) corpus count of each term, labels (k,) ('' for
    a topic without a label)."""

    topic_word: np.ndarray
    alpha: np.ndarray
    doc_topic: np.ndarray
    vocabulary: list[str]
    doc_ids: list[str]
    doc_lengths: np.ndarray
    term_frequency: np.ndarray
    labels: list[str]


def topic_labels(stored, n_topics: int) -> list[str]:
    """A model row's ``topic_labels`` (None, a list, or a {topic: label} mapping) as k strings."""
    labels = [""] * n_topics
    if isinstance(stored, dict):
        items = stored.items()
    elif isinstance(stored, (list, tuple)):
        items = enumerate(stored)
    else:
        return labels
    for key, value in items:
        try:
            index = int(key)
        except (TypeError, ValueError):
            continue
        if 0 <= index < n_topics and value is not None:
            labels[index] = str(value)
    return labels


def csv_text(value: str) -> str:
    """A text cell as a JSON string literal: safe from every reader's missing-value guesses."""
    return json.dumps(value, ensure_ascii=False)


def export_zip(model: ModelExport, top_n: int | None = None) -> bytes:
    """The zip archive; ``top_n`` terms per topic in topic-terms.csv (all when None), zero
    weights left out."""
    k, n_words = model.topic_word.shape
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["topic", "alpha", "label", "rank", "term_id", "term", "weight"])
        index = {term: i for i, term in enumerate(model.vocabulary)}
        for topic, words in enumerate(top_words(model.topic_word, model.vocabulary, top_n or n_words)):
            alpha, label = repr(float(model.alpha[topic])), csv_text(model.labels[topic])
            for rank, (word, weight) in enumerate(words):
                if weight > 0:
                    writer.writerow([topic, alpha, label, rank, index[word], csv_text(word), repr(weight)])
        archive.writestr("topic-terms.csv", text.getvalue())
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["doc_id", *(f"topic_{i}" for i in range(k))])
        for doc_id, row in zip(model.doc_ids, model.doc_topic):
            writer.writerow([csv_text(doc_id), *(f"{float(x):.6g}" for x in row)])
        archive.writestr("doc-topics.csv", text.getvalue())
    return buffer.getvalue()


def export_npz(model: ModelExport) -> bytes:
    """Compressed ``.npz``: topic_word (k, V) float64, alpha (k,), doc_topic (D, k) float32,
    vocabulary (V,) and doc_ids (D,) unicode arrays, doc_lengths (D,) and term_frequency (V,)
    int64, labels (k,) unicode."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        topic_word=np.asarray(model.topic_word, dtype=np.float64),
        alpha=np.asarray(model.alpha, dtype=np.float64),
        doc_topic=np.asarray(model.doc_topic, dtype=np.float32),
        vocabulary=np.array(model.vocabulary, dtype=np.str_),
        doc_ids=np.array(model.doc_ids, dtype=np.str_),
        doc_lengths=np.asarray(model.doc_lengths, dtype=np.int64),
        term_frequency=np.asarray(model.term_frequency, dtype=np.int64),
        labels=np.array(model.labels, dtype=np.str_),
    )
    return buffer.getvalue()


def _rows_on_simplex(matrix: np.ndarray) -> np.ndarray:
    """Rows divided by their sums in float64 (an all-zero row becomes uniform)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    uniform = np.full_like(matrix, 1.0 / max(matrix.shape[1], 1))
    return np.where(sums > 0, matrix / np.where(sums > 0, sums, 1.0), uniform)


def pyldavis_data(model: ModelExport) -> dict:
    """``pyLDAvis.prepare(**data)`` arguments: topic_term_dists (k, V) and doc_topic_dists
    (D, k) with rows summing to 1 in float64, doc_lengths (D,), vocab (V,), term_frequency (V,)."""
    return {
        "topic_term_dists": _rows_on_simplex(model.topic_word).tolist(),
        "doc_topic_dists": _rows_on_simplex(model.doc_topic).tolist(),
        "doc_lengths": [int(x) for x in model.doc_lengths],
        "vocab": list(model.vocabulary),
        "term_frequency": [int(x) for x in model.term_frequency],
    }
