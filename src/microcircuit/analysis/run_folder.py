"""Opening the run folder of an MNIST run for an analysis."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, load_toml
from ..network import Weights
from ..runs import RunDirError

__all__ = ["best_weights", "mnist_run", "read_json", "read_metrics"]


def mnist_run(run: str | Path, *, data: str | None = None, finished: bool = True) -> tuple[Path, Config]:
    """The folder and config of the MNIST run ``run``; ``data`` replaces its ``training.data`` (e.g. where
    it was trained on another machine). With ``finished``, the run must have written weights_best.npz.
    Raises :class:`RunDirError` for a folder that is not such a run."""
    path = Path(run)
    if not path.is_dir():
        raise RunDirError(f"{path} is a file, not a run folder" if path.exists() else f"{path}: no such run folder")
    if not (path / "config.toml").is_file():
        raise RunDirError(f"{path} is not a run folder (it has no config.toml)")
    cfg = load_toml(path / "config.toml")  # read as written: an analysis continues nothing
    if data:
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, data=data))
    if cfg.experiment != "mnist":
        raise RunDirError(f"{path}: a {cfg.experiment!r} run, not an MNIST run (experiment = 'mnist')")
    if finished and not (path / "weights_best.npz").is_file():
        raise RunDirError(f"{path}: no weights_best.npz (the run has not finished)")
    return path, cfg


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path`` (e.g. a run's summary.json). Raises :class:`RunDirError` naming the file
    when it is missing, unreadable, not JSON or not an object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except ValueError as e:
        raise RunDirError(f"{path} is not valid JSON (truncated or damaged?): {e}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl ([] when there is none). A last line cut short by a hard kill
    (no newline at its end) is left out; any other line that is not a JSON object raises
    :class:`RunDirError` naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            if i == len(lines):  # the last line, without its newline: a write cut short
                break
            raise RunDirError(f"{path}, line {i}: not a JSON object (damaged?): {line[:60]!r}")
        rows.append(row)
    return rows


def best_weights(path: str | Path, like: Weights) -> Weights:
    """The weights in ``path`` (a run's weights_best.npz, keys ``W_1``, ``b_1``, ...) shaped like ``like``.
    Raises :class:`RunDirError` for a missing, damaged or mismatched file."""
    import jax.numpy as jnp

    path = Path(path)
    out = []
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # closed also when np.load fails
            for name, arrays in zip(Weights._fields, like, strict=True):
                group = []
                for i, a in enumerate(arrays):
                    key = f"{name}_{i + 1}"
                    if key not in z.files:
                        raise RunDirError(f"{path} has no array {key!r}: not the weights of this run's network")
                    v = z[key]
                    if v.shape != tuple(a.shape):
                        raise RunDirError(f"{path}: {key} has shape {v.shape}, the run's network needs "
                                          f"{tuple(a.shape)}")
                    group.append(jnp.asarray(v))
                out.append(tuple(group))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RunDirError(f"{path} cannot be read as a .npz of weights (truncated or damaged?): "
                          f"{type(e).__name__}: {e}") from None
    return Weights(*out)
