"""``ingest``: sources (file name, binary stream) -> a stored corpus artifact."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from app.artifacts.artifact_files import remove_path
from app.ingest import archives, bagofwords, jsonarray, readers
from app.ingest.builder import CorpusBuilder
from app.ingest.counting import remap_columns
from app.ingest.finalize import (
    NO_TOKENS,
    BuiltCorpus,
    ChunkRows,
    assemble,
    prune_vocabulary,
)
from app.ingest.formats import BAG_OF_WORDS_FORMATS, FORMATS, detect_format
from app.ingest.options import IngestLimits, TextOptions
from app.ingest.readers import Fields
from app.ingest.store import CorpusInfo, write_corpus
from app.ingest.streams import Budget, capped, iter_line_blocks
from gpu.errors import InvalidInput

Progress = Callable[[str, int, int], None]

_MEMBER_FORMATS = {
    ".txt": "document", ".text": "document", ".md": "document", ".rst": "document",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
}


def ingest(sources: list[tuple[str, BinaryIO]], dest: Path, *, tmp_root: Path, fmt: str | None = None,
           options: TextOptions = TextOptions(), limits: IngestLimits = IngestLimits(),
           text_column: str = "text", id_column: str | None = None, progress: Progress | None = None,
           chunk_bytes: int = 2 << 20) -> CorpusInfo:
    """Build the corpus artifact at ``dest`` from ``sources`` and return its CorpusInfo.

    sources: (file name, binary stream) pairs, read once, front to back. Text formats take
        one or more sources (ids get a ``name:`` prefix when there are several); ``uci``,
        ``mm`` and ``npz`` take exactly two: the matrix and the vocabulary (recognized by
        ``vocab`` in its name, otherwise the second source).
    fmt: one of FORMATS, or None to detect each source from its name and first bytes.
    text_column / id_column: the text and id field of CSV/TSV rows and JSON objects
        (JSON objects default to ``id`` for the id).
    chunk_bytes: text per tokenization chunk (counted in this process, one at a time).
    progress: progress(stage, done, total) for stages tokenize, finalize, write;
        exceptions it raises abort the ingestion.

    Empty documents are dropped and counted by reason (see app.ingest.builder); an
    entirely empty corpus, malformed input or a broken limit raises InvalidInput naming the
    file, line/element and limit, and leaves nothing at ``dest`` nor under ``tmp_root``.
    """
    dest, tmp_root = Path(dest), Path(tmp_root)
    if not sources:
        raise InvalidInput("no input: sources is empty")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if dest.exists():
        raise FileExistsError(f"corpus {dest} already exists")
    tmp_root.mkdir(parents=True, exist_ok=True)
    total = Budget(limits.max_total_bytes, "max_total_bytes")
    streams = [(name or f"source{i}", capped(raw, [total], name or f"source{i}")) for i, (name, raw) in enumerate(sources)]
    formats = [fmt or detect_format(name, None, stream.peek(512)[:512]) for name, stream in streams]
    work_dir = Path(tempfile.mkdtemp(prefix=".ingest-", dir=tmp_root))
    try:
        if any(f in BAG_OF_WORDS_FORMATS for f in formats):
            built = _build_bag_of_words(streams, formats, options, limits, fmt, progress)
        else:
            builder = CorpusBuilder(options, limits, work_dir, chunk_bytes=chunk_bytes, progress=progress)
            built = _build_from_text(builder, streams, formats, limits, Fields(text_column, id_column), work_dir, chunk_bytes)
        built.stats.update({
            "format": formats[0] if len(set(formats)) == 1 else formats,
            "sources": [name for name, _ in streams],
            "input_bytes": total.used,
        })
        if progress is not None:
            progress("write", 0, 1)
        info = write_corpus(built, dest, tmp_root, options)
        if progress is not None:
            try:
                progress("write", 1, 1)
            except BaseException:
                remove_path(dest)  # the caller aborted: leave nothing behind
                raise
        return info
    finally:
        remove_path(work_dir)


def _build_from_text(builder: CorpusBuilder, streams, formats, limits, fields, work_dir, chunk_bytes) -> BuiltCorpus:
    prefix_ids = len(streams) > 1
    for (name, stream), fmt in zip(streams, formats):
        _feed(builder, stream, name, fmt, fields, limits, work_dir, f"{name}:" if prefix_ids else "", chunk_bytes)
    return builder.finish()


def _feed(builder: CorpusBuilder, stream, name: str, fmt: str, fields: Fields, limits: IngestLimits,
          work_dir: Path, prefix: str, chunk_bytes: int) -> None:
    """Send one source's documents to the builder: line formats as raw blocks, the rest
    document by document."""
    max_doc = limits.max_document_bytes
    if fmt == "text":
        for line, next_line, offset, block in iter_line_blocks(stream, name, chunk_bytes, max_doc):
            builder.add_text_block(block, name, line, next_line, offset, prefix)
    elif fmt == "jsonl":
        max_line = max_doc + readers.JSON_OVERHEAD
        for line, _, offset, block in iter_line_blocks(stream, name, chunk_bytes, max_line):
            builder.add_jsonl_block(block, name, line, offset, fields, max_line, prefix)
    elif fmt == "json":
        for document in jsonarray.read_json_array(stream, name, fields, max_doc, prefix):
            builder.add(document)
    elif fmt in ("csv", "tsv"):
        for document in readers.read_delimited(stream, name, fields, max_doc, "," if fmt == "csv" else "\t", prefix):
            builder.add(document)
    elif fmt in ("zip", "tar.gz"):
        members = archives.iter_zip(stream, name, limits, work_dir) if fmt == "zip" else archives.iter_tar_gz(stream, name, limits)
        for member, member_stream in members:
            member_where = f"{name}!{member}"
            base = member.rsplit("/", 1)[-1]
            suffix = "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""
            kind = _MEMBER_FORMATS.get(suffix)
            if kind is None:
                raise InvalidInput(f"{member_where}: unsupported member type {suffix or '(no extension)'!r}; "
                                 f"archives may hold {', '.join(sorted(_MEMBER_FORMATS))} files")
            if kind == "document":
                for document in readers.read_whole_text(member_stream, member_where, max_doc, f"{prefix}{member}"):
                    builder.add(document)
            else:
                _feed(builder, member_stream, member_where, kind, fields, limits, work_dir, f"{prefix}{member}:", chunk_bytes)
    else:
        raise InvalidInput(f"{name}: format {fmt!r} is not a text format")


def _build_bag_of_words(streams, formats, options: TextOptions, limits: IngestLimits, fmt: str | None,
                        progress: Progress | None = None) -> BuiltCorpus:
    if len(streams) != 2:
        raise InvalidInput(f"bag-of-words input needs two sources (matrix, vocabulary), got {len(streams)}")
    vocab_index = next((i for i, (name, _) in enumerate(streams) if "vocab" in name.lower()), 1)
    matrix_index = 1 - vocab_index
    kind = fmt or formats[matrix_index]
    if kind not in BAG_OF_WORDS_FORMATS:
        raise InvalidInput(f"{streams[matrix_index][0]}: expected a uci, mm or npz matrix, detected {kind!r}")
    vocab_name, vocab_stream = streams[vocab_index]
    matrix_name, matrix_stream = streams[matrix_index]
    vocabulary = bagofwords.read_vocabulary(vocab_stream, vocab_name, limits)
    if not vocabulary:
        raise InvalidInput(f"{vocab_name}: empty vocabulary")
    if kind == "npz":
        counts = bagofwords.read_npz(matrix_stream, matrix_name, vocabulary, limits)
    else:
        matrix_stream = bagofwords.maybe_gunzip(matrix_stream, matrix_name, matrix_name, limits)
        reader = bagofwords.read_uci if kind == "uci" else bagofwords.read_matrix_market
        counts = reader(matrix_stream, matrix_name, vocabulary, limits)
    df = np.bincount(counts.indices, minlength=len(vocabulary)).astype(np.int64)
    tf = np.bincount(counts.indices, weights=counts.data, minlength=len(vocabulary)).astype(np.int64)
    n_with_terms = int(np.count_nonzero(np.diff(counts.indptr)))
    to_new, kept_vocabulary, pruned = prune_vocabulary(vocabulary, df, tf, n_with_terms, options)
    doc_ids = [str(row) for row in range(1, counts.shape[0] + 1)]
    reindexed = remap_columns(counts, to_new, len(kept_vocabulary))
    built = assemble(iter([ChunkRows.of(reindexed, counts)]), 1, lambda target, _: target.put(0, reindexed.indices, reindexed.data),
                     kept_vocabulary, doc_ids, np.zeros(counts.shape[0], bool), {}, pruned, len(vocabulary), progress)
    built.stats["dropped_reason_note"] = f"rows without counts are counted as {NO_TOKENS!r}"
    return built
