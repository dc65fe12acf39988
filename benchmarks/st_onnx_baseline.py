"""Baseline (b) of embed_throughput.py: sentence-transformers' own ONNX int8 backend, in process.

Runs in its own venv (`make bench-venv` builds `.venv-st-onnx`: sentence-transformers with
optimum-onnx and onnxruntime, whose pins would move the main venv's transformers). The
checkpoint is linked into a work directory, exported to ONNX by sentence-transformers and
quantised with its `export_dynamic_quantized_onnx_model` and the config for this CPU
(avx512_vnni, avx512 or avx2); then the sentences are encoded after one warm-up call. Prints
one JSON object; the vectors go to `--vectors` (.npy).

    .venv-st-onnx/bin/python benchmarks/st_onnx_baseline.py --model-dir DIR \
        --sentences sentences.json --vectors out.npy [--prompt-name retrieval.passage]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def cpu_config() -> str:
    """sentence-transformers' (optimum's) quantisation config for this CPU."""
    flags = next((line.split(":", 1)[1].split() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), [])
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def work_directory(model_dir: Path) -> Path:
    """A copy of the checkpoint for this run: the export writes beside its files (copied, not
    linked, so that the source is never written through a link)."""
    work = Path(tempfile.mkdtemp(prefix="st-onnx-")) / "model"
    shutil.copytree(model_dir, work)
    return work


def quantized_model(model_dir: Path, config: str):
    """sentence-transformers' ONNX export of the checkpoint, dynamically quantised to int8
    with its `config` ("avx512_vnni", "avx512", "avx2")."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    work = work_directory(model_dir)
    exported = SentenceTransformer(str(work), backend="onnx", device="cpu")
    export_dynamic_quantized_onnx_model(exported, config, str(work))
    (quantized,) = (work / "onnx").glob(f"model_*_{config}.onnx")  # qint8 or quint8 weights
    return SentenceTransformer(str(work), backend="onnx", device="cpu", model_kwargs={
        "file_name": f"onnx/{quantized.name}"}), work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--sentences", type=Path, required=True, help="a JSON list of texts")
    parser.add_argument("--vectors", type=Path, required=True, help="where to save [N, D]")
    parser.add_argument("--prompt-name", default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--config", default=None,
                        help="quantisation config (default: this CPU's: avx512_vnni, avx512, avx2)")
    args = parser.parse_args()

    import numpy as np
    import onnxruntime

    sentences = json.loads(args.sentences.read_text())
    began = time.perf_counter()
    config = args.config or cpu_config()
    model, work = quantized_model(args.model_dir, config)
    export_seconds = time.perf_counter() - began
    try:
        model.encode(sentences[:8], batch_size=args.batch, prompt_name=args.prompt_name)
        start = time.perf_counter()
        vectors = model.encode(sentences, batch_size=args.batch, prompt_name=args.prompt_name,
                               convert_to_numpy=True)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work.parent, ignore_errors=True)
    np.save(args.vectors, np.asarray(vectors, np.float32))
    print(json.dumps({"seconds": seconds, "sentences": len(sentences),
                      "export_seconds": export_seconds, "config": config,
                      "onnxruntime": onnxruntime.__version__}))


if __name__ == "__main__":
    main()
