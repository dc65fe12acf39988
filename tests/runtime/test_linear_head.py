"""The few-shot head: softmax regression on embeddings, on the real e5 vectors and on points
whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from polyseek.runtime.linear_head import fit_linear_head


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_fits_classes_crowded_in_a_narrow_cone():
    """Embeddings of one model share a large common direction; classes differ by little. The
    head still separates them and generalises to new points of each class."""
    rng = np.random.default_rng(0)
    common = rng.normal(size=64)
    centres = [common * 10 + rng.normal(size=64) for _ in range(3)]

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([c + 0.3 * rng.normal(size=(n, 64)) for c in centres])
        return unit(x).astype(np.float32), np.repeat(np.arange(3), n)

    x, y = sample(4)
    head = fit_linear_head(x, y, 3)
    assert head.weights.shape == (3, 64) and head.bias.shape == (3,)
    assert head.weights.dtype == np.float32
    test_x, test_y = sample(50)
    probabilities = head.probabilities(test_x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    assert (probabilities.argmax(axis=1) == test_y).mean() > 0.95
    again = fit_linear_head(x, y, 3)  # deterministic
    np.testing.assert_array_equal(again.weights, head.weights)


def test_regularisation_keeps_scores_below_certainty():
    """Separable data would drive unregularised weights to infinity; with L2 the training
    points are right and confident, but no score is exactly 1."""
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    head = fit_linear_head(x, y, 2)
    probabilities = head.probabilities(x)
    assert (probabilities.argmax(axis=1) == y).all()
    assert (probabilities.max(axis=1) > 0.6).all() and (probabilities.max(axis=1) < 1).all()
    # less regularisation (a larger C), more confidence
    sharper = fit_linear_head(x, y, 2, c=100).probabilities(x)
    assert (sharper.max(axis=1) > probabilities.max(axis=1)).all()


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least two classes"):
        fit_linear_head(np.eye(2, dtype=np.float32), np.array([0, 0]), 1)


def test_on_real_embeddings(e5):
    """Few-shot on e5's vectors: two languages, labels learnt from four examples each."""
    train = ["It is raining heavily today.", "Det regnar kraftigt i dag.",
             "Sunny and warm all week.", "Soligt och varmt hela veckan.",
             "Knead the dough for ten minutes.", "Knåda degen i tio minuter.",
             "Bake the cake at 180 degrees.", "Grädda kakan i 180 grader."]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    head = fit_linear_head(e5.encode(train, task="text-matching"), labels, 2)
    test = ["A storm is coming tonight.", "En storm närmar sig i kväll.",
            "Let the bread rise before baking.", "Låt brödet jäsa före gräddningen."]
    predicted = head.probabilities(e5.encode(test, task="text-matching")).argmax(axis=1)
    assert predicted.tolist() == [0, 0, 1, 1]
