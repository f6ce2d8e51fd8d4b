"""Input format names and detection from a file name, a content type and the first bytes."""
from __future__ import annotations

from gpu.errors import InvalidInput

FORMATS: tuple[str, ...] = ("json", "jsonl", "text", "csv", "tsv", "zip", "tar.gz", "uci", "mm", "npz")

# Formats whose input is a matrix source plus a vocabulary source.
BAG_OF_WORDS_FORMATS = frozenset({"uci", "mm", "npz"})

_SUFFIXES = (
    (".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".zip", "zip"), (".jsonl", "jsonl"),
    (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv"), (".tsv", "tsv"), (".tab", "tsv"),
    (".txt", "text"), (".text", "text"), (".mtx", "mm"), (".mm", "mm"), (".npz", "npz"),
)
_CONTENT_TYPES = {
    "application/json": "json", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl", "text/plain": "text", "text/csv": "csv",
    "text/tab-separated-values": "tsv", "application/zip": "zip", "application/x-zip-compressed": "zip",
    "application/gzip": "tar.gz", "application/x-gzip": "tar.gz", "application/x-tar+gzip": "tar.gz",
    "application/x-compressed-tar": "tar.gz",
}


def detect_format(filename: str | None, content_type: str | None = None, head: bytes = b"") -> str:
    """Guess one of :data:`FORMATS`: magic bytes of ``head`` first for binary formats, then
    the file name's suffix, then the content type, then the shape of ``head``.

    Raises InvalidInput naming the file when nothing fits.
    """
    name = (filename or "").lower()
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz" if name.endswith(".npz") else "zip"
    if head.startswith(b"\x1f\x8b"):
        if "docword" in name:
            return "uci"
        return "tar.gz"
    if head.lstrip(b"\xef\xbb\xbf").startswith(b"%%MatrixMarket"):
        return "mm"
    base = name.rsplit("/", 1)[-1]
    if base.startswith("docword"):
        return "uci"
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    if content_type:
        fmt = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if fmt:
            return fmt
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith((b"{", b'"')):
        return "jsonl"
    if head:
        return "text"
    raise InvalidInput(f"cannot detect the format of {filename or 'the upload'!r}: name it with one of the suffixes "
                     f"{', '.join(s for s, _ in _SUFFIXES)} or pass fmt (one of {', '.join(FORMATS)})")
