"""The int8 CPU backend: ONNX Runtime over a dynamically quantised export of a checkpoint.

On first load the checkpoint's torch module is exported to ONNX (the TorchScript exporter, whose
node names follow the module paths; eager attention, whose pattern ONNX Runtime recognises),
fused by ONNX Runtime's transformer optimiser (one `Attention` node per layer, embeddings and
layer norms with their residual adds, bias + GELU) where the fused graph gives the export's
outputs on a padded sample batch, then every MatMul with a weight matrix and every fused
attention's QKV projection is quantised to int8 per output channel (7-bit, see
`REDUCE_RANGE`; activations are quantised per batch at run time, uint8) except the few in
`FP32_NODES`, and the result is cached under `<cache>/int8/<dir>-<output>-<digest>/`
(`model.onnx`, its weights in `model.onnx.data`). The digest covers the checkpoint's files
(names, sizes, modification times) and the recipe, so a changed source is exported again. The
export is written to a staging directory and renamed into place: a reader never sees half of
one. Exports of an older version of the checkpoint, or of one that is gone, are removed then.

`Int8Encoder` serves encoder checkpoints (the `hf-encoder` family) with everything the torch
encoder does (tasks, pooling, Matryoshka truncation, late chunking: pooling happens here, on
the exported last hidden states); `Int8CrossEncoder` serves cross-encoders. Other families have
no int8 path and are refused with a clear error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from polyseek.models.backends import NoBackend
from polyseek.models.base import EncodeJob
from polyseek.models.checkpoint import cache_root, mark_derived, remove_superseded
from polyseek.models.cross_encoder import CrossEncoder, cross_encoder_capabilities, segment_ids
from polyseek.models.hf_encoder import encoder_capabilities, read_pooling_mode, read_prompts
from polyseek.models.text_encoder import TextEncoder

log = logging.getLogger("polyseek.int8")

RECIPE_VERSION = 4  # part of the cache key: a new recipe exports again
# MatMuls kept in float32, by a fragment of their ONNX node name. The first layer's FFN
# down-projection reads GELU outputs with the widest range of the network, so one 8-bit scale
# per batch loses most there.
FP32_NODES = ("/encoder/layer.0/output/dense/",)
# Weights use 7 bits of the int8 range. x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) run
# uint8 x int8 products through an instruction that adds pairs of them into int16 and
# saturates; with 7-bit weights a pair stays below 2^15. Measured on an AVX2 machine over
# 1,000 mixed sentences: full-range weights dropped multilingual-e5-small's worst cosine to
# fp32 to 0.977, 7-bit weights keep it above 0.99 (tests/models/test_int8.py).
REDUCE_RANGE = True
SOURCE_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")
OPSET = 17


# -- the cached export ------------------------------------------------------------------------


def source_digest(directory: Path) -> str:
    """A short digest of the checkpoint files (relative name, size, mtime) and the recipe."""
    digest = hashlib.sha256(
        f"recipe-{RECIPE_VERSION}-{FP32_NODES}-{REDUCE_RANGE}-{OPSET}".encode())
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in SOURCE_SUFFIXES:
            stat = path.stat()
            digest.update(f"{path.relative_to(directory)}:{stat.st_size}:{stat.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()[:16]


def int8_cache_dir(directory: Path, output: str) -> Path:
    """Where the quantised export of `directory` lives (`output`: "hidden" or "logits")."""
    return cache_root() / "int8" / f"{directory.name}-{output}-{source_digest(directory)}"


class _Exported(torch.nn.Module):
    """The exported function: a transformers model's last hidden states, or its logits."""

    def __init__(self, model: torch.nn.Module, output: str):
        super().__init__()
        self.model, self.output = model, output

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out.last_hidden_state if self.output == "hidden" else out.logits


def export_onnx(model: torch.nn.Module, output: str, token_types: bool, path: Path) -> None:
    """Export `model` with dynamic batch and sequence axes (float32)."""
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    sample = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes[output] = {0: "batch", 1: "tokens"} if output == "hidden" else {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Exported(model.eval(), output), sample, str(path),
                          input_names=names, output_names=[output], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)


def fuse(fp32: Path, fused: Path, config, token_types: bool) -> bool:
    """Write ONNX Runtime's transformer-fused graph of `fp32` (a model with transformers
    `config`) to `fused` if it gives the same outputs (max |difference| 1e-3) on a padded
    sample batch; False (nothing written) if not."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimised = optimize_model(str(fp32), model_type="bert",
                               num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=0)
    if not optimised.get_fused_operator_statistics().get("Attention"):
        return False
    optimised.save_model_to_file(str(fused))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, min(100, config.vocab_size), (3, 12), dtype=np.int64)
    mask = (np.arange(12) < np.array([[12], [7], [3]])).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        feeds["token_type_ids"] = (np.arange(12) >= 6).astype(np.int64)[None].repeat(3, 0)
    plain, candidate = (open_session(path).run(None, feeds)[0] for path in (fp32, fused))
    keep = mask.astype(bool) if plain.ndim == 3 else slice(None)  # padded rows may differ
    if np.abs(plain[keep] - candidate[keep]).max() <= 1e-3:
        return True
    log.warning("%s: the fused graph differs from the export; int8 runs unfused", fp32.parent)
    fused.unlink()
    return False


def quantizable(path: Path) -> list[str]:
    """Names of the nodes to quantise: MatMuls whose second operand is a weight (an
    initializer) and fused attentions (their QKV projection)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    return [node.name for node in graph.node
            if node.op_type == "Attention"
            or (node.op_type == "MatMul" and node.input[1] in weights)]


def quantize(fp32: Path, int8: Path) -> list[str]:
    """Dynamic int8 quantisation of the `quantizable` nodes, per output channel, 7-bit weights
    (`REDUCE_RANGE`), but `FP32_NODES`; returns the names of the nodes kept in float32.

    The weights go to `<int8>.data` beside the graph: ONNX Runtime maps that file into memory
    instead of reading it, so the float32 token embedding matrix (370 MB of e5's 390 MB) is
    resident only where rows are looked up, as with torch's mapped safetensors."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = quantizable(fp32)
    kept = [name for name in nodes if any(part in name for part in FP32_NODES)]
    with _without_root_records_from("onnxruntime"):  # advice and notes logged on the root logger
        quantize_dynamic(str(fp32), str(int8), op_types_to_quantize=["MatMul", "Attention"],
                         per_channel=True, reduce_range=REDUCE_RANGE,
                         weight_type=QuantType.QInt8, use_external_data_format=True,
                         nodes_to_quantize=[name for name in nodes if name not in kept],
                         # fused operators are outside shape inference's reach: float tensors
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    # onnx writes the weights file owner-only (0600): give it the graph's mode, so a cache
    # shared between users is readable as the graph is
    shutil.copymode(int8, int8.with_name(f"{int8.name}.data"))
    return kept


@contextlib.contextmanager
def _without_root_records_from(package: str):
    """Drop records logged on the root logger from `package`'s files while inside."""
    def outside(record: logging.LogRecord) -> bool:
        return f"{os.sep}{package}{os.sep}" not in record.pathname

    root = logging.getLogger()
    root.addFilter(outside)
    try:
        yield
    finally:
        root.removeFilter(outside)


def int8_model(directory: Path, output: str, token_types: bool,
               load_module: Callable[[], torch.nn.Module]) -> Path:
    """The quantised `model.onnx` for a checkpoint, exported, fused and quantised on first use
    (`load_module` gives the float32 torch module, eager attention, then)."""
    cache = int8_cache_dir(directory, output)
    if (cache / "model.onnx").exists():
        return cache / "model.onnx"
    began = time.monotonic()
    log.info("exporting %s to int8 ONNX (once; cached in %s)", directory.name, cache)
    staging = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        module = load_module()
        export_onnx(module, output, token_types, staging / "fp32.onnx")
        fused = fuse(staging / "fp32.onnx", staging / "fused.onnx", module.config, token_types)
        kept = quantize(staging / ("fused.onnx" if fused else "fp32.onnx"),
                        staging / "model.onnx")
        for stage in ("fp32.onnx", "fused.onnx"):
            (staging / stage).unlink(missing_ok=True)
        (staging / "recipe.json").write_text(json.dumps(
            {"source": str(directory), "output": output, "recipe": RECIPE_VERSION,
             "opset": OPSET, "fused": fused, "reduce_range": REDUCE_RANGE,
             "fp32_nodes": kept}, indent=2))
        mark_derived(staging, directory)
        with contextlib.suppress(OSError):  # another process finished the same export first
            staging.rename(cache)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    remove_superseded(cache, directory)
    log.info("int8 export of %s ready in %.1f s", directory.name, time.monotonic() - began)
    return cache / "model.onnx"


def open_session(path: Path):
    """An ONNX Runtime CPU session with every graph optimisation, on torch's thread count,
    whose idle threads do not spin."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # idle pool threads sleep instead of spinning: a spinning thread takes a core from the
    # request handling and tokenisation that prepare the next batch (measured on 2 cores with
    # 8 clients: 1.4-1.5x the throughput; a single query's p50 is about 1 ms slower)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def padded(jobs: Sequence[EncodeJob], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask, [B, L_max] int64, padded on the right."""
    width = max(job.n_tokens for job in jobs)
    ids = np.full((len(jobs), width), pad_id, np.int64)
    mask = np.zeros((len(jobs), width), np.int64)
    for row, job in enumerate(jobs):
        ids[row, : job.n_tokens] = job.ids
        mask[row, : job.n_tokens] = 1
    return ids, mask


# -- the models -------------------------------------------------------------------------------


class Int8Encoder(TextEncoder):
    """An encoder checkpoint on ONNX Runtime int8: the same tasks, pooling and features as
    `HFEncoder`, the forward pass from the quantised export."""

    def __init__(self, session, config, tokenizer, directory: Path, name: str = ""):
        self.session = session
        self.tokenizer = tokenizer
        self.name = name or directory.name
        self.pooling = read_pooling_mode(directory)
        self.prompts = read_prompts(directory)
        self.pad_id = tokenizer.pad_token_id or 0
        self.capabilities = encoder_capabilities(config, tokenizer, directory, self.prompts,
                                                 self.pooling, backend="int8")

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "") -> Int8Encoder:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        directory = Path(directory)
        path = int8_model(directory, "hidden", False,
                          lambda: AutoModel.from_pretrained(directory, dtype=torch.float32,
                                                            attn_implementation="eager"))
        return cls(open_session(path), AutoConfig.from_pretrained(directory),
                   AutoTokenizer.from_pretrained(directory), directory, name)

    def hidden_states(self, jobs: Sequence[EncodeJob]) -> list[torch.Tensor]:
        """Last hidden states per job, [L_i, D], from one padded int8 forward pass."""
        ids, mask = padded(jobs, self.pad_id)
        (hidden,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        states = torch.from_numpy(hidden)  # [B, L_max, D]
        return [states[row, : job.n_tokens] for row, job in enumerate(jobs)]


class Int8CrossEncoder(CrossEncoder):
    """A cross-encoder on ONNX Runtime int8: pairs as `CrossEncoder` builds them, the logit
    from the quantised export."""

    def __init__(self, session, config, tokenizer, directory: Path, name: str = ""):
        self.session = session
        self.tokenizer = tokenizer
        self.name = name or directory.name
        self.pad_id = tokenizer.pad_token_id or 0
        self.token_types = config.type_vocab_size > 1
        self.capabilities = cross_encoder_capabilities(config, tokenizer, directory, self.name,
                                                       backend="int8")

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "") -> Int8CrossEncoder:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        directory = Path(directory)
        config = AutoConfig.from_pretrained(directory)
        if config.num_labels != 1:  # refuse before exporting
            raise ValueError(f"{name or directory.name}: a cross-encoder has one output, "
                             f"not {config.num_labels}")
        path = int8_model(directory, "logits", config.type_vocab_size > 1,
                          lambda: AutoModelForSequenceClassification.from_pretrained(
                              directory, attn_implementation="eager"))
        return cls(open_session(path), config, AutoTokenizer.from_pretrained(directory),
                   directory, name)

    def embed_jobs(self, jobs: Sequence[EncodeJob]) -> list[np.ndarray]:
        """Relevance logits, one [1] array per pair job."""
        ids, mask = padded(jobs, self.pad_id)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self.token_types:
            types = np.zeros_like(ids)
            for row, job in enumerate(jobs):
                types[row, : job.n_tokens] = segment_ids(job.ids, self.tokenizer.sep_token_id)
            feeds["token_type_ids"] = types
        (logits,) = self.session.run(None, feeds)  # [B, 1]
        return [row.astype(np.float32) for row in logits]


INT8_CLASSES = {"hf-encoder": Int8Encoder, "cross-encoder": Int8CrossEncoder}


def load_int8(directory: Path, family: str, name: str) -> Int8Encoder | Int8CrossEncoder:
    """The int8 model for a checkpoint of `family`; ValueError for a family without one."""
    if family not in INT8_CLASSES:
        raise NoBackend(f"{name}: the {family} family has no int8 backend (int8 serves "
                        f"{' and '.join(INT8_CLASSES)} checkpoints); use the torch backend")
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ValueError("the int8 backend needs onnxruntime and onnx: "
                         "pip install 'polyseek[int8]'") from exc
    return INT8_CLASSES[family].from_pretrained(directory, name=name)
