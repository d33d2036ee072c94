"""The Bars data set of the Latent Equilibrium microcircuit experiment (docs/prospective.md).

Images of ``size`` × ``size`` pixels with one bar of 1s on 0s, three classes: 0 horizontal, 1 vertical,
2 diagonal. Each class cycles through its distinct bars (``size`` rows, ``size`` columns, the main and the
anti-diagonal) until it has ``samples_per_class`` images; ``noise`` > 0 adds U(0, noise) to every pixel.
The experiment's set is ``bars()``: 3 × 3 pixels, 3 images per class without noise, the last image (a
repeated main diagonal) dropped, so 8 patterns: 3 horizontal, 3 vertical, 2 diagonal bars.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BAR_CLASSES", "bars"]

BAR_CLASSES = ("horizontal", "vertical", "diagonal")


def _class_images(size: int) -> list[list[np.ndarray]]:
    """The distinct bars of every class, in a fixed order (bottom row first for the horizontal bars)."""
    horizontal = []
    for row in range(size - 1, -1, -1):
        img = np.zeros((size, size))
        img[row] = 1.0
        horizontal.append(img)
    vertical = [img.T.copy() for img in horizontal]
    diagonal = [np.eye(size), np.eye(size)[::-1].copy()]
    return [horizontal, vertical, diagonal]


def bars(
    size: int = 3,
    samples_per_class: int = 3,
    noise: float = 0.0,
    seed: int | None = None,
    drop_last: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, size²) float32 in [0, 1 + noise] and labels (n,) int32 in {0, 1, 2} (:data:`BAR_CLASSES`).

    ``drop_last`` removes the last image (the experiment uses 8 of the 9 default images)."""
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    if samples_per_class < 1:
        raise ValueError(f"samples_per_class must be >= 1, got {samples_per_class}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, images in enumerate(_class_images(size)):
        for i in range(samples_per_class):
            img = images[i % len(images)].reshape(-1)
            xs.append(img + rng.uniform(0.0, noise, img.shape) if noise > 0 else img)
            ys.append(label)
    x, y = np.asarray(xs, np.float32), np.asarray(ys, np.int32)
    return (x[:-1], y[:-1]) if drop_last else (x, y)
