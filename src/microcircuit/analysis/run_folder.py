"""Opening the run folder of an MNIST run for an analysis."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..runs import RunDirError, resume_config

__all__ = ["mnist_run"]


def mnist_run(run: str | Path, *, data: str | None = None, finished: bool = True) -> tuple[Path, Config]:
    """The folder and config of the MNIST run ``run``; ``data`` replaces its ``training.data`` (e.g. where
    it was trained on another machine). With ``finished``, the run must have written weights_best.npz.
    Raises :class:`RunDirError` for a folder that is not such a run."""
    path = Path(run)
    cfg = resume_config(path, [f"training.data={data!r}"] if data else [])
    if cfg.experiment != "mnist":
        raise RunDirError(f"{path}: a {cfg.experiment!r} run, not an MNIST run (experiment = 'mnist')")
    if finished and not (path / "weights_best.npz").is_file():
        raise RunDirError(f"{path}: no weights_best.npz (the run has not finished)")
    return path, cfg
