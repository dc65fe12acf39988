"""POST /v1/rerank: Jina's contract; cross-encoders, jina-reranker-m0 and bi-encoders."""

from __future__ import annotations

from fastapi import APIRouter, Request

from polyseek.api.schemas import (
    MODEL_ERRORS,
    RerankRequest,
    RerankResponse,
    RerankResult,
    Usage,
    rerank_echo,
    to_item,
)
from polyseek.errors import InputTooLarge
from polyseek.runtime.inputs import model_inputs
from polyseek.runtime.rerank import rerank

router = APIRouter(prefix="/v1")


@router.post("/rerank", response_model=RerankResponse, responses=MODEL_ERRORS,
             response_model_exclude_none=True)
async def create_rerank(body: RerankRequest, request: Request) -> RerankResponse:
    engine = request.app.state.registry.rerank_engine(body.model)
    settings = request.app.state.settings
    if len(body.documents) > settings.max_inputs:
        raise InputTooLarge(f"{len(body.documents)} documents; at most {settings.max_inputs} "
                            f"per request")
    items = [to_item(body.query), *(to_item(d) for d in body.documents)]
    locs = [("query",), *(("documents", i) for i in range(len(body.documents)))]
    query, *documents = await model_inputs(items, settings.image_limits, body.model,
                                           engine.capabilities.modalities, locs)
    out = await rerank(engine, query, documents)
    order = sorted(range(len(documents)), key=lambda i: out.scores[i], reverse=True)
    results = [
        RerankResult(index=i, relevance_score=out.scores[i],
                     document=rerank_echo(body.documents[i]) if body.return_documents else None)
        for i in order[: body.top_n]
    ]
    return RerankResponse(model=body.model, results=results,
                          usage=Usage(total_tokens=out.n_tokens, prompt_tokens=out.n_tokens))
