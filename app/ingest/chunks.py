"""Chunk counting functions: bytes or texts in, term counts out.

Line-oriented inputs (plain text, JSONL) arrive as raw byte blocks cut at line ends and
are decoded, split, JSON-parsed and tokenized a whole block at a time (no per-line Python
reading loop).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from app.ingest.counting import ChunkCounts, ChunkTokenizer, count_chunk
from app.ingest.options import TextOptions
from app.ingest.readers import Fields, document_from_value
from gpu.errors import InvalidInput


@dataclass
class ChunkResult:
    """Counts of one chunk: n_docs rows; empty (n_docs,) marks documents that were empty or
    whitespace; doc_ids when the block held them (else the caller knows them);
    metadata {row in chunk: dict}; snippets (n_docs,), the first SNIPPET_CHARS characters
    of each document's text."""

    chunk: ChunkCounts
    n_docs: int
    empty: np.ndarray
    doc_ids: list[str] | None = None
    metadata: dict[int, dict] = field(default_factory=dict)
    snippets: list[str] = field(default_factory=list)


# Characters of each document's text kept with the corpus (shown by the explorer).
SNIPPET_CHARS = 300


def _line_snippets(body: bytes) -> list[str]:
    """The first SNIPPET_CHARS characters of each line of ``body`` (a line cut inside a
    UTF-8 sequence loses that character only)."""
    cut = 4 * SNIPPET_CHARS
    return [line[:cut].decode("utf-8", "ignore").rstrip("\r")[:SNIPPET_CHARS] for line in body.split(b"\n")]


def _is_blank(text: str) -> bool:
    return not text or text.isspace()


def run_texts(texts: list[str], options: TextOptions) -> ChunkResult:
    empty = np.fromiter(map(_is_blank, texts), dtype=bool, count=len(texts))
    return ChunkResult(count_chunk(texts, options), len(texts), empty, snippets=[t[:SNIPPET_CHARS] for t in texts])


def _decode_block(block: bytes, where: str, first_line: int, first_offset: int) -> str:
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + block.count(b"\n", 0, error.start)
        raise InvalidInput(f"{where} line {line}: invalid UTF-8 at byte {first_offset + error.start} ({error.reason})") from None


def _check_line_lengths(lines: list[bytes], where: str, first_line: int, max_line_bytes: int) -> None:
    if max(map(len, lines), default=0) <= max_line_bytes:
        return
    for offset, line in enumerate(lines):
        if len(line.rstrip(b"\r")) > max_line_bytes:
            raise InvalidInput(f"{where} line {first_line + offset}: longer than max_document_bytes={max_line_bytes}")


def _block_lines(block: bytes) -> bytes:
    """The block without its final line end (blocks are cut just after a ``\\n``)."""
    return block[:-1] if block.endswith(b"\n") else block


def _line_bounds(body: bytes) -> np.ndarray:
    """Line feed positions framed by -1 and len(body) -> int64 (n_lines + 1,): line i is
    body[bounds[i] + 1 : bounds[i + 1]]."""
    line_ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
    bounds = np.empty(line_ends.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = -1, len(body)
    bounds[1:-1] = line_ends
    return bounds


# bytes.isspace() is true for a non-empty run of these (line feeds excluded: lines hold none).
_BLANK_BYTES = np.zeros(256, dtype=bool)
_BLANK_BYTES[list(b" \t\r\x0b\x0c")] = True


def _blank_lines(body: bytes, bounds: np.ndarray) -> np.ndarray:
    """Which lines of ``body`` (see :func:`_line_bounds`) are empty or ASCII whitespace
    (bytes.isspace) -> bool (n_lines,). Only lines that are empty or start with a blank
    byte can be blank, so only those are looked at one by one."""
    starts, stops = bounds[:-1] + 1, bounds[1:]
    codes = np.frombuffer(body, dtype=np.uint8)
    first = codes[np.minimum(starts, max(len(body) - 1, 0))] if len(body) else np.zeros(starts.size, np.uint8)
    maybe = np.flatnonzero((starts == stops) | _BLANK_BYTES[first])
    blank = np.zeros(starts.size, dtype=bool)
    for row, start, stop in zip(maybe.tolist(), starts[maybe].tolist(), stops[maybe].tolist()):
        blank[row] = _is_blank_bytes(body[start:stop])
    return blank


def run_text_lines(block: bytes, where: str, first_line: int, first_offset: int, max_line_bytes: int,
                   options: TextOptions) -> ChunkResult:
    """Plain text block, one document per line (``\\r\\n`` or ``\\n``).

    The whole block is tokenized as ASCII bytes at once, line feeds separating documents,
    with lines holding non-ASCII bytes blanked out; those lines are decoded (strict UTF-8,
    errors name the line) and go the Unicode way.
    """
    body = _block_lines(block)
    bounds = _line_bounds(body)
    n_lines = bounds.size - 1
    if int(np.diff(bounds).max()) - 1 > max_line_bytes:
        _check_line_lengths(body.split(b"\n"), where, first_line, max_line_bytes)
    tokenizer = ChunkTokenizer(options, n_lines)
    empty = _blank_lines(body, bounds)
    rows = np.arange(n_lines)
    if body.isascii():
        tokenizer.add_ascii(body, b"\n", rows)
        return ChunkResult(tokenizer.counts(), n_lines, empty, snippets=_line_snippets(body))
    codes = np.frombuffer(body, dtype=np.uint8)
    # Non-ASCII bytes per line, from their positions (a block may hold millions of them).
    other_rows = np.flatnonzero(np.diff(np.searchsorted(np.flatnonzero(codes >= 128), bounds)))
    line_starts, line_stops = (bounds[other_rows] + 1).tolist(), bounds[other_rows + 1].tolist()
    ascii_part = bytearray(body)
    for start, stop in zip(line_starts, line_stops):
        ascii_part[start:stop] = b" " * (stop - start)
    tokenizer.add_ascii(bytes(ascii_part), b"\n", rows)
    del ascii_part
    texts = []
    for row, start, stop in zip(other_rows.tolist(), line_starts, line_stops):
        try:
            texts.append(body[start:stop].decode("utf-8"))
        except UnicodeDecodeError as error:
            offset = first_offset + start + error.start
            raise InvalidInput(f"{where} line {first_line + row}: invalid UTF-8 at byte {offset} ({error.reason})") from None
    empty[other_rows] = np.fromiter(map(_is_blank, texts), dtype=bool, count=len(texts))
    tokenizer.add_texts(texts, other_rows)
    return ChunkResult(tokenizer.counts(), n_lines, empty, snippets=_line_snippets(body))


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
            raise InvalidInput(f"{line_where}: invalid JSON ({error.msg} at column {error.colno})") from None
        except RecursionError:
            raise InvalidInput(f"{line_where}: invalid JSON (nested too deeply)") from None
        document = document_from_value(value, line_where, f"{id_prefix}{number}", fields, max_document_bytes)
        if document.metadata:
            metadata[len(texts)] = document.metadata
        texts.append(document.text)
        doc_ids.append(document.doc_id)
    result = run_texts(texts, options)
    result.doc_ids, result.metadata = doc_ids, metadata
    return result
