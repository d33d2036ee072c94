"""Network inputs and targets from a data set: images to rates in [0, 1], labels to one-hot rate targets."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["N_CLASSES", "infer_n_classes", "one_hot_targets", "preprocess", "preprocess_images"]

#: Number of classes of MNIST, Fashion-MNIST and CIFAR-10; the default of :func:`one_hot_targets`.
N_CLASSES = 10


def preprocess_images(x: np.ndarray) -> np.ndarray:
    """uint8 images ``(n, ...)`` of any shape to float32 ``(n, pixels)`` in [0, 1] (divided by 255).

    ``pixels`` is the product of ``x.shape[1:]``, e.g. 784 for MNIST ``(n, 28, 28)`` and 3,072 for CIFAR-10
    ``(n, 32, 32, 3)`` (flattened in C order: row, column, channel).
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0-255), got dtype {x.dtype}")
    if x.ndim < 2 or 0 in x.shape[1:]:
        raise ValueError(f"images must have shape (n, ...) with at least one pixel each, got {x.shape}")
    return x.reshape(x.shape[0], math.prod(x.shape[1:])).astype(np.float32) / np.float32(255.0)


def infer_n_classes(*labels: np.ndarray) -> int:
    """The number of classes that integer label arrays imply: the largest label + 1, at least 2.

    Pass every split's labels (e.g. ``infer_n_classes(data.y_train, data.y_test)``) so that all get the same
    number: one split may lack the highest class.
    """
    top = -1
    for y in labels:
        y = np.asarray(y)
        if y.size:
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"labels must be integers, got dtype {y.dtype}")
            top = max(top, int(y.max()))
    return max(2, top + 1)


def one_hot_targets(
    y: np.ndarray, *, r_low: float = 0.1, r_high: float = 0.8, n_classes: int = N_CLASSES
) -> np.ndarray:
    """Integer labels ``(n,)`` to float32 rate targets ``(n, n_classes)``: ``r_high`` at the label, else
    ``r_low``."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got dtype {y.dtype} shape {y.shape}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0-{n_classes - 1}, got min {int(y.min())} max {int(y.max())}")
    if not (math.isfinite(r_low) and math.isfinite(r_high)):
        raise ValueError(f"r_low and r_high must be finite, got {r_low}, {r_high}")
    targets = np.full((y.shape[0], int(n_classes)), r_low, dtype=np.float32)
    targets[np.arange(y.shape[0]), y.astype(np.intp)] = r_high
    return targets


def preprocess(
    x: np.ndarray, y: np.ndarray, *, r_low: float = 0.1, r_high: float = 0.8, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images to float32 ``(n, pixels)`` in [0, 1] and labels to one-hot rate targets ``(n, n_classes)``
    with entries ``r_low`` / ``r_high`` (see :func:`preprocess_images`, :func:`one_hot_targets`).

    ``n_classes`` defaults to :func:`infer_n_classes` of ``y`` (largest label + 1, at least 2). When the
    splits of one data set are preprocessed one by one, pass the data set's number of classes so that all
    targets have the same width.
    """
    images = preprocess_images(x)
    targets = one_hot_targets(y, r_low=r_low, r_high=r_high,
                              n_classes=infer_n_classes(y) if n_classes is None else n_classes)
    if images.shape[0] != targets.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {targets.shape[0]} labels")
    return images, targets
