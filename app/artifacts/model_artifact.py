"""The model artifact folder: what a fit job writes and what the API reads.

    <DATA_DIR>/models/<model_id>/
        topic_word.npy   (k, V) float64, rows on the simplex, topics sorted by alpha
        alpha.npy        (k,)  float64
        doc_topic.npy    (D, k) float32, training documents in corpus order
        meta.json        small JSON: spectra, timings, diagnostics, quality

Written through :func:`app.artifacts.artifact_files.atomic_directory`, so it appears whole or not at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.artifacts.artifact_files import (
    atomic_directory,
    directory_checksum,
    write_json,
)

TOPIC_WORD = "topic_word.npy"
ALPHA = "alpha.npy"
DOC_TOPIC = "doc_topic.npy"
META = "meta.json"


def write_model_artifact(final: Path, tmp_root: Path, *, topic_word: np.ndarray, alpha: np.ndarray,
                         doc_topic: np.ndarray, meta: dict[str, Any]) -> str:
    """Write the folder atomically; returns its checksum."""
    k, _ = topic_word.shape
    if alpha.shape != (k,) or doc_topic.ndim != 2 or doc_topic.shape[1] != k:
        raise RuntimeError(f"inconsistent model arrays: topic_word {topic_word.shape}, alpha {alpha.shape}, "
                         f"doc_topic {doc_topic.shape}")
    with atomic_directory(final, tmp_root) as tmp:
        np.save(tmp / TOPIC_WORD, np.ascontiguousarray(topic_word, dtype=np.float64))
        np.save(tmp / ALPHA, np.ascontiguousarray(alpha, dtype=np.float64))
        np.save(tmp / DOC_TOPIC, np.ascontiguousarray(doc_topic, dtype=np.float32))
        write_json(tmp / META, meta)
    return directory_checksum(final)


def load_topic_word(folder: Path, mmap: bool = False) -> np.ndarray:
    """(k, V); with ``mmap`` memory-mapped, so reading one topic reads one row."""
    return np.load(folder / TOPIC_WORD, mmap_mode="r" if mmap else None)


def load_alpha(folder: Path) -> np.ndarray:
    return np.load(folder / ALPHA)


def load_doc_topic(folder: Path) -> np.ndarray:
    """(D, k), memory-mapped: pages are read only for the rows asked for."""
    return np.load(folder / DOC_TOPIC, mmap_mode="r")


def top_words(topic_word: np.ndarray, vocabulary: list[str], top_n: int) -> list[list[tuple[str, float]]]:
    """Per topic, the ``top_n`` (word, weight) pairs by decreasing weight (ties by word index).

    Only the words at or above each row's top_n-th largest weight are sorted (a partition
    finds them), so a request for 10 words of V = 50,000 sorts a handful, not the row.
    """
    n_words = topic_word.shape[1]
    top_n = min(top_n, n_words)
    result = []
    for row in topic_word:
        if 0 < top_n < n_words:
            threshold = np.partition(row, n_words - top_n)[n_words - top_n]
            candidates = np.flatnonzero(row >= threshold)
        else:
            candidates = np.arange(n_words)
        order = candidates[np.lexsort((candidates, -row[candidates]))][:top_n]
        result.append([(vocabulary[i], float(row[i])) for i in order])
    return result

