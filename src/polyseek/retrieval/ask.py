"""`polyseek ask` in this process: search a collection, answer from its hits, check the
citations. The server does the same in /v1/chat/completions with a `collection`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass

from polyseek.models.base import ChatMessage, TextDelta
from polyseek.models.sampling import SamplingParams
from polyseek.retrieval.citations import CitationFilter, cite
from polyseek.retrieval.encoders import LocalModel
from polyseek.retrieval.filters import Filter
from polyseek.retrieval.grounding import (
    DEFAULT_SOURCES,
    Source,
    ground,
    source_images,
    sources_of,
)
from polyseek.retrieval.search import search_async
from polyseek.retrieval.store import Store


@dataclass
class Answer:
    text: str
    sources: list[Source]
    finish_reason: str | None

    def as_dict(self) -> dict:
        return {"answer": self.text, "finish_reason": self.finish_reason,
                "sources": [s.as_dict() for s in self.sources]}


async def _deltas(items: Iterator[TextDelta]) -> AsyncGenerator[TextDelta, None]:
    for delta in items:
        yield delta


async def ask_async(question: str, collection: str, model, generator, *, store: Store,
                    sampling: SamplingParams, top_k: int = DEFAULT_SOURCES, rerank=None,
                    where: Filter | None = None,
                    on_text: Callable[[str], None] | None = None) -> Answer:
    """Answer `question` with `generator` (a loaded chat model) from the `top_k` hits of
    `collection`, searched with `model` (the one that built it) and reranked by `rerank`;
    `on_text` gets the answer's text as it is written."""
    found = await search_async(question, collection, LocalModel(model), store=store,
                               top_k=top_k, where=where,
                               rerank=LocalModel(rerank) if rerank is not None else None)
    sources = sources_of(found.hits)
    images = source_images(sources) if "image" in generator.capabilities.modalities else []
    messages = ground([ChatMessage("user", [question])], sources, images)
    citations = CitationFilter(len(sources), [s.text for s in sources])
    text, finish = "", None
    async for delta in cite(_deltas(generator.generate(messages, sampling)), citations):
        text, finish = text + delta.text, delta.finish_reason
        if on_text and delta.text:
            on_text(delta.text)
    for source in sources:
        source.cited = source.number in citations.cited
    return Answer(text, sources, finish)


def ask(question: str, collection: str, model, generator, **options) -> Answer:
    """`ask_async` run to the end (the CLI)."""
    return asyncio.run(ask_async(question, collection, model, generator, **options))
