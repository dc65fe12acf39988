"""OpenAI chat-completions request and response schemas."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from polyseek.api.schemas import NonEmptyText, PositiveInt, RequestModel, Text, integral

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


class ChatCompletionRequest(RequestModel):
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


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


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
