"""Request and response schemas: Jina's /v1/embeddings, which OpenAI's form is a subset of."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from polyseek.inputs.items import (
    ImageItem,
    Item,
    PdfItem,
    TextItem,
    is_image_string,
    is_pdf_string,
)
from polyseek.runtime.encoding import EmbeddingType


def encodable(text: str) -> str:
    """`text` if it is valid Unicode (a JSON escape can carry a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode ({exc.reason})") from None
    return text


def integral(value: Any) -> Any:
    """A float with no fraction as the int it is: JSON Schema's `integer` takes 3.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# every text a request carries to a model (string constraints go before the validator, or
# the JSON schema loses them)
Text = Annotated[str, AfterValidator(encodable)]
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(encodable)]
ImageRef = Annotated[str, Field(min_length=1)]
# integer bounds go before the validator too (after it, the schema says "ge", not "minimum")
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(integral)]


class RequestModel(BaseModel):
    """A request body, validated as its JSON schema reads: no coercion of "1" to 1 or of 0 to
    false (strict), integral numbers are integers, no NaN or infinities."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class _Strict(RequestModel):
    model_config = ConfigDict(extra="forbid")


class TextInput(_Strict):
    text: NonEmptyText


class ImageInput(_Strict):
    image: ImageRef = Field(description="http(s) URL, data URI or base64 image bytes; a data "
                            "URI's image type must match the bytes")


class UrlInput(_Strict):
    url: ImageRef = Field(description="http(s) URL of an image")


class BytesInput(_Strict):
    bytes: ImageRef = Field(description="base64 image bytes")


class PdfInput(_Strict):
    pdf: ImageRef = Field(description="http(s) URL, data URI (data:application/pdf;base64,...) "
                          "or base64 PDF bytes: one result per page, each with `page` and "
                          "`input_index`; an image-reading model embeds each page rendered, a "
                          "text-only model its text layer (pages without text are left out)")


InputObject = TextInput | ImageInput | UrlInput | BytesInput | PdfInput


def to_item(value: str | InputObject) -> Item:
    if isinstance(value, str):
        if is_pdf_string(value):
            return PdfItem(value)
        return ImageItem(value) if is_image_string(value) else TextItem(value)
    if isinstance(value, TextInput):
        return TextItem(value.text)
    if isinstance(value, PdfInput):
        return PdfItem(value.pdf)
    if isinstance(value, ImageInput):
        return ImageItem(value.image)
    if isinstance(value, UrlInput):
        return ImageItem(value.url)
    return ImageItem(value.bytes)


def _check_text(text: Any, index: int) -> None:
    if not isinstance(text, str):
        return
    if not text:
        raise ValueError(f"input[{index}] is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"input[{index}] is not valid Unicode ({exc.reason})") from None


InputValue = NonEmptyText | InputObject


class EmbeddingsRequest(RequestModel):
    """Jina's embeddings request; OpenAI's (input, model, dimensions, encoding_format) fits it."""

    model: str = Field(description="a served embedding model (GET /v1/models)")
    # a single string or object is taken as a list of one (the before-validator below)
    input: Annotated[list[InputValue], Field(min_length=1)] | InputValue = Field(
        description="a string, an object, or a non-empty list of strings and objects; "
        "strings that are data:image/... URIs are images, data:application/pdf URIs PDFs"
    )
    task: str | None = Field(None, description="one of the model's tasks (GET /v1/models)")
    dimensions: PositiveInt | None = Field(None, description="Matryoshka truncation, at most "
                                   "the model's dimension")
    embedding_type: EmbeddingType | Annotated[list[EmbeddingType], Field(min_length=1)] = Field(
        "float",
        validation_alias=AliasChoices("embedding_type", "encoding_type", "encoding_format"),
        description="also accepted as encoding_type or encoding_format; a list returns each",
    )
    normalized: bool = Field(True, description="L2-normalise (after truncation)")
    truncate: bool = Field(False, description="cut inputs over the context instead of failing")
    late_chunking: bool = False
    return_multivector: bool = False
    user: str | None = Field(None, description="accepted for OpenAI compatibility, unused")

    @field_validator("input", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            value = [value]
        if isinstance(value, list):
            if not value:
                raise ValueError("input must not be empty")
            if any(isinstance(v, int | list) for v in value):
                raise ValueError("token-id input is not supported; send the text itself")
            for i, v in enumerate(value):
                _check_text(v.get("text") if isinstance(v, dict) else v, i)
        return value

    @field_validator("embedding_type", mode="before")
    @classmethod
    def _nonempty_types(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("embedding_type list must not be empty")
        return value

    def inputs(self) -> list[str | InputObject]:
        """`input` as a list (a single value was made a list of one when validated)."""
        return self.input if isinstance(self.input, list) else [self.input]

    def items(self) -> list[Item]:
        return [to_item(v) for v in self.inputs()]


EncodedVector = list[float] | list[int] | str


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(description="the result's position in `data`; without PDF inputs, "
                       "also the position of its input")
    input_index: int | None = Field(None, description="the position in `input` of the item "
                                    "this result came from; present on every result when "
                                    "the request has a PDF")
    page: int | None = Field(None, ge=1, description="the page (1-based) of a PDF input "
                             "this result embeds; only on results from PDFs")
    embedding: EncodedVector | dict[str, EncodedVector] | None = None
    embeddings: list[EncodedVector] | dict[str, list[EncodedVector]] | None = Field(
        None, description="per-token vectors, when return_multivector is set"
    )


class Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class EmbeddingsResponse(BaseModel):
    model: str
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    usage: Usage


class ModelCard(BaseModel):
    """OpenAI's model object plus the declared capabilities."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "polyseek"
    status: Literal["loading", "ready", "failed"]
    capabilities: dict[str, Any] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    code: int


class ErrorResponse(BaseModel):
    error: ErrorBody


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                               "schema": {"type": "string"}}}
# what each error status means on most routes; a route can say it more precisely
_ERRORS: dict[int, str] = {
    400: "unknown model, or a model that does not serve this route",
    401: "missing or invalid API key",
    404: "no such resource",
    409: "the embedded store is in use by another process",
    413: "too many inputs, an input over the model's context, an image over the limits, or "
         "a body over --max-body-mb",
    429: "queue full; retry after the Retry-After seconds",
    503: "model loading or failed to load, or the store cannot be opened",
}


def error_responses(*statuses: int, **described: str) -> dict[int | str, dict]:
    """OpenAPI `responses` for the error statuses a route returns, in the error shape; a
    keyword `e404="..."` describes that status for the route. 422 (the validation shape) is
    added by FastAPI to every route that takes parameters or a body."""
    wanted = {*statuses, *(int(k[1:]) for k in described)}
    out: dict[int | str, dict] = {}
    for status in sorted(wanted):
        out[status] = {"model": ErrorResponse,
                       "description": described.get(f"e{status}", _ERRORS[status])}
        if status in (429, 503):
            out[status]["headers"] = RETRY_AFTER
    return out


# the statuses every model route can return: unknown model, too large, overloaded, loading
MODEL_ERRORS = error_responses(400, 413, 429, 503)
UNAUTHORIZED = error_responses(401)


RerankItem = NonEmptyText | TextInput | ImageInput


class RerankRequest(RequestModel):
    """Jina's rerank request."""

    model: str = Field(description="a served model that can rerank (GET /v1/models)")
    query: RerankItem
    documents: list[RerankItem] = Field(min_length=1)
    top_n: PositiveInt | None = Field(None, description="null: all documents")
    return_documents: bool = True

    @field_validator("query", mode="before")
    @classmethod
    def _query_not_empty(cls, value: Any) -> Any:
        if value == "" or (isinstance(value, dict) and value.get("text") == ""):
            raise ValueError("query must not be empty")
        return value

    @field_validator("documents", mode="before")
    @classmethod
    def _documents_not_empty(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, v in enumerate(value):
                _check_text(v.get("text") if isinstance(v, dict) else v, i)
        return value


def rerank_echo(value: RerankItem) -> dict[str, str]:
    """The document as Jina echoes it: {"text": ...} or {"image": ...}."""
    if isinstance(value, ImageInput):
        return {"image": value.image}
    return {"text": value if isinstance(value, str) else value.text}


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, str] | None = None


class RerankResponse(BaseModel):
    model: str
    usage: Usage
    results: list[RerankResult]
