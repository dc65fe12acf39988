"""Grounded chat: what /v1/chat/completions adds for a `collection` (see
retrieval.grounding). The search is /v1/search's (`search.run_search`), in the collection's
default mode."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi import Request

from polyseek.api.chat_schemas import ChatCompletionRequest
from polyseek.api.search import run_search
from polyseek.inputs.items import TextItem
from polyseek.models.base import Capabilities, ChatMessage
from polyseek.retrieval.grounding import (
    DEFAULT_SOURCES,
    Source,
    ground,
    question_of,
    source_images,
    sources_of,
)


async def retrieve(request: Request, body: ChatCompletionRequest,
                   messages: Sequence[ChatMessage],
                   caps: Capabilities) -> tuple[list[ChatMessage], list[Source]]:
    """The messages with the collection's passages for the question, and those sources."""
    _, question = question_of(messages)
    _, result = await run_search(request, body.collection, TextItem(question),
                                 top_k=body.top_k or DEFAULT_SOURCES, rerank=body.rerank,
                                 where=[f.condition() for f in body.filters or []])
    sources = sources_of(result.hits)
    images = []
    if "image" in caps.modalities:  # page images of PDF hits, read off the event loop
        images = await asyncio.to_thread(source_images, sources)
    return ground(messages, sources, images), sources


def cited_sources(sources: Sequence[Source], cited: set[int]) -> list[dict]:
    """The sources as the response lists them, each marked if the answer cites it."""
    for source in sources:
        source.cited = source.number in cited
    return [source.as_dict() for source in sources]
