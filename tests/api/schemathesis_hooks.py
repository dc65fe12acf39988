"""Schemathesis hooks for test_schemathesis.py, loaded by the `schemathesis run` it starts
(SCHEMATHESIS_HOOKS): steer generated requests to what the server holds, keep chat replies
short, and excuse only the refusals that the schema cannot state.

Not a test module (pytest collects test_*.py only).
"""

from __future__ import annotations

import os
import re

import schemathesis

EMBEDDING_MODEL = os.environ["POLYSEEK_TEST_EMBEDDING_MODEL"]
CHAT_MODEL = os.environ["POLYSEEK_TEST_CHAT_MODEL"]
COLLECTION = os.environ["POLYSEEK_TEST_COLLECTION"]  # indexed before the run
THUMBNAIL = os.environ["POLYSEEK_TEST_THUMBNAIL"]  # stored before the run
CLASSIFIER = os.environ["POLYSEEK_TEST_CLASSIFIER"]  # trained before the run
MAX_TOKENS = 2  # the run tests the contract, not the model: replies stay a token or two

# To the schema a model name is any string; which names are served is configuration. Each
# generated name is replaced by a served one, a string by a string, so a case stays as valid
# or as invalid as it was generated (unknown names, 400 and 404, have their own tests).
MODEL_FIELDS = {
    "/v1/embeddings": {"model": EMBEDDING_MODEL},
    "/v1/rerank": {"model": EMBEDDING_MODEL},
    "/v1/chat/completions": {"model": CHAT_MODEL, "rerank": EMBEDDING_MODEL},
    "/v1/index": {"model": EMBEDDING_MODEL},
    "/v1/search": {"rerank": EMBEDDING_MODEL},
    "/v1/segment": {"tokenizer": EMBEDDING_MODEL},
    "/v1/classify": {"model": EMBEDDING_MODEL},
    "/v1/train": {"model": EMBEDDING_MODEL},
}

# Schema-valid requests the server refuses for reasons no schema can state: they depend on the
# served model (its modalities, dimensions, tasks, outputs and context) or on what the store
# holds (a collection keeps the model and BM25 language it was built with), or on the bytes
# behind a reference (a PDF's content, or whether its URL can be fetched). Each such 4xx says
# why, and only these are excused: any other refusal of a schema-valid request fails the run
# (ST202, "Schema-valid request rejected"): a constraint the server enforces belongs in the
# schema.
CONTENT_DEPENDENT = re.compile("|".join([
    r"is text-only and cannot",
    r"dimensions must be between \d+ and \d+ for this model",
    r"this model has no tasks|unknown task",
    r"has no multi-vector output|does not support late chunking",
    r"-token context",
    r"was built with",
    r"fewer than two labels",  # a classifier's labels, across its examples and what it holds
    # a PDF input's bytes: not a PDF, damaged, locked, too long, or unreachable by its URL
    r"PDF data|PDF reference|not a PDF|PDF is|broken or unreadable PDF|of the PDF|"
    r"no text layer|pages, over the|cannot fetch PDF|resolves to|cannot resolve host|"
    r"invalid URL|unsupported URL scheme|has no host|DNS lookup",
    r"no text to search with",  # a grounded question of only whitespace (or only images)
]))


def _half(value: str) -> bool:
    """A deterministic half of the generated strings (so the others still reach a 404)."""
    return len(value) % 2 == 1


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.path == "/v1/thumbnails/{name}" and _half(str(case.path_parameters.get("name"))):
        case.path_parameters["name"] = THUMBNAIL
    if case.path == "/v1/models/{name}" and _half(str(case.path_parameters.get("name"))):
        case.path_parameters["name"] = EMBEDDING_MODEL
    body = case.body
    if not isinstance(body, dict):
        return
    for field, value in MODEL_FIELDS.get(case.path, {}).items():
        if isinstance(body.get(field), str):
            body[field] = value
    if case.path in ("/v1/search", "/v1/chat/completions") \
            and isinstance(body.get("collection"), str) and _half(body["collection"]):
        body["collection"] = COLLECTION
    if case.path in ("/v1/classify", "/v1/train") and isinstance(body.get("classifier_id"), str) \
            and _half(body["classifier_id"]):
        body["classifier_id"] = CLASSIFIER
    if case.path == "/v1/chat/completions":
        # valid limits over the cap are lowered and missing ones set; others left as they are
        limits = ("max_tokens", "max_completion_tokens")
        for key in limits:
            if type(body.get(key)) is int and body[key] > MAX_TOKENS:
                body[key] = MAX_TOKENS
        if all(body.get(key) is None for key in limits):
            body["max_tokens"] = MAX_TOKENS


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Every failure counts but a schema-valid request refused for a content-dependent reason."""
    return not (failure.code == "ST202" and response.status_code in (400, 413, 422)
                and CONTENT_DEPENDENT.search(response.text or ""))
