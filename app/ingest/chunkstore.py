"""Counted chunks of a build, kept on disk against the corpus term table until the
vocabulary is chosen, then re-indexed to the final vocabulary and written into the stored
matrix.

Terms are numbered in first-seen order; a chunk's counts are stored against those ids, so
each chunk's term list is looked up once, when it is counted.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from app.ingest.countfiles import CountsTarget
from app.ingest.counting import remap_columns
from app.ingest.finalize import ChunkRows


@dataclass
class ChunkSummary:
    """What the builder needs of a counted chunk: n_docs rows; empty (n_docs,) marks
    documents that were empty or whitespace; doc_ids when counting read them (JSONL);
    metadata {row in chunk: dict}; and n_with_tokens, the documents with at least one
    term."""

    n_docs: int
    empty: np.ndarray
    doc_ids: list[str] | None
    metadata: dict[int, dict]
    n_with_tokens: int
    snippets: list[str] = field(default_factory=list)


@dataclass
class TermTable:
    """Terms numbered in first-seen order, with document and corpus frequencies
    (df, tf: int64 arrays with room to grow; the first len(terms) entries count)."""

    ids: dict[str, int] = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)
    df: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def ids_of(self, terms: list[str]) -> np.ndarray:
        """Ids (m,) of distinct ``terms`` (m,), numbering unseen ones in bulk -> int64 (m,)."""
        ids = self.ids
        out = np.fromiter(map(ids.get, terms, repeat(-1)), dtype=np.int64, count=len(terms))
        fresh = np.flatnonzero(out < 0)
        if fresh.size:
            new_terms = [terms[i] for i in fresh.tolist()]
            new_ids = np.arange(len(self.terms), len(self.terms) + fresh.size)
            ids.update(zip(new_terms, new_ids.tolist()))
            self.terms.extend(new_terms)
            out[fresh] = new_ids
        return out

    def add_frequencies(self, indices: np.ndarray, data: np.ndarray) -> None:
        """Count one chunk: indices (nnz,) term ids of its (document, term) entries and
        data (nnz,) their counts."""
        n = len(self.terms)
        if self.df.size < n:
            grow = max(n, 2 * self.df.size)
            self.df = np.concatenate([self.df, np.zeros(grow - self.df.size, np.int64)])
            self.tf = np.concatenate([self.tf, np.zeros(grow - self.tf.size, np.int64)])
        self.df[:n] += np.bincount(indices, minlength=n)
        self.tf[:n] += np.bincount(indices, weights=data, minlength=n).astype(np.int64)

    def frequencies(self) -> tuple[np.ndarray, np.ndarray]:
        """(df, tf), each int64 (len(terms),)."""
        n = len(self.terms)
        return self.df[:n].copy(), self.tf[:n].copy()


@dataclass
class _Spilled:
    """A chunk's counts on disk: raw indptr, indices and data arrays back to back."""

    path: Path
    n_docs: int
    arrays: tuple[tuple[np.dtype, int], ...]  # (dtype, length) of indptr, indices, data


class ChunkStore:
    """Counts chunks and keeps them on disk until the vocabulary is chosen.

    Use in order: :meth:`count` each chunk; read ``table`` (terms, frequencies);
    :meth:`reindex` to the chosen vocabulary; :meth:`fill` the stored matrix. Spill files
    go to ``work_dir`` (an existing folder the caller removes).
    """

    def __init__(self, work_dir: Path):
        self.work_dir = Path(work_dir)
        self.table = TermTable()
        self._spilled: list[_Spilled] = []
        self._reindexed: list[tuple[np.ndarray, np.ndarray]] = []  # (indices, data) per chunk

    def count(self, function: Callable, args: tuple) -> ChunkSummary:
        """Count one chunk with ``function(*args)`` (a ChunkResult), store its counts
        against the term table, and summarize it."""
        result = function(*args)
        counts = result.chunk.counts
        to_own = self.table.ids_of(result.chunk.terms)
        indices = to_own[counts.indices].astype(np.int32) if counts.nnz else np.empty(0, np.int32)
        self.table.add_frequencies(indices, counts.data)
        self._spill(_narrow(counts.indptr), indices, _narrow(counts.data), counts.shape[0])
        return ChunkSummary(
            n_docs=result.n_docs, empty=result.empty, doc_ids=result.doc_ids, metadata=result.metadata,
            n_with_tokens=int(np.count_nonzero(np.diff(counts.indptr))),
            snippets=result.snippets,
        )

    def reindex(self, columns: np.ndarray, n_columns: int) -> Iterator[ChunkRows]:
        """Re-index the stored chunks to the final columns, in order: term t moves
        to column ``columns[t]`` (columns: (len(terms),), -1 drops the term; n_columns in
        all). Answers each chunk's ChunkRows and keeps its entries here for :meth:`fill`;
        spill files are removed as they are read."""
        for spilled in self._spilled:
            counts = _load_spilled(spilled, len(columns))
            spilled.path.unlink()
            reindexed = remap_columns(counts, columns, n_columns)
            self._reindexed.append((reindexed.indices, reindexed.data))
            yield ChunkRows.of(reindexed, counts)
        self._spilled.clear()

    def fill(self, target: CountsTarget, starts: list[int]) -> None:
        """Write the re-indexed chunks' entries into ``target``, chunk i from entry
        starts[i] on, and forget them."""
        for start, (indices, data) in zip(starts, self._reindexed, strict=True):
            target.put(start, indices, data)
        self._reindexed.clear()

    def _spill(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_docs: int) -> None:
        path = self.work_dir / f"chunk-{len(self._spilled):06d}.bin"
        arrays = (indptr, indices, data)
        with open(path, "wb") as sink:
            for array in arrays:
                array.tofile(sink)
        self._spilled.append(_Spilled(path, n_docs, tuple((a.dtype, a.size) for a in arrays)))


def _narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative integers (n,) in the smallest of uint8, uint16, int32 that holds them
    (else as they are)."""
    top = int(values.max()) if values.size else 0
    for dtype in (np.uint8, np.uint16, np.int32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype, copy=False)
    return values


def _load_spilled(spilled: _Spilled, n_columns: int) -> sp.csr_matrix:
    """A spilled chunk -> CSR (n_docs, n_columns), indices as stored, counts int32."""
    with open(spilled.path, "rb") as source:
        indptr, indices, data = (np.fromfile(source, dtype=dtype, count=size) for dtype, size in spilled.arrays)
    indptr, data = indptr.astype(indices.dtype), data.astype(np.int32)  # as counted (see _narrow)
    return sp.csr_matrix((data, indices, indptr), shape=(spilled.n_docs, n_columns))
