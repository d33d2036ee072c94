"""How the training methods scale with depth, width and data set: read a sweep folder's MNIST-like runs
and tabulate them per (data set, layer sizes, method).

Everything comes from each run's own ``config.toml`` and ``summary.json``, not from which keys the sweep
varied: the data set (``training.data``; a path gives its file or folder name), the net
(``network.sizes``: depth L = the number of hidden layers, width = the hidden size when all are equal)
and the arm (``training.method``, and ``training.feedback`` for the circuits). Per group: the mean and
standard deviation over its runs (seeds) of the test, validation and training errors, the best epoch,
the fraction of images that settle (circuits), seconds per epoch and the per-layer angle between the
arm's weight update and backprop's gradient at the best epoch.

``analyze_scaling`` writes ``scaling.csv`` (one row per group), ``scaling_runs.csv`` (one per run),
``scaling.md`` (the groups as Markdown tables, one per data set) and the figures of
:mod:`.scaling_figures`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, load_toml, read_toml, to_dict
from ..runs import RunDir, RunDirError, atomic_write

__all__ = ["ARMS", "ScalingReport", "analyze_scaling", "arm_label", "data_label", "scaling_groups", "scaling_runs"]

# The arms in the order every table and legend lists them (others follow, alphabetically).
ARMS = (
    "backprop",
    "feedback alignment",
    "direct feedback alignment",
    "circuit, random B",
    "circuit, transported B",
    "circuit (continuous time), random B",
    "circuit (continuous time), transported B",
)
DATA_SETS = ("mnist", "fashion-mnist", "cifar-10", "mnist-subset")  # listed first, in this order
SCALING_CSV, RUNS_CSV, MARKDOWN = "scaling.csv", "scaling_runs.csv", "scaling.md"

_PLAIN_ARMS = {"backprop": "backprop", "feedback_alignment": "feedback alignment",
               "direct_feedback_alignment": "direct feedback alignment"}
_CIRCUITS = {"microcircuit": "circuit", "dynamics": "circuit (continuous time)"}

RUN_COLUMNS = [
    "trial", "seed", "status", "data", "sizes", "depth", "width", "arm", "method", "feedback",
    "test_error_pct", "validation_error_pct", "train_error_pct", "best_epoch", "seconds_per_epoch",
    "settle_fraction_pct", "angle_best", "norm_ratio_best", "run_dir",
]
GROUP_COLUMNS = [
    "data", "sizes", "depth", "width", "arm", "n", "failed", "trials",
    "test_error_mean_pct", "test_error_sd_pct", "validation_error_mean_pct", "validation_error_sd_pct",
    "train_error_mean_pct", "train_error_sd_pct", "best_epoch_mean", "settle_fraction_mean_pct",
    "settle_fraction_min_pct", "seconds_per_epoch_mean", "angle_mean", "norm_ratio_mean",
]


def arm_label(method: str, feedback: str | None = None) -> str:
    """The arm of ``training.method`` (and, for ``microcircuit``/``dynamics``, ``training.feedback``,
    ``random`` when absent): "backprop", "feedback alignment", "circuit, random B", ..."""
    if method in _CIRCUITS:
        return f"{_CIRCUITS[method]}, {feedback or 'random'} B"
    return _PLAIN_ARMS.get(method, method)


def data_label(data: str) -> str:
    """A data set's name: ``mnist``, ``fashion-mnist``, ... as they are; a path its file or folder name."""
    return Path(data.rstrip("/\\")).name or data


def _arm_rank(arm: str) -> tuple[int, str]:
    return (ARMS.index(arm) if arm in ARMS else len(ARMS), arm)


def _data_rank(data: str) -> tuple[int, str]:
    return (DATA_SETS.index(data) if data in DATA_SETS else len(DATA_SETS), data)


def sizes_text(sizes: Sequence[int]) -> str:
    return "-".join(str(n) for n in sizes)


def width_of(sizes: Sequence[int]) -> int | list[int] | None:
    """The hidden width: one number when every hidden layer has it, else the list (None: no hidden layer)."""
    hidden = list(sizes[1:-1])
    if not hidden:
        return None
    return hidden[0] if len(set(hidden)) == 1 else hidden


# --------------------------------------------------------------------------------------------------
# Reading runs


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _numbers(v: Any) -> list[float | None] | None:
    return [_number(x) for x in v] if isinstance(v, list | tuple) else None


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def _get(tree: Mapping[str, Any], key: str, default: Any) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _config(run: Path) -> dict[str, Any]:
    """The run's config.toml as a nested dict: checked by :func:`load_toml` where this version knows every
    key, else the keys as written (a run of a newer or older version)."""
    path = run / RunDir.CONFIG
    try:
        return to_dict(load_toml(path))
    except ConfigError:
        return read_toml(path)


_DEFAULTS = to_dict(Config())


def _describe(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """data, sizes, depth, width, arm, method and feedback of a run's config."""
    sizes = tuple(int(n) for n in _get(cfg, "network.sizes", _DEFAULTS["network"]["sizes"]))
    method = str(_get(cfg, "training.method", _DEFAULTS["training"]["method"]))
    feedback = str(_get(cfg, "training.feedback", "random")) if method in _CIRCUITS else None
    return {"data": data_label(str(_get(cfg, "training.data", _DEFAULTS["training"]["data"]))),
            "sizes": sizes, "depth": len(sizes) - 2, "width": width_of(sizes), "arm": arm_label(method, feedback),
            "method": method, "feedback": feedback}


def _measures(summary: Mapping[str, Any]) -> dict[str, Any]:
    best = summary.get("best_epoch")
    return {
        "test_error_pct": _pct(_number(summary.get("test_error"))),
        "validation_error_pct": _pct(_number(summary.get("validation_error"))),
        "train_error_pct": _pct(_number(summary.get("train_error"))),
        "best_epoch": best if isinstance(best, int) and not isinstance(best, bool) else None,
        "seconds_per_epoch": _number(summary.get("seconds_per_epoch")),
        "settle_fraction_pct": _pct(_number(summary.get("settle_fraction"))),
        "angle_best": _numbers(summary.get("angle_best")),
        "norm_ratio_best": _numbers(summary.get("norm_ratio_best")),
    }


def scaling_runs(sweep_dir: str | Path, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per seed of every trial folder under ``sweep_dir/trials`` (the layout of
    :mod:`microcircuit.sweep.driver`): ``status`` (``complete``, ``failed``, ``partial``), what
    :func:`_describe` reads from its config and, for a complete run, its numbers (errors in %). Runs whose
    config or summary cannot be read are left out, with a line in ``notes``. Raises :class:`RunDirError`
    for a folder that is not a sweep folder."""
    from ..sweep.seeds import read_summary, split_members, trial_runs

    folder = Path(sweep_dir)
    notes = [] if notes is None else notes
    if not folder.is_dir():
        raise RunDirError(f"{folder}: no such folder")
    if not (folder / "sweep.json").is_file() and not (folder / "trials").is_dir():
        raise RunDirError(f"{folder} is not a sweep folder (it has neither sweep.json nor trials/)")
    rows: list[dict[str, Any]] = []
    for trial in sorted(p for p in (folder / "trials").glob("trial-*") if p.is_dir()):
        for seed, run in sorted(trial_runs(trial).items()):
            where = run.path.relative_to(folder)
            try:
                described = _describe(_config(run.path))
            except (ConfigError, TypeError, ValueError) as e:
                notes.append(f"{where}: left out: cannot read its {RunDir.CONFIG}: {e}")
                continue
            row: dict[str, Any] = {"trial": trial.name, "seed": seed, "status": run.status, **described,
                                   **_measures({}), "run_dir": str(where)}
            if run.status == "complete":
                whole = read_summary(run.path)
                try:
                    if whole is None:
                        raise ValueError(f"{RunDir.SUMMARY} is not a JSON object")
                    summary = split_members(whole, run.seeds)[seed]
                except ValueError as e:
                    notes.append(f"{where}: left out: {e}")
                    continue
                row.update(_measures(summary))
                if row["test_error_pct"] is None:
                    row["status"] = "no test error"
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# Groups


def _mean(values: Iterable[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return sum(vs) / len(vs) if vs else None


def _sd(values: Iterable[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.stdev(vs) if len(vs) > 1 else None


def _layer_means(lists: Iterable[list[float | None] | None]) -> list[float | None] | None:
    """The per-layer mean of lists of the same length (the most common length, where they differ)."""
    have = [x for x in lists if x]
    if not have:
        return None
    n = statistics.mode(len(x) for x in have)
    return [_mean(x[k] for x in have if len(x) == n) for k in range(n)]


def _order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    w = row["width"]
    return (_data_rank(row["data"]), row["depth"], isinstance(w, list), w if isinstance(w, int) else 0,
            list(row["sizes"]), _arm_rank(row["arm"]))


def scaling_groups(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data, sizes, arm) of ``runs`` (:func:`scaling_runs`) that has a complete or failed run:
    ``n`` complete runs, ``failed``, ``trials`` (how many trial folders the runs come from), mean and s.d.
    (ddof 1; None for fewer than two runs) of the errors in %, the mean best epoch, settle fraction (%; and
    its minimum), seconds per epoch and per-layer angle and norm ratio. Sorted by data set, depth, width
    and arm (:data:`ARMS`)."""
    by_key: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in runs:
        if r["status"] in ("complete", "failed"):
            by_key.setdefault((r["data"], tuple(r["sizes"]), r["arm"]), []).append(r)
    groups = []
    for (data, sizes, arm), members in by_key.items():
        done = [r for r in members if r["status"] == "complete"]
        settle = [r["settle_fraction_pct"] for r in done if r["settle_fraction_pct"] is not None]
        row: dict[str, Any] = {
            "data": data, "sizes": sizes, "depth": len(sizes) - 2, "width": width_of(sizes), "arm": arm,
            "n": len(done), "failed": sum(r["status"] == "failed" for r in members),
            "trials": len({r["trial"] for r in members}),
        }
        for name in ("test_error", "validation_error", "train_error"):
            values = [r[f"{name}_pct"] for r in done]
            row[f"{name}_mean_pct"], row[f"{name}_sd_pct"] = _mean(values), _sd(values)
        row["best_epoch_mean"] = _mean(r["best_epoch"] for r in done)
        row["settle_fraction_mean_pct"] = _mean(settle)
        row["settle_fraction_min_pct"] = min(settle) if settle else None
        row["seconds_per_epoch_mean"] = _mean(r["seconds_per_epoch"] for r in done)
        row["angle_mean"] = _layer_means(r["angle_best"] for r in done)
        row["norm_ratio_mean"] = _layer_means(r["norm_ratio_best"] for r in done)
        groups.append(row)
    return sorted(groups, key=_order)


# --------------------------------------------------------------------------------------------------
# Writing


def _cell(key: str, v: Any) -> Any:
    if key == "sizes":
        return sizes_text(v)
    if isinstance(v, list | tuple):
        return json.dumps([None if x is None else round(x, 6) if isinstance(x, float) else x for x in v])
    if isinstance(v, float):
        return round(v, 6)
    return "" if v is None else v


def _write_csv(path: Path, columns: list[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _cell(c, r.get(c)) for c in columns})
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def _pm(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" if sd is None else f"{mean:.2f} ± {sd:.2f}"


def _width_text(width: Any) -> str:
    return "–" if width is None else str(width) if isinstance(width, int) else "/".join(map(str, width))


def markdown_row(g: Mapping[str, Any]) -> str:
    """One group as a row of the Markdown table of :func:`markdown`."""
    n = f"{g['n']}" + (f" (+{g['failed']} failed)" if g["failed"] else "")
    settle = "–" if g["settle_fraction_mean_pct"] is None else \
        f"{g['settle_fraction_mean_pct']:.1f} (min {g['settle_fraction_min_pct']:.1f})"
    best = "–" if g["best_epoch_mean"] is None else f"{g['best_epoch_mean']:.1f}"
    speed = "–" if g["seconds_per_epoch_mean"] is None else f"{g['seconds_per_epoch_mean']:.3g}"
    angles = "–" if not g["angle_mean"] else ", ".join("–" if a is None else f"{a:.1f}" for a in g["angle_mean"])
    cells = [str(g["depth"]), _width_text(g["width"]), g["arm"], n,
             _pm(g["test_error_mean_pct"], g["test_error_sd_pct"]),
             _pm(g["validation_error_mean_pct"], g["validation_error_sd_pct"]),
             _pm(g["train_error_mean_pct"], g["train_error_sd_pct"]), best, settle, speed, angles]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| depth | width | arm | n | test error (%) | validation error (%) | train error (%) | best epoch "
          "| settled (%) | s / epoch | angle to backprop (°), W_1 … W_L+1 |\n"
          "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def markdown(groups: Sequence[Mapping[str, Any]]) -> str:
    """The groups as Markdown: one table per data set (errors as mean ± s.d. over seeds)."""
    parts = []
    for data in sorted({g["data"] for g in groups}, key=_data_rank):
        rows = [markdown_row(g) for g in groups if g["data"] == data]
        parts.append(f"## {data}\n\n{HEADER}\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


@dataclass
class ScalingReport:
    """What :func:`analyze_scaling` found and wrote: ``groups`` (rows of scaling.csv, sorted as in the
    tables), ``runs`` (rows of scaling_runs.csv), the Markdown text, the paths written (``figures``: the
    figures drawn) and ``notes`` (runs left out, figures skipped for want of data)."""

    groups: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    markdown: str
    csv: Path
    runs_csv: Path
    markdown_path: Path
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def analyze_scaling(sweep_dir: str | Path, out: str | Path | None = None, depth_width: int = 256,
                    width_depth: int = 2) -> ScalingReport:
    """Tabulate and plot the finished runs of the sweep folder ``sweep_dir`` (finished or not) into ``out``
    (default ``sweep_dir/scaling``): scaling.csv, scaling_runs.csv, scaling.md, error_vs_depth.png (nets of
    uniform width ``depth_width``), error_vs_width.png (nets of ``width_depth`` hidden layers) and
    angle_heatmap.png. Raises :class:`RunDirError` for a folder that is not a sweep folder or holds no
    finished run with a test error."""
    from .scaling_figures import write_figures

    folder = Path(sweep_dir)
    notes: list[str] = []
    runs = scaling_runs(folder, notes)
    groups = [g for g in scaling_groups(runs) if g["n"] or g["failed"]]
    if not any(g["n"] for g in groups):
        raise RunDirError(f"{folder}: no finished run with a test_error in its {RunDir.SUMMARY} under trials/ yet")
    pooled = [g for g in groups if g["trials"] > 1]
    for g in pooled:
        notes.append(f"{g['data']} {sizes_text(g['sizes'])} {g['arm']}: pools the runs of {g['trials']} trials "
                     "(they differ in keys other than the data set, sizes and arm)")
    target = Path(out) if out is not None else folder / "scaling"
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create {target}: {e}") from None
    text = markdown(groups)
    with atomic_write(target / MARKDOWN) as f:
        f.write(text)
    report = ScalingReport(groups, runs, text, _write_csv(target / SCALING_CSV, GROUP_COLUMNS, groups),
                           _write_csv(target / RUNS_CSV, RUN_COLUMNS, runs), target / MARKDOWN, notes=notes)
    report.figures = write_figures(groups, target, depth_width=depth_width, width_depth=width_depth, notes=notes)
    return report
