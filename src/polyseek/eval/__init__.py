"""`polyseek eval`: search quality and latency of retrieval pipelines on a BEIR dataset,
measured through the real indexing and search path."""

from polyseek.eval.data import Dataset, EvalError, load_dataset
from polyseek.eval.report import plot, table
from polyseek.eval.runner import evaluate

__all__ = ["Dataset", "EvalError", "evaluate", "load_dataset", "plot", "table"]
