"""POST /v1/chat/completions: OpenAI's contract, streamed as server-sent events or not."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from PIL import Image
from pydantic.json_schema import models_json_schema

from polyseek.api.chat_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    ImagePart,
)
from polyseek.api.grounded import cited_sources, retrieve
from polyseek.api.schemas import error_responses
from polyseek.errors import InvalidInput
from polyseek.inputs.images import ImageLimits
from polyseek.inputs.items import ImageItem
from polyseek.models.base import Capabilities, ChatMessage, TextDelta
from polyseek.models.sampling import SamplingParams
from polyseek.retrieval.citations import CitationFilter, cite
from polyseek.retrieval.grounding import Source
from polyseek.runtime.inputs import decode_item

router = APIRouter(prefix="/v1")
ROLES = {"developer": "system"}  # OpenAI's newer name for the system role
CHAT_ERRORS = error_responses(
    400, 404, 409, 413, 429, 503, e400="unknown model or not a chat model; with collection: "
    "the collection's model or the reranker is not served, or cannot embed or rerank",
    e404="with collection: no such collection", e409="with collection: another process "
    "holds the store")


async def to_chat_messages(body: ChatCompletionRequest, caps: Capabilities,
                           limits: ImageLimits) -> list[ChatMessage]:
    """Request messages -> model messages, images fetched and decoded off the event loop."""
    messages = []
    for i, message in enumerate(body.messages):
        content: list[str | Image.Image] = []
        for j, part in enumerate(message.parts()):
            if not isinstance(part, ImagePart):
                content.append(part.text)
                continue
            if "image" not in caps.modalities:
                raise InvalidInput(f"model {body.model!r} is text-only and cannot read the "
                                   f"image in messages[{i}].content[{j}]",
                                   ("messages", i, "content", j))
            image = ImageItem(part.image_url.url)
            content.append(await asyncio.to_thread(decode_item, image, limits,
                                                   ("messages", i, "content", j)))
        messages.append(ChatMessage(ROLES.get(message.role, message.role), content))
    return messages


def usage_of(delta: TextDelta) -> CompletionUsage:
    return CompletionUsage(prompt_tokens=delta.prompt_tokens,
                           completion_tokens=delta.completion_tokens,
                           total_tokens=delta.prompt_tokens + delta.completion_tokens)


# Each server-sent event (OpenAPI 3.1 has no stream keyword: `schema` describes one event, as
# 3.2's `itemSchema` does): its `data` is a chunk, an error that ended the stream, or [DONE].
STREAM_EVENT = {
    "type": "object",
    "properties": {"data": {"anyOf": [
        {"const": "[DONE]"},
        {"type": "string", "contentMediaType": "application/json", "contentSchema": {"anyOf": [
            {"$ref": "#/components/schemas/ChatCompletionChunk"},
            {"$ref": "#/components/schemas/ErrorResponse"}]}},
    ]}},
    "required": ["data"],
}
STREAM_RESPONSE = {
    "description": "the completion; with `stream: true`, server-sent events instead: "
    "`data: {chat.completion.chunk}` (a role delta, content deltas, the finish reason, the "
    "usage with stream_options.include_usage), then `data: [DONE]`",
    "content": {"text/event-stream": {"schema": STREAM_EVENT}},
}


def stream_schemas() -> dict[str, dict]:
    """The components STREAM_EVENT refers to, for the app's OpenAPI document."""
    _, top = models_json_schema([(ChatCompletionChunk, "serialization")],
                                ref_template="#/components/schemas/{model}")
    return top["$defs"]


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: STREAM_RESPONSE, **CHAT_ERRORS})
async def create_chat_completion(body: ChatCompletionRequest, request: Request):
    engine = request.app.state.registry.chat_engine(body.model)
    context = engine.capabilities.max_tokens
    if body.token_limit > context:
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise InvalidInput(f"{field} is over the model's {context}-token context", (field,))
    messages = await to_chat_messages(body, engine.capabilities,
                                      request.app.state.settings.image_limits)
    sources: list[Source] | None = None
    if body.collection is not None:
        messages, sources = await retrieve(request, body, messages, engine.capabilities)
    sampling = SamplingParams(max_tokens=body.token_limit, temperature=body.temperature,
                              top_p=body.top_p, seed=body.seed, stop=tuple(body.stop))
    deltas = engine.stream(messages, sampling)
    listed: Callable[[], list[dict]] | None = None  # the sources, once the answer is written
    if sources is not None:
        citations = CitationFilter(len(sources), [s.text for s in sources])
        deltas = cite(deltas, citations)
        listed = partial(cited_sources, sources, citations.cited)
    first = await anext(deltas)  # bad input fails here, before a byte of the response is sent
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = stream_events(first, deltas, completion_id, created, body.model, include_usage,
                               listed)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    text, last = first.text, first
    try:
        async for delta in deltas:
            if await request.is_disconnected():  # nobody is waiting for the rest
                break
            text, last = text + delta.text, delta
    finally:
        await deltas.aclose()
    return ChatCompletion(
        id=completion_id, created=created, model=body.model,
        choices=[Choice(message=AssistantMessage(content=text),
                        finish_reason=last.finish_reason)],
        usage=usage_of(last), sources=listed() if listed else None,
    )


async def stream_events(first: TextDelta, deltas: AsyncIterator[TextDelta], completion_id: str,
                        created: int, model: str, include_usage: bool,
                        sources: Callable[[], list[dict]] | None = None) -> AsyncIterator[str]:
    """OpenAI's chunk sequence: role, content deltas, finish reason, [usage], [DONE]; with
    `sources` (grounded answers), the last chunk before [DONE] lists them."""

    def event(delta: dict | None, finish: str | None = None,
              usage: CompletionUsage | None = None, last: bool = False) -> str:
        choices = [] if delta is None else [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                 "model": model, "choices": choices}
        if include_usage:  # null on every chunk but the last, as OpenAI sends it
            chunk["usage"] = usage.model_dump() if usage else None
        if last and sources is not None:
            chunk["sources"] = sources()
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    delta = first
    try:
        while True:
            if delta.text:
                yield event({"content": delta.text})
            if delta.finish_reason is not None:
                yield event({}, delta.finish_reason, last=not include_usage)
                if include_usage:
                    yield event(None, usage=usage_of(delta), last=True)
                break
            delta = await anext(deltas)
    except Exception as exc:  # the status line is sent: report in the stream, then end it
        error = {"message": f"generation failed: {exc}", "type": "internal_error", "code": 500}
        yield f"data: {json.dumps({'error': error})}\n\n"
    finally:
        await deltas.aclose()
    yield "data: [DONE]\n\n"
