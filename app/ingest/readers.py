"""Readers for text inputs: each turns one binary stream into a stream of RawDocument.

JSON arrays (``.json``) are read by app.ingest.jsonarray with the helpers here.

Generated document ids (when the input has none): JSON the 0-based element index, JSONL
and plain text the 1-based line number, CSV/TSV the 1-based data row number; all prefixed
with ``id_prefix`` (the archive member path and ``:`` inside archives).
Blank lines of JSONL are skipped; blank lines of plain text are (empty) documents.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from app.ingest.streams import iter_lines, iter_text_blocks
from gpu.errors import InvalidInput

# Room for the JSON syntax, escapes and metadata around a document's text on one line.
JSON_OVERHEAD = 1 << 20


class RawDocument(NamedTuple):
    """One input document before tokenization; ``where`` locates it for error messages."""

    doc_id: str
    text: str
    metadata: dict | None
    where: str


@dataclass(frozen=True)
class Fields:
    """Which fields of an object/row hold the text and the id."""

    text: str = "text"
    id: str | None = None


def check_document_size(text: str, where: str, max_document_bytes: int) -> None:
    if len(text) * 4 > max_document_bytes and len(text.encode("utf-8")) > max_document_bytes:
        raise InvalidInput(f"{where}: document longer than max_document_bytes={max_document_bytes}")


def read_text_lines(stream: io.BufferedReader, where: str, max_document_bytes: int, id_prefix: str = "") -> Iterator[RawDocument]:
    """Plain text, one document per line (``\\n`` or ``\\r\\n`` ends a line)."""
    for number, line in iter_lines(stream, where, max_document_bytes):
        yield RawDocument(f"{id_prefix}{number}", line, None, f"{where} line {number}")


def read_whole_text(stream: io.BufferedReader, where: str, max_document_bytes: int, doc_id: str) -> Iterator[RawDocument]:
    """The whole stream is one document (a .txt archive member)."""
    text = "".join(iter_text_blocks(_LimitedRead(stream, max_document_bytes, where), where))
    yield RawDocument(doc_id, text, None, where)


class _LimitedRead:
    def __init__(self, stream, limit: int, where: str):
        self._stream, self._left, self._limit, self._where = stream, limit, limit, where

    def read(self, n: int) -> bytes:
        data = self._stream.read(min(n, self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise InvalidInput(f"{self._where}: document longer than max_document_bytes={self._limit}")
        return data


def document_from_value(value: Any, where: str, default_id: str, fields: Fields, max_document_bytes: int) -> RawDocument:
    """A JSON string, or an object with the text field (and optional id and metadata)."""
    if isinstance(value, str):
        check_document_size(value, where, max_document_bytes)
        return RawDocument(default_id, value, None, where)
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: expected a string or an object, got {_json_type(value)}")
    if fields.text not in value:
        raise InvalidInput(f"{where}: missing text field {fields.text!r}")
    text = value[fields.text]
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: field {fields.text!r} must be a string, got {_json_type(text)}")
    check_document_size(text, where, max_document_bytes)
    id_field = fields.id or "id"
    doc_id = default_id
    if id_field in value and value[id_field] is not None:
        raw_id = value[id_field]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise InvalidInput(f"{where}: field {id_field!r} must be a string or an integer, got {_json_type(raw_id)}")
        doc_id = str(raw_id)
    elif fields.id is not None:
        raise InvalidInput(f"{where}: missing id field {fields.id!r}")
    metadata = value.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: field 'metadata' must be an object, got {_json_type(metadata)}")
    return RawDocument(doc_id, text, metadata or None, where)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise InvalidInput(f"{where}: invalid JSON (nested too deeply)") from None


def read_jsonl(stream: io.BufferedReader, where: str, fields: Fields, max_document_bytes: int, id_prefix: str = "") -> Iterator[RawDocument]:
    """One JSON string or object per line."""
    for number, line in iter_lines(stream, where, max_document_bytes + JSON_OVERHEAD):
        if not line.strip():
            continue
        line_where = f"{where} line {number}"
        yield document_from_value(_loads(line, line_where), line_where, f"{id_prefix}{number}", fields, max_document_bytes)


def read_delimited(stream: io.BufferedReader, where: str, fields: Fields, max_document_bytes: int, delimiter: str, id_prefix: str = "") -> Iterator[RawDocument]:
    """CSV (RFC 4180 quoting, ``,``) or TSV (``\\t``, no quoting) with a header row.

    Fields longer than the csv module's field limit (128 KiB) are refused.
    """
    lines = (line for _, line in iter_lines(stream, where, max_document_bytes + JSON_OVERHEAD, keep_ends=True))
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True)
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidInput(f"{where}: empty {kind} file (no header row)")
        columns = [name.strip() for name in header]
        text_index = _column_index(columns, fields.text, where, "text")
        id_index = _column_index(columns, fields.id, where, "id") if fields.id else None
        row_number = 0
        for row in reader:
            if not row:
                continue
            row_number += 1
            row_where = f"{where} line {reader.line_num}"
            if len(row) != len(columns):
                raise InvalidInput(f"{row_where}: {len(row)} fields, header has {len(columns)}")
            text = row[text_index]
            check_document_size(text, row_where, max_document_bytes)
            doc_id = row[id_index] if id_index is not None else f"{id_prefix}{row_number}"
            yield RawDocument(doc_id, text, None, row_where)
    except csv.Error as error:
        raise InvalidInput(f"{where} line {reader.line_num}: malformed {kind} ({error})") from None


def _column_index(columns: list[str], name: str, where: str, role: str) -> int:
    matches = [i for i, column in enumerate(columns) if column == name]
    if not matches:
        shown = ", ".join(repr(c) for c in columns[:20])
        raise InvalidInput(f"{where}: no {role} column {name!r} in the header (columns: {shown})")
    if len(matches) > 1:
        raise InvalidInput(f"{where}: {role} column {name!r} appears {len(matches)} times in the header")
    return matches[0]
