"""Streaming corpus construction: documents arrive one at a time, are grouped into chunks
of about ``chunk_bytes`` of text, tokenized (in ``n_workers`` worker processes when
``n_workers > 1``, and here when they all have work queued) into per-chunk counts
against a growing global vocabulary, spilled to disk, and finally pruned by document
frequency / vocabulary cap and re-indexed chunk by chunk.

Memory holds at most ``2 * n_workers + 1`` chunks of text, the global term table and
document frequencies, and the final (pruned) count matrix — never the whole text.

Policy for empty documents: a document that is empty or whitespace (``empty_text``), has
no token left after tokenization and filtering (``no_tokens``), or loses all its terms to
vocabulary pruning (``all_terms_pruned``) is dropped and counted under that reason in
``stats["dropped"]``; only a corpus with no document left is an error.
"""
from __future__ import annotations

import collections
import ctypes
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from app.ingest import chunks
from app.ingest.analyzer import BIGRAM_JOINER, word_patterns
from app.ingest.chunks import ChunkResult
from app.ingest.finalize import BuiltCorpus, assemble, prune_vocabulary
from app.ingest.options import IngestLimits, TextOptions
from app.ingest.readers import Fields, RawDocument

Progress = Callable[[str, int, int], None]

# Chunks given to each pool process at a time: one running and one queued, so it never
# waits for this process (which counts a chunk itself only when the pool is that full:
# this process also reads, merges and finishes, so it takes only the overflow).
_POOL_DEPTH = 2

@dataclass
class _Spilled:
    """A chunk's counts on disk: raw indptr, indices and data arrays back to back."""

    path: Path
    n_docs: int
    arrays: tuple[tuple[np.dtype, int], ...]  # (dtype, length) of indptr, indices, data


@dataclass
class _TermTable:
    """Global vocabulary seen so far with document and corpus frequencies."""

    ids: dict[str, int] = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)
    df: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def global_ids(self, local_terms: list[str]) -> np.ndarray:
        """Global ids (m,) of a chunk's terms, adding unseen terms in bulk."""
        ids = self.ids
        out = np.fromiter(map(ids.get, local_terms, repeat(-1)), dtype=np.int64, count=len(local_terms))
        fresh = np.flatnonzero(out < 0)
        if fresh.size:
            new_terms = [local_terms[i] for i in fresh.tolist()]
            new_ids = np.arange(len(self.terms), len(self.terms) + fresh.size)
            ids.update(zip(new_terms, new_ids.tolist()))
            self.terms.extend(new_terms)
            out[fresh] = new_ids
        return out

    def add_frequencies(self, counts: sp.csr_matrix) -> None:
        n = len(self.terms)
        if self.df.size < n:
            grow = max(n, 2 * self.df.size)
            self.df = np.concatenate([self.df, np.zeros(grow - self.df.size, np.int64)])
            self.tf = np.concatenate([self.tf, np.zeros(grow - self.tf.size, np.int64)])
        self.df[:n] += np.bincount(counts.indices, minlength=n)
        self.tf[:n] += np.bincount(counts.indices, weights=counts.data, minlength=n).astype(np.int64)


def _pool_context():
    """``fork`` when this process runs a single thread (workers start in milliseconds and
    inherit the imported modules; forking is only unsafe while other threads may hold
    locks), else ``forkserver`` (or ``spawn``), which cost about a second to start."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _keep_freed_memory() -> None:
    """Worker initializer: each chunk allocates and frees tens of MB of NumPy arrays;
    let glibc keep freed memory in the heap rather than unmapping it, so the next chunk
    does not page-fault it in again (about 10% of a worker's time). Elsewhere a no-op."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # the largest glibc accepts on 64-bit
    libc.mallopt(m_trim_threshold, 256 << 20)


@dataclass
class _Task:
    """A chunk on its way: the function and arguments that count it, and what the reading
    side already knows about its documents (ids, metadata) or how to name them."""

    function: Callable
    args: tuple
    where: str
    doc_ids: list[str] | None = None
    metadata: dict[int, dict] = field(default_factory=dict)
    line_ids: tuple[str, int] | None = None  # (id prefix, first line): ids are line numbers


def _run_here(task: _Task) -> Future:
    """Count a chunk in this process; an error waits in the future, to be raised when the
    chunk's turn to merge comes (so earlier chunks' errors still come first)."""
    done: Future = Future()
    try:
        done.set_result(task.function(*task.args))
    except Exception as error:
        done.set_exception(error)
    return done


class CorpusBuilder:
    """Accumulates documents into a corpus; see the module docstring for the policy.

    Intake: :meth:`add` for single documents (any reader), :meth:`add_text_block` and
    :meth:`add_jsonl_block` for raw blocks of lines (parsed in the workers).
    ``work_dir`` (an existing private folder) receives the spilled chunks; the caller
    removes it. ``progress(stage, done, total)`` is called with stage ``"tokenize"``
    (documents counted / documents read so far) and ``"finalize"`` (chunks re-indexed).
    """

    def __init__(self, options: TextOptions, limits: IngestLimits, work_dir: Path, *,
                 chunk_bytes: int = 2 << 20, n_workers: int = 1, progress: Progress | None = None):
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.options, self.limits, self.work_dir = options, limits, Path(work_dir)
        self.chunk_bytes = chunk_bytes
        self.n_workers = 1 if multiprocessing.current_process().daemon else n_workers
        # n_workers pool processes, each given at most _POOL_DEPTH chunks at a time (this
        # process counts the overflow); results wait in order, at most _max_pending.
        self._pool_size = self.n_workers
        self._pool_depth = self._pool_size * _POOL_DEPTH
        self._max_pending = self._pool_size * _POOL_DEPTH + 2
        self.progress = progress
        self._texts: list[str] = []
        self._text_ids: list[str] = []
        self._text_metadata: dict[int, dict] = {}
        self._text_chars = 0
        self._held: _Task | None = None
        self._pending: collections.deque[tuple[_Task, Future | ChunkResult]] = collections.deque()
        self._pool: ProcessPoolExecutor | None = None
        self._spilled: list[_Spilled] = []
        self._table = _TermTable()
        self._doc_ids: list[str] = []
        self._seen_ids: set[str] = set()
        # Ids generated from line numbers are not hashed into _seen_ids while nothing else
        # could clash with them (no other ids seen, disjoint line ranges): _known_ids adds
        # them before any other check.
        self._deferred_ids: list[list[str]] = []
        self._line_ranges: dict[str, list[list[int]]] = {}
        self._empty_parts: list[np.ndarray] = []
        self._metadata: dict[int, dict] = {}
        self._n_with_tokens = 0
        self._documents_read = 0
        self.input_documents = 0

    # ----------------------------------------------------------------- intake
    def add(self, document: RawDocument) -> None:
        """Add one document (ids are checked for duplicates when its chunk is merged)."""
        if self._documents_read >= self.limits.max_documents:
            raise ValueError(f"{document.where}: more than max_documents={self.limits.max_documents} documents")
        self._documents_read += 1
        if document.doc_id in self._known_ids():
            raise ValueError(f"{document.where}: duplicate document id {document.doc_id!r}")
        self._seen_ids.add(document.doc_id)
        if document.metadata:
            self._text_metadata[len(self._texts)] = document.metadata
        self._texts.append(document.text)
        self._text_ids.append(document.doc_id)
        self._text_chars += len(document.text)
        if self._text_chars >= self.chunk_bytes:
            self._flush_texts(document.where)

    def add_text_block(self, block: bytes, where: str, first_line: int, next_line: int, first_offset: int,
                       id_prefix: str = "") -> None:
        """A block of whole plain-text lines (one document each) numbered first_line up to
        next_line (exclusive; the lines its line feeds end), cut just after a line end."""
        self._flush_texts(where)
        before = self._documents_read
        # Blocks end with a line feed except possibly the last one of a source.
        self._documents_read += (next_line - first_line) + (0 if block.endswith(b"\n") else 1)
        if self._documents_read > self.limits.max_documents:
            line = first_line + self.limits.max_documents - before
            raise ValueError(f"{where} line {line}: more than max_documents={self.limits.max_documents} documents")
        args = (block, where, first_line, first_offset, self.limits.max_document_bytes, self.options)
        self._submit(_Task(chunks.run_text_lines, args, where, line_ids=(id_prefix, first_line)))

    def add_jsonl_block(self, block: bytes, where: str, first_line: int, first_offset: int, fields: Fields,
                        max_line_bytes: int, id_prefix: str = "") -> None:
        """A block of whole JSONL lines, cut just after a line end."""
        self._flush_texts(where)
        args = (block, where, first_line, first_offset, fields, self.limits.max_document_bytes, max_line_bytes,
                id_prefix, self.options)
        self._submit(_Task(chunks.run_jsonl_lines, args, where))

    def _flush_texts(self, where: str) -> None:
        if not self._texts:
            return
        task = _Task(chunks.run_texts, (self._texts, self.options), where, doc_ids=self._text_ids, metadata=self._text_metadata)
        self._texts, self._text_ids, self._text_metadata, self._text_chars = [], [], {}, 0
        self._submit(task)

    def _submit(self, task: _Task) -> None:
        """Count a chunk: in this process when it works alone, else in the pool while the
        pool has room and here otherwise, so the reading process takes a share of the
        chunks instead of waiting (results are merged in input order)."""
        if self.n_workers == 1:
            self._pending.append((task, task.function(*task.args)))
        elif self._pool is None and self._held is None:
            self._held = task  # Start processes only once a second chunk shows they pay off.
        else:
            if self._pool is None:
                context = _pool_context()
                if context.get_start_method() == "fork":
                    word_patterns()  # build once here; forked workers inherit it
                self._pool = ProcessPoolExecutor(self._pool_size, mp_context=context, initializer=_keep_freed_memory)
                held, self._held = self._held, None
                self._pending.append((held, self._pool.submit(held.function, *held.args)))
            busy = sum(1 for _, item in self._pending if isinstance(item, Future) and not item.done())
            if busy < self._pool_depth:
                self._pending.append((task, self._pool.submit(task.function, *task.args)))
            else:
                self._pending.append((task, _run_here(task)))
        self._drain(keep=self._max_pending)

    def _drain(self, keep: int) -> None:
        """Merge finished chunks at the head of the queue; wait for the oldest ones only
        while more than ``keep`` are pending."""
        while self._pending:
            task, item = self._pending[0]
            if isinstance(item, Future):
                if len(self._pending) <= keep and not item.done():
                    return
                item = item.result()
            self._pending.popleft()
            self._merge(task, item)

    def _merge(self, task: _Task, result: ChunkResult) -> None:
        first_row = self.input_documents
        if task.doc_ids is not None:
            doc_ids, metadata = task.doc_ids, task.metadata
        elif task.line_ids is not None:
            prefix, first_line = task.line_ids
            numbers = map(str, range(first_line, first_line + result.n_docs))
            doc_ids, metadata = [prefix + number for number in numbers] if prefix else list(numbers), {}
        else:
            doc_ids, metadata = result.doc_ids, result.metadata
        self.input_documents += result.n_docs
        if self.input_documents > self.limits.max_documents:
            raise ValueError(f"{task.where}: more than max_documents={self.limits.max_documents} documents")
        if task.line_ids is not None and self._defer_line_ids(task.line_ids, doc_ids):
            pass
        elif task.line_ids is not None and self._known_ids().isdisjoint(doc_ids):
            self._seen_ids.update(doc_ids)  # distinct line numbers: only clashes could repeat
        elif task.doc_ids is None:  # ids read by the worker or generated: check them now
            fresh = set(doc_ids)
            if len(fresh) != len(doc_ids):
                repeated = next(doc_id for doc_id, n in collections.Counter(doc_ids).items() if n > 1)
                raise ValueError(f"{task.where}: duplicate document id {repeated!r}")
            clash = fresh & self._known_ids()
            if clash:
                raise ValueError(f"{task.where}: duplicate document id {min(clash)!r}")
            self._seen_ids |= fresh
        self._doc_ids.extend(doc_ids)
        self._empty_parts.append(result.empty)
        for row, value in metadata.items():
            self._metadata[first_row + row] = value
        chunk = result.chunk
        to_global = self._table.global_ids(chunk.terms)
        counts = chunk.counts
        indices = to_global[counts.indices].astype(np.int32) if counts.nnz else np.empty(0, np.int32)
        global_counts = sp.csr_matrix((counts.data, indices, counts.indptr), shape=(counts.shape[0], len(self._table.terms)))
        self._table.add_frequencies(global_counts)
        path = self.work_dir / f"chunk-{len(self._spilled):06d}.npy"
        arrays = (_narrow(counts.indptr), indices, _narrow(counts.data))  # less to write and read back
        with open(path, "wb") as sink:
            for array in arrays:
                array.tofile(sink)
        self._spilled.append(_Spilled(path, counts.shape[0], tuple((a.dtype, a.size) for a in arrays)))
        self._n_with_tokens += int(np.count_nonzero(np.diff(counts.indptr)))
        if self.progress is not None:
            self.progress("tokenize", self.input_documents, max(self._documents_read, self.input_documents))

    def _defer_line_ids(self, line_ids: tuple[str, int], doc_ids: list[str]) -> bool:
        """Record ids ``prefix + line number`` without hashing them when they cannot clash:
        no other id seen yet, and lines disjoint from those recorded under the same prefix
        (prefixes are empty or end with ``:``, so different prefixes never give equal ids)."""
        prefix, first = line_ids
        if self._seen_ids or not (prefix == "" or prefix.endswith(":")):
            return False
        stop = first + len(doc_ids)
        ranges = self._line_ranges.setdefault(prefix, [])
        if any(low < stop and first < high for low, high in ranges):
            return False
        if ranges and ranges[-1][1] == first:
            ranges[-1][1] = stop
        else:
            ranges.append([first, stop])
        self._deferred_ids.append(doc_ids)
        return True

    def _known_ids(self) -> set[str]:
        """Every document id merged or added so far."""
        for doc_ids in self._deferred_ids:
            self._seen_ids.update(doc_ids)
        self._deferred_ids.clear()
        return self._seen_ids

    def close(self) -> None:
        """Stop worker processes (idempotent; also call after a failure)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # ---------------------------------------------------------------- finish
    def finish(self) -> BuiltCorpus:
        """Tokenize what is left, prune the vocabulary and assemble the final matrix."""
        try:
            self._flush_texts("end of input")
            if self._held is not None:
                held, self._held = self._held, None
                self._pending.append((held, held.function(*held.args)))
            self._drain(keep=0)
        finally:
            self.close()
        if self.input_documents == 0:
            raise ValueError("empty corpus: the input contains no documents")
        table = self._table
        n_terms = len(table.terms)
        df, tf = table.df[:n_terms], table.tf[:n_terms]
        is_bigram = np.fromiter((BIGRAM_JOINER in t for t in table.terms), dtype=bool, count=n_terms) if self.options.bigrams else None
        to_new, vocabulary, pruned = prune_vocabulary(table.terms, df, tf, self._n_with_tokens, self.options, is_bigram)
        empty_text = np.concatenate(self._empty_parts)
        return assemble(
            (_load_spilled(s) for s in self._spilled), len(self._spilled), to_new, vocabulary,
            self._doc_ids, empty_text, self._metadata, pruned, n_terms, self.progress,
        )


def _narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative integers (n,) in the smallest of uint8, uint16, int32 that holds them
    (else as they are)."""
    top = int(values.max()) if values.size else 0
    for dtype in (np.uint8, np.uint16, np.int32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype, copy=False)
    return values


def _load_spilled(spilled: _Spilled) -> sp.csr_matrix:
    with open(spilled.path, "rb") as source:
        indptr, indices, data = (np.fromfile(source, dtype=dtype, count=size) for dtype, size in spilled.arrays)
    indptr, data = indptr.astype(indices.dtype), data.astype(np.int32)  # as counted (see _narrow)
    n_columns = int(indices.max()) + 1 if indices.size else 0
    return sp.csr_matrix((data, indices, indptr), shape=(spilled.n_docs, n_columns))
