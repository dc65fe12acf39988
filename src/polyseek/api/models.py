"""GET /v1/models: OpenAI's list shape, each model with its state and capabilities."""

from __future__ import annotations

from fastapi import APIRouter, Request

from polyseek.api.errors import error_response
from polyseek.api.schemas import ErrorResponse, ModelCard, ModelList
from polyseek.errors import UnknownModel
from polyseek.runtime.registry import ModelEntry, ModelRegistry

router = APIRouter(prefix="/v1")


def model_card(entry: ModelEntry, created: int) -> ModelCard:
    caps = entry.capabilities
    return ModelCard(
        id=entry.spec.name,
        created=created,
        status=entry.state,
        capabilities=caps.as_dict() if caps else None,
    )


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    registry: ModelRegistry = request.app.state.registry
    created = request.app.state.started
    return ModelList(data=[model_card(e, created) for e in registry.entries.values()])


@router.get("/models/{name}", response_model=ModelCard, responses={
    404: {"model": ErrorResponse, "description": "no model of that name is served"}})
async def get_model(name: str, request: Request):
    registry: ModelRegistry = request.app.state.registry
    try:
        entry = registry.entry(name)
    except UnknownModel as exc:  # a missing resource here, as OpenAI answers it
        return error_response(404, str(exc), "model_not_found")
    return model_card(entry, request.app.state.started)
