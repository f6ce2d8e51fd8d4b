"""/v1/models: submit a fit, read results, topics, document mixtures, inference, export."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import MAX_OFFSET, Context, SessionDep, Tenant, error_responses
from app.api.presenters import job_public, model_public
from app.api.schemas import (
    DocumentsPublic,
    InferRequest,
    InferResponse,
    ModelAccepted,
    ModelCreate,
    ModelList,
    ModelPublic,
    PyLDAvisData,
    TopicsPublic,
)
from app.core.tables import ModelRow
from app.core.tenant_queries import list_owned
from app.services import model_service

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("", status_code=202, response_model=ModelAccepted, responses=error_responses(404, 422, 429, 503),
             summary="Fit a topic model on a corpus (a job to poll)")
def create(request: ModelCreate, ctx: Context, tenant: Tenant,
           idempotency_key: Annotated[str | None, Header(max_length=255, description=(
               "Sending the same request again with the same key returns the same job."))] = None) -> JSONResponse:
    job = model_service.submit_fit(ctx, tenant, request, idempotency_key)
    body = ModelAccepted(model_id=job.model_id, job=job_public(job))
    return JSONResponse(body.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("", response_model=ModelList, summary="List models, newest first")
def list_all(session: SessionDep, tenant: Tenant, corpus_id: str | None = None,
             offset: int = Query(0, ge=0, le=MAX_OFFSET), limit: int = Query(50, ge=1, le=500)) -> ModelList:
    models = list_owned(session, ModelRow, tenant, offset=offset, limit=limit, corpus_id=corpus_id)
    return ModelList(models=[model_public(r) for r in models])


@router.get("/{model_id}", response_model=ModelPublic, responses=error_responses(404),
            summary="Parameters, alpha, dropped documents, eigenvalue spectra, timings, quality")
def read(model_id: str, session: SessionDep, tenant: Tenant) -> ModelPublic:
    return model_public(model_service.get_model(session, tenant, model_id))


@router.get("/{model_id}/topics", response_model=TopicsPublic, responses=error_responses(404, 409),
            summary="Each topic's top words with weights, and its alpha")
async def topics(model_id: str, ctx: Context, tenant: Tenant,
                 top_n: int = Query(10, ge=1, le=1000)) -> Response:
    # The most read route: async with one threadpool hop (one query, then the cached body, or
    # the files), and the finished JSON body returned as is (no response validation per request).
    body = await run_in_threadpool(model_service.topics_body, ctx, tenant, model_id, top_n)
    return Response(body, media_type="application/json")


@router.get("/{model_id}/documents", response_model=DocumentsPublic, responses=error_responses(404, 409),
            summary="Topic mixtures of the training documents, by document id")
def documents(model_id: str, ctx: Context, tenant: Tenant,
              offset: int = Query(0, ge=0, le=MAX_OFFSET), limit: int = Query(100, ge=1, le=10_000)) -> DocumentsPublic:
    row = model_service.load_ready_model(ctx, tenant, model_id)
    total, docs = model_service.documents(ctx, row, offset, limit)
    return DocumentsPublic(model_id=model_id, offset=offset, limit=limit, total=total, documents=docs)


@router.post("/{model_id}/infer", response_model=InferResponse, responses=error_responses(404, 409, 413, 422),
             summary="Topic mixtures of new texts (the corpus' tokenizer and vocabulary)")
async def infer(model_id: str, request: InferRequest, ctx: Context, tenant: Tenant) -> InferResponse:
    def work():
        row = model_service.load_ready_model(ctx, tenant, model_id)
        return model_service.infer(ctx, row, request.texts)

    doc_topic, known = await run_in_threadpool(work)
    return InferResponse(model_id=model_id, doc_topic=doc_topic.tolist(), n_known_tokens=known.tolist())


_EXPORT_DOC = """The model in a form other tools read as they are (`format`):

* `zip` (default): `topic-terms.csv` (topic, alpha, label, rank, term_id, term, weight; the
  `top_n` heaviest terms per topic, 100 by default) and `doc-topics.csv`
  (doc_id, topic_0 .. topic_{k-1}). Terms and document ids are JSON string literals, so
  `pandas.read_csv` never reads a term such as `nan` or `null` as missing (`json.loads` each cell).
* `npz`: one compressed NumPy archive: topic_word (k, V), alpha, doc_topic (D, k), vocabulary
  (column order), doc_ids, doc_lengths, term_frequency, labels.
* `pyldavis`: JSON whose fields go straight into `pyLDAvis.prepare(**data)`.
"""
_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get("/{model_id}/export", response_class=Response, description=_EXPORT_DOC,
            responses={200: {"content": {"application/zip": _BINARY, "application/octet-stream": _BINARY},
                             "description": "zip (CSV files) or npz archive"},
                       **error_responses(404, 409)},
            summary="The model as CSV files (zip) or a NumPy archive (npz)")
def export(model_id: str, ctx: Context, tenant: Tenant,
           format: Literal["zip", "npz", "pyldavis"] = Query("zip", description=(
               "zip: CSV files; npz: NumPy arrays; pyldavis: JSON for pyLDAvis.prepare (also, typed, at "
               "GET /v1/models/{model_id}/pyldavis).")),
           top_n: int = Query(100, ge=1, le=10_000_000, description="Terms per topic in topic-terms.csv.")) -> Response:
    row = model_service.load_ready_model(ctx, tenant, model_id)
    data = model_service.export(ctx, row, top_n, format)
    if format == "pyldavis":
        return JSONResponse(data)
    media_type = "application/zip" if format == "zip" else "application/octet-stream"
    return Response(data, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="model-{model_id}.{format}"'})


@router.get("/{model_id}/pyldavis", response_model=PyLDAvisData, responses=error_responses(404, 409),
            summary="Arguments of pyLDAvis.prepare: pyLDAvis.prepare(**response.json())")
def pyldavis(model_id: str, ctx: Context, tenant: Tenant) -> JSONResponse:
    row = model_service.load_ready_model(ctx, tenant, model_id)
    return JSONResponse(model_service.export(ctx, row, None, "pyldavis"))


@router.delete("/{model_id}", status_code=204, responses=error_responses(404),
               summary="Delete a model and its files (cancels its job if still running)")
def delete(model_id: str, ctx: Context, tenant: Tenant) -> Response:
    model_service.delete_model(ctx, tenant, model_id)
    return Response(status_code=204)
