"""Zip and tar.gz archives read member by member as size-capped streams, never extracted.

Accepted: regular files with safe relative names. Refused with InvalidInput: links and other
special members, absolute or ``..`` paths, nested archives (by name or by magic bytes),
encrypted members, more than ``max_archive_members`` members, a member over
``max_member_bytes`` or all members together over ``max_decompressed_bytes`` (counted on
the bytes actually decompressed, so lying headers and bombs are stopped early).
Directories and macOS metadata (``__MACOSX/``, ``.DS_Store``) are skipped.
"""
from __future__ import annotations

import gzip
import io
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from app.ingest.options import IngestLimits
from app.ingest.streams import BLOCK, CORRUPT_DATA_ERRORS, Budget, capped
from gpu.errors import InvalidInput

NESTED_ARCHIVE_SUFFIXES = (
    ".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".7z", ".rar", ".zst", ".lz", ".lzma", ".z",
)
_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd")


def check_member_name(name: str, where: str) -> str:
    """Return the normalized member path or raise InvalidInput for path tricks."""
    if not name or "\x00" in name:
        raise InvalidInput(f"{where}: member with an empty or NUL-containing name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise InvalidInput(f"{where}: member {name!r} has an absolute path")
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"{where}: member {name!r} escapes the archive (path traversal)")
    if not parts:
        raise InvalidInput(f"{where}: member {name!r} has no file name")
    return "/".join(parts)


def is_skipped(name: str) -> bool:
    return name.startswith("__MACOSX/") or name.rsplit("/", 1)[-1] == ".DS_Store"


def check_not_archive(name: str, stream: io.BufferedReader, where: str) -> None:
    lowered = name.lower()
    if lowered.endswith(NESTED_ARCHIVE_SUFFIXES):
        raise InvalidInput(f"{where}: nested archive {name!r} refused")
    head = stream.peek(512)[:512]
    is_bzip2 = head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] == b"1AY&SY" and len(head) >= 10
    if head.startswith(_MAGIC) or is_bzip2 or _is_tar_header(stream):
        raise InvalidInput(f"{where}: member {name!r} is an archive or compressed file (nested archives are refused)")


def _is_tar_header(stream: io.BufferedReader) -> bool:
    head = stream.peek(265)
    return len(head) >= 263 and head[257:262] == b"ustar" and head[262:263] in (b"\x00", b" ")


def iter_zip(source: BinaryIO, where: str, limits: IngestLimits, spool_dir: Path) -> Iterator[tuple[str, io.BufferedReader]]:
    """Yield (member path, capped stream) for each regular member of a zip archive.

    A non-seekable source is first copied (size-capped by the caller's stream) to a
    temporary file under ``spool_dir``, removed afterwards.
    """
    seekable = getattr(source, "seekable", lambda: False)()
    spool = None
    try:
        if not seekable:
            spool = tempfile.TemporaryFile(dir=spool_dir)
            shutil.copyfileobj(source, spool, BLOCK)
            spool.seek(0)
            source = spool
        try:
            archive = zipfile.ZipFile(source)
            infos = archive.infolist()
        except CORRUPT_DATA_ERRORS + (ValueError,) as error:
            raise InvalidInput(f"{where}: not a readable zip archive ({error})") from None
        with archive:
            if len(infos) > limits.max_archive_members:
                raise InvalidInput(f"{where}: {len(infos)} members, more than max_archive_members={limits.max_archive_members}")
            declared = 0
            for info in infos:
                _check_zip_info(info, where, limits)
                declared += info.file_size
            if declared > limits.max_decompressed_bytes:
                raise InvalidInput(f"{where}: members declare {declared} bytes, more than max_decompressed_bytes={limits.max_decompressed_bytes}")
            decompressed = Budget(limits.max_decompressed_bytes, "max_decompressed_bytes")
            for info in infos:
                if info.is_dir():
                    continue
                name = check_member_name(info.filename, where)
                if is_skipped(name):
                    continue
                member_where = f"{where}!{name}"
                try:
                    raw = archive.open(info)
                except CORRUPT_DATA_ERRORS + (ValueError,) as error:
                    raise InvalidInput(f"{member_where}: cannot read member ({error})") from None
                with raw:
                    stream = capped(raw, [Budget(limits.max_member_bytes, "max_member_bytes"), decompressed], member_where)
                    check_not_archive(name, stream, member_where)
                    yield name, stream
    finally:
        if spool is not None:
            spool.close()


def _check_zip_info(info: zipfile.ZipInfo, where: str, limits: IngestLimits) -> None:
    name = info.filename
    if not name:  # ZipInfo.is_dir() would fail on it
        raise InvalidInput(f"{where}: a member has an empty name")
    if info.flag_bits & 0x1:
        raise InvalidInput(f"{where}: member {name!r} is encrypted")
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)  # 0 when the creator recorded no type: a plain file
    if info.create_system == 3 and file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "symbolic link" if stat.S_ISLNK(mode) else "special file"
        raise InvalidInput(f"{where}: member {name!r} is a {kind}; only regular files are accepted")
    if not info.is_dir():
        check_member_name(name, where)
    if info.file_size > limits.max_member_bytes:
        raise InvalidInput(f"{where}: member {name!r} declares {info.file_size} bytes, more than max_member_bytes={limits.max_member_bytes}")


def iter_tar_gz(source: BinaryIO, where: str, limits: IngestLimits) -> Iterator[tuple[str, io.BufferedReader]]:
    """Yield (member path, capped stream) for each regular member of a gzip-compressed tar,
    reading the archive strictly as a stream (no seeking)."""
    decompressed = Budget(limits.max_decompressed_bytes, "max_decompressed_bytes")
    gz = gzip.GzipFile(fileobj=source, mode="rb")
    plain = capped(gz, [decompressed], where)
    try:
        archive = tarfile.open(fileobj=plain, mode="r|")
    except CORRUPT_DATA_ERRORS as error:
        raise InvalidInput(f"{where}: not a readable tar.gz archive ({error})") from None
    count = 0
    members = iter(archive)
    while True:
        try:
            member = next(members, None)
        except CORRUPT_DATA_ERRORS as error:
            raise InvalidInput(f"{where}: corrupt tar archive after {count} members ({error})") from None
        if member is None:
            return
        count += 1
        if count > limits.max_archive_members:
            raise InvalidInput(f"{where}: more than max_archive_members={limits.max_archive_members} members")
        if member.isdir():
            continue
        name = check_member_name(member.name, where)
        if not member.isreg():
            kind = "link" if (member.issym() or member.islnk()) else "special file"
            raise InvalidInput(f"{where}: member {member.name!r} is a {kind}; only regular files are accepted")
        if member.size > limits.max_member_bytes:
            raise InvalidInput(f"{where}: member {name!r} has {member.size} bytes, more than max_member_bytes={limits.max_member_bytes}")
        if is_skipped(name):
            continue
        member_where = f"{where}!{name}"
        try:
            raw = archive.extractfile(member)
        except CORRUPT_DATA_ERRORS as error:
            raise InvalidInput(f"{member_where}: cannot read member ({error})") from None
        stream = capped(raw, [Budget(limits.max_member_bytes, "max_member_bytes")], member_where)
        check_not_archive(name, stream, member_where)
        yield name, stream
