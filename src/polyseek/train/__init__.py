"""`polyseek train`: fine-tuning recipes for embedders, rerankers and vision-language models."""
