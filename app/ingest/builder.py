"""Streaming corpus construction: documents arrive one at a time, are grouped into chunks
of about ``chunk_bytes`` of text and counted (in ``n_workers`` worker processes when
``n_workers > 1`` and the input holds more than one chunk, else here). Each counting
process keeps its chunks' counts on disk against a term table of its own and reports
only the terms it sees for the first time; this process checks document ids, numbers
the corpus' terms and, at the end, prunes the vocabulary by document frequency /
vocabulary cap and lays the matrix out in document order, while every counting process
re-indexes its own chunks to the final columns and then writes them straight into the
stored matrix (in parallel; see app.ingest.countfiles).

Memory holds at most ``2 * n_workers + 1`` chunks of text, the term tables and document
frequencies, and the final (pruned) count matrix, spread over the counting processes —
never the whole text.

Policy for empty documents: a document that is empty or whitespace (``empty_text``), has
no token left after tokenization and filtering (``no_tokens``), or loses all its terms to
vocabulary pruning (``all_terms_pruned``) is dropped and counted under that reason in
``stats["dropped"]``; only a corpus with no document left is an error.
"""
from __future__ import annotations

import collections
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.ingest import chunks
from app.ingest.analyzer import BIGRAM_JOINER
from app.ingest.chunkstore import ChunkSummary, TermTable
from app.ingest.countfiles import CountsTarget
from app.ingest.finalize import BuiltCorpus, assemble, prune_vocabulary
from app.ingest.options import IngestLimits, TextOptions
from app.ingest.pool import Counter, InProcessCounter, WorkerPool
from app.ingest.readers import Fields, RawDocument
from gpu.errors import InvalidInput

Progress = Callable[[str, int, int], None]

# Chunks given to each worker process at a time: one running and one queued, so it never
# waits for this process, which only reads, checks and merges.
_POOL_DEPTH = 2
# Counted chunks (small summaries) that may wait, per worker, behind the oldest chunk
# still being counted before this process stops sending to wait for that one.
_MERGE_SLACK = 2


class _Vocabulary:
    """Corpus term ids (first-merged order) and, per counting process, the corpus id of
    each of its own term ids (its stores number terms in first-seen order)."""

    def __init__(self):
        self.table = TermTable()
        self._parts: dict[int, list[np.ndarray]] = collections.defaultdict(list)

    @property
    def terms(self) -> list[str]:
        return self.table.terms

    def add(self, owner: int, new_terms: list[str]) -> None:
        """The terms counter ``owner`` numbered next, in its order."""
        self._parts[owner].append(self.table.ids_of(new_terms))

    def corpus_ids(self, owner: int) -> np.ndarray:
        """Corpus id of each of ``owner``'s term ids -> int64 (its number of terms,)."""
        parts = self._parts.get(owner, [])
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def frequencies(self, per_owner: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Corpus (df, tf) -> int64 (len(terms),) each, from each counter's (df, tf) over
        its own terms (a counter's terms are distinct, so no corpus id repeats)."""
        n_terms = len(self.terms)
        df, tf = np.zeros(n_terms, np.int64), np.zeros(n_terms, np.int64)
        for owner, (owner_df, owner_tf) in enumerate(per_owner):
            ids = self.corpus_ids(owner)
            df[ids] += owner_df
            tf[ids] += owner_tf
        return df, tf


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


class CorpusBuilder:
    """Accumulates documents into a corpus; see the module docstring for the policy.

    Intake: :meth:`add` for single documents (any reader), :meth:`add_text_block` and
    :meth:`add_jsonl_block` for raw blocks of lines (parsed where they are counted).
    ``work_dir`` (an existing private folder) receives the spilled chunks; the caller
    removes it. ``progress(stage, done, total)`` is called with stage ``"tokenize"``
    (documents counted / documents read so far) and ``"finalize"`` (chunks re-indexed).
    """

    def __init__(self, options: TextOptions, limits: IngestLimits, work_dir: Path, *,
                 chunk_bytes: int = 2 << 20, n_workers: int = 1, progress: Progress | None = None):
        if chunk_bytes < 1:
            raise InvalidInput(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        if n_workers < 1:
            raise InvalidInput(f"n_workers must be >= 1, got {n_workers}")
        self.options, self.limits, self.work_dir = options, limits, Path(work_dir)
        self.chunk_bytes = chunk_bytes
        self.n_workers = 1 if multiprocessing.current_process().daemon else n_workers
        self.progress = progress
        self._texts: list[str] = []
        self._text_ids: list[str] = []
        self._text_metadata: dict[int, dict] = {}
        self._text_chars = 0
        # Counters (set up by _start_counting): each takes up to _depth chunks at a time;
        # chunks wait to be merged in input order, at most _max_pending of them.
        self._pool: WorkerPool | None = None
        self._counters: list[Counter] = []
        self._depth = self._max_pending = 0
        self._held: _Task | None = None
        self._pending: collections.deque[tuple[_Task, int]] = collections.deque()
        self._owners: list[int] = []  # counter of each merged chunk, in input order
        self._vocabulary = _Vocabulary()
        self._doc_ids: list[str] = []
        self._seen_ids: set[str] = set()
        # Ids generated from line numbers are not hashed into _seen_ids while nothing else
        # could clash with them (no other ids seen, disjoint line ranges): _known_ids adds
        # them before any other check.
        self._deferred_ids: list[list[str]] = []
        self._line_ranges: dict[str, list[list[int]]] = {}
        self._empty_parts: list[np.ndarray] = []
        self._metadata: dict[int, dict] = {}
        self._snippets: list[str] = []
        self._n_with_tokens = 0
        self._documents_read = 0
        self.input_documents = 0

    # ----------------------------------------------------------------- intake
    def add(self, document: RawDocument) -> None:
        """Add one document (ids are checked for duplicates when its chunk is merged)."""
        if self._documents_read >= self.limits.max_documents:
            raise InvalidInput(f"{document.where}: more than max_documents={self.limits.max_documents} documents")
        self._documents_read += 1
        if document.doc_id in self._known_ids():
            raise InvalidInput(f"{document.where}: duplicate document id {document.doc_id!r}")
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
            raise InvalidInput(f"{where} line {line}: more than max_documents={self.limits.max_documents} documents")
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
        """Send a chunk to a counter (see :meth:`_send`), then merge whatever has finished.
        Worker processes start only once a second chunk shows they pay off."""
        if not self._counters:
            if self.n_workers > 1 and self._held is None:
                self._held = task
                return
            self._start_counting(in_process=self.n_workers == 1)
        if self._held is not None:
            held, self._held = self._held, None
            self._send(held)
        self._send(task)
        self._drain(keep=self._max_pending)

    def _start_counting(self, in_process: bool) -> None:
        if in_process:
            self._counters, self._depth, self._max_pending = [InProcessCounter(self.work_dir)], 1, 0
        else:
            self._pool = WorkerPool(self.n_workers, self.work_dir)
            self._counters = self._pool.counters
            self._depth = _POOL_DEPTH
            self._max_pending = self.n_workers * (_POOL_DEPTH + _MERGE_SLACK)

    def _send(self, task: _Task) -> None:
        """Send to the counter with the fewest chunks in hand, waiting while all are full
        for whichever answers first (not for the oldest chunk: the other workers would
        idle behind a slow one)."""
        while True:
            loads = [counter.unanswered() for counter in self._counters]
            owner = loads.index(min(loads))
            if loads[owner] < self._depth:
                break
            if self._pool is None or len(self._pending) > self._max_pending:
                self._merge_head()
            else:
                self._pool.wait_for_answer()
        self._counters[owner].send(("count", task.function, task.args))
        self._pending.append((task, owner))

    def _drain(self, keep: int) -> None:
        """Merge finished chunks at the head of the queue; wait for the oldest ones only
        while more than ``keep`` are pending."""
        while self._pending:
            _, owner = self._pending[0]
            if len(self._pending) <= keep and not self._counters[owner].ready():
                return
            self._merge_head()

    def _merge_head(self) -> None:
        """Wait for the oldest pending chunk and merge it (raising its error, if any)."""
        task, owner = self._pending[0]
        summary = self._counters[owner].receive()
        self._pending.popleft()
        self._merge(task, summary, owner)

    def _merge(self, task: _Task, result: ChunkSummary, owner: int) -> None:
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
            raise InvalidInput(f"{task.where}: more than max_documents={self.limits.max_documents} documents")
        if task.line_ids is not None and self._defer_line_ids(task.line_ids, doc_ids):
            pass
        elif task.line_ids is not None and self._known_ids().isdisjoint(doc_ids):
            self._seen_ids.update(doc_ids)  # distinct line numbers: only clashes could repeat
        elif task.doc_ids is None:  # ids read by the worker or generated: check them now
            fresh = set(doc_ids)
            if len(fresh) != len(doc_ids):
                repeated = next(doc_id for doc_id, n in collections.Counter(doc_ids).items() if n > 1)
                raise InvalidInput(f"{task.where}: duplicate document id {repeated!r}")
            clash = fresh & self._known_ids()
            if clash:
                raise InvalidInput(f"{task.where}: duplicate document id {min(clash)!r}")
            self._seen_ids |= fresh
        self._doc_ids.extend(doc_ids)
        self._empty_parts.append(result.empty)
        self._snippets.extend(result.snippets)
        for row, value in metadata.items():
            self._metadata[first_row + row] = value
        self._vocabulary.add(owner, result.new_terms)
        self._owners.append(owner)
        self._n_with_tokens += result.n_with_tokens
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
            self._pool.close()
            self._pool = None
        self._counters = []

    # ---------------------------------------------------------------- finish
    def finish(self) -> BuiltCorpus:
        """Count what is left, prune the vocabulary and lay out the final matrix: the
        counting processes re-index their own chunks in parallel and keep them until
        ``built.counts.fill`` writes them (so close the builder only after that)."""
        try:
            self._flush_texts("end of input")
            if self._held is not None:
                self._start_counting(in_process=True)
                held, self._held = self._held, None
                self._send(held)
            for counter in self._counters:
                counter.send(("frequencies",))  # answered after the counts still pending
            self._drain(keep=0)
            if self.input_documents == 0:
                raise InvalidInput("empty corpus: the input contains no documents")
            vocabulary = self._vocabulary
            df, tf = vocabulary.frequencies([counter.receive() for counter in self._counters])
            terms = vocabulary.terms
            is_bigram = np.fromiter((BIGRAM_JOINER in t for t in terms), dtype=bool, count=len(terms)) if self.options.bigrams else None
            to_new, kept, pruned = prune_vocabulary(terms, df, tf, self._n_with_tokens, self.options, is_bigram)
            for owner, counter in enumerate(self._counters):
                counter.send(("reindex", to_new[vocabulary.corpus_ids(owner)], len(kept)))
            reindexed = (self._counters[owner].receive() for owner in self._owners)
            return assemble(reindexed, len(self._owners), self._fill, kept, self._doc_ids,
                            np.concatenate(self._empty_parts), self._metadata, pruned, len(terms), self.progress,
                            snippets=self._snippets)
        except BaseException:
            self.close()
            raise

    def _fill(self, target: CountsTarget, starts: list[int]) -> None:
        """Have every counter write its re-indexed chunks (chunk i from entry starts[i])."""
        for owner, counter in enumerate(self._counters):
            counter.send(("fill", target, [start for start, o in zip(starts, self._owners) if o == owner]))
            counter.release()
        for counter in self._counters:
            counter.receive()
