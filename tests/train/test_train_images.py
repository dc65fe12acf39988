"""Training on image items: jina-clip-v2 in full and a jina-embeddings-v4 task adapter learn a
tiny image-caption set (text queries, image positives); bad image data is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import write_tiny_jina_v4
from PIL import Image, ImageDraw

from polyseek import load_model
from polyseek.train.data import ImageItem, TrainDataError, load_training_data, model_inputs
from polyseek.train.embedder import EmbedderSettings, train_embedder
from polyseek.train.jina_clip_trainee import JinaClipTrainee
from polyseek.train.jina_v4_trainee import JinaV4Trainee

from support import FIXTURES, write_tiny_jina_clip_v2

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220),
           "yellow": (240, 220, 40), "purple": (140, 40, 160), "orange": (250, 140, 20),
           "black": (10, 10, 10), "white": (245, 245, 245)}
SHAPES = ("square", "circle")


def captions() -> list[tuple[str, str]]:
    """(caption, file name) of each picture: one shape in one colour on grey."""
    return [(f"a {colour} {shape}", f"{colour}-{shape}.png")
            for i, colour in enumerate(COLOURS) for shape in SHAPES[i % 2:i % 2 + 1]]


def draw(colour: tuple[int, int, int], shape: str, path: Path) -> None:
    image = Image.new("RGB", (32, 32), (128, 128, 128))
    pen = ImageDraw.Draw(image)
    (pen.rectangle if shape == "square" else pen.ellipse)((4, 4, 27, 27), fill=colour)
    image.save(path)


@pytest.fixture(scope="module")
def image_pairs(tmp_path_factory) -> Path:
    """pairs.jsonl: caption -> {"image": "images/<file>"} (relative), one other picture as the
    hard negative."""
    root = tmp_path_factory.mktemp("image-pairs")
    (root / "images").mkdir()
    rows = captions()
    for caption, name in rows:
        colour, shape = caption.split()[1:]
        draw(COLOURS[colour], shape, root / "images" / name)
    lines = [{"query": caption, "positive": {"image": f"images/{name}"},
              "negatives": [{"image": f"images/{rows[(i + 1) % len(rows)][1]}"}]}
             for i, (caption, name) in enumerate(rows)]
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    if not (FIXTURES / "jina-clip-v2").is_dir():
        pytest.skip("jina-clip-v2 fixtures missing")
    return write_tiny_jina_clip_v2(tmp_path_factory.mktemp("tiny-clip"))


def settings(data: Path, output: Path, model: Path, **overrides) -> EmbedderSettings:
    base = dict(model=str(model), batch_size=4, max_length=32, heldout=0.25,
                learning_rate=1e-3, epochs=10, seed=0, checkpoint_every=1000)
    return EmbedderSettings(str(data), output, **{**base, **overrides})


def loss_falls(report: dict, key: str = "loss") -> bool:
    losses = [row[key] for row in report["losses"]]
    return np.mean(losses[-3:]) < np.mean(losses[:3])


def test_images_are_keyed_by_path_and_read_relative_to_the_file(image_pairs):
    data = load_training_data(image_pairs)
    assert len(data.queries) == len(captions()) and len(data.corpus) == len(captions())
    first = data.corpus[data.queries[0].positives[0]]
    assert isinstance(first, ImageItem)
    assert first.path == (image_pairs.parent / "images" / captions()[0][1]).resolve()
    assert data.queries[0].positives == [f"image:{first.path}"]
    assert data.first_image == first and first.where == "pairs.jsonl line 1"


def test_jina_clip_v2_trains_both_towers_and_the_output_loads(tmp_path, image_pairs,
                                                              tiny_clip):
    base = tiny_clip
    output = tmp_path / "out"
    report = train_embedder(settings(image_pairs, output, base, mine_negatives=1))
    assert report["mode"] == "full" and report["steps"] == len(report["losses"]) == 10
    assert loss_falls(report)
    assert set(report["ndcg@10"]["after"]) == {"8", "16", "32", "full"}
    config = json.loads((output / "config.json").read_text())
    assert config["matryoshka_dimensions"] == [8, 16, 32, 64]
    tuned, original = load_model(str(output)), load_model(str(base))
    picture = Image.open(image_pairs.parent / "images" / captions()[0][1])
    vectors = tuned.encode([picture, "a red square"])
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert not np.allclose(vectors, original.encode([picture, "a red square"]))
    rows = [json.loads(line) for line in (output / "heldout" / "corpus.jsonl").open()]
    assert all(row["_id"] == f"image:{row['image']}" for row in rows)


def test_jina_clip_v2_refuses_a_lora_task(tmp_path, image_pairs, tiny_clip):
    with pytest.raises(TrainDataError, match="no task adapters.*omit --lora"):
        train_embedder(settings(image_pairs, tmp_path / "out", tiny_clip, lora=True, task="x"))


@pytest.mark.skipif(not (FIXTURES / "jina-embeddings-v4").is_dir(),
                    reason="jina-embeddings-v4 fixtures missing")
def test_a_jina_v4_task_adapter_trains_on_image_positives(tmp_path, image_pairs):
    base = tmp_path / "v4"
    base.mkdir()
    write_tiny_jina_v4(base, [caption for caption, _ in captions()])
    report = train_embedder(settings(image_pairs, tmp_path / "out", base, lora=True,
                                     task="pictures", learning_rate=2e-3, epochs=6))
    assert loss_falls(report) and loss_falls(report, "loss@multi")
    multi = report["maxsim_ndcg@10"]
    assert all(0 <= v <= 1 for v in multi.values())
    tuned = load_model(str(tmp_path / "out"))
    picture = Image.open(image_pairs.parent / "images" / captions()[1][1])
    assert tuned.encode([picture], task="pictures.passage").shape == (1, tuned.capabilities.dim)


def test_a_missing_or_unreadable_image_names_its_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    draw((1, 2, 3), "square", tmp_path / "ok.png")
    path = tmp_path / "d.jsonl"
    rows = [{"query": "q", "positive": {"image": "ok.png"}},
            {"query": "r", "positive": "p", "negatives": [{"image": "gone.png"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TrainDataError, match=r"d.jsonl line 2: image file .*gone.png.* not found"):
        load_training_data(path)
    rows[1]["negatives"] = [{"image": str(tmp_path / "bad.png")}]  # absolute paths work too
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TrainDataError, match=r"line 2: image .*bad.png.*not a supported image"):
        load_training_data(path)
    path.write_text(json.dumps({"query": "q", "positive": {"img": "ok.png"}}) + "\n")
    with pytest.raises(TrainDataError, match=r'line 1: \'positive\' must be .*"image"'):
        load_training_data(path)


def test_image_items_for_a_text_only_model_name_the_line(tmp_path, image_pairs, tiny_encoder):
    path = tmp_path / "mixed.jsonl"
    text_rows = [{"query": f"q{i}", "positive": f"p{i}"} for i in range(3)]
    image_row = json.loads(image_pairs.read_text().splitlines()[0])
    image_row["positive"]["image"] = str(image_pairs.parent / image_row["positive"]["image"])
    del image_row["negatives"]
    path.write_text("".join(json.dumps(r) + "\n" for r in [*text_rows, image_row]))
    with pytest.raises(TrainDataError, match="mixed.jsonl line 4: an image item, but .* reads "
                                             "text only"):
        train_embedder(settings(path, tmp_path / "out", tiny_encoder))


def mixed_items(image_pairs: Path) -> list:
    """An image, a caption, another image: the order the trainee must keep."""
    folder = image_pairs.parent / "images"
    return [ImageItem((folder / captions()[0][1]).resolve(), "test"), "a red square",
            ImageItem((folder / captions()[3][1]).resolve(), "test")]


def test_the_clip_trainee_encodes_as_the_model_serves(image_pairs, tiny_clip):
    model = load_model(str(tiny_clip), backend="torch")
    items = mixed_items(image_pairs)
    served = model.encode(model_inputs(items), task="retrieval.query")
    with torch.no_grad():
        pooled = JinaClipTrainee(model, False, None).encode(items, "query").pooled
    assert np.allclose(F.normalize(pooled, dim=-1).numpy(), served, atol=1e-5)


@pytest.mark.skipif(not (FIXTURES / "jina-embeddings-v4").is_dir(),
                    reason="jina-embeddings-v4 fixtures missing")
def test_the_v4_trainee_encodes_images_as_the_model_serves(tmp_path, image_pairs):
    """Before training, the new task is a copy of `retrieval`: both heads as served."""
    base = tmp_path / "v4"
    base.mkdir()
    model = load_model(str(write_tiny_jina_v4(base, ["a red square"])), backend="torch")
    items = mixed_items(image_pairs)
    served = model.encode(model_inputs(items), task="retrieval.query")
    tokens = model.encode(model_inputs(items), task="retrieval.query", multivector=True)
    with torch.no_grad():
        out = JinaV4Trainee(model, True, "pictures").encode(items, "query")
    assert np.allclose(out.pooled.numpy(), served, atol=1e-5)
    for row, expected in enumerate(tokens):
        assert np.allclose(out.tokens[row][out.mask[row]].numpy(), expected, atol=1e-5)
