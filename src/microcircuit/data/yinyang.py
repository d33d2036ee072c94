"""The Yin-Yang data set (Kriener, Göltz & Petrovici 2021, arXiv 2102.08211), generated, not downloaded.

Points (x, y) uniform in the disc of radius R = 0.5 centred at (0.5, 0.5). With d_r, d_l the distances to
the centres of the small circles, (0.75, 0.5) and (0.25, 0.5), and r_s = 0.1, the radius of the dots:

* class 2 ("dots") if d_r < r_s or d_l < r_s;
* else class 1 ("yin") if r_s < d_l <= R/2, or y > 0.5 and d_r > R/2;
* else class 0 ("yang").

The input of a point is (x, y, 1 − x, 1 − y). Sample i is drawn by rejection until its class is i mod 3, so
the classes are balanced. The splits of the PAL experiment (docs/pal.md) come from different seeds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["YINYANG_CLASSES", "yinyang", "yinyang_class", "yinyang_splits"]

YINYANG_CLASSES = ("yang", "yin", "dots")
R_BIG, R_SMALL = 0.5, 0.1


def yinyang_class(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The class (0 yang, 1 yin, 2 dots) of points (x, y) inside the disc, elementwise."""
    d_right = np.hypot(x - 1.5 * R_BIG, y - R_BIG)
    d_left = np.hypot(x - 0.5 * R_BIG, y - R_BIG)
    dots = (d_right < R_SMALL) | (d_left < R_SMALL)
    yin = ((d_left > R_SMALL) & (d_left <= 0.5 * R_BIG)) | ((y > R_BIG) & (d_right > 0.5 * R_BIG))
    return np.where(dots, 2, np.where(yin, 1, 0))


def yinyang(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples: inputs (n, 4) float32 (x, y, 1 − x, 1 − y) and classes (n,) int64, sample i of class
    i mod 3, drawn by rejection from ``np.random.default_rng(seed)``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    points = np.empty((n, 2))
    labels = np.arange(n) % 3
    for i, want in enumerate(labels):
        while True:
            x, y = rng.uniform(0.0, 2 * R_BIG, 2)
            if np.hypot(x - R_BIG, y - R_BIG) <= R_BIG and yinyang_class(x, y) == want:
                points[i] = x, y
                break
    inputs = np.concatenate([points, 1.0 - points], axis=1).astype(np.float32)
    return inputs, labels.astype(np.int64)


def yinyang_splits(n_train: int = 6000, n_validation: int = 900, n_test: int = 900, seed: int = 0
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train, validation and test sets from the seeds ``(seed, 0)``, ``(seed, 1)``, ``(seed, 2)``: the
    sizes of the PAL experiment by default."""
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    return {name: yinyang(n, int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
            for i, (name, n) in enumerate(sizes.items())}
