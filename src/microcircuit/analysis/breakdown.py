"""Where a trained MNIST network's errors are: validation, test and its two halves, and slices of the
training set, all at the run's best weights (``weights_best.npz``), read out the way the run itself measures
errors (the steady-state forward pass, or the dynamics for ``training.method = "dynamics"``).

The two halves of the full MNIST test set come from different writer populations (the first 5,000 images
are the easier ones); the training slices show how well the network fits the images it learned from."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..config import Config
from ..simulate import precision
from .run_folder import best_weights, mnist_run

__all__ = ["SliceError", "error_breakdown"]


class SliceError(NamedTuple):
    """The error (a fraction) on ``n`` images of one slice."""

    error: float
    n: int


def error_breakdown(run: str | Path, *, data: str | None = None) -> dict[str, SliceError]:
    """The errors of the MNIST run folder ``run`` on its validation and test sets, the test set's two halves
    and the first, middle and last slices of its training set (5,000 images each, or a fifth of the training
    set if that is smaller). ``data`` replaces the run's ``training.data`` (e.g. where it was trained on
    another machine). Raises :class:`RunDirError` for a folder that is not a finished MNIST run."""
    path, cfg = mnist_run(run, data=data)
    best = path / "weights_best.npz"
    ctx, _ = precision(cfg.simulation)  # a float64 run is read out in float64
    with ctx:
        return _breakdown(cfg, best)


def _breakdown(cfg: Config, best: Path) -> dict[str, SliceError]:
    from ..experiments import mnist as mx
    from ..experiments.common import build

    model, w0, _ = build(cfg)
    w = best_weights(best, w0)
    split = mx.load_split(cfg)
    (xv, yv), (xt, yt), (xr, yr) = split["validation"], split["test"], split["train"]
    h, k = xt.shape[0] // 2, min(5000, xr.shape[0] // 5)
    mid = (xr.shape[0] - k) // 2
    slices = {
        "validation": (xv, yv),
        "test": (xt, yt),
        "test, first half": (xt[:h], yt[:h]),
        "test, second half": (xt[h:], yt[h:]),
        "train, first": (xr[:k], yr[:k]),
        "train, middle": (xr[mid : mid + k], yr[mid : mid + k]),
        "train, last": (xr[-k:], yr[-k:]),
    }

    def error(x: np.ndarray, y: np.ndarray) -> float:
        if cfg.training.method == "dynamics":
            return mx.dynamic_error_rate(model, w, x, y, cfg.training.eval_duration)
        return mx.error_rate(model, w, x, y)

    return {name: SliceError(error(x, y), int(x.shape[0])) for name, (x, y) in slices.items()}
