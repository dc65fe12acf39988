"""OpenAI chat-completions request and response schemas."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from polyseek.api.schemas import NonEmptyText, PositiveInt, RequestModel, Text, integral
from polyseek.api.search import COLLECTION_PATTERN, FilterCondition
from polyseek.retrieval.grounding import DEFAULT_SOURCES, MAX_SOURCES

DEFAULT_MAX_TOKENS = 512
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


class TextPart(RequestModel):
    type: Literal["text"]
    text: Text


class ImageURL(RequestModel):
    url: str = Field(min_length=1, description="http(s) URL or data:image/...;base64,... URI "
                     "(its image type must match the bytes)")
    detail: str | None = None


class ImagePart(RequestModel):
    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _bare_url(cls, value):
        return {"url": value} if isinstance(value, str) else value


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(RequestModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[ContentPart] | None = None
    name: str | None = None

    def parts(self) -> list[TextPart | ImagePart]:
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [TextPart(type="text", text=self.content)]
        return list(self.content)


class StreamOptions(RequestModel):
    include_usage: bool = False


def exact_seed_bounds(document: dict) -> None:
    """Write the seed's bounds as the integers they are into an OpenAPI document (FastAPI's
    schema model stores bounds as floats: 2**64 - 1 would read 2**64)."""
    seed = document["components"]["schemas"]["ChatCompletionRequest"]["properties"]["seed"]
    for option in seed.get("anyOf", [seed]):
        if option.get("type") == "integer":
            option["minimum"], option["maximum"] = SEED_RANGE


RETRIEVAL_OPTIONS = ("top_k", "rerank", "filters")
# without a collection (absent or null), the retrieval options are absent or null
_OPTIONS_NEED_A_COLLECTION = {
    "if": {"anyOf": [{"not": {"required": ["collection"]}},
                     {"required": ["collection"], "properties": {"collection": {"type": "null"}}}]},
    "then": {"properties": {name: {"type": "null"} for name in RETRIEVAL_OPTIONS}},
}


class ChatCompletionRequest(RequestModel):
    model_config = ConfigDict(regex_engine="python-re",
                              json_schema_extra=_OPTIONS_NEED_A_COLLECTION)

    model: str = Field(description="a served chat model (GET /v1/models)")
    messages: list[Message] = Field(
        min_length=1, description="at least one of them a user message",
        json_schema_extra={"contains": {"properties": {"role": {"const": "user"}},
                                        "required": ["role"]}})
    max_tokens: PositiveInt | None = Field(None, description="at most the model's context "
                                   f"[default {DEFAULT_MAX_TOKENS}]")
    max_completion_tokens: PositiveInt | None = Field(None, description="max_tokens' newer name")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: NonEmptyText | Annotated[list[NonEmptyText], Field(max_length=4)] = Field(
        default_factory=list, description="up to 4 strings that end the reply")
    seed: Annotated[int, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1]),
                    BeforeValidator(integral)] | None = None
    n: Annotated[int, Field(ge=1, le=1), BeforeValidator(integral)] = Field(
        1, description="only 1 choice is generated")
    stream: bool = Field(False, description="reply as server-sent events (text/event-stream)")
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="accepted for OpenAI compatibility, unused")
    # polyseek's extension: grounded answers
    collection: str | None = Field(
        None, pattern=COLLECTION_PATTERN, description="polyseek extension: answer from this "
        "collection. The last user message is searched (the default search mode), the hits "
        "go into the prompt as numbered sources, the answer cites them as [1], and `sources` "
        "lists them (on the last chunk when streamed). Citations that name no source are "
        "removed")
    top_k: Annotated[int, Field(ge=1, le=MAX_SOURCES), BeforeValidator(integral)] | None = Field(
        None, description=f"with collection: sources to retrieve [default {DEFAULT_SOURCES}]")
    rerank: str | None = Field(None, description="with collection: a served model that "
                               "reranks the candidates")
    filters: list[FilterCondition] | None = Field(
        None, description="with collection: conditions every source meets, as in /v1/search")

    @field_validator("n", mode="before")
    @classmethod
    def _one_choice(cls, value):
        if isinstance(value, int | float) and not isinstance(value, bool) and value != 1:
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else value
        if isinstance(stops, list) and (len(stops) > 4 or any(s == "" for s in stops)):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops

    @model_validator(mode="after")
    def _has_a_user_turn(self):
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages must contain a user message")
        return self

    @model_validator(mode="after")
    def _options_need_a_collection(self):
        given = [name for name in RETRIEVAL_OPTIONS if getattr(self, name) is not None]
        if self.collection is None and given:
            raise ValueError(f"{', '.join(given)}: retrieval options need a collection")
        return self

    @property
    def token_limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Source(BaseModel):
    """A passage a grounded answer was given, cited in it as [number]."""

    number: int = Field(description="cited as [number]; 1 for the best hit")
    id: str
    path: str = Field(description="source file, or the document id given to /v1/index")
    page: int | None = None
    chunk: int
    score: float
    text: str
    mime: str
    thumbnail: str | None = Field(None, description="GET /v1/thumbnails/{thumbnail}")
    cited: bool = Field(description="the answer cites it")


SOURCES_DESCRIPTION = "with collection: the passages retrieved, numbered as cited"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    sources: list[Source] | None = Field(None, description=SOURCES_DESCRIPTION)


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion (`data: {...}`)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice] = Field(description="empty on the usage chunk")
    usage: CompletionUsage | None = Field(
        None, description="with stream_options.include_usage: null on every chunk but the "
        "last, which has no choices")
    sources: list[Source] | None = Field(
        None, description=f"{SOURCES_DESCRIPTION}; on the last chunk only")
