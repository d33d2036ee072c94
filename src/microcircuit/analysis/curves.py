"""MNIST learning curves read from run folders and drawn the way the paper compares methods (Fig. 3B):
error in % on linear axes against the epoch, one line per run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..runs import RunDir, RunDirError
from .run_folder import mnist_run, read_json, read_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LearningCurve", "learning_curve", "plot_learning_curves"]


class LearningCurve(NamedTuple):
    """One MNIST run's curve: ``label`` (the run's config name, i.e. its preset), ``epochs``, the validation
    error after each (a fraction), the training error on the images the run checks (``train_label`` names
    them, e.g. "first 10k"), and, once the run is complete, the test error of its best epoch."""

    label: str
    path: Path
    epochs: list[int]
    validation: list[float]
    train: list[float]
    train_label: str
    test_error: float | None
    best_epoch: int | None


def learning_curve(run: str | Path) -> LearningCurve:
    """The learning curve of the MNIST run folder ``run`` (any ``training.method``; a run still in progress
    gives the epochs it has finished). Raises :class:`RunDirError` for a folder that is not an MNIST run."""
    path, cfg = mnist_run(run, finished=False)
    rows = [r for r in read_metrics(path / RunDir.METRICS) if "epoch" in r and "event" not in r]
    if not rows:
        raise RunDirError(f"{path}: no finished epoch in {RunDir.METRICS} yet")
    key = next((k for k in rows[0] if k.startswith("train_error_")), None)
    summary_file = path / RunDir.SUMMARY
    test = best = None
    if summary_file.is_file():
        summary = read_json(summary_file)
        test, best = summary.get("test_error"), summary.get("best_epoch")
        if not (test is None or isinstance(test, int | float)) or not (best is None or isinstance(best, int)):
            raise RunDirError(f"{summary_file}: test_error {test!r} and best_epoch {best!r} are not numbers")
    try:
        return LearningCurve(
            label=cfg.name,
            path=path,
            epochs=[int(r["epoch"]) for r in rows],
            validation=[float(r["validation_error"]) for r in rows],
            train=[float(r[key]) for r in rows] if key else [],
            train_label=f"first {key.rsplit('_', 1)[1]}" if key else "",
            test_error=test,
            best_epoch=best,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{path / RunDir.METRICS}: an epoch row without a readable {e} (damaged?)") from None


def _unique_labels(curves: Sequence[LearningCurve]) -> list[str]:
    """The curves' labels; where several runs share one, each gets its folder name added in brackets."""
    labels = [c.label for c in curves]
    return [f"{c.label} [{c.path.name}]" if labels.count(c.label) > 1 else c.label for c in curves]


def plot_learning_curves(curves: Sequence[LearningCurve], *, train: bool | None = None,
                         title: str = "MNIST") -> Figure:
    """One figure in the style of the paper's Fig. 3B: the validation error (%) of every curve against the
    epoch on linear axes, each labelled with its run's name and its test error (%) at the best epoch.
    ``train`` also draws the training errors (dashed); by default only for a single curve."""
    from ..plotting import figure

    if not curves:
        raise ValueError("plot_learning_curves: no curves")
    train = len(curves) == 1 if train is None else train
    fig = figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    top = 0.0
    for i, (c, label) in enumerate(zip(curves, _unique_labels(curves), strict=True)):
        color = f"C{i % 10}"
        val = [100 * v for v in c.validation]
        line = f"{label} validation" if train else label
        if c.test_error is not None:
            line += f" (test {100 * c.test_error:.2f} %)"
        ax.plot(c.epochs, val, "o-", ms=3, lw=1.4, color=color, label=line)
        top = max(top, max(val))
        if c.best_epoch is not None and c.test_error is not None:
            ax.plot([c.best_epoch], [100 * c.test_error], "*", ms=10, color=color)
        if train and c.train:
            ax.plot(c.epochs, [100 * v for v in c.train], "--", lw=1.2, color=color,
                    label=f"{label} train ({c.train_label})")
            top = max(top, 100 * max(c.train))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error (%)" if not train else "error (%)")
    ax.set_ylim(0, 1.05 * top if top > 0 else 1)
    ax.set_xlim(left=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}: error per epoch (★: test error at the best validation epoch)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
