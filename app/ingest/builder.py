"""Streaming corpus construction: documents arrive one at a time (or as raw blocks of
lines), are grouped into chunks of about ``chunk_bytes`` of text and counted in this
process, chunk by chunk, in input order. A :class:`~app.ingest.chunkstore.ChunkStore`
keeps each counted chunk on disk against the corpus term table (terms numbered in
first-seen order); this builder checks document ids as chunks are counted and, at the
end, prunes the vocabulary by document frequency / vocabulary cap, re-indexes the chunks
to the final columns and has them written straight into the stored matrix in document
order (see app.ingest.countfiles).

Memory holds one chunk of text, the term table and document frequencies, and the final
(pruned) count entries; never the whole text.

Policy for empty documents: a document that is empty or whitespace (``empty_text``), has
no token left after tokenization and filtering (``no_tokens``), or loses all its terms to
vocabulary pruning (``all_terms_pruned``) is dropped and counted under that reason in
``stats["dropped"]``; only a corpus with no document left is an error.
"""
from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.ingest import chunks
from app.ingest.analyzer import BIGRAM_JOINER
from app.ingest.chunkstore import ChunkStore, ChunkSummary
from app.ingest.finalize import BuiltCorpus, assemble, prune_vocabulary
from app.ingest.options import IngestLimits, TextOptions
from app.ingest.readers import Fields, RawDocument
from gpu.errors import InvalidInput

Progress = Callable[[str, int, int], None]


@dataclass
class _Chunk:
    """A chunk to count: the function and arguments that count it, and what the reading
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
                 chunk_bytes: int = 2 << 20, progress: Progress | None = None):
        if chunk_bytes < 1:
            raise InvalidInput(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        self.options, self.limits, self.work_dir = options, limits, Path(work_dir)
        self.chunk_bytes = chunk_bytes
        self.progress = progress
        self._texts: list[str] = []
        self._text_ids: list[str] = []
        self._text_metadata: dict[int, dict] = {}
        self._text_chars = 0
        self._store = ChunkStore(self.work_dir)
        self._n_chunks = 0
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
        """Add one document (its id is checked for duplicates at once)."""
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
        self._count(_Chunk(chunks.run_text_lines, args, where, line_ids=(id_prefix, first_line)))

    def add_jsonl_block(self, block: bytes, where: str, first_line: int, first_offset: int, fields: Fields,
                        max_line_bytes: int, id_prefix: str = "") -> None:
        """A block of whole JSONL lines, cut just after a line end."""
        self._flush_texts(where)
        args = (block, where, first_line, first_offset, fields, self.limits.max_document_bytes, max_line_bytes,
                id_prefix, self.options)
        self._count(_Chunk(chunks.run_jsonl_lines, args, where))

    def _flush_texts(self, where: str) -> None:
        if not self._texts:
            return
        chunk = _Chunk(chunks.run_texts, (self._texts, self.options), where, doc_ids=self._text_ids,
                       metadata=self._text_metadata)
        self._texts, self._text_ids, self._text_metadata, self._text_chars = [], [], {}, 0
        self._count(chunk)

    def _count(self, chunk: _Chunk) -> None:
        """Count a chunk into the store, then record its documents (ids, emptiness,
        metadata) after those already counted."""
        summary = self._store.count(chunk.function, chunk.args)
        self._record(chunk, summary)

    def _record(self, task: _Chunk, result: ChunkSummary) -> None:
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
        elif task.doc_ids is None:  # ids read while counting (JSONL): check them now
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
        self._n_chunks += 1
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
        """Every document id counted or added so far."""
        for doc_ids in self._deferred_ids:
            self._seen_ids.update(doc_ids)
        self._deferred_ids.clear()
        return self._seen_ids

    # ---------------------------------------------------------------- finish
    def finish(self) -> BuiltCorpus:
        """Count what is left, prune the vocabulary and lay out the final matrix: the
        store re-indexes its chunks one by one and keeps their entries until
        ``built.counts.fill`` writes them."""
        self._flush_texts("end of input")
        if self.input_documents == 0:
            raise InvalidInput("empty corpus: the input contains no documents")
        table = self._store.table
        terms = table.terms
        df, tf = table.frequencies()
        is_bigram = np.fromiter((BIGRAM_JOINER in t for t in terms), dtype=bool, count=len(terms)) if self.options.bigrams else None
        to_new, kept, pruned = prune_vocabulary(terms, df, tf, self._n_with_tokens, self.options, is_bigram)
        reindexed = self._store.reindex(to_new, len(kept))
        return assemble(reindexed, self._n_chunks, self._store.fill, kept, self._doc_ids,
                        np.concatenate(self._empty_parts), self._metadata, pruned, len(terms), self.progress,
                        snippets=self._snippets)
