"""POST /v1/segment through the real server: tokens under the served models' tokenizers,
chunks that keep paragraphs and sentences whole in several languages and scripts."""

from __future__ import annotations

import re

import pytest

from support import CHAT_MODEL, DEFAULT_MODEL

TEXTS = {
    "english": "The tide rises twice a day. The Moon pulls the oceans towards it! Why does the "
               "Sun matter? It adds its own, smaller pull.\n\nSpring tides come at new and full "
               "moon. Neap tides come in between, when the pulls work against each other.",
    "german": "Die Gezeiten entstehen durch den Mond. Er zieht das Wasser an! Warum spielt die "
              "Sonne eine Rolle? Auch sie zieht, aber schwächer.\n\nSpringfluten gibt es bei "
              "Neumond und Vollmond. Nippfluten liegen dazwischen.",
    "chinese": "潮汐是海水的周期性涨落现象。它主要由月球的引力引起！太阳也有影响吗？"
               "有，但是比月球小。\n\n大潮出现在新月和满月的时候。小潮出现在上弦月和下弦月的时候。",
    "japanese": "潮の満ち引きは月の引力によって起こる。太陽も影響を与える！なぜ一日に二回なのか？"
                "地球の反対側でも海面が盛り上がるからだ。\n\n大潮は新月と満月のころに起こる。",
    "hindi": "ज्वार-भाटा चंद्रमा के गुरुत्वाकर्षण से आता है। सूर्य भी इसमें भूमिका निभाता है। "
             "दिन में दो बार ज्वार आता है।\n\nपूर्णिमा और अमावस्या को ऊँचे ज्वार आते हैं।",
    "arabic": "يحدث المد والجزر بسبب جاذبية القمر. هل للشمس دور؟ نعم، لكنه أصغر. "
              "يرتفع الماء مرتين في اليوم.\n\nيكون المد أعلى عند البدر والمحاق.",
}
SENTENCE_END = re.compile(r"[.!?。！？।؟]$")


def segment(client, **body):
    return client.post("/v1/segment", json=body)


def ok(client, **body) -> dict:
    response = segment(client, **body)
    assert response.status_code == 200, response.text
    return response.json()


def check_chunks(content: str, out: dict, limit: int) -> None:
    """Chunks are the content at their positions, in order, within the limit, and together
    they hold every non-space character of the content."""
    chunks, positions = out["chunks"], out["chunk_positions"]
    assert out["num_chunks"] == len(chunks) == len(positions) > 0
    assert [content[s:e] for s, e in positions] == chunks
    assert all(e - s <= limit for s, e in positions), positions
    assert all(a[1] <= b[0] for a, b in zip(positions, positions[1:], strict=False))
    assert re.sub(r"\s", "", "".join(chunks)) == re.sub(r"\s", "", content)


@pytest.mark.parametrize("language", TEXTS)
def test_chunks_end_at_sentences_and_keep_paragraphs_apart(client, language):
    content = TEXTS[language]
    first, second = content.split("\n\n")
    # a limit that holds either paragraph whole but not both: one chunk per paragraph
    limit = max(len(first), len(second)) + 1
    out = ok(client, content=content, return_chunks=True, max_chunk_length=limit)
    check_chunks(content, out, limit)
    assert out["chunks"] == [first.strip(), second.strip()]
    # a limit shorter than a paragraph: every chunk ends with its sentence
    limit = max(len(s) for s in re.split(r"(?<=[.!?。！？।؟])\s*", content)) + 2
    out = ok(client, content=content, return_chunks=True, max_chunk_length=limit)
    check_chunks(content, out, limit)
    assert len(out["chunks"]) > 2
    assert all(SENTENCE_END.search(c) for c in out["chunks"]), out["chunks"]


def test_chinese_without_punctuation_is_cut_within_the_limit(client):
    content = "潮汐主要由月球引力引起太阳也有较小的影响每天通常有两次涨潮和两次落潮" * 3
    out = ok(client, content=content, return_chunks=True, max_chunk_length=20)
    check_chunks(content, out, 20)
    assert [len(c) for c in out["chunks"]] == [20] * (len(content) // 20) + \
        ([len(content) % 20] if len(content) % 20 else [])


def test_clauses_then_words_when_a_sentence_is_too_long(client):
    content = ("The Moon, which is our nearest neighbour in space, pulls on the oceans and on "
               "the land, and that pull, together with the Sun's, makes the tides")
    out = ok(client, content=content, return_chunks=True, max_chunk_length=40)
    check_chunks(content, out, 40)
    assert out["chunks"] == ["The Moon,", "which is our nearest neighbour in space,",
                             "pulls on the oceans and on the land,",
                             "and that pull, together with the Sun's,", "makes the tides"]
    out = ok(client, content=content, return_chunks=True, max_chunk_length=25)
    check_chunks(content, out, 25)
    assert out["chunks"][:3] == ["The Moon,", "which is our nearest", "neighbour in space,"]


def test_tokens_and_their_count_match_the_embedding_model(client):
    content = "Jina AI: Your Search Foundation! 🚀\n您的搜索底座，从此不同！\nनमस्ते दुनिया।"
    out = ok(client, content=content, return_tokens=True)
    assert out["tokenizer"] == DEFAULT_MODEL  # the first served model by default
    assert out["usage"] == {"tokens": out["num_tokens"]}
    assert "chunks" not in out and "chunk_positions" not in out
    ids = [i for _, group in out["tokens"] for i in group]
    assert len(ids) == out["num_tokens"] > 10 and all(isinstance(i, int) for i in ids)
    # each entry is the text its ids cover: together, the content
    assert re.sub(r"\s", "", "".join(text for text, _ in out["tokens"])) == \
        re.sub(r"\s", "", content)
    # the embeddings route counts the same tokens, plus <s> and </s>
    embedded = client.post("/v1/embeddings", json={"model": DEFAULT_MODEL, "input": content})
    assert embedded.json()["usage"]["prompt_tokens"] == out["num_tokens"] + 2


def test_with_chunks_the_tokens_come_per_chunk(client):
    """Jina's layout: `tokens` holds one list per chunk, the tokens that start in it."""
    content = "Jina AI: Your Search Foundation! 🚀\n\n您的搜索底座，从此不同！\n\nनमस्ते दुनिया।"
    whole = ok(client, content=content, return_tokens=True)
    out = ok(client, content=content, return_tokens=True, return_chunks=True,
             max_chunk_length=20)
    assert out["num_chunks"] == len(out["chunks"]) == len(out["tokens"]) >= 3
    for chunk, tokens in zip(out["chunks"], out["tokens"], strict=True):
        assert re.sub(r"\s", "", "".join(t for t, _ in tokens)) == re.sub(r"\s", "", chunk)
    # in order, and only what lies between chunks (whitespace) is in none
    flat = [token for tokens in out["tokens"] for token in tokens]
    assert [t for t in whole["tokens"] if t[0].strip()] == [t for t in flat if t[0].strip()]


def test_each_served_model_has_its_tokenizer(client):
    content = "Gezeiten entstehen durch den Mond. 潮汐由月球引起。"
    e5 = ok(client, content=content, tokenizer=DEFAULT_MODEL, return_tokens=True)
    smol = ok(client, content=content, tokenizer=CHAT_MODEL, return_tokens=True)
    assert smol["tokenizer"] == CHAT_MODEL
    assert smol["num_tokens"] != e5["num_tokens"]
    assert [ids for _, ids in smol["tokens"]] != [ids for _, ids in e5["tokens"]]
    assert "".join(text for text, _ in smol["tokens"]) == content  # byte-level BPE: all of it


def test_head_and_tail_keep_the_first_or_last_tokens(client):
    content = TEXTS["english"]
    whole = ok(client, content=content, return_tokens=True)
    head = ok(client, content=content, head=7, return_tokens=True, return_chunks=True)
    (tokens,) = head["tokens"]  # with chunks: the tokens of each chunk
    ids = [i for _, group in tokens for i in group]
    assert head["num_tokens"] == len(ids) == 7
    assert tokens == whole["tokens"][:len(tokens)]
    (chunk,) = head["chunks"]
    assert content.startswith(chunk) and chunk == "".join(t for t, _ in tokens).strip()
    assert head["chunk_positions"] == [[0, len(chunk)]]
    tail = ok(client, content=content, tail=5, return_tokens=True, return_chunks=True)
    (tokens,) = tail["tokens"]
    assert tail["num_tokens"] == 5 and tokens == whole["tokens"][-len(tokens):]
    ((start, end),) = tail["chunk_positions"]
    assert end == len(content) and content[start:end] == tail["chunks"][0]
    assert tail["chunks"][0] == "".join(t for t, _ in tokens).strip()
    assert tail["chunks"][0].endswith("each other.") and len(tail["chunks"][0]) < 40
    assert ok(client, content=content, head=10_000)["num_tokens"] == whole["num_tokens"]


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"content": ""}, "content", "at least 1 character"),
    ({"content": " \n\t"}, "content", "pattern"),
    ({"content": "潮" * 1_000_001}, "content", "at most 1000000 characters"),
    ({"content": "x", "tokenizer": "cl100k_base"}, "tokenizer", "available tokenizers"),
    ({"content": "x", "max_chunk_length": 0}, "max_chunk_length", "greater than or equal"),
    ({"content": "x", "max_chunk_length": "100"}, "max_chunk_length", "integer"),
    ({"content": "x", "head": -1}, "head", "greater than or equal"),
    ({"content": "x", "tail": 0}, "tail", "greater than or equal"),
    ({"content": "x", "head": 2, "tail": 2}, None, "head and tail cannot be used together"),
    ({"content": "x", "return_chunks": "yes"}, "return_chunks", "boolean"),
    ({"tokenizer": DEFAULT_MODEL}, "content", "required"),
])
def test_bad_requests_are_422s_that_say_why(client, body, field, says):
    response = segment(client, **body)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert field is None or field in detail["loc"], detail
    assert says.lower() in detail["msg"].lower(), detail
    if field == "tokenizer":
        assert DEFAULT_MODEL in detail["msg"] and CHAT_MODEL in detail["msg"]


def test_the_route_is_documented(client):
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/segment"]["post"]
    assert set(operation["responses"]) == {"200", "413", "422", "503"}
    request = schema["components"]["schemas"]["SegmentRequest"]
    assert request["not"] == {"required": ["head", "tail"]}
    assert request["properties"]["content"]["pattern"] == r"\S"
    assert request["properties"]["content"]["maxLength"] == 1_000_000
    assert request["properties"]["max_chunk_length"]["minimum"] == 1
    response = schema["components"]["schemas"]["SegmentResponse"]
    assert {"num_tokens", "tokenizer", "tokens", "chunks", "chunk_positions"} <= \
        set(response["properties"])
