"""POST /v1/classify and /v1/train through the real server on the bundled multilingual-e5-small:
zero-shot and few-shot classification of English and Swedish texts, classifiers kept on disk
across restarts, images on an image model, and every refusal with its status."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pdf_files import make_pdf
from support import (
    CHAT_MODEL,
    DEFAULT_MODEL,
    FIXTURES,
    data_uri,
    serve_checkpoint,
    serve_subprocess,
    write_tiny_jina_clip_v2,
)

TOPICS = ["sport", "cooking", "politics"]
# (text, its topic): English and Swedish
ZERO_SHOT = [
    ("The striker scored twice in the final minutes of the match.", "sport"),
    ("Add the butter and let the sauce simmer for ten minutes.", "cooking"),
    ("Parliament voted on the government's new budget.", "politics"),
    ("Målvakten räddade en straff i förlängningen.", "sport"),
    ("Tillsätt smöret och låt såsen koka i tio minuter.", "cooking"),
    ("Riksdagen röstade om regeringens nya budget.", "politics"),
]

# Few-shot labels are codes, not words: the classifier learns them from the examples alone.
WEATHER, BAKING, MONEY = "W-17", "B-42", "M-03"
EXAMPLES = [
    ("Heavy rain and strong winds are expected tomorrow.", WEATHER),
    ("It will be sunny with a light breeze this afternoon.", WEATHER),
    ("I morgon väntas kraftigt regn och hård vind.", WEATHER),
    ("Det blir soligt och svag vind i eftermiddag.", WEATHER),
    ("Knead the dough and let it rise for an hour.", BAKING),
    ("Bake the bread at 220 degrees for thirty minutes.", BAKING),
    ("Knåda degen och låt den jäsa i en timme.", BAKING),
    ("Grädda brödet i 220 grader i trettio minuter.", BAKING),
]
MORE_EXAMPLES = [
    ("The central bank raised interest rates by half a point.", MONEY),
    ("Shares fell sharply after the quarterly report.", MONEY),
    ("Riksbanken höjde styrräntan med en halv procentenhet.", MONEY),
    ("Aktierna föll kraftigt efter kvartalsrapporten.", MONEY),
]
HELD_OUT = [
    ("Snow is falling and the temperature drops below zero tonight.", WEATHER),
    ("Det snöar och temperaturen sjunker under noll i natt.", WEATHER),
    ("Brush the buns with egg before they go into the oven.", BAKING),
    ("Pensla bullarna med ägg innan de sätts in i ugnen.", BAKING),
]
HELD_OUT_MONEY = [
    ("Inflation pushed the stock market down this week.", MONEY),
    ("Inflationen pressade ned börsen den här veckan.", MONEY),
]


def examples(pairs) -> list[dict]:
    return [{"text": text, "label": label} for text, label in pairs]


def texts(pairs) -> list[str]:
    return [text for text, _ in pairs]


def check_shape(body: dict, n_inputs: int, labels: list[str]) -> None:
    """Jina's response: one classification per input in order, scores over labels summing
    to 1, the prediction the best of them."""
    assert [d["index"] for d in body["data"]] == list(range(n_inputs))
    for item in body["data"]:
        assert item["object"] == "classification"
        assert [p["label"] for p in item["predictions"]] == labels
        scores = [p["score"] for p in item["predictions"]]
        assert math.isclose(sum(scores), 1.0, abs_tol=1e-6)
        assert all(0 <= s <= 1 for s in scores)
        assert item["score"] == max(scores)
        assert item["prediction"] == labels[scores.index(max(scores))]
    assert body["usage"]["total_tokens"] > 0
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"]


def predictions(body: dict) -> list[str]:
    return [d["prediction"] for d in body["data"]]


def scores(body: dict) -> np.ndarray:
    """[inputs, labels]: each input's score per label (batching moves them by ~1e-7)."""
    return np.array([[p["score"] for p in d["predictions"]] for d in body["data"]])


def test_zero_shot_in_two_languages(client):
    response = client.post("/v1/classify", json={
        "model": DEFAULT_MODEL, "input": texts(ZERO_SHOT), "labels": TOPICS})
    assert response.status_code == 200, response.text
    body = response.json()
    check_shape(body, len(ZERO_SHOT), TOPICS)
    assert body["model"] == DEFAULT_MODEL
    assert predictions(body) == [topic for _, topic in ZERO_SHOT]
    assert all(d["score"] > 0.5 for d in body["data"])


def test_zero_shot_scores_are_the_softmax_of_cosines_with_the_classification_task(client):
    """e5 classifies with its text-matching prompt ("query: "), labels and inputs alike: the
    scores follow from /v1/embeddings with that task, and differ from those without it."""
    inputs = texts(ZERO_SHOT[:2]) + [{"text": ZERO_SHOT[5][0]}]
    got = client.post("/v1/classify", json={"model": DEFAULT_MODEL, "input": inputs,
                                            "labels": TOPICS}).json()

    def expected(task: str | None) -> np.ndarray:
        def embed(items):
            body = {"model": DEFAULT_MODEL, "input": items, **({"task": task} if task else {})}
            return np.array([d["embedding"] for d in
                             client.post("/v1/embeddings", json=body).json()["data"]])
        logits = 100 * embed(inputs) @ embed(TOPICS).T
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(scores(got), expected("text-matching"), atol=1e-4)
    assert np.abs(scores(got) - expected(None)).max() > 1e-3


def test_a_single_input_and_object_forms(client):
    single = client.post("/v1/classify", json={"model": DEFAULT_MODEL, "labels": TOPICS,
                                               "input": "Riksdagen röstade om budgeten."})
    as_object = client.post("/v1/classify", json={"model": DEFAULT_MODEL, "labels": TOPICS,
                                                  "input": {"text": "Riksdagen röstade om "
                                                            "budgeten."}})
    assert single.status_code == as_object.status_code == 200, single.text
    assert predictions(single.json()) == predictions(as_object.json()) == ["politics"]
    assert np.allclose(scores(single.json()), scores(as_object.json()), atol=1e-5)


def test_few_shot_learns_codes_from_examples_and_trains_further(client):
    trained = client.post("/v1/train", json={"model": DEFAULT_MODEL,
                                             "input": examples(EXAMPLES), "num_iters": 10})
    assert trained.status_code == 200, trained.text
    first = trained.json()
    classifier = first["classifier_id"]
    assert first["model"] == DEFAULT_MODEL and first["labels"] == [WEATHER, BAKING]
    assert first["num_samples"] == first["total_samples"] == len(EXAMPLES)
    assert first["usage"]["total_tokens"] > 0

    def classify(pairs) -> dict:
        response = client.post("/v1/classify", json={"classifier_id": classifier,
                                                     "input": texts(pairs)})
        assert response.status_code == 200, response.text
        return response.json()

    before = classify(HELD_OUT)
    check_shape(before, len(HELD_OUT), [WEATHER, BAKING])
    assert before["classifier_id"] == classifier and before["model"] == DEFAULT_MODEL
    assert predictions(before) == [label for _, label in HELD_OUT]

    # more examples, a new label: the same classifier now knows three
    more = client.post("/v1/train", json={"classifier_id": classifier,
                                          "input": examples(MORE_EXAMPLES)})
    assert more.status_code == 200, more.text
    assert more.json()["classifier_id"] == classifier
    assert more.json()["labels"] == [WEATHER, BAKING, MONEY]
    assert more.json()["num_samples"] == len(MORE_EXAMPLES)
    assert more.json()["total_samples"] == len(EXAMPLES) + len(MORE_EXAMPLES)
    after = classify(HELD_OUT + HELD_OUT_MONEY)
    check_shape(after, len(HELD_OUT) + len(HELD_OUT_MONEY), [WEATHER, BAKING, MONEY])
    assert predictions(after) == [label for _, label in HELD_OUT + HELD_OUT_MONEY]

    # naming the classifier's own model is allowed; another model is not
    named = client.post("/v1/classify", json={"classifier_id": classifier, "model": DEFAULT_MODEL,
                                              "input": "Det regnar."})
    assert named.status_code == 200 and predictions(named.json()) == [WEATHER]
    for route, body in [("/v1/classify", {"input": "x"}),
                        ("/v1/train", {"input": [{"text": "x", "label": MONEY}]})]:
        wrong = client.post(route, json={"classifier_id": classifier, "model": "other", **body})
        assert wrong.status_code == 422, wrong.text
        assert "was trained with model" in wrong.text


def test_classifiers_persist_across_restarts_and_failures_write_nothing(tmp_path):
    data = tmp_path / "data"
    with serve_subprocess("--data", str(data)) as url, httpx.Client(base_url=url,
                                                                    timeout=120) as client:
        trained = client.post("/v1/train", json={"model": DEFAULT_MODEL,
                                                 "input": examples(EXAMPLES)})
        assert trained.status_code == 200, trained.text
        classifier = trained.json()["classifier_id"]
        before = client.post("/v1/classify", json={"classifier_id": classifier,
                                                   "input": texts(HELD_OUT)}).json()
        files = sorted(p.name for p in (data / "classifiers").iterdir())
        assert files == [f"{classifier}.npz"]
        saved = (data / "classifiers" / files[0]).read_bytes()

        # refused requests leave the data directory as it was
        refused = [
            {"model": DEFAULT_MODEL, "input": [{"text": "only one label", "label": "a"},
                                               {"text": "still one", "label": "a"}]},
            {"classifier_id": classifier, "input": [{"image": data_uri(FIXTURES / "jina-clip-v2"
                                                     / "image0_landscape_160x120.png"),
                                                     "label": WEATHER}]},
            {"model": DEFAULT_MODEL, "input": [{"text": "x" * 5000, "label": "a"},
                                               {"text": "y", "label": "b"}]},
        ]
        for body in refused:
            response = client.post("/v1/train", json=body)
            assert response.status_code in (413, 422), response.text
        assert sorted(p.name for p in (data / "classifiers").iterdir()) == files
        assert (data / "classifiers" / files[0]).read_bytes() == saved

    with serve_subprocess("--data", str(data)) as url, httpx.Client(base_url=url,
                                                                    timeout=120) as client:
        after = client.post("/v1/classify", json={"classifier_id": classifier,
                                                  "input": texts(HELD_OUT)})
        assert after.status_code == 200, after.text
        assert predictions(after.json()) == predictions(before)
        assert np.allclose(scores(after.json()), scores(before), atol=1e-5)
        more = client.post("/v1/train", json={"classifier_id": classifier,
                                               "input": examples(MORE_EXAMPLES)})
        assert more.status_code == 200 and more.json()["total_samples"] == 12, more.text

        # listed; a damaged file is a 409 that says what to do, listed with its error
        (data / "classifiers" / "damaged.npz").write_bytes(saved[: len(saved) // 2])
        damaged = client.post("/v1/classify", json={"classifier_id": "damaged", "input": "x"})
        assert damaged.status_code == 409, damaged.text
        assert "DELETE /v1/classifiers/damaged" in damaged.json()["error"]["message"]
        listed = client.get("/v1/classifiers").json()["data"]
        assert [(c["classifier_id"], c.get("total_samples"), c.get("labels")) for c in listed] \
            == [(classifier, 12, [WEATHER, BAKING, MONEY]), ("damaged", 0, [])]
        assert listed[0]["model"] == DEFAULT_MODEL and "error" not in listed[0]
        assert "cannot be read" in listed[1]["error"]

        for name in (classifier, "damaged"):
            assert client.delete(f"/v1/classifiers/{name}").status_code == 204
            gone = client.delete(f"/v1/classifiers/{name}")
            assert gone.status_code == 404 and "unknown classifier" in gone.text
        assert client.get("/v1/classifiers").json() == {"object": "list", "data": []}
        assert list((data / "classifiers").iterdir()) == []
        missing = client.post("/v1/classify", json={"classifier_id": classifier, "input": "x"})
        assert missing.status_code == 404


@pytest.mark.parametrize(("route", "body", "status", "says"), [
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": "x", "labels": ["only"]}, 422,
     "at least 2"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": "x", "labels": ["a", "a"]}, 422,
     "unique"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": "x", "labels": ["a", ""]}, 422,
     "at least 1 character"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": "x"}, 422, "either labels"),
    ("/v1/classify", {"input": "x", "labels": ["a", "b"]}, 422, "needs a model"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": "x", "labels": ["a", "b"],
                      "classifier_id": "c1"}, 422, "either labels"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": "x", "labels": ["a", "b"],
                      "truncate": "true"}, 422, "truncate"),
    ("/v1/classify", {"model": None, "classifier_id": "c1", "input": "x"}, 422, "model"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": [], "labels": ["a", "b"]}, 422,
     "must not be empty"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": [""], "labels": ["a", "b"]}, 422,
     "empty"),
    ("/v1/classify", {"classifier_id": "0123456789abcdef", "input": "x"}, 404,
     "unknown classifier"),
    ("/v1/classify", {"classifier_id": "../etc/passwd", "input": "x"}, 422, "pattern"),
    ("/v1/classify", {"model": "nope", "input": "x", "labels": ["a", "b"]}, 400,
     "unknown model"),
    ("/v1/classify", {"model": CHAT_MODEL, "input": "x", "labels": ["a", "b"]}, 400,
     "not a embedding model"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "labels": ["a", "b"],
                      "input": ["x", {"image": "data:image/png;base64,iVBORw0KGgo="}]}, 422,
     "text-only and cannot take the image in input[1]"),
    ("/v1/classify", {"model": DEFAULT_MODEL, "input": "x " * 600, "labels": ["a", "b"]}, 413,
     "context"),
    ("/v1/train", {"model": DEFAULT_MODEL, "input": [{"text": "x", "label": "a"}]}, 422,
     "fewer than two labels"),
    ("/v1/train", {"input": [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}]}, 422,
     "give a model"),
    ("/v1/train", {"model": DEFAULT_MODEL, "input": [{"text": "x"}, {"text": "y"}]}, 422,
     "label"),
    ("/v1/train", {"model": DEFAULT_MODEL, "input": []}, 422, "at least 1"),
    ("/v1/train", {"classifier_id": "0123456789abcdef",
                   "input": [{"text": "x", "label": "a"}]}, 404, "unknown classifier"),
    ("/v1/train", {"model": "nope", "input": [{"text": "x", "label": "a"},
                                              {"text": "y", "label": "b"}]}, 400,
     "unknown model"),
])
def test_refusals(client, route, body, status, says):
    response = client.post(route, json=body)
    assert response.status_code == status, response.text
    assert says in response.text, response.text
    if status == 404:
        assert response.json()["error"]["type"] == "classifier_not_found"


def test_too_many_inputs_is_413(client):
    response = client.post("/v1/classify", json={"model": DEFAULT_MODEL, "labels": ["a", "b"],
                                                  "input": ["x"] * 2049})
    assert response.status_code == 413, response.text
    assert "at most 2048" in response.text


def png(color: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buffer, "PNG")
    return "data:image/png;base64," + __import__("base64").b64encode(buffer.getvalue()).decode()


def test_images_on_an_image_model(tmp_path: Path):
    """The tiny random jina-clip-v2 reads images: zero-shot over text and image inputs, and a
    few-shot classifier trained on images (and text) that recognises its training images."""
    checkpoint = write_tiny_jina_clip_v2(tmp_path)
    pictures = {"red": png("red"), "blue": png("blue"),
                "photo": data_uri(FIXTURES / "jina-clip-v2" / "image0_landscape_160x120.png")}
    with serve_checkpoint("clip-tiny", checkpoint, data_dir=str(tmp_path / "data")) as url, \
            httpx.Client(base_url=url, timeout=120) as client:
        labels = ["a red square", "a blue square", "a landscape"]
        zero = client.post("/v1/classify", json={"model": "clip-tiny", "labels": labels, "input": [
            {"image": pictures["red"]}, pictures["blue"], "a photo", {"url": pictures["photo"]}]})
        assert zero.status_code == 200, zero.text
        check_shape(zero.json(), 4, labels)

        trained = client.post("/v1/train", json={"model": "clip-tiny", "input": [
            {"image": pictures["red"], "label": "red"},
            {"image": pictures["blue"], "label": "blue"},
            {"image": pictures["photo"], "label": "photo"},
            {"text": "a photo of hills", "label": "photo"}]})
        assert trained.status_code == 200, trained.text
        few = client.post("/v1/classify", json={
            "classifier_id": trained.json()["classifier_id"],
            "input": [{"image": pictures[name]} for name in ("red", "blue", "photo")]})
        assert few.status_code == 200, few.text
        check_shape(few.json(), 3, ["red", "blue", "photo"])
        assert predictions(few.json()) == ["red", "blue", "photo"]


def test_the_schema_documents_both_routes(client):
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for path in ("/v1/classify", "/v1/train"):
        operation = schema["paths"][path]["post"]
        assert {"200", "400", "404", "413", "422", "429", "503"} <= set(operation["responses"])
        missing = operation["responses"]["404"]["content"]["application/json"]["schema"]
        assert missing["$ref"].endswith("/ErrorResponse")
    request = components["ClassifyRequest"]
    labels = request["properties"]["labels"]
    assert labels["minItems"] == 2 and labels["uniqueItems"] is True
    assert request["properties"]["classifier_id"]["pattern"]
    assert [branch["required"] for branch in request["anyOf"]] == [["labels", "model"],
                                                                   ["classifier_id"]]
    assert components["TrainRequest"]["properties"]["input"]["minItems"] == 1
    assert set(components["TextExample"]["required"]) == {"text", "label"}
    assert components["ClassificationObject"]["properties"]["object"]["const"] == \
        "classification"
    assert {"classifier_id", "num_samples", "labels"} <= set(
        components["TrainResponse"]["properties"])


def test_concurrent_training_of_one_classifier_keeps_every_example(client):
    from concurrent.futures import ThreadPoolExecutor

    first = client.post("/v1/train", json={"model": DEFAULT_MODEL, "input": examples(EXAMPLES)})
    classifier = first.json()["classifier_id"]

    def train(pairs) -> dict:
        response = client.post("/v1/train", json={"classifier_id": classifier,
                                                  "input": examples(pairs)})
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(train, [MORE_EXAMPLES[:2], MORE_EXAMPLES[2:] + HELD_OUT[:1]]))
    totals = sorted(d["total_samples"] for d in done)
    assert totals == [len(EXAMPLES) + 2, len(EXAMPLES) + 5] or \
        totals == [len(EXAMPLES) + 3, len(EXAMPLES) + 5]


def test_a_pdf_is_classified_page_by_page(client):
    """A PDF input (its text layer, for e5) gives one classification per page, each naming
    its input and page; the inputs around it keep their own."""
    pdf = make_pdf(["The goalkeeper saved a penalty in extra time.", "",
                    "Riksdagen röstade om regeringens nya budget."])
    response = client.post("/v1/classify", json={"model": DEFAULT_MODEL, "labels": TOPICS,
        "input": ["Tillsätt smöret och låt såsen koka i tio minuter.",
                  {"pdf": base64.b64encode(pdf).decode()}]})
    assert response.status_code == 200, response.text
    body = response.json()
    check_shape(body, 3, TOPICS)
    assert [(d.get("input_index"), d.get("page")) for d in body["data"]] == \
        [(0, None), (1, 1), (1, 3)]
    assert predictions(body) == ["cooking", "sport", "politics"]
