"""Request and response schemas of Jina's classifier: /v1/classify (zero-shot with `labels`,
few-shot with `classifier_id`) and /v1/train."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from polyseek.api.schemas import (
    ImageRef,
    InputObject,
    InputValue,
    NonEmptyText,
    RequestModel,
    Usage,
    _check_text,
    integral,
    to_item,
)
from polyseek.inputs.items import ImageItem, Item, TextItem
from polyseek.runtime.classify import CLASSIFIER_ID

MAX_LABELS = 256  # zero-shot labels per request, as Jina's classifier allows

ClassifierId = Annotated[str, Field(pattern=CLASSIFIER_ID, description="as /v1/train returned it")]
Iterations = Annotated[int, Field(ge=1, le=1000), BeforeValidator(integral)]
Label = Annotated[NonEmptyText, Field(description="a class name")]


def _unique(labels: list[str]) -> list[str]:
    seen = set()
    for i, label in enumerate(labels):
        if label in seen:
            raise ValueError(f"labels[{i}] {label!r} is given twice; labels must be unique")
        seen.add(label)
    return labels


Labels = Annotated[
    list[NonEmptyText],
    Field(min_length=2, max_length=MAX_LABELS, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique),
]


def _as_input_list(value: Any) -> Any:
    """A single string or object is a list of one; texts must be non-empty Unicode."""
    if isinstance(value, str | dict):
        value = [value]
    if isinstance(value, list):
        if not value:
            raise ValueError("input must not be empty")
        for i, v in enumerate(value):
            _check_text(v.get("text") if isinstance(v, dict) else v, i)
    return value


class ClassifyRequest(RequestModel):
    """Zero-shot with `model` and `labels`, or few-shot with `classifier_id` (not both)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["labels", "model"], "not": {"required": ["classifier_id"]}},
        {"required": ["classifier_id"], "not": {"required": ["labels"]}},
    ]})

    model: str = Field(None, description="a served embedding model (GET /v1/models); with "
                       "classifier_id it may be omitted, and if given must be the classifier's")
    classifier_id: ClassifierId = Field(None, description="a few-shot classifier from "
                                        "/v1/train, instead of labels")
    input: Annotated[list[InputValue], Field(min_length=1)] | InputValue = Field(
        description="what to classify: the item forms of /v1/embeddings (texts, images, "
        "PDFs: one result per page)")
    labels: Labels = Field(None, description="zero-shot: the class names (at least two, "
                           "unique), instead of classifier_id")
    truncate: bool = Field(False, description="cut inputs over the model's context instead "
                           "of failing")

    _as_list = field_validator("input", mode="before")(_as_input_list)

    @model_validator(mode="after")
    def _one_way(self) -> ClassifyRequest:
        if (self.labels is None) == (self.classifier_id is None):
            raise ValueError("give either labels (zero-shot) or classifier_id (few-shot)")
        if self.labels is not None and self.model is None:
            raise ValueError("zero-shot classification (labels) needs a model")
        return self

    def inputs(self) -> list[str | InputObject]:
        return self.input if isinstance(self.input, list) else [self.input]

    def items(self) -> list[Item]:
        return [to_item(v) for v in self.inputs()]


class LabelScore(BaseModel):
    label: str
    score: float


class ClassificationObject(BaseModel):
    object: Literal["classification"] = "classification"
    index: int = Field(description="the result's position in `data`; without PDF inputs, "
                       "also the position of its input")
    input_index: int | None = Field(None, description="the position in `input` of the item "
                                    "this result came from; on every result when the request "
                                    "has a PDF")
    page: int | None = Field(None, ge=1, description="the page (1-based) of a PDF input this "
                             "result classifies; only on results from PDFs")
    prediction: str = Field(description="the label of the highest score")
    score: float = Field(description="the prediction's score")
    predictions: list[LabelScore] = Field(description="every label's score, in label order; "
                                          "they sum to 1")


class ClassifyResponse(BaseModel):
    model: str
    classifier_id: str | None = None
    data: list[ClassificationObject]
    usage: Usage


class _Example(RequestModel):
    model_config = ConfigDict(extra="forbid")


class TextExample(_Example):
    text: NonEmptyText
    label: Label


class ImageExample(_Example):
    image: ImageRef = Field(description="http(s) URL, data URI or base64 image bytes")
    label: Label


class TrainRequest(RequestModel):
    """New classifier: `model` and examples; more training: `classifier_id` and examples."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["model"]}, {"required": ["classifier_id"]}]})

    model: str = Field(None, description="a served embedding model for a new classifier; "
                       "with classifier_id it may be omitted, and if given must be the "
                       "classifier's")
    classifier_id: ClassifierId = Field(None, description="train this classifier further")
    input: list[TextExample | ImageExample] = Field(
        min_length=1, description="labelled examples; a classifier needs at least two labels")
    truncate: bool = Field(False, description="cut examples over the model's context instead "
                           "of failing")
    num_iters: Iterations | None = Field(None, description="accepted for Jina "
                                         "compatibility; the head is always fitted to "
                                         "convergence on every example")
    access: Literal["public", "private"] | None = Field(
        None, description="accepted for Jina compatibility; every classifier is reachable "
        "by whoever can reach this server")

    @model_validator(mode="after")
    def _model_or_classifier(self) -> TrainRequest:
        if self.model is None and self.classifier_id is None:
            raise ValueError("give a model (a new classifier) or a classifier_id (more "
                             "training)")
        return self

    def items(self) -> list[Item]:
        return [TextItem(e.text) if isinstance(e, TextExample) else ImageItem(e.image)
                for e in self.input]

    def labels(self) -> list[str]:
        return [e.label for e in self.input]


class TrainResponse(BaseModel):
    classifier_id: str
    model: str
    num_samples: int = Field(description="examples in this request")
    total_samples: int = Field(description="examples the classifier has been trained on")
    labels: list[str] = Field(description="every label the classifier knows, first seen first")
    usage: Usage


class ClassifierInfo(BaseModel):
    object: Literal["classifier"] = "classifier"
    classifier_id: str
    model: str | None = Field(description="null when the file cannot be read")
    labels: list[str] = Field(description="every label it knows, first seen first")
    total_samples: int = Field(description="examples it has been trained on")
    created: int | None = Field(description="Unix seconds")
    updated: int | None = Field(description="Unix seconds of the last training")
    error: str | None = Field(None, description="why the classifier's file cannot be read; "
                              "delete it and train again")


class ClassifierList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ClassifierInfo]
