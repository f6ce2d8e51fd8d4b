"""On-disk artifacts shared by the API and the workers.

One data directory holds every corpus and model as an immutable folder:

    <root>/corpora/<corpus_id>/...
    <root>/models/<model_id>/...
    <root>/tmp/               (same filesystem, so renames are atomic)

Artifacts are written into a temporary folder and renamed into place only when complete,
so a reader never sees a half-written artifact and a crash leaves only ``tmp/`` debris,
which :func:`DataLayout.sweep_tmp` removes. This module imports no web or numeric code.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu.errors import InvalidInput

_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataLayout:
    """Paths of artifacts under one data directory."""

    root: Path

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def corpus_dir(self, corpus_id: str) -> Path:
        return self.root / "corpora" / _safe_id(corpus_id)

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / _safe_id(model_id)

    def ensure(self) -> "DataLayout":
        for sub in ("corpora", "models", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self

    def sweep_tmp(self, older_than_s: float = 0.0) -> int:
        """Remove leftovers of interrupted writes older than ``older_than_s`` seconds."""
        if not self.tmp.exists():
            return 0
        removed = 0
        cutoff = time.time() - older_than_s
        for entry in self.tmp.iterdir():
            if entry.stat().st_mtime <= cutoff:
                remove_path(entry)
                removed += 1
        return removed


class ArtifactCorrupt(RuntimeError):
    """A stored artifact is missing, unreadable or does not match its recorded checksum: a
    server fault (500 in the API, retried by a worker), never the caller's input."""


def _safe_id(identifier: str) -> str:
    if not identifier or not all(c.isalnum() or c in "-_" for c in identifier):
        raise InvalidInput(f"invalid artifact id {identifier!r}: use letters, digits, '-' and '_'")
    return identifier


@contextlib.contextmanager
def atomic_directory(final: Path, tmp_root: Path | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder; on success rename it to ``final``.

    On any exception the temporary folder is removed and nothing appears at ``final``.
    Raises FileExistsError if ``final`` already exists (artifacts are immutable).
    """
    final = Path(final)
    tmp_root = Path(tmp_root) if tmp_root is not None else final.parent
    tmp_root.mkdir(parents=True, exist_ok=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_root / f".{final.name}.{uuid.uuid4().hex}.partial"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            raise FileExistsError(f"artifact {final} already exists")
        os.rename(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        remove_path(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as UTF-8 JSON (inside an artifact folder being built)."""
    Path(path).write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def directory_checksum(path: Path, known: dict[str, str] | None = None) -> str:
    """SHA-256 over the sorted relative names and contents of every file under ``path``;
    ``known`` maps relative names (posix) to the file_sha256 of files already hashed."""
    path = Path(path)
    known = known or {}
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        name = file.relative_to(path).as_posix()
        digest.update(name.encode("utf-8") + b"\0")
        digest.update((known.get(name) or file_sha256(file)).encode("ascii") + b"\n")
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str) -> None:
    """Raise ValueError if the artifact at ``path`` is missing or does not match ``expected``."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactCorrupt(f"artifact {path} is missing")
    actual = directory_checksum(path)
    if actual != expected:
        raise ArtifactCorrupt(f"artifact {path} is corrupt: checksum {actual} != recorded {expected}")


FileIdentity = tuple[tuple[str, int, int, int], ...]


def folder_identity(path: Path) -> FileIdentity:
    """(relative name, inode, size, mtime_ns) of every file under ``path``, sorted; a file
    replaced, rewritten or truncated changes it. ArtifactCorrupt if the folder is missing."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactCorrupt(f"artifact {path} is missing")
    entries: list[tuple[str, int, int, int]] = []
    _collect_identity(str(path), "", entries)  # os.scandir: on every read of a hot route, pathlib costs 3x
    entries.sort()
    return tuple(entries)


def _collect_identity(folder: str, prefix: str, entries: list) -> None:
    with os.scandir(folder) as listing:
        for entry in listing:
            name = prefix + entry.name
            if entry.is_dir():
                _collect_identity(entry.path, name + "/", entries)
            elif entry.is_file():
                info = entry.stat()
                entries.append((name, info.st_ino, info.st_size, info.st_mtime_ns))


class VerifiedArtifacts:
    """Remembers which artifact folders matched their recorded checksum, keyed by the
    identity of their files, so a folder is hashed again only when a file changed.

    One instance per process (held by the ServiceContext); thread-safe; keeps the
    ``max_entries`` most recently verified folders.
    """

    def __init__(self, max_entries: int = 4096):
        self._max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], FileIdentity] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, path: Path, expected: str) -> FileIdentity:
        """Raise ArtifactCorrupt unless the folder at ``path`` matches checksum ``expected``;
        the :func:`folder_identity` it was verified at (a file that changes after this call
        changes the identity, so callers may key what they derive from the files by it)."""
        key = (str(path), expected)
        identity = folder_identity(path)
        with self._lock:
            if self._seen.get(key) == identity:
                self._seen.move_to_end(key)
                return identity
        verify_checksum(path, expected)
        if folder_identity(path) != identity:
            raise ArtifactCorrupt(f"artifact {path} changed while it was being verified")
        with self._lock:
            self._seen[key] = identity
            while len(self._seen) > self._max_entries:
                self._seen.popitem(last=False)
        return identity


def remove_path(path: Path) -> None:
    """Remove a file or folder if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
