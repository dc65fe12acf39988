"""GET /v1/models: OpenAI's list shape, each model with its state and capabilities."""

from __future__ import annotations

from fastapi import APIRouter, Request

from polyseek.api.schemas import ModelCard, ModelList
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


@router.get("/models/{name}", response_model=ModelCard)
async def get_model(name: str, request: Request) -> ModelCard:
    registry: ModelRegistry = request.app.state.registry
    return model_card(registry.entry(name), request.app.state.started)
