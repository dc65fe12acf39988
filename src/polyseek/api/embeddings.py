"""POST /v1/embeddings: Jina's contract, and OpenAI's request form."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from polyseek.api.schemas import MODEL_ERRORS, EmbeddingsRequest, EmbeddingsResponse
from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.runtime.encoding import encode_embedding
from polyseek.runtime.inputs import ExpandedInputs, expanded_inputs
from polyseek.runtime.registry import ModelRegistry

router = APIRouter(prefix="/v1")


class NumpyJSONResponse(Response):
    """JSON rendered by orjson, numpy arrays included (no per-float Python objects)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


@router.post("/embeddings", response_model=EmbeddingsResponse, responses=MODEL_ERRORS)
async def create_embeddings(body: EmbeddingsRequest, request: Request) -> Response:
    registry: ModelRegistry = request.app.state.registry
    engine = registry.embedding_engine(body.model)
    settings = request.app.state.settings
    if len(body.inputs()) > settings.max_inputs:
        raise InputTooLarge(f"{len(body.inputs())} inputs; at most {settings.max_inputs} per "
                            f"request")
    expanded = await expanded_inputs(body.items(), settings.image_limits, body.model,
                                     engine.capabilities.modalities, settings.max_inputs)
    try:
        result = await engine.embed(
            expanded.inputs,
            task=body.task,
            dimensions=body.dimensions,
            normalized=body.normalized,
            truncate=body.truncate,
            late_chunking=body.late_chunking,
            multivector=body.return_multivector,
        )
    except (InvalidInput, InputTooLarge) as error:
        if expanded.has_pages:  # name the item and page, not the position among pages
            raise expanded.relabel(error) from None
        raise
    key = "embeddings" if body.return_multivector else "embedding"
    data = [
        {"object": "embedding", "index": i, **_origin(expanded, i),
         key: encode_embedding(vector, body.embedding_type)}
        for i, vector in enumerate(result.vectors)
    ]
    usage = {"total_tokens": result.n_tokens, "prompt_tokens": result.n_tokens}
    return NumpyJSONResponse({"model": body.model, "object": "list", "data": data,
                              "usage": usage})


def _origin(expanded: ExpandedInputs, i: int) -> dict[str, int]:
    """`input_index` (and `page`, for a PDF page) of result i when the request has PDFs."""
    if not expanded.has_pages:
        return {}
    origin = expanded.origins[i]
    return {"input_index": origin.index} | ({"page": origin.page} if origin.page else {})
