"""Retrieval: a Qdrant-backed index of files and a staged query pipeline over it."""

from polyseek.retrieval.ingest import FileResult, IndexSummary, index_documents, index_paths
from polyseek.retrieval.search import Hit, SearchResult, Stage, search, search_async
from polyseek.retrieval.store import (
    CollectionNotFound,
    CollectionSpec,
    ModelMismatch,
    Store,
)

__all__ = [
    "CollectionNotFound", "CollectionSpec", "FileResult", "Hit", "IndexSummary",
    "ModelMismatch", "SearchResult", "Stage", "Store", "index_documents", "index_paths",
    "search", "search_async",
]
