"""Grounded answers: /v1/chat/completions with a `collection`, over an indexed folder, on a
real server with the default models (multilingual-e5-small, SmolLM2) and the openai SDK."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import httpx
import openai
import pytest

from polyseek.api.app import ServerSettings, create_app
from polyseek.retrieval.citations import citation_numbers
from polyseek.runtime.registry import DEFAULT_CHAT_SPEC, DEFAULT_SPEC, ModelSpec

from support import (
    CHAT_MODEL,
    DEFAULT_MODEL,
    MINILM_SOURCE,
    REPO,
    serve_in_thread,
    write_tiny_jina_vlm,
)

sys.path.insert(0, str(REPO / "tests" / "retrieval"))
from test_retrieval import make_pdf  # noqa: E402

FILES = {
    "tides.txt": "Tides are caused by the gravitational pull of the Moon on the oceans.",
    "bread.md": "# Sourdough\n\nSourdough bread needs an active starter. Bake the loaf in a "
                "hot oven at 250 degrees Celsius.",
    "chess.txt": "Castling moves the king two squares towards a rook.",
    "volcano.txt": "Lava is molten rock that flows from an erupting volcano.",
}
PDF_PAGES = ["A year on Mars lasts 687 Earth days.",
             "Photosynthesis in plant leaves turns sunlight into sugar."]
COLLECTION = "folder"
SHORT = {"temperature": 0, "max_tokens": 24}


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def write_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (folder / name).write_text(text)
    (folder / "report.pdf").write_bytes(make_pdf(PDF_PAGES))
    return folder


def index_folder(folder: Path, data: Path, model, collection: str = COLLECTION) -> None:
    from polyseek.retrieval import index_paths, open_store

    with open_store(data) as store:
        summary = index_paths([folder], collection, model, store=store)
    assert summary.errors == [] and summary.indexed == len(FILES) + 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory, e5) -> tuple[Path, Path]:
    """An indexed folder: (the folder, the data directory)."""
    root = tmp_path_factory.mktemp("grounded")
    docs, data = write_folder(root / "docs"), root / "data"
    index_folder(docs, data, e5)
    return docs.resolve(), data


@pytest.fixture(scope="module")
def url(folder, minilm) -> str:
    """The default models and MiniLM (a reranker) on the indexed folder's store; one more
    collection, built by a model this server does not serve."""
    docs, data = folder
    index_folder(docs, data, minilm, "minilm-built")
    specs = [DEFAULT_SPEC, DEFAULT_CHAT_SPEC, ModelSpec("reranker", MINILM_SOURCE)]
    with serve_in_thread(create_app(ServerSettings(models=specs, data_dir=str(data)))) as base:
        yield base


@pytest.fixture(scope="module")
def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)


def check_citations(text: str, sources: list[dict]) -> None:
    """Every citation in `text` names a returned source, and `cited` marks exactly those."""
    numbers = [s["number"] for s in sources]
    assert numbers == list(range(1, len(sources) + 1))
    cited = set(citation_numbers(text))
    assert cited <= set(numbers), (text, numbers)
    assert {s["number"] for s in sources if s["cited"]} == cited


def test_the_sources_hold_the_answer_and_every_citation_names_one(sdk, folder):
    docs, _ = folder
    result = sdk.chat.completions.create(
        model=CHAT_MODEL, messages=ask("What causes the tides?"), **SHORT,
        extra_body={"collection": COLLECTION, "top_k": 3})
    sources = result.model_extra["sources"]
    assert len(sources) == 3
    best = sources[0]
    assert (best["path"], best["page"], best["chunk"]) == (str(docs / "tides.txt"), None, 0)
    assert "Moon" in best["text"] and best["score"] > sources[1]["score"]
    answer = result.choices[0].message.content
    assert "Moon" in answer and result.choices[0].finish_reason in ("stop", "length")
    check_citations(answer, sources)
    assert 1 in citation_numbers(answer), answer  # cited by the model, or attributed


def test_a_pdf_page_is_a_source_with_its_page(sdk, folder):
    docs, _ = folder
    result = sdk.chat.completions.create(
        model=CHAT_MODEL, messages=ask("How long is a year on Mars?"), **SHORT,
        extra_body={"collection": COLLECTION, "top_k": 2})
    best = result.model_extra["sources"][0]
    assert (best["path"], best["page"], best["mime"]) == (
        str(docs / "report.pdf"), 1, "application/pdf")
    assert "687" in best["text"] and best["thumbnail"]
    check_citations(result.choices[0].message.content, result.model_extra["sources"])


def test_sources_are_the_search_hits_in_the_prompt(url, sdk):
    """The retrieval is /v1/search's (default mode, rerank as asked), and the sources are in
    the prompt: a grounded prompt has more tokens than the bare question by their text."""
    question = "How hot should the oven be for sourdough?"
    for rerank in (None, "reranker"):
        searched = httpx.post(f"{url}/v1/search", timeout=120, json={
            "collection": COLLECTION, "query": question, "top_k": 3, "rerank": rerank}).json()
        result = sdk.chat.completions.create(
            model=CHAT_MODEL, messages=ask(question), temperature=0, max_tokens=1,
            extra_body={"collection": COLLECTION, "top_k": 3, "rerank": rerank})
        sources = result.model_extra["sources"]
        assert [(s["path"], s["chunk"], s["page"]) for s in sources] == [
            (h["path"], h["chunk"], h["page"]) for h in searched["hits"]]
        assert [s["score"] for s in sources] == pytest.approx(
            [h["score"] for h in searched["hits"]], abs=1e-5)
    assert Path(sources[0]["path"]).name == "bread.md"
    bare = sdk.chat.completions.create(model=CHAT_MODEL, messages=ask(question),
                                       temperature=0, max_tokens=1)
    assert result.usage.prompt_tokens > bare.usage.prompt_tokens + 40
    assert bare.model_extra.get("sources") is None


def test_the_stream_ends_with_the_sources_and_says_what_the_reply_says(url):
    body = {"model": CHAT_MODEL, "messages": ask("What is lava?"), **SHORT,
            "collection": COLLECTION, "top_k": 2}
    whole = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300).json()
    for include_usage in (False, True):
        streamed = {**body, "stream": True, "stream_options": {"include_usage": include_usage}}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=streamed,
                          timeout=300) as response:
            lines = [line for line in response.iter_lines() if line]
        assert response.status_code == 200 and lines[-1] == "data: [DONE]"
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
        assert [c for c in chunks[:-1] if "sources" in c] == []  # the last chunk only
        assert chunks[-1]["sources"] == whole["sources"]
        assert (chunks[-1].get("usage") is not None) is include_usage
        text = "".join(c["choices"][0]["delta"].get("content") or ""
                       for c in chunks if c["choices"])
        assert text == whole["choices"][0]["message"]["content"]
    assert Path(whole["sources"][0]["path"]).name == "volcano.txt"
    check_citations(text, whole["sources"])


@pytest.mark.parametrize("extra,status,words", [
    ({"collection": "missing"}, 404, "no collection 'missing'"),
    ({"collection": "minilm-built"}, 400, "which this server does not serve"),
    ({"collection": COLLECTION, "rerank": CHAT_MODEL}, 400, "cannot rerank"),
    ({"collection": COLLECTION, "model": DEFAULT_MODEL}, 400, "not a chat model"),
    ({"collection": "bad name!"}, 422, "collection"),
    ({"collection": COLLECTION, "top_k": 0}, 422, "top_k"),
    ({"collection": COLLECTION, "top_k": 21}, 422, "top_k"),
    ({"top_k": 3}, 422, "need a collection"),
    ({"rerank": "reranker"}, 422, "need a collection"),
    ({"collection": COLLECTION, "messages": [{"role": "user", "content": "   "}]}, 422,
     "no text to search with"),
    ({"collection": COLLECTION, "filters": [{"key": "colour", "match": "red"}]}, 422, "key"),
])
def test_bad_grounded_requests_are_clear_4xx(url, extra, status, words):
    body = {"model": CHAT_MODEL, "messages": ask("What causes the tides?"), "max_tokens": 2,
            **extra}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == status, response.text
    assert words in response.text


def test_filters_narrow_the_sources(sdk, folder):
    docs, _ = folder
    result = sdk.chat.completions.create(
        model=CHAT_MODEL, messages=ask("What causes the tides?"), temperature=0, max_tokens=2,
        extra_body={"collection": COLLECTION, "filters": [{"key": "extension", "match": ".pdf"}]})
    assert {s["path"] for s in result.model_extra["sources"]} == {str(docs / "report.pdf")}
    nothing = sdk.chat.completions.create(
        model=CHAT_MODEL, messages=ask("What causes the tides?"), temperature=0, max_tokens=8,
        extra_body={"collection": COLLECTION, "filters": [{"key": "extension",
                                                           "match": ".docx"}]})
    assert nothing.model_extra["sources"] == []
    assert citation_numbers(nothing.choices[0].message.content) == []


def test_an_image_reading_chat_model_is_given_the_pdf_pages(folder, tmp_path, e5):
    """The tiny random jina-vlm: with the PDF on disk its pages go into the prompt as images
    (many more prompt tokens); with the file gone, the same sources go in as text only."""
    docs, _ = folder
    copy, data = write_folder(tmp_path / "docs"), tmp_path / "data"
    index_folder(copy, data, e5)
    vlm = write_tiny_jina_vlm(tmp_path)
    specs = [DEFAULT_SPEC, ModelSpec("tiny-vlm", str(vlm))]
    body = {"model": "tiny-vlm", "messages": ask("How long is a year on Mars?"),
            "max_tokens": 2, "temperature": 0, "collection": COLLECTION, "top_k": 2}
    with serve_in_thread(create_app(ServerSettings(models=specs, data_dir=str(data)))) as base:
        with_pages = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
        assert with_pages.status_code == 200, with_pages.text
        shutil.move(copy / "report.pdf", tmp_path / "moved.pdf")
        without = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
        assert without.status_code == 200, without.text
    pages = [s["page"] for s in with_pages.json()["sources"]]
    assert pages == [1, 2] and without.json()["sources"] == with_pages.json()["sources"]
    assert with_pages.json()["usage"]["prompt_tokens"] > \
        without.json()["usage"]["prompt_tokens"] + 100


def test_openapi_documents_the_extension(url):
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    components = schema["components"]["schemas"]
    request = components["ChatCompletionRequest"]
    collection = request["properties"]["collection"]
    assert "[1]" in collection["description"] and collection["anyOf"][0]["pattern"]
    assert request["properties"]["top_k"]["anyOf"][0]["maximum"] == 20
    assert request["if"] and request["then"]["properties"]["rerank"] == {"type": "null"}
    for response in ("ChatCompletion", "ChatCompletionChunk"):
        sources = components[response]["properties"]["sources"]
        assert sources["anyOf"][0]["items"]["$ref"].endswith("/Source")
    assert {"number", "path", "page", "chunk", "score", "cited"} <= set(
        components["Source"]["properties"])
    responses = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "no such collection" in responses["404"]["description"]
