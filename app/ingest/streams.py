"""Size-capped binary streams, bounded line reading and strict UTF-8 decoding.

Every byte an ingestion reads passes through a :class:`CappedReader`, which charges it to
one or more :class:`Budget` objects (total input, one archive member, all decompressed
bytes) and raises InvalidInput as soon as a budget is exceeded, so an oversized input or an
archive bomb is refused after reading at most ``limit + one block`` bytes.
"""
from __future__ import annotations

import codecs
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from gpu.errors import InvalidInput

BLOCK = 1 << 20
# What corrupt compressed data raises from the standard library's readers (gzip.BadGzipFile
# is an OSError); CappedReader turns these into InvalidInput naming the input.
CORRUPT_DATA_ERRORS = (
    OSError, EOFError, zlib.error, lzma.LZMAError, struct.error, zipfile.BadZipFile,
    tarfile.TarError, NotImplementedError, RuntimeError,
)
UTF8_BOM = b"\xef\xbb\xbf"
NEWLINE = b"\n"


class Budget:
    """A byte allowance named after the limit it enforces (e.g. ``max_total_bytes``)."""

    def __init__(self, limit: int, name: str):
        self.limit = limit
        self.name = name
        self.used = 0

    def spend(self, n_bytes: int, where: str) -> None:
        self.used += n_bytes
        if self.used > self.limit:
            raise InvalidInput(f"{where}: input exceeds {self.name}={self.limit} bytes")


class CappedReader(io.RawIOBase):
    """Read-only view of ``raw`` that charges every byte read to ``budgets``."""

    def __init__(self, raw: BinaryIO, budgets: list[Budget], where: str):
        super().__init__()
        self._raw = raw
        self._budgets = budgets
        self.where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._raw.read(len(view))
        except CORRUPT_DATA_ERRORS as error:
            raise InvalidInput(f"{self.where}: corrupt or unreadable data ({error})") from None
        if data is None:
            return None
        n = len(data)
        for budget in self._budgets:
            budget.spend(n, self.where)
        view[:n] = data
        return n


def capped(raw: BinaryIO, budgets: list[Budget], where: str) -> io.BufferedReader:
    """A buffered (``readline``-capable) capped stream over ``raw``."""
    return io.BufferedReader(CappedReader(raw, budgets, where), buffer_size=BLOCK)


def decode_utf8(data: bytes, where: str, offset: int = 0) -> str:
    """Strict UTF-8 decode; the error names ``where`` and the byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(
            f"{where}: invalid UTF-8 at byte {offset + error.start} ({error.reason})"
        ) from None


def iter_lines(stream: io.BufferedReader, where: str, max_line_bytes: int, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """Yield (line number from 1, decoded line) for each line of ``stream``.

    A leading UTF-8 byte-order mark is skipped. A line longer than ``max_line_bytes``
    (without its end) raises InvalidInput naming the line.
    """
    offset = 0
    for number in range(1, 1 << 62):
        line = stream.readline(max_line_bytes + 2)
        if not line:
            return
        if number == 1 and line.startswith(UTF8_BOM):
            line = line[len(UTF8_BOM):]
            offset += len(UTF8_BOM)
        body = line.rstrip(b"\r\n")
        if len(body) > max_line_bytes:
            raise InvalidInput(f"{where} line {number}: longer than max_document_bytes={max_line_bytes}")
        text = decode_utf8(line if keep_ends else body, f"{where} line {number}", offset)
        offset += len(line)
        yield number, text


def read_all(stream: BinaryIO, where: str, limit: int, limit_name: str) -> bytes:
    """Read a whole stream, refusing more than ``limit`` bytes."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"{where}: larger than {limit_name}={limit} bytes")
    return data


def iter_text_blocks(stream: BinaryIO, where: str) -> Iterator[str]:
    """Decode a stream incrementally (strict UTF-8, BOM skipped) in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    consumed = 0
    first = True
    while True:
        data = stream.read(BLOCK)
        final = not data
        if first and data.startswith(UTF8_BOM):
            data = data[len(UTF8_BOM):]
            consumed += len(UTF8_BOM)
        first = False
        try:
            text = decoder.decode(data, final=final)
        except UnicodeDecodeError as error:
            raise InvalidInput(f"{where}: invalid UTF-8 near byte {consumed + max(error.start, 0)} ({error.reason})") from None
        consumed += len(data)
        if text:
            yield text
        if final:
            return


def iter_line_blocks(stream: BinaryIO, where: str, block_bytes: int,
                     max_line_bytes: int) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (first line number, next block's first line number, byte offset, block) for
    blocks of about ``block_bytes`` holding whole lines (cut just after a ``\\n``; the last
    may lack it). A leading UTF-8 byte-order mark is dropped. A line whose end is not found
    within ``max_line_bytes`` raises InvalidInput (lines inside a block are checked by whoever
    splits it)."""
    line, offset, buffer, first = 1, 0, bytearray(), True
    while True:
        data = stream.read(min(BLOCK, block_bytes))
        if first:
            first = False
            if data.startswith(UTF8_BOM):
                data, offset = data[len(UTF8_BOM):], len(UTF8_BOM)
        if not data:
            if buffer:
                yield line, line + buffer.count(NEWLINE), offset, bytes(buffer)
            return
        buffer += data
        cut = buffer.rfind(b"\n") + 1
        if len(buffer) - cut > max_line_bytes + 2:
            bad_line = line + buffer.count(NEWLINE)
            raise InvalidInput(f"{where} line {bad_line}: longer than max_document_bytes={max_line_bytes}")
        if len(buffer) < block_bytes or cut == 0:
            continue
        block = bytes(buffer[:cut])
        del buffer[:cut]
        next_line = line + block.count(NEWLINE)
        yield line, next_line, offset, block
        line = next_line
        offset += len(block)
