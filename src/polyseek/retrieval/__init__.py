"""Retrieval: a Qdrant-backed index of files and documents, and hybrid search over it."""

from polyseek.retrieval.filters import Condition, Filter, Range
from polyseek.retrieval.ingest import (
    Document,
    FileResult,
    IndexSummary,
    index_documents,
    index_paths,
)
from polyseek.retrieval.search import Hit, SearchResult, Stage, search, search_async
from polyseek.retrieval.store import (
    CollectionNotFound,
    CollectionSpec,
    ModelMismatch,
    Store,
    StoreBusy,
    StoreUnavailable,
    open_store,
)

__all__ = [
    "CollectionNotFound", "CollectionSpec", "Condition", "Document", "FileResult", "Filter",
    "Hit", "IndexSummary", "ModelMismatch", "Range", "SearchResult", "Stage", "Store",
    "StoreBusy", "StoreUnavailable", "index_documents", "index_paths", "open_store", "search",
    "search_async",
]
