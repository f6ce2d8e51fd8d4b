"""/v1/corpora: upload (inline or through a worker), list, read, vocabulary, delete."""
from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.deps import MAX_OFFSET, Context, SessionDep, Tenant, error_responses
from app.api.presenters import corpus_public, job_public
from app.api.schemas import CorpusAccepted, CorpusList, CorpusPublic, Vocabulary
from app.artifacts.artifact_files import remove_path
from app.core.api_errors import ApiError
from app.core.broker import INGEST_TASK
from app.core.ids import new_id
from app.core.tables import CorpusRow
from app.core.tenant_queries import list_owned
from app.services.corpus_service import (
    corpus_vocabulary,
    delete_corpus_row,
    get_corpus,
    ingest_staged,
    may_expand,
    parse_options_json,
    parse_upload_request,
    staged_size,
    staging_dir,
    write_manifest,
)
from app.services.job_service import new_job, submit
from gpu.errors import InvalidInput

router = APIRouter(prefix="/v1/corpora", tags=["corpora"])

_SUFFIX_BY_TYPE = {
    "application/json": "json", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl", "text/csv": "csv", "text/tab-separated-values": "tsv",
    "text/plain": "txt", "application/zip": "zip", "application/gzip": "tar.gz",
    "application/x-gzip": "tar.gz", "application/x-tar+gzip": "tar.gz",
}
_UPLOAD_DOC = """Upload documents in any format ingestion accepts, with processing options.

* JSON body: a list of strings or of `{"id", "text"}` objects, or an envelope
  `{"documents": [...], "options": {...}, "name": ...}`.
* JSONL (`application/x-ndjson`), CSV, TSV, plain text (one document per line), zip or
  tar.gz archives as the raw body (`filename` or `format` query parameter helps detection).
* `multipart/form-data` with one or more `file` parts and optional `options` (JSON),
  `format`, `text_column`, `id_column`, `name` fields.

Text options (`TextOptions`) go in the `options` query parameter or form field as JSON.
Small uploads are ingested at once (201 with the corpus and a `Location`); uploads larger
than `INLINE_INGEST_MAX_BYTES`, every archive or compressed upload whatever its size, and
small ones arriving while `INLINE_INGEST_CONCURRENCY` others are being ingested inline, are
ingested by a worker (202 with a job to poll).
"""


_DOCUMENTS_SCHEMA = {"type": "array", "items": {"oneOf": [
    {"type": "string"},
    {"type": "object", "properties": {"id": {"type": "string"}, "text": {"type": "string"},
                                      "metadata": {"type": "object"}}, "required": ["text"]}]}}
# One content type per operation, so that client generators can use each: POST /v1/corpora
# declares its JSON body (it still accepts the raw formats and multipart of _UPLOAD_DOC for
# existing callers), POST /v1/corpora/files declares the multipart form.
_JSON_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["documents"], "properties": {
        "documents": _DOCUMENTS_SCHEMA, "options": {"type": "object", "description": "TextOptions"},
        "name": {"type": "string"}}}}}}}
_FILES_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "options": {"type": "string", "description": "TextOptions as JSON"}, "format": {"type": "string"},
        "text_column": {"type": "string"}, "id_column": {"type": "string"}, "name": {"type": "string"}}}}}}}
_FILES_DOC = """Upload one or more files (`multipart/form-data`: `file` parts, and optional
`options` (TextOptions as JSON), `format`, `text_column`, `id_column`, `name` fields): JSON,
JSONL, CSV, TSV, plain text, zip or tar.gz. Answers like `POST /v1/corpora`."""
_UPLOAD_RESPONSES = {202: {"model": CorpusAccepted, "description": "Ingestion queued: poll the job"},
                     **error_responses(413, 415, 422, 429, 503)}


def _safe_filename(name: str | None, fallback: str) -> str:
    base = Path(name or "").name
    return base if base and re.fullmatch(r"[\w.\- ]{1,200}", base) else fallback


async def _stream_body(request: Request, target: Path) -> None:
    with open(target, "wb") as fh:
        async for chunk in request.stream():
            fh.write(chunk)


def _unwrap_envelope(path: Path) -> dict | None:
    """If the JSON body is an object ``{"documents": [...], ...}`` (a corpus is never a bare
    object), rewrite the file as the list and return the other fields."""
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    if not head.startswith(b"{"):
        return None
    try:
        with open(path, "rb") as fh:
            value = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # not for us to judge: ingestion reports the error with its location
    except RecursionError as exc:
        raise InvalidInput("the JSON body is nested too deeply") from exc
    if not isinstance(value, dict) or "documents" not in value:
        return None
    try:
        path.write_text(json.dumps(value.pop("documents")), encoding="utf-8")
    except RecursionError as exc:
        raise InvalidInput("the JSON body's documents are nested too deeply") from exc
    return value


@router.post("", status_code=201, response_model=CorpusPublic, description=_UPLOAD_DOC, openapi_extra=_JSON_BODY,
             responses=_UPLOAD_RESPONSES, summary="Upload a corpus (JSON documents)")
async def upload(request: Request, response: Response, ctx: Context, tenant: Tenant,
                 format: str | None = Query(None, description="Input format; detected when omitted."),
                 filename: str | None = Query(None, description="Name of the uploaded file (for detection)."),
                 text_column: str | None = Query(None, description="CSV/TSV/JSON text field (default 'text')."),
                 id_column: str | None = Query(None, description="CSV/TSV/JSON id field."),
                 name: str | None = Query(None, description="A label for the corpus."),
                 options: str | None = Query(None, description="TextOptions as a JSON object.")):
    fields = {"format": format, "text_column": text_column, "id_column": id_column, "name": name}
    return await _receive(request, response, ctx, tenant, fields, filename, options)


@router.post("/files", status_code=201, response_model=CorpusPublic, description=_FILES_DOC,
             openapi_extra=_FILES_BODY, responses=_UPLOAD_RESPONSES, summary="Upload a corpus (files, multipart)")
async def upload_files(request: Request, response: Response, ctx: Context, tenant: Tenant):
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       f"POST /v1/corpora/files takes multipart/form-data, got {content_type or 'no content type'!r}; "
                       "send JSON documents to POST /v1/corpora")
    fields = {"format": None, "text_column": None, "id_column": None, "name": None}
    return await _receive(request, response, ctx, tenant, fields, None, None)


async def _receive(request: Request, response: Response, ctx, tenant: str, fields: dict,
                   filename: str | None, options: str | None):
    """Stage the body (raw, JSON envelope or multipart), then ingest it now (201) or queue it (202)."""
    upload_id = new_id()
    folder = staging_dir(ctx, upload_id)
    folder.mkdir(parents=True)
    try:
        option_values = parse_options_json(options, "options query parameter")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            files: list[str] = []
            async with request.form(max_files=10_000) as form:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        with open(folder / str(len(files)), "wb") as fh:
                            while chunk := await value.read(1 << 20):
                                fh.write(chunk)
                        files.append(_safe_filename(value.filename, f"upload-{len(files)}"))
                    elif key == "options":
                        option_values = parse_options_json(value, "options form field")
                    elif key in fields and value != "":
                        fields[key] = value
            if not files:
                raise InvalidInput("multipart upload has no file part")
        else:
            suffix = _SUFFIX_BY_TYPE.get(content_type)
            default_name = f"upload.{suffix}" if suffix else "upload"
            files = [_safe_filename(filename, default_name)]
            await _stream_body(request, folder / "0")
            if (folder / "0").stat().st_size == 0:
                raise InvalidInput("the request body is empty: send the documents")
            if content_type == "application/json":
                envelope = await run_in_threadpool(_unwrap_envelope, folder / "0")
                if envelope is not None:
                    option_values = envelope.pop("options", option_values)
                    fields.update(envelope)
        manifest = parse_upload_request({**fields, "options": option_values})
        write_manifest(folder, files, manifest)
        corpus_id = new_id()
        # Inline only when small, not compressed, and an inline slot is free (the API's
        # memory stays bounded under concurrent uploads); otherwise a worker ingests it.
        if (staged_size(folder) <= ctx.settings.inline_ingest_max_bytes and not may_expand(folder)
                and ctx.inline_ingest_slots.acquire(blocking=False)):
            try:
                row = await run_in_threadpool(ingest_staged, ctx, upload_id, corpus_id, tenant)
            finally:
                ctx.inline_ingest_slots.release()
            response.headers["Location"] = f"/v1/corpora/{row.id}"
            return corpus_public(row)
    except BaseException:
        remove_path(folder)
        raise
    job = new_job(ctx, tenant_id=tenant, kind="ingest", queue=ctx.settings.cpu_queue,
                  params={"upload_id": upload_id, "corpus_id": corpus_id}, corpus_id=corpus_id)
    try:
        job = await run_in_threadpool(submit, ctx, job, INGEST_TASK)
    except BaseException:
        remove_path(folder)
        raise
    body = CorpusAccepted(corpus_id=corpus_id, job=job_public(job))
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("", response_model=CorpusList, summary="List corpora, newest first")
def list_all(session: SessionDep, tenant: Tenant, offset: int = Query(0, ge=0, le=MAX_OFFSET),
             limit: int = Query(50, ge=1, le=500)) -> CorpusList:
    corpora = list_owned(session, CorpusRow, tenant, offset=offset, limit=limit)
    return CorpusList(corpora=[corpus_public(r) for r in corpora])


@router.get("/{corpus_id}", response_model=CorpusPublic, responses=error_responses(404),
            summary="A corpus' statistics, vocabulary size and options")
def read(corpus_id: str, session: SessionDep, tenant: Tenant) -> CorpusPublic:
    return corpus_public(get_corpus(session, tenant, corpus_id))


@router.get("/{corpus_id}/vocabulary", response_model=Vocabulary, responses=error_responses(404),
            summary="The corpus vocabulary (term index order), paged")
def vocabulary(corpus_id: str, ctx: Context, session: SessionDep, tenant: Tenant,
               offset: int = Query(0, ge=0, le=MAX_OFFSET), limit: int = Query(1000, ge=1, le=100_000)) -> Vocabulary:
    row = get_corpus(session, tenant, corpus_id)
    words = corpus_vocabulary(ctx, row)
    return Vocabulary(corpus_id=corpus_id, offset=offset, total=len(words), words=words[offset : offset + limit])


@router.delete("/{corpus_id}", status_code=204, responses=error_responses(404, 409),
               summary="Delete a corpus and its files (409 while models use it)")
def delete(corpus_id: str, ctx: Context, tenant: Tenant) -> Response:
    delete_corpus_row(ctx, tenant, corpus_id)
    return Response(status_code=204)
