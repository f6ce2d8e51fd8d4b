"""Final step of a build: choose the vocabulary (document-frequency bounds, bigram
threshold, size cap), lay out the count chunks re-indexed to it (dropping documents left
empty, counting each reason), and gather the statistics recorded with the corpus.
"""
from __future__ import annotations

import collections
import itertools
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from app.ingest.countfiles import CountsTarget
from app.ingest.options import TextOptions
from gpu.errors import InvalidInput

Progress = Callable[[str, int, int], None]

EMPTY_TEXT, NO_TOKENS, ALL_PRUNED = "empty_text", "no_tokens", "all_terms_pruned"
_MAX_DROPPED_EXAMPLES = 20


@dataclass
class ChunkRows:
    """What the final layout needs of a chunk re-indexed to the final vocabulary:
    lengths (n_docs,) its documents' entries, had_terms (n_docs,) bool, whether each
    had any term before pruning, and n_tokens, the sum of its counts."""

    lengths: np.ndarray
    had_terms: np.ndarray
    n_tokens: int

    @classmethod
    def of(cls, reindexed: sp.csr_matrix, original: sp.csr_matrix) -> ChunkRows:
        return cls(np.diff(reindexed.indptr), np.diff(original.indptr) > 0, int(reindexed.data.sum(dtype=np.int64)))


@dataclass
class CountsLayout:
    """The final counts (D, V) int32 CSR with sorted indices, still to be written:
    indptr (D + 1,); ``fill(target)`` writes the indices and data of every chunk at its
    place in a CountsTarget."""

    indptr: np.ndarray
    shape: tuple[int, int]
    fill: Callable[[CountsTarget], None]

    @classmethod
    def of_matrix(cls, counts: sp.csr_matrix) -> CountsLayout:
        return cls(counts.indptr, counts.shape, lambda target: target.put(0, counts.indices, counts.data))


@dataclass
class BuiltCorpus:
    """Result of a build: counts (D, V) (see CountsLayout), vocabulary (V,), doc_ids
    (D,), metadata {row: dict} for kept rows that had metadata, and statistics."""

    counts: CountsLayout
    vocabulary: list[str]
    doc_ids: list[str]
    metadata: dict[int, dict]
    stats: dict
    snippets: list[str] = field(default_factory=list)  # (D,) text snippets, or none (bags of words)


def prune_vocabulary(terms: list[str], df: np.ndarray, tf: np.ndarray, n_documents: int,
                     options: TextOptions, is_bigram: np.ndarray | None = None) -> tuple[np.ndarray, list[str], dict]:
    """Choose the kept terms and their new (alphabetical) columns.

    terms (T,), df (T,) document frequencies, tf (T,) corpus frequencies; n_documents is
    the number of documents with at least one term (the base of fractional min_df/max_df).
    Returns to_new (T,) new column or -1, the vocabulary (V,), and {reason: terms removed},
    reasons applied in order min_df, max_df, bigram_min_df, max_vocab.
    """
    n_terms = len(terms)
    min_count = options.min_df if isinstance(options.min_df, int) else math.ceil(options.min_df * n_documents)
    max_count = options.max_df if isinstance(options.max_df, int) else math.floor(options.max_df * n_documents + 1e-9)
    keep = np.ones(n_terms, dtype=bool)
    pruned = {}
    for reason, remove in (("min_df", df < min_count), ("max_df", df > max_count)):
        pruned[reason] = int(np.count_nonzero(keep & remove))
        keep &= ~remove
    if is_bigram is not None:
        remove = is_bigram & (df < options.bigram_min_df)
        pruned["bigram_min_df"] = int(np.count_nonzero(keep & remove))
        keep &= ~remove
    kept = np.flatnonzero(keep)
    if options.max_vocab is not None and kept.size > options.max_vocab:
        alphabetical = np.empty(kept.size, dtype=np.int64)
        alphabetical[np.array(sorted(range(kept.size), key=lambda i: terms[kept[i]]), dtype=np.int64)] = np.arange(kept.size)
        order = np.lexsort((alphabetical, -tf[kept]))
        pruned["max_vocab"] = int(kept.size - options.max_vocab)
        kept = np.sort(kept[order[: options.max_vocab]])
    else:
        pruned["max_vocab"] = 0
    kept_terms = [terms[i] for i in kept.tolist()]  # distinct terms
    order = sorted(range(len(kept_terms)), key=kept_terms.__getitem__)
    vocabulary = [kept_terms[i] for i in order]
    to_new = np.full(n_terms, -1, dtype=np.int64)
    to_new[kept[np.array(order, dtype=np.int64)]] = np.arange(len(order))
    return to_new, vocabulary, pruned


def assemble(chunks: Iterable[ChunkRows], n_chunks: int, fill: Callable[[CountsTarget, list[int]], None],
             vocabulary: list[str], doc_ids: list[str], empty_text: np.ndarray, metadata: dict[int, dict],
             pruned_terms: dict, n_terms_seen: int, progress: Progress | None = None,
             snippets: list[str] | None = None) -> BuiltCorpus:
    """Lay out re-indexed count chunks (rows in document order) as one matrix, dropping
    documents left empty with their reason, and return the corpus with statistics.

    chunks: n_chunks ChunkRows; doc_ids (D,) and empty_text (D,) cover all their rows;
    metadata {row: dict}; snippets (D,) or None. ``fill(target, starts)`` must write chunk i's entries (in
    final columns, sorted within rows; empty rows hold none) from entry starts[i] on.
    """
    length_parts, kept_rows, starts = [], [], []
    dropped: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    row_offset, nnz, n_tokens = 0, 0, 0
    for done, chunk in enumerate(chunks, start=1):
        lengths = chunk.lengths
        _count_dropped(np.flatnonzero(lengths == 0), row_offset, chunk.had_terms, empty_text, doc_ids, dropped, examples)
        keep = np.flatnonzero(lengths > 0)
        kept_rows.append(row_offset + keep)
        length_parts.append(lengths[keep])
        starts.append(nnz)
        nnz += int(lengths.sum(dtype=np.int64))
        n_tokens += chunk.n_tokens
        row_offset += lengths.size
        if progress is not None:
            progress("finalize", done, n_chunks)
    rows = np.concatenate(kept_rows) if kept_rows else np.empty(0, np.int64)
    if rows.size == 0 or not vocabulary:
        raise InvalidInput(
            f"empty corpus: all {len(doc_ids)} documents are empty after processing "
            f"(dropped: {dict(dropped) or 'none'}; vocabulary terms removed: {pruned_terms})"
        )
    lengths = np.concatenate(length_parts)
    indptr = np.zeros(rows.size + 1, dtype=np.int32 if nnz < 2**31 else np.int64)
    np.cumsum(lengths, out=indptr[1:])
    kept_metadata = {}
    if metadata:
        old_rows = np.array(sorted(metadata), dtype=np.int64)
        positions = np.searchsorted(rows, old_rows)
        for old, position in zip(old_rows.tolist(), positions.tolist()):
            if position < rows.size and rows[position] == old:
                kept_metadata[position] = metadata[old]
    stats = {
        "n_documents": int(rows.size),
        "n_input_documents": len(doc_ids),
        "n_tokens": n_tokens,
        "vocabulary_size": len(vocabulary),
        "nnz": nnz,
        "dropped": {reason: dropped.get(reason, 0) for reason in (EMPTY_TEXT, NO_TOKENS, ALL_PRUNED)},
        "dropped_examples": {reason: ids for reason, ids in examples.items()},
        "n_terms_seen": int(n_terms_seen),
        "pruned_terms": pruned_terms,
        "document_terms": {"min": int(lengths.min()), "median": float(np.median(lengths)), "max": int(lengths.max())},
    }
    kept = np.zeros(len(doc_ids), dtype=bool)
    kept[rows] = True
    counts = CountsLayout(indptr, (int(rows.size), len(vocabulary)), lambda target: fill(target, starts))
    return BuiltCorpus(counts=counts, vocabulary=vocabulary, doc_ids=list(itertools.compress(doc_ids, kept.tolist())),
                       metadata=kept_metadata, stats=stats,
                       snippets=list(itertools.compress(snippets, kept.tolist())) if snippets else [])


_REASONS = (EMPTY_TEXT, NO_TOKENS, ALL_PRUNED)


def _count_dropped(rows: np.ndarray, row_offset: int, had_terms: np.ndarray, empty_text: np.ndarray,
                   doc_ids: list[str], dropped: collections.Counter, examples: dict[str, list[str]]) -> None:
    """Count the dropped ``rows`` (r,) of a chunk by reason and keep the first few ids of
    each (reasons enter ``examples`` in the order they first occur)."""
    if not rows.size:
        return
    documents = row_offset + rows
    codes = np.where(had_terms[rows], 2, np.where(empty_text[documents], 0, 1))
    present = [(int(np.argmax(codes == code)), code) for code in range(len(_REASONS)) if np.any(codes == code)]
    for _, code in sorted(present):
        reason = _REASONS[code]
        picked = documents[codes == code]
        dropped[reason] += int(picked.size)
        shown = examples[reason]
        room = _MAX_DROPPED_EXAMPLES - len(shown)
        if room > 0:
            shown.extend(doc_ids[document] for document in picked[:room].tolist())


def metadata_lines(metadata: dict[int, dict]) -> str:
    """JSON lines {"row": r, "metadata": {...}} for rows that have metadata."""
    return "".join(json.dumps({"row": row, "metadata": value}, ensure_ascii=False) + "\n" for row, value in sorted(metadata.items()))
