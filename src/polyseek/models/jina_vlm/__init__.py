"""jina-vlm: native implementation of the published checkpoint (`model_type: "jvlm"`)."""

from polyseek.models.jina_vlm.config import JinaVLMConfig
from polyseek.models.jina_vlm.generator import JinaVLMGenerator
from polyseek.models.jina_vlm.model import (
    GenerationOutput,
    JinaVLMForConditionalGeneration,
    MultimodalInputs,
    build_jina_vlm,
)

__all__ = [
    "GenerationOutput",
    "JinaVLMConfig",
    "JinaVLMForConditionalGeneration",
    "JinaVLMGenerator",
    "MultimodalInputs",
    "build_jina_vlm",
]
