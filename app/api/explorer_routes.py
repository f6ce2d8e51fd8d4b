"""/v1/models/{id}/...: what the explorer needs beyond the basic model routes: the
intertopic map, terms by relevance, a topic's top documents, a term's topics, topic labels
and the comparison of two models. Thin: the work is in app.services.explorer_service."""
from __future__ import annotations

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from app.api.deps import Context, SessionDep, Tenant, error_responses
from app.api.explorer_schemas import (
    LabelUpdate,
    ModelComparison,
    TermTopics,
    TopicDocuments,
    TopicLabels,
    TopicMap,
    TopicTerms,
)
from app.core.context import ServiceContext
from app.core.tables import ModelRow
from app.services import explorer_service
from app.services.model_service import ready_model

router = APIRouter(prefix="/v1/models", tags=["explorer"])

TopicIndex = Path(ge=0, le=100_000, description="Topic index, 0..n_topics-1.")


def _ready(ctx: ServiceContext, tenant: str, model_id: str) -> ModelRow:
    with ctx.sessions() as session:
        return ready_model(session, tenant, model_id)


@router.get("/{model_id}/map", response_model=TopicMap, responses=error_responses(404, 409),
            summary="Intertopic distance map: MDS of Jensen-Shannon distances, token shares, alpha, coherence")
async def topic_map(model_id: str, ctx: Context, tenant: Tenant) -> TopicMap:
    def work():
        return explorer_service.topic_map(ctx, _ready(ctx, tenant, model_id))

    return TopicMap(model_id=model_id, topics=await run_in_threadpool(work))


@router.get("/{model_id}/topics/{topic}/terms", response_model=TopicTerms, responses=error_responses(404, 409, 422),
            summary="A topic's terms ranked by relevance (lambda=1: by probability; 0: by lift)")
async def topic_terms(model_id: str, ctx: Context, tenant: Tenant, topic: int = TopicIndex,
                      relevance_lambda: float = Query(0.6, ge=0.0, le=1.0, alias="lambda"),
                      top_n: int = Query(30, ge=1, le=1000)) -> TopicTerms:
    def work():
        return explorer_service.topic_terms(ctx, _ready(ctx, tenant, model_id), topic, relevance_lambda, top_n)

    return TopicTerms(model_id=model_id, topic=topic, relevance_lambda=relevance_lambda, terms=await run_in_threadpool(work))


@router.get("/{model_id}/topics/{topic}/documents", response_model=TopicDocuments,
            responses=error_responses(404, 409, 422), summary="The training documents that weigh most on a topic")
async def topic_documents(model_id: str, ctx: Context, tenant: Tenant, topic: int = TopicIndex,
                          limit: int = Query(10, ge=1, le=1000)) -> TopicDocuments:
    def work():
        return explorer_service.topic_documents(ctx, _ready(ctx, tenant, model_id), topic, limit)

    return TopicDocuments(model_id=model_id, topic=topic, documents=await run_in_threadpool(work))


@router.get("/{model_id}/terms/{term}", response_model=TermTopics, responses=error_responses(404, 409, 422),
            summary="Which topics use a term, and how much")
async def term_topics(model_id: str, ctx: Context, tenant: Tenant,
                      term: str = Path(min_length=1, max_length=200)) -> TermTopics:
    def work():
        return explorer_service.term_topics(ctx, _ready(ctx, tenant, model_id), term)

    found, topics = await run_in_threadpool(work)
    return TermTopics(model_id=model_id, term=found, topics=topics)


@router.put("/{model_id}/topics/{topic}/label", response_model=TopicLabels, responses=error_responses(404, 409, 422),
            summary="Name a topic (null or blank removes the name); shown by the explorer and in the export")
def put_label(model_id: str, body: LabelUpdate, ctx: Context, tenant: Tenant, topic: int = TopicIndex) -> TopicLabels:
    labels = explorer_service.set_label(ctx, tenant, model_id, topic, body.label)
    return TopicLabels(model_id=model_id, topic_labels={str(t): label for t, label in labels.items()})


@router.get("/{model_id}/compare/{other_id}", response_model=ModelComparison, responses=error_responses(404, 409, 422),
            summary="Match this model's topics one to one with another model's (same corpus)")
def compare(model_id: str, other_id: str, ctx: Context, session: SessionDep, tenant: Tenant) -> ModelComparison:
    matches = explorer_service.compare(ctx, session, tenant, model_id, other_id)
    return ModelComparison(model_a=model_id, model_b=other_id, matches=matches)
