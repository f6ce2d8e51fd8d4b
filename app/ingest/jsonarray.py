"""A ``.json`` upload, a JSON array of documents (strings or {"id", "text", ...} objects),
read element by element with ijson's event parser (its C backend ``yajl2_c`` where the
wheel has it: ``ijson.backend``), never whole.

Elements are built from ijson's ``basic_parse`` events rather than with ``ijson.items``:
items tracks a prefix string per nesting level, which makes deep nesting cost quadratic
memory (about 1 GB for 40 KB of ``[[[...]]]``); here nesting inside a document is capped
at :data:`MAX_DEPTH` and memory stays linear. Bytes reach the parser in pieces of
:data:`_PIECE` bytes, so the events of one piece are few, and one element may span at most
``max_document_bytes + JSON_OVERHEAD`` bytes of input.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import ijson

from app.ingest.readers import JSON_OVERHEAD, Fields, RawDocument, document_from_value
from app.ingest.streams import BLOCK, UTF8_BOM
from gpu.errors import InvalidInput

# Levels of arrays and objects allowed in one element of the top-level array (the
# document object itself is the first; its metadata the second).
MAX_DEPTH = 64
_PIECE = 64 << 10
_OPEN = {"start_map": dict, "start_array": list}
_CLOSE = frozenset(("end_map", "end_array"))


def read_json_array(stream: io.BufferedReader, where: str, fields: Fields, max_document_bytes: int,
                    id_prefix: str = "") -> Iterator[RawDocument]:
    """The documents of a JSON array, in order; element i is located as ``{where} element
    {i}`` and gets id ``{id_prefix}{i}`` unless it has one. Raises InvalidInput for input
    that is not one JSON array, invalid JSON or UTF-8 (naming the element), an element
    over ``max_document_bytes + JSON_OVERHEAD`` bytes or nested deeper than MAX_DEPTH."""
    events = ijson.sendable_list()
    parser = ijson.basic_parse_coro(events)  # numbers: int, or Decimal (made float below)
    elements = _Elements(where)
    max_element = max_document_bytes + JSON_OVERHEAD
    index = element_bytes = 0
    for piece in _pieces(stream):
        failure = None
        try:
            if piece:
                parser.send(piece)
            else:
                parser.close()
        except ijson.JSONError as error:
            failure = error
        # Events of the tokens before a failure arrive too: their documents come first.
        for value in elements.take(events, index):
            yield document_from_value(value, f"{where} element {index}", f"{id_prefix}{index}", fields, max_document_bytes)
            index += 1
            element_bytes = 0
        del events[:]
        if failure is not None:
            raise _invalid(failure, where, index, elements.started)
        element_bytes += len(piece)
        if element_bytes > max_element + _PIECE:
            raise InvalidInput(f"{where} element {index}: document longer than max_document_bytes={max_document_bytes}")
    if not elements.started:
        raise InvalidInput(f"{where}: expected a JSON array of documents, found an empty input")


def _pieces(stream: io.BufferedReader) -> Iterator[bytes]:
    """The stream in pieces of at most _PIECE bytes (a leading UTF-8 byte-order mark
    dropped), then b"" once at the end."""
    first = True
    while True:
        block = stream.read(BLOCK)
        if first:
            first = False
            if block.startswith(UTF8_BOM):
                block = block[len(UTF8_BOM):]
        if not block:
            yield b""
            return
        view = memoryview(block)
        for start in range(0, len(block), _PIECE):
            yield bytes(view[start:start + _PIECE])


class _Elements:
    """Builds the top-level array's elements from ijson basic_parse events."""

    def __init__(self, where: str):
        self.where = where
        self.started = False  # the top-level array has begun
        self._open: list[Any] = []  # containers open inside the current element
        self._keys: list[str | None] = []  # pending object key per open container

    def take(self, events: list[tuple[str, Any]], index: int) -> Iterator[Any]:
        """Consume events and yield each element completed by them (``index``: the
        number of elements completed before these events)."""
        open_, keys = self._open, self._keys
        for event, value in events:
            if not self.started:
                if event != "start_array":
                    raise InvalidInput(f"{self.where}: expected a JSON array of documents, found {_kind(event)}")
                self.started = True
                continue
            if event == "map_key":
                keys[-1] = value
                continue
            if event in _CLOSE:
                if not open_:
                    continue  # the top-level array ends (anything after it fails to parse)
                value = open_.pop()
                keys.pop()
                if open_:
                    continue  # already placed in its parent when it opened
            elif event in _OPEN:
                if len(open_) >= MAX_DEPTH:
                    raise InvalidInput(f"{self.where} element {index}: invalid JSON "
                                       f"(nested too deeply: more than {MAX_DEPTH} levels)")
                container = _OPEN[event]()
                if open_:
                    _put(open_[-1], keys[-1], container)
                open_.append(container)
                keys.append(None)
                continue
            elif type(value) is Decimal:
                value = float(value)  # as json.loads; ints stay exact at any size
            if open_:
                _put(open_[-1], keys[-1], value)
            else:
                yield value
                index += 1


def _put(container: Any, key: str | None, value: Any) -> None:
    if type(container) is dict:
        container[key] = value
    else:
        container.append(value)


def _kind(event: str) -> str:
    return {"start_map": "an object", "start_array": "an array", "string": "a string", "null": "null",
            "boolean": "a boolean"}.get(event, "a number")


def _invalid(error: ijson.JSONError, where: str, index: int, started: bool) -> InvalidInput:
    """The InvalidInput for a parse error of ijson (its first line, without the excerpt of
    the input that follows it)."""
    message = error.args[0] if error.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    reason = str(message).strip().split("\n", 1)[0]
    for prefix in ("parse error: ", "lexical error: "):
        reason = reason.removeprefix(prefix)
    if "premature EOF" in reason:
        if not started:
            return InvalidInput(f"{where}: expected a JSON array of documents, found an empty input")
        return InvalidInput(f"{where} element {index}: unexpected end of JSON")
    if "trailing garbage" in reason:
        return InvalidInput(f"{where}: unexpected data after the JSON array")
    if "UTF8" in reason:
        return InvalidInput(f"{where} element {index}: invalid UTF-8 in a string")
    if not started:
        return InvalidInput(f"{where}: expected a JSON array of documents (invalid JSON: {reason})")
    return InvalidInput(f"{where} element {index}: invalid JSON ({reason})")
