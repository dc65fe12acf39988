"""Retrieval: a Qdrant-backed index of files and documents, and hybrid search over it.

The names below are imported lazily, so that a light submodule (`filters`) does not pull in
the store and the models: the CLI parses filters before it knows whether a server answers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_HOMES = {
    "polyseek.retrieval.filters": ("Condition", "Filter", "Range"),
    "polyseek.retrieval.ingest": ("Document", "FileResult", "IndexSummary", "index_documents",
                                  "index_paths"),
    # `search` the function is polyseek.retrieval.search.search: the submodule's own name wins
    # once it is imported, so the package does not re-export it
    "polyseek.retrieval.search": ("Hit", "SearchResult", "Stage", "search_async"),
    "polyseek.retrieval.store": ("CollectionNotFound", "CollectionSpec", "ModelMismatch",
                                 "Store", "StoreBusy", "StoreUnavailable", "open_store"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:
    from polyseek.retrieval.filters import Condition, Filter, Range  # noqa: F401
    from polyseek.retrieval.ingest import (  # noqa: F401
        Document,
        FileResult,
        IndexSummary,
        index_documents,
        index_paths,
    )
    from polyseek.retrieval.search import Hit, SearchResult, Stage, search_async  # noqa: F401
    from polyseek.retrieval.store import (  # noqa: F401
        CollectionNotFound,
        CollectionSpec,
        ModelMismatch,
        Store,
        StoreBusy,
        StoreUnavailable,
        open_store,
    )


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'polyseek.retrieval' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
