"""A linear head on embeddings: multinomial logistic regression, fitted with L-BFGS.

The embeddings stay as the model made them; only a weight matrix and a bias are learnt
(no fine-tuning). Features are centred and scaled by one global factor before fitting (an
isotropic change, so the geometry of the embedding space is kept: embeddings of one model
crowd into a narrow cone), and the head is folded back to act on the raw embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LinearHead:
    """logits = vectors @ weights.T + bias; probabilities by softmax."""

    weights: np.ndarray  # [classes, dim] float32
    bias: np.ndarray  # [classes] float32

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """[n, classes] float64, each row summing to 1."""
        logits = vectors.astype(np.float64) @ self.weights.T.astype(np.float64) + self.bias
        return softmax(logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit_linear_head(vectors: np.ndarray, targets: np.ndarray, n_classes: int,
                    c: float = 1.0, max_iter: int = 200) -> LinearHead:
    """Softmax regression of `targets` (ints in [0, n_classes)) on `vectors` [n, dim].

    `c` is the inverse L2 strength as in scikit-learn's LogisticRegression (loss = C * sum of
    cross-entropies + ||W||^2 / 2); deterministic, in float64 on the CPU.
    """
    if n_classes < 2:
        raise ValueError("a classifier needs at least two classes")
    x = torch.from_numpy(np.asarray(vectors, dtype=np.float64))
    y = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    mean = x.mean(dim=0)
    scale = float((x - mean).pow(2).mean().sqrt()) or 1.0
    z = (x - mean) / scale
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = c * torch.nn.functional.cross_entropy(z @ w.T + b, y, reduction="sum") \
            + 0.5 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    weights = (w.detach() / scale)
    bias = b.detach() - weights @ mean
    return LinearHead(weights.numpy().astype(np.float32), bias.numpy().astype(np.float32))
