"""Chunk tasks run in worker processes (or in-process): bytes or texts in, term counts out.

Line-oriented inputs (plain text, JSONL) travel to the workers as raw byte blocks cut at
line ends, so decoding, splitting, JSON parsing and tokenizing all happen in parallel and
the reading process only moves bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from app.ingest.counting import ChunkCounts, ChunkTokenizer, count_chunk
from app.ingest.options import TextOptions
from app.ingest.readers import Fields, document_from_value


@dataclass
class ChunkResult:
    """Counts of one chunk: n_docs rows; empty (n_docs,) marks documents that were empty or
    whitespace; doc_ids when the worker read them (else the caller knows them);
    metadata {row in chunk: dict}."""

    chunk: ChunkCounts
    n_docs: int
    empty: np.ndarray
    doc_ids: list[str] | None = None
    metadata: dict[int, dict] = field(default_factory=dict)


def _is_blank(text: str) -> bool:
    return not text or text.isspace()


def run_texts(texts: list[str], options: TextOptions) -> ChunkResult:
    empty = np.fromiter(map(_is_blank, texts), dtype=bool, count=len(texts))
    return ChunkResult(count_chunk(texts, options), len(texts), empty)


def _decode_block(block: bytes, where: str, first_line: int, first_offset: int) -> str:
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + block.count(b"\n", 0, error.start)
        raise ValueError(f"{where} line {line}: invalid UTF-8 at byte {first_offset + error.start} ({error.reason})") from None


def _check_line_lengths(lines: list[bytes], where: str, first_line: int, max_line_bytes: int) -> None:
    if max(map(len, lines), default=0) <= max_line_bytes:
        return
    for offset, line in enumerate(lines):
        if len(line.rstrip(b"\r")) > max_line_bytes:
            raise ValueError(f"{where} line {first_line + offset}: longer than max_document_bytes={max_line_bytes}")


def _block_lines(block: bytes) -> bytes:
    """The block without its final line end (blocks are cut just after a ``\\n``)."""
    return block[:-1] if block.endswith(b"\n") else block


def run_text_lines(block: bytes, where: str, first_line: int, first_offset: int, max_line_bytes: int,
                   options: TextOptions) -> ChunkResult:
    """Plain text block, one document per line (``\\r\\n`` or ``\\n``).

    ASCII lines are tokenized as bytes, all at once with line feeds as separators; other
    lines are decoded (strict UTF-8, errors name the line) and go the Unicode way.
    """
    body = _block_lines(block)
    lines = body.split(b"\n")
    _check_line_lengths(lines, where, first_line, max_line_bytes)
    tokenizer = ChunkTokenizer(options, len(lines))
    if body.isascii():
        empty = np.fromiter(map(_is_blank_bytes, lines), dtype=bool, count=len(lines))
        del lines
        tokenizer.add_ascii(body, b"\n", np.arange(len(empty)))
        return ChunkResult(tokenizer.counts(), len(empty), empty)
    is_ascii = np.fromiter(map(bytes.isascii, lines), dtype=bool, count=len(lines))
    empty = np.zeros(len(lines), dtype=bool)
    ascii_rows, other_rows = np.flatnonzero(is_ascii), np.flatnonzero(~is_ascii)
    if ascii_rows.size:
        ascii_lines = [lines[i] for i in ascii_rows]
        empty[ascii_rows] = np.fromiter(map(_is_blank_bytes, ascii_lines), dtype=bool, count=ascii_rows.size)
        tokenizer.add_ascii(b"\n".join(ascii_lines), b"\n", ascii_rows)
        del ascii_lines
    texts = []
    for row in other_rows:
        raw = lines[row]
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            offset = first_offset + sum(len(line) + 1 for line in lines[:row]) + error.start
            raise ValueError(f"{where} line {first_line + int(row)}: invalid UTF-8 at byte {offset} ({error.reason})") from None
    empty[other_rows] = np.fromiter(map(_is_blank, texts), dtype=bool, count=len(texts))
    tokenizer.add_texts(texts, other_rows)
    return ChunkResult(tokenizer.counts(), len(lines), empty)


def _is_blank_bytes(line: bytes) -> bool:
    return not line or line.isspace()


def run_jsonl_lines(block: bytes, where: str, first_line: int, first_offset: int, fields: Fields,
                    max_document_bytes: int, max_line_bytes: int, id_prefix: str, options: TextOptions) -> ChunkResult:
    """JSONL block: one JSON string or object per line; blank lines are skipped."""
    body = _block_lines(block)
    _check_line_lengths(body.split(b"\n"), where, first_line, max_line_bytes)
    texts, doc_ids, metadata = [], [], {}
    for offset, line in enumerate(_decode_block(body, where, first_line, first_offset).split("\n")):
        if not line or line.isspace():
            continue
        number = first_line + offset
        line_where = f"{where} line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{line_where}: invalid JSON ({error.msg} at column {error.colno})") from None
        except RecursionError:
            raise ValueError(f"{line_where}: invalid JSON (nested too deeply)") from None
        document = document_from_value(value, line_where, f"{id_prefix}{number}", fields, max_document_bytes)
        if document.metadata:
            metadata[len(texts)] = document.metadata
        texts.append(document.text)
        doc_ids.append(document.doc_id)
    result = run_texts(texts, options)
    result.doc_ids, result.metadata = doc_ids, metadata
    return result
