"""polyseek: a self-hosted search foundation with Jina- and OpenAI-compatible APIs.

`load_model` and `build_module` are imported lazily so that `polyseek` starts fast and the
CLI can configure the environment (offline mode) before transformers is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["build_module", "load_model"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from polyseek.models import build_module, load_model


def __getattr__(name: str):
    if name in __all__:
        from polyseek import models

        return getattr(models, name)
    raise AttributeError(f"module 'polyseek' has no attribute {name!r}")
