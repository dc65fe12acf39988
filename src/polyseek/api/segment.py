"""POST /v1/segment: Jina Segmenter's contract, with the served models' tokenizers."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from polyseek.api.schemas import PositiveInt, RequestModel, encodable, error_responses
from polyseek.runtime.segment import segment, tokenizer_for

router = APIRouter(prefix="/v1")

MAX_CONTENT = 1_000_000  # characters: a long book
Content = Annotated[str, Field(min_length=1, max_length=MAX_CONTENT, pattern=r"\S"),
                    AfterValidator(encodable)]


class SegmentRequest(RequestModel):
    """Jina Segmenter's request. `head` and `tail` exclude each other."""

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["head", "tail"]}})

    content: Content = Field(description="the text to tokenize and chunk (at most a million "
                             "characters)")
    tokenizer: str | None = Field(None, description="a served model whose tokenizer counts "
                                  "the tokens (GET /v1/models); default the first served")
    return_tokens: bool = Field(False, description="return the tokens as [text, [ids]]")
    return_chunks: bool = Field(False, description="return the chunks and their positions")
    max_chunk_length: PositiveInt = Field(
        1000, description="most characters in a chunk; chunks end at paragraph, sentence, "
        "clause or word boundaries, so they are often shorter")
    head: PositiveInt | None = Field(None, description="only the first N tokens")
    tail: PositiveInt | None = Field(None, description="only the last N tokens")

    @model_validator(mode="after")
    def _head_or_tail(self) -> SegmentRequest:
        if {"head", "tail"} <= self.model_fields_set:
            raise ValueError("head and tail cannot be used together")
        return self


Token = tuple[str, list[int]]


class SegmentUsage(BaseModel):
    tokens: int


class SegmentResponse(BaseModel):
    num_tokens: int = Field(description="tokens in the content (or in its head or tail), "
                            "without special tokens")
    tokenizer: str
    usage: SegmentUsage
    num_chunks: int | None = None
    chunk_positions: list[tuple[int, int]] | None = Field(
        None, description="[start, end) character offsets of each chunk in the content")
    chunks: list[str] | None = None
    tokens: list[Token] | list[list[Token]] | None = Field(
        None, description="[text, [token ids]] per token; tokens sharing characters (a word "
        "marker and its word, the bytes of one emoji) are one entry. With return_chunks: "
        "one list per chunk, of the tokens that start in it")


@router.post("/segment", response_model=SegmentResponse, response_model_exclude_none=True,
             responses=error_responses(413, 503, e413="a body over --max-body-mb",
                                       e503="the tokenizer's model is loading or failed to "
                                       "load"))
async def create_segment(body: SegmentRequest, request: Request) -> SegmentResponse:
    """Count the tokens of a text, return them, and cut it into chunks that keep paragraphs,
    sentences and clauses whole (CJK and other scripts included)."""
    name, tokenizer = tokenizer_for(request.app.state.registry, body.tokenizer)
    out = await asyncio.to_thread(
        segment, tokenizer, body.content, return_tokens=body.return_tokens,
        return_chunks=body.return_chunks, max_chunk_length=body.max_chunk_length,
        head=body.head, tail=body.tail)
    return SegmentResponse(
        num_tokens=out.num_tokens, tokenizer=name, usage=SegmentUsage(tokens=out.num_tokens),
        num_chunks=len(out.chunks) if out.chunks is not None else None,
        chunk_positions=out.chunk_positions, chunks=out.chunks, tokens=out.tokens)
