"""Request and response schemas: Jina's /v1/embeddings, which OpenAI's form is a subset of."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, field_validator

from polyseek.inputs.items import ImageItem, Item, TextItem, is_image_string
from polyseek.runtime.encoding import EmbeddingType


def _encodable(text: str) -> str:
    """`text` if it is valid Unicode (a JSON escape can carry a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode ({exc.reason})") from None
    return text


Text = Annotated[str, AfterValidator(_encodable)]  # every text a request carries to a model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextInput(_Strict):
    text: Text


class ImageInput(_Strict):
    image: str = Field(description="http(s) URL, data URI or base64 image bytes")


class UrlInput(_Strict):
    url: str = Field(description="http(s) URL of an image")


class BytesInput(_Strict):
    bytes: str = Field(description="base64 image bytes")


InputObject = TextInput | ImageInput | UrlInput | BytesInput


def to_item(value: str | InputObject) -> Item:
    if isinstance(value, str):
        return ImageItem(value) if is_image_string(value) else TextItem(value)
    if isinstance(value, TextInput):
        return TextItem(value.text)
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


class EmbeddingsRequest(BaseModel):
    """Jina's embeddings request; OpenAI's (input, model, dimensions, encoding_format) fits it."""

    model: str
    input: list[str | InputObject] = Field(
        description="a string, an object, or a list of strings and objects"
    )
    task: str | None = None
    dimensions: int | None = Field(None, ge=1, description="Matryoshka truncation")
    embedding_type: EmbeddingType | list[EmbeddingType] = Field(
        "float",
        validation_alias=AliasChoices("embedding_type", "encoding_type", "encoding_format"),
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

    @field_validator("embedding_type")
    @classmethod
    def _nonempty_types(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("embedding_type list must not be empty")
        return value

    def items(self) -> list[Item]:
        return [to_item(v) for v in self.input]


EncodedVector = list[float] | list[int] | str


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
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


ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "unknown model"),
        (401, "missing or invalid API key"),
        (404, "no such collection or thumbnail"),
        (409, "the embedded store is in use by another process"),
        (413, "too many inputs, an input over the context, or an over-size body"),
        (429, "queue full; retry after the Retry-After seconds"),
        (503, "model loading or failed to load, or the store cannot be opened"),
    ]
}


RerankItem = Text | TextInput | ImageInput


class RerankRequest(BaseModel):
    """Jina's rerank request."""

    model: str
    query: RerankItem
    documents: list[RerankItem] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1, description="null: all documents")
    return_documents: bool = True

    @field_validator("query")
    @classmethod
    def _query_not_empty(cls, value: Any) -> Any:
        if value == "" or (isinstance(value, TextInput) and not value.text):
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
