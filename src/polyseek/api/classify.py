"""POST /v1/classify and /v1/train: Jina's classifier, zero-shot and few-shot, on any served
embedding model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from polyseek.api.classify_schemas import (
    ClassificationObject,
    ClassifierInfo,
    ClassifierList,
    ClassifyRequest,
    ClassifyResponse,
    LabelScore,
    TrainRequest,
    TrainResponse,
)
from polyseek.api.schemas import Usage, error_responses
from polyseek.errors import InputTooLarge, InvalidInput
from polyseek.runtime.classify import (
    CLASSIFIER_ID,
    Classification,
    Classifier,
    ClassifierStore,
    ClassifierUnreadable,
    zero_shot,
)
from polyseek.runtime.inputs import ExpandedInputs, expanded_inputs, model_inputs

router = APIRouter(prefix="/v1")

ERRORS = error_responses(400, 413, 429, 503, e404="unknown classifier_id",
                         e409="the classifier's file cannot be read: delete it, train again")


def classifier_store(request: Request) -> ClassifierStore:
    """The classifiers under the server's data directory (`DATA/classifiers/`)."""
    state = request.app.state
    if getattr(state, "classifiers", None) is None:
        state.classifiers = ClassifierStore(Path(state.settings.data_dir) / "classifiers")
    return state.classifiers


def _check_model(given: str | None, trained: str, classifier_id: str) -> None:
    if given is not None and given != trained:
        raise InvalidInput(f"classifier {classifier_id!r} was trained with model {trained!r}, "
                           f"not {given!r}; omit 'model' or give {trained!r}", ("model",))


def _check_count(request: Request, count: int) -> None:
    limit = request.app.state.settings.max_inputs
    if count > limit:
        raise InputTooLarge(f"{count} inputs; at most {limit} per request")


def _objects(result: Classification, expanded: ExpandedInputs) -> list[ClassificationObject]:
    out = []
    for i, row in enumerate(result.probabilities):
        best = int(row.argmax())
        origin = expanded.origins[i] if expanded.has_pages else None
        out.append(ClassificationObject(
            index=i, input_index=origin.index if origin else None,
            page=origin.page if origin else None,
            prediction=result.labels[best], score=float(row[best]),
            predictions=[LabelScore(label=label, score=float(p))
                         for label, p in zip(result.labels, row, strict=True)]))
    return out


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS,
             response_model_exclude_none=True)
async def classify(body: ClassifyRequest, request: Request) -> ClassifyResponse:
    """Zero-shot against `labels`, or with a classifier trained by /v1/train."""
    registry = request.app.state.registry
    settings = request.app.state.settings
    classifier = None
    if body.classifier_id is not None:
        classifier = classifier_store(request).get(body.classifier_id)
        _check_model(body.model, classifier.model, classifier.id)
    model = classifier.model if classifier else body.model
    engine = registry.embedding_engine(model)
    _check_count(request, len(body.inputs()))
    expanded = await expanded_inputs(body.items(), settings.image_limits, model,
                                     engine.capabilities.modalities, settings.max_inputs)
    try:
        if classifier:
            result = await classifier.classify(engine, expanded.inputs, truncate=body.truncate)
        else:
            result = await zero_shot(engine, expanded.inputs, body.labels,
                                     truncate=body.truncate)
    except (InvalidInput, InputTooLarge) as error:
        if expanded.has_pages:  # name the item and page, not the position among pages
            raise expanded.relabel(error) from None
        raise
    return ClassifyResponse(model=model, classifier_id=body.classifier_id,
                            data=_objects(result, expanded),
                            usage=Usage(total_tokens=result.n_tokens,
                                        prompt_tokens=result.n_tokens))


@router.post("/train", response_model=TrainResponse, responses=ERRORS)
async def train(body: TrainRequest, request: Request) -> TrainResponse:
    """A new few-shot classifier from labelled examples, or more examples for one."""
    store = classifier_store(request)
    settings = request.app.state.settings
    model = body.model
    if body.classifier_id is not None:
        classifier = store.get(body.classifier_id)
        _check_model(body.model, classifier.model, classifier.id)
        model = classifier.model
    engine = request.app.state.registry.embedding_engine(model)
    _check_count(request, len(body.input))
    inputs = await model_inputs(body.items(), settings.image_limits, model,
                                engine.capabilities.modalities)
    done = await store.train(engine, model, inputs, body.labels(), body.classifier_id,
                             truncate=body.truncate)
    classifier = done.classifier
    return TrainResponse(classifier_id=classifier.id, model=model, num_samples=done.n_examples,
                         total_samples=len(classifier.targets), labels=classifier.classes,
                         usage=Usage(total_tokens=done.n_tokens, prompt_tokens=done.n_tokens))


def _info(classifier_id: str, found: Classifier | ClassifierUnreadable) -> ClassifierInfo:
    if isinstance(found, ClassifierUnreadable):
        return ClassifierInfo(classifier_id=classifier_id, model=None, labels=[],
                              total_samples=0, created=None, updated=None, error=str(found))
    return ClassifierInfo(classifier_id=found.id, model=found.model, labels=found.classes,
                          total_samples=len(found.targets), created=found.created,
                          updated=found.updated)


@router.get("/classifiers", response_model=ClassifierList, response_model_exclude_none=True)
async def list_classifiers(request: Request) -> ClassifierList:
    """The few-shot classifiers trained on this server, oldest first."""
    found = await asyncio.to_thread(classifier_store(request).list)
    return ClassifierList(data=[_info(*pair) for pair in found])


# checked by the store (its own pattern), stated here for the schema only
ClassifierIdPath = Annotated[str, PathParam(json_schema_extra={"pattern": CLASSIFIER_ID})]


@router.delete("/classifiers/{classifier_id}", status_code=204,
               responses=error_responses(e404="unknown classifier_id"))
async def delete_classifier(classifier_id: ClassifierIdPath, request: Request) -> None:
    """Delete a few-shot classifier."""
    classifier_store(request).delete(classifier_id)
