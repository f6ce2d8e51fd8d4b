"""Corpora: staging uploads, ingesting them (inline or in a worker), reading, deleting.

An upload is first streamed to ``DATA_DIR/uploads/<upload_id>/`` with a manifest of what
the client asked for; both the API (small uploads) and a worker (large ones) then call
:func:`ingest_staged`, which writes the corpus artifact atomically and records its row.
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.artifacts.artifact_files import remove_path
from app.core.api_errors import ApiError
from app.core.context import ServiceContext
from app.core.db import transaction
from app.core.limits import ingest_limits
from app.core.tables import FINAL_JOB_STATES, CorpusRow, JobRow, ModelRow
from app.core.tenant_queries import get_owned
from app.ingest import FORMATS, TextOptions, delete_corpus, ingest
from app.ingest.options import upload_text_options
from gpu.errors import InvalidInput

MANIFEST = "manifest.json"  # the UploadRequest
FILES = "files.json"  # original names of the staged files 0, 1, ...


class UploadRequest(BaseModel):
    """What the client asked for with an upload (query, form fields or JSON envelope)."""

    model_config = ConfigDict(extra="forbid")

    format: str | None = None
    text_column: str = Field(default="text", min_length=1, max_length=255)
    id_column: str | None = Field(default=None, min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    options: TextOptions = Field(default_factory=lambda: upload_text_options(None), description=(
        "Text options; unset ones take UPLOAD_DEFAULTS (min_df=5, max_df=0.5), then TextOptions' defaults."))

    @field_validator("options", mode="before")
    @classmethod
    def _upload_defaults(cls, value):
        return upload_text_options(value) if isinstance(value, dict) or value is None else value

    @field_validator("name", "text_column", "id_column")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in FORMATS:
            raise ValueError(f"format={value!r} is not supported; use one of {', '.join(FORMATS)}")
        return value


def parse_upload_request(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate the upload parameters (unset ones take defaults); InvalidInput names the bad one."""
    try:
        request = UploadRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InvalidInput(str(exc)) from exc
    return request.model_dump(mode="json")


def parse_options_json(raw: str | None, where: str) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInput(f"{where} is nested too deeply") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object")
    return value


def staging_dir(ctx: ServiceContext, upload_id: str) -> Path:
    return ctx.settings.uploads_dir.resolve() / upload_id


def write_manifest(folder: Path, files: list[str], request: dict[str, Any]) -> None:
    (folder / FILES).write_text(json.dumps(files), encoding="utf-8")
    (folder / MANIFEST).write_text(json.dumps(request), encoding="utf-8")


def staged_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name not in (MANIFEST, FILES))


# Heads of compressed data: zip (and npz), gzip, xz, 7z, rar, zstd, bzip2.
_COMPRESSED_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c",
                     b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd", b"BZh")
_ARCHIVE_FORMATS = {"zip", "tar.gz", "npz"}


def may_expand(folder: Path) -> bool:
    """True when a staged upload is an archive or compressed (by its requested format or by
    any staged file's first bytes, whatever its name says): what it expands to is unknown
    until it is read, so it is ingested by a worker, never in the API process."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") in _ARCHIVE_FORMATS:
        return True
    for path in folder.iterdir():
        if path.name in (MANIFEST, FILES):
            continue
        with open(path, "rb") as fh:
            head = fh.read(512)
        if head.startswith(_COMPRESSED_MAGIC) or head[257:262] == b"ustar":
            return True
    return False


def ingest_staged(ctx: ServiceContext, upload_id: str, corpus_id: str, tenant_id: str,
                  progress=None) -> CorpusRow:
    """Ingest a staged upload into corpus ``corpus_id`` and record its row.

    Idempotent: if the row exists already (an earlier attempt got that far) it is returned;
    a folder without a row (an attempt that died in between) is replaced. ValueError for
    bad input; the staged upload is removed once the outcome is final.
    """
    with ctx.sessions() as session:
        existing = session.get(CorpusRow, corpus_id)
    if existing is not None:
        remove_path(staging_dir(ctx, upload_id))
        return existing
    folder = staging_dir(ctx, upload_id)
    if not (folder / MANIFEST).is_file():
        raise InvalidInput(f"upload {upload_id!r} is missing (already processed or removed)")
    manifest = UploadRequest.model_validate_json((folder / MANIFEST).read_text(encoding="utf-8"))
    with open(folder / FILES, encoding="utf-8") as fh:
        files = json.load(fh)
    dest = ctx.layout.corpus_dir(corpus_id)
    remove_path(dest)
    try:
        with ExitStack() as stack:
            sources = [(name, stack.enter_context(open(folder / f"{i}", "rb"))) for i, name in enumerate(files)]
            info = ingest(
                sources, dest, tmp_root=ctx.layout.tmp, fmt=manifest.format, options=manifest.options,
                limits=ingest_limits(ctx.settings), text_column=manifest.text_column, id_column=manifest.id_column,
                progress=progress,
            )
    except InvalidInput:
        remove_path(folder)
        raise
    stats = dict(info.stats)
    options = info.options
    stats["text_pruning"] = {"stop_words": options.stop_words, "n_extra_stop_words": len(options.extra_stop_words),
                             "min_df": options.min_df, "max_df": options.max_df, "max_vocab": options.max_vocab}
    row = CorpusRow(
        id=corpus_id, tenant_id=tenant_id, name=manifest.name, checksum=info.checksum,
        n_documents=int(stats.get("n_documents", 0)), vocabulary_size=int(stats.get("vocabulary_size", 0)),
        stats=stats, options=info.options.model_dump(mode="json"),
    )
    try:
        with transaction(ctx.sessions) as session:
            session.add(row)
    except BaseException:
        delete_corpus(dest)
        raise
    remove_path(folder)
    return row


def get_corpus(session: Session, tenant_id: str, corpus_id: str) -> CorpusRow:
    return get_owned(session, CorpusRow, tenant_id, corpus_id, "corpus")


def corpus_vocabulary(ctx: ServiceContext, row: CorpusRow) -> list[str]:
    return ctx.corpus(row.id, row.checksum).vocabulary


def delete_corpus_row(ctx: ServiceContext, tenant_id: str, corpus_id: str) -> None:
    """Delete a corpus with no models; 409 while models or ingestion jobs still refer to it."""
    try:
        with transaction(ctx.sessions) as session:
            row = get_corpus(session, tenant_id, corpus_id)
            n_models = session.scalar(select(func.count()).select_from(ModelRow)
                                      .where(ModelRow.corpus_id == corpus_id))
            if n_models:
                raise ApiError(409, "corpus_in_use",
                               f"corpus {corpus_id!r} has {n_models} model(s); delete them first")
            session.delete(row)
    except IntegrityError as exc:  # a model was submitted on it meanwhile (the foreign key holds)
        raise ApiError(409, "corpus_in_use", f"corpus {corpus_id!r} has a model now; delete it first") from exc
    delete_corpus(ctx.layout.corpus_dir(corpus_id))


def sweep_stale_uploads(ctx: ServiceContext, older_than_s: float) -> int:
    """Remove staged uploads older than ``older_than_s`` that no pending ingestion job needs
    (left by a request or worker that died); returns how many were removed."""
    with ctx.sessions() as session:
        pending = session.scalars(select(JobRow.params).where(JobRow.kind == "ingest",
                                                              JobRow.state.not_in(FINAL_JOB_STATES)))
        needed = {params.get("upload_id") for params in pending}
    root = ctx.settings.uploads_dir.resolve()
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for folder in root.iterdir():
        if folder.name not in needed and _last_written(folder) <= cutoff:
            remove_path(folder)
            removed += 1
    return removed


def _last_written(folder: Path) -> float:
    """The newest mtime of a staged upload: an upload still streaming into a file counts as fresh."""
    try:
        return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())])
    except FileNotFoundError:  # removed meanwhile (its ingestion finished)
        return float("inf")
