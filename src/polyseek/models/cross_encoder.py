"""Cross-encoder rerankers: `*ForSequenceClassification` encoders (bge / jina v2 rerankers).

A `PairScorer`: each (query, document) pair is one sequence; the single logit, through a
sigmoid, is the relevance score. Documents are truncated to fit the context, the query never is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from polyseek.errors import InvalidInput
from polyseek.models.base import Capabilities, EncodeJob, Input, pad_batch, score_pairs
from polyseek.models.families import family_named, stock_config
from polyseek.models.hf_encoder import read_max_tokens
from polyseek.models.text_encoder import text_of, token_ids

FAMILY = family_named("cross-encoder")


def cross_encoder_capabilities(config, tokenizer, directory: Path, name: str,
                               backend: str = "torch") -> Capabilities:
    """What a `*ForSequenceClassification` checkpoint declares, whichever backend runs it;
    ValueError unless it has exactly one output."""
    if config.num_labels != 1:
        raise ValueError(f"{name}: a cross-encoder has one output, not {config.num_labels}")
    return FAMILY.capabilities(
        max_tokens=read_max_tokens(directory, config, tokenizer),
        reranker="cross-encoder",
        score="sigmoid",
        backend=backend,
        extras={"architecture": (config.architectures or [""])[0]},
    )


def segment_ids(ids: list[int], sep_id: int | None) -> list[int]:
    """BERT segment ids of a pair: 0 up to and including the first [SEP], 1 after it."""
    first = ids.index(sep_id) if sep_id in ids else len(ids) - 1
    return [0] * (first + 1) + [1] * (len(ids) - first - 1)


class CrossEncoder:
    def __init__(self, model, tokenizer, directory: Path, name: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or directory.name
        self.pad_id = tokenizer.pad_token_id or 0
        self.capabilities = cross_encoder_capabilities(model.config, tokenizer, directory,
                                                       self.name)

    @classmethod
    def from_pretrained(cls, directory: str | Path, name: str = "") -> CrossEncoder:
        """transformers loads the stock `*ForSequenceClassification` architecture."""
        directory = Path(directory)
        model = AutoModelForSequenceClassification.from_pretrained(directory)
        return cls(model, AutoTokenizer.from_pretrained(directory), directory, name)

    def prepare_pairs(self, query: Input, documents: Sequence[Input]) -> list[EncodeJob]:
        """One job per (query, document) pair, the document cut to fit the context."""
        text = text_of(query, 0, self.name)
        docs = [text_of(d, i, self.name) for i, d in enumerate(documents)]
        budget = self.capabilities.max_tokens
        query_ids = token_ids(self.tokenizer, text, add_special_tokens=True, truncation=False)
        if len(query_ids) > budget // 2:
            raise InvalidInput(f"the query has {len(query_ids)} tokens; at most {budget // 2} "
                               f"leave room for documents in {self.name!r}", ("query",))
        pairs = token_ids(self.tokenizer, [text] * len(docs), docs, truncation="only_second",
                          max_length=budget)
        return [EncodeJob(ids) for ids in pairs]

    @torch.inference_mode()
    def embed_jobs(self, jobs: Sequence[EncodeJob]) -> list[np.ndarray]:
        """Relevance logits, one [1] array per pair job."""
        return [row.float().numpy() for row in self.logits(jobs)]

    def logits(self, jobs: Sequence[EncodeJob]) -> torch.Tensor:
        """The pair jobs' relevance logits, [B, 1] (with gradients when enabled: training)."""
        ids, mask = pad_batch([job.ids for job in jobs], self.pad_id)
        types = torch.zeros_like(ids)
        for row, job in enumerate(jobs):
            types[row, : job.n_tokens] = torch.tensor(self._token_types(job.ids))
        kwargs = {"token_type_ids": types} if self.model.config.type_vocab_size > 1 else {}
        return self.model(input_ids=ids, attention_mask=mask, **kwargs).logits

    def _token_types(self, ids: list[int]) -> list[int]:
        return segment_ids(ids, self.tokenizer.sep_token_id)

    def score(self, query: Input, documents: Sequence[Input],
              batch_size: int = 32) -> list[float]:
        return score_pairs(self, query, documents, batch_size)


def build_cross_encoder(config: dict) -> torch.nn.Module:
    """The module tree of a stock `*ForSequenceClassification` encoder (meta-safe)."""
    return AutoModelForSequenceClassification.from_config(stock_config(config))
