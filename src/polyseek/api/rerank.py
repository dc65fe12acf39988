"""POST /v1/rerank: Jina's contract; cross-encoders, jina-reranker-m0 and bi-encoders."""

from __future__ import annotations

from fastapi import APIRouter, Request

from polyseek.api.schemas import (
    ERROR_RESPONSES,
    RerankRequest,
    RerankResponse,
    RerankResult,
    Usage,
    rerank_echo,
    to_item,
)
from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.inputs.items import ImageItem, Item
from polyseek.runtime.rerank import rerank

router = APIRouter(prefix="/v1")


def refuse_images(model: str, query: Item, documents: list[Item]) -> None:
    """422 naming the first image, for a model that ranks text only."""
    labelled = [("query", ("query",), query)]
    labelled += [(f"documents[{i}]", ("documents", i), d) for i, d in enumerate(documents)]
    for label, loc, item in labelled:
        if isinstance(item, ImageItem):
            raise InvalidInput(f"model {model!r} is text-only and cannot rank the image in "
                               f"{label}", loc)


@router.post("/rerank", response_model=RerankResponse, responses=ERROR_RESPONSES,
             response_model_exclude_none=True)
async def create_rerank(body: RerankRequest, request: Request) -> RerankResponse:
    engine = request.app.state.registry.rerank_engine(body.model)
    max_inputs = request.app.state.settings.max_inputs
    if len(body.documents) > max_inputs:
        raise InputTooLarge(f"{len(body.documents)} documents; at most {max_inputs} per request")
    query, documents = to_item(body.query), [to_item(d) for d in body.documents]
    if "image" not in engine.capabilities.modalities:
        refuse_images(body.model, query, documents)
    out = await rerank(engine, query, documents)
    order = sorted(range(len(documents)), key=lambda i: out.scores[i], reverse=True)
    results = [
        RerankResult(index=i, relevance_score=out.scores[i],
                     document=rerank_echo(body.documents[i]) if body.return_documents else None)
        for i in order[: body.top_n]
    ]
    return RerankResponse(model=body.model, results=results,
                          usage=Usage(total_tokens=out.n_tokens, prompt_tokens=out.n_tokens))
