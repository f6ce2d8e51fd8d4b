"""Readers for pre-built bags of words: UCI docword + vocab (parsed here), Matrix Market
coordinate files (``scipy.io.mmread``) and scipy .npz sparse matrices
(``scipy.sparse.load_npz``), each with a vocabulary source.

Rows are documents, columns vocabulary terms. Counts must be non-negative integers
(a "real" Matrix Market file is accepted only if every value is integral); repeated
(document, term) entries are summed. Results are int32 CSR (D, V).
"""
from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import scipy.io
import scipy.sparse as sp

from app.ingest.options import IngestLimits
from app.ingest.streams import (
    BLOCK,
    CORRUPT_DATA_ERRORS,
    Budget,
    capped,
    decode_utf8,
    iter_lines,
    read_all,
)
from gpu.errors import InvalidInput

_GZIP_MAGIC = b"\x1f\x8b"


def maybe_gunzip(stream: io.BufferedReader, name: str, where: str, limits: IngestLimits) -> io.BufferedReader:
    """Transparently decompress a gzip stream (by magic bytes), capped by max_decompressed_bytes."""
    if stream.peek(2)[:2] == _GZIP_MAGIC:
        return capped(gzip.GzipFile(fileobj=stream, mode="rb"), [Budget(limits.max_decompressed_bytes, "max_decompressed_bytes")], where)
    return stream


def read_vocabulary(stream: io.BufferedReader, where: str, limits: IngestLimits) -> list[str]:
    """A JSON list of strings, or one term per line. Empty or repeated terms are refused."""
    if stream.peek(1)[:1] == b"[" or stream.peek(4)[:4] == b"\xef\xbb\xbf[":
        raw = read_all(stream, where, limits.max_total_bytes, "max_total_bytes")
        try:
            terms = json.loads(decode_utf8(raw, where).lstrip("\ufeff"))
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{where}: invalid JSON vocabulary ({error.msg} at line {error.lineno} column {error.colno})") from None
        except RecursionError:
            raise InvalidInput(f"{where}: invalid JSON vocabulary (nested too deeply)") from None
        if not isinstance(terms, list):
            raise InvalidInput(f"{where}: a JSON vocabulary must be a list of strings")
        located = [(f"{where} element {i}", term) for i, term in enumerate(terms)]
    else:
        located = [(f"{where} line {n}", line.strip()) for n, line in iter_lines(stream, where, limits.max_document_bytes)]
    seen: dict[str, str] = {}
    for term_where, term in located:
        if not isinstance(term, str) or not term:
            raise InvalidInput(f"{term_where}: vocabulary terms must be non-empty strings, got {term!r}")
        if term in seen:
            raise InvalidInput(f"{term_where}: term {term!r} repeats {seen[term]}")
        seen[term] = term_where
    return [term for _, term in located]


def _iter_data_lines(stream: io.BufferedReader, where: str, first_line: int) -> Iterator[tuple[int, list[bytes]]]:
    """Blocks of raw lines: (line number of the block's first line, lines)."""
    number, carry = first_line, b""
    while True:
        block = stream.read(BLOCK)
        if not block:
            if carry.strip():
                yield number, [carry]
            return
        block = carry + block
        cut = block.rfind(b"\n")
        if cut < 0:
            carry = block
            if len(carry) > BLOCK * 4:
                raise InvalidInput(f"{where} line {number}: line too long")
            continue
        lines, carry = block[:cut].split(b"\n"), block[cut + 1:]
        yield number, lines
        number += len(lines)


def _parse_triples(stream, where: str, first_line: int, n_values: int, integral: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse lines of ``n_values`` (2 or 3) whitespace-separated numbers -> (rows, cols, values)
    (1-based indices as read; values 1 when n_values == 2)."""
    rows, cols, values = [], [], []
    for start, lines in _iter_data_lines(stream, where, first_line):
        fields = b" ".join(lines).split()
        n_lines = sum(1 for line in lines if line.strip())
        parsed = None
        if len(fields) == n_values * n_lines:
            try:
                table = np.array(fields).reshape(n_lines, n_values) if fields else np.empty((0, n_values), "S1")
                indices = table[:, :2].astype(np.int64)
                vals = table[:, 2].astype(np.int64 if integral else np.float64) if n_values == 3 else np.ones(n_lines, np.int64)
                parsed = indices, vals
            except (ValueError, OverflowError):
                parsed = None
        if parsed is None:
            _raise_bad_line(lines, start, where, n_values, integral)
        rows.append(parsed[0][:, 0])
        cols.append(parsed[0][:, 1])
        values.append(parsed[1])
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)


def _raise_bad_line(lines: list[bytes], start: int, where: str, n_values: int, integral: bool) -> None:
    for offset, line in enumerate(lines):
        fields = line.split()
        if not fields:
            continue
        line_where = f"{where} line {start + offset}"
        if len(fields) != n_values:
            raise InvalidInput(f"{line_where}: expected {n_values} numbers, found {len(fields)} fields")
        try:
            [int(f) for f in fields[:2]]
            float(fields[2]) if n_values == 3 and not integral else [int(f) for f in fields[2:]]
        except (ValueError, OverflowError):
            raise InvalidInput(f"{line_where}: not a number in {decode_utf8(line, line_where)[:80]!r}") from None
    raise InvalidInput(f"{where} lines {start}-{start + len(lines) - 1}: malformed entries")


def _assemble(rows, cols, values, n_docs: int, n_terms: int, n_entries: int, where: str) -> sp.csr_matrix:
    if len(rows) != n_entries:
        raise InvalidInput(f"{where}: header declares {n_entries} entries, found {len(rows)}")
    if len(rows):
        if rows.min() < 1 or rows.max() > n_docs:
            bad = int(np.flatnonzero((rows < 1) | (rows > n_docs))[0])
            raise InvalidInput(f"{where}: entry {bad + 1} has document index {int(rows[bad])} outside 1..{n_docs}")
        if cols.min() < 1 or cols.max() > n_terms:
            bad = int(np.flatnonzero((cols < 1) | (cols > n_terms))[0])
            raise InvalidInput(f"{where}: entry {bad + 1} has term index {int(cols[bad])} outside 1..{n_terms}")
    return to_count_matrix(sp.coo_matrix((values, (rows - 1, cols - 1)), shape=(n_docs, n_terms)), where)


def to_count_matrix(matrix, where: str) -> sp.csr_matrix:
    """Validate non-negative integral counts and return int32 CSR with summed duplicates."""
    csr = sp.csr_matrix(matrix)
    csr.sum_duplicates()
    data = csr.data
    if data.dtype.kind not in "biuf":
        raise InvalidInput(f"{where}: counts must be numbers, got dtype {data.dtype}")
    if data.size:
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise InvalidInput(f"{where}: counts contain NaN or infinity")
        if data.min() < 0:
            raise InvalidInput(f"{where}: counts must be non-negative (found {data.min()})")
        if data.dtype.kind == "f" and not np.all(data == np.round(data)):
            raise InvalidInput(f"{where}: counts must be integers (found a fractional value)")
        if data.max() > np.iinfo(np.int32).max:
            raise InvalidInput(f"{where}: a count exceeds the int32 range")
    csr = sp.csr_matrix((data.astype(np.int32), csr.indices.astype(np.int32), csr.indptr), shape=csr.shape)
    csr.eliminate_zeros()
    return csr


def _header_ints(line: str, count: int, line_where: str, what: str) -> list[int]:
    fields = line.split()
    try:
        values = [int(f) for f in fields]
    except ValueError:
        values = []
    if len(values) != count or any(v < 0 for v in values):
        raise InvalidInput(f"{line_where}: expected {what}, got {line[:80]!r}")
    return values


def read_uci(stream: io.BufferedReader, where: str, vocabulary: list[str], limits: IngestLimits) -> sp.csr_matrix:
    """UCI docword: three header lines D, W, NNZ, then ``docID wordID count`` lines (1-based)."""
    header = []
    for number in (1, 2, 3):
        line = stream.readline(256)
        header += _header_ints(decode_utf8(line, f"{where} line {number}"), 1, f"{where} line {number}", ("D", "W", "NNZ")[number - 1] + " (a non-negative integer)")
    n_docs, n_terms, n_entries = header
    _check_sizes(n_docs, n_terms, n_entries, where, vocabulary, limits)
    rows, cols, values = _parse_triples(stream, where, 4, 3, integral=True)
    return _assemble(rows, cols, values, n_docs, n_terms, n_entries, where)


def read_matrix_market(stream: io.BufferedReader, where: str, vocabulary: list[str], limits: IngestLimits) -> sp.csr_matrix:
    """Matrix Market ``coordinate`` ``integer|real|pattern`` ``general``, documents x terms,
    parsed by ``scipy.io.mmread`` (fast_matrix_market) from the whole file in memory
    (within max_total_bytes, or max_decompressed_bytes when gzipped).

    The header is checked here first (banner, size line, sizes against the vocabulary and
    max_documents, entries the file can hold, so mmread never allocates for a header's
    claim); mmread's errors keep its file line number: ``{where} line N: ...``.
    """
    data = read_all(stream, where, max(limits.max_total_bytes, limits.max_decompressed_bytes), "max_decompressed_bytes")
    header = io.BytesIO(data)
    banner = decode_utf8(header.readline(1024), f"{where} line 1").strip().lower().split()
    if len(banner) != 5 or banner[0] != "%%matrixmarket" or banner[1] != "matrix":
        raise InvalidInput(f"{where} line 1: not a Matrix Market header ('%%MatrixMarket matrix coordinate ...')")
    layout, field, symmetry = banner[2:]
    if layout != "coordinate" or field not in ("integer", "real", "pattern") or symmetry != "general":
        raise InvalidInput(f"{where} line 1: only 'coordinate integer|real|pattern general' is supported, got {' '.join(banner[2:])!r}")
    number = 1
    while True:
        number += 1
        raw = header.readline(1024)
        if not raw:
            raise InvalidInput(f"{where}: missing size line")
        line = decode_utf8(raw, f"{where} line {number}")
        if line.strip() and not line.lstrip().startswith("%"):
            break
    n_docs, n_terms, n_entries = _header_ints(line, 3, f"{where} line {number}", "'rows columns entries'")
    _check_sizes(n_docs, n_terms, n_entries, where, vocabulary, limits)
    if n_entries * 4 > len(data) - header.tell() + 1:  # an entry line takes at least "i j\n"
        raise InvalidInput(f"{where}: header declares {n_entries} entries, more than its {len(data)} bytes can hold")
    try:
        matrix = scipy.io.mmread(io.BytesIO(data))
    except (ValueError, OverflowError) as error:  # malformed entries, as mmread words them
        raise InvalidInput(_located(str(error), where)) from None
    return to_count_matrix(matrix, where)


def _located(message: str, where: str) -> str:
    """mmread's ``Line N: reason`` -> ``{where} line N: reason`` (else ``{where}: reason``)."""
    match = re.match(r"Line (\d+): (.*)", message, re.DOTALL)
    if match:
        return f"{where} line {match[1]}: {match[2]}"
    return f"{where}: {message}"


def _check_sizes(n_docs: int, n_terms: int, n_entries: int, where: str, vocabulary: list[str], limits: IngestLimits) -> None:
    if n_terms != len(vocabulary):
        raise InvalidInput(f"{where}: {n_terms} terms declared but the vocabulary has {len(vocabulary)}")
    if n_docs > limits.max_documents:
        raise InvalidInput(f"{where}: {n_docs} documents, more than max_documents={limits.max_documents}")
    if n_docs == 0:
        raise InvalidInput(f"{where}: empty corpus (0 documents)")


def read_npz(stream: BinaryIO, where: str, vocabulary: list[str], limits: IngestLimits) -> sp.csr_matrix:
    """A matrix written by ``scipy.sparse.save_npz`` (any sparse format), documents x terms."""
    data = read_all(stream, where, limits.max_total_bytes, "max_total_bytes")
    buffer = io.BytesIO(data)
    try:
        with zipfile.ZipFile(buffer) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except CORRUPT_DATA_ERRORS + (ValueError,) as error:
        raise InvalidInput(f"{where}: not a .npz file ({error})") from None
    if declared > limits.max_decompressed_bytes:
        raise InvalidInput(f"{where}: arrays declare {declared} bytes, more than max_decompressed_bytes={limits.max_decompressed_bytes}")
    buffer.seek(0)
    try:
        matrix = sp.load_npz(buffer)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of the third-party parser is bad input
        raise InvalidInput(f"{where}: not a scipy sparse .npz matrix ({type(error).__name__}: {error})") from None
    if matrix.ndim != 2:
        raise InvalidInput(f"{where}: expected a 2-D matrix, got shape {matrix.shape}")
    n_docs, n_terms = matrix.shape
    if n_terms != len(vocabulary):
        raise InvalidInput(f"{where}: matrix has {n_terms} columns but the vocabulary has {len(vocabulary)} terms")
    _check_sizes(n_docs, n_terms, matrix.nnz, where, vocabulary, limits)
    return to_count_matrix(matrix, where)
