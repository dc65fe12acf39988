"""Training recipes: embedder, reranker and vision-language model."""
