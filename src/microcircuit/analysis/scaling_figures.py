"""Figures of a scaling study (:mod:`.scaling`): test error against depth and against width, one line per
arm and one panel per data set, and the per-layer angle to backprop's gradient as a heat map per arm.

Each figure is drawn only where the groups hold its data; otherwise it is skipped with a note (and an
earlier file of that name in the output folder is removed, so the folder never shows a stale figure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runs import atomic_write
from .scaling import ARMS, _arm_rank, _data_rank

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DEPTH_PNG", "HEATMAP_PNG", "WIDTH_PNG", "write_figures"]

DEPTH_PNG, WIDTH_PNG, HEATMAP_PNG = "error_vs_depth.png", "error_vs_width.png", "angle_heatmap.png"

Group = Mapping[str, Any]


def _colour(arm: str) -> str:
    """The same colour for an arm in every figure."""
    rank = _arm_rank(arm)[0]
    return f"C{rank % 10}" if arm in ARMS else f"C{(len(ARMS) + sum(map(ord, arm))) % 10}"


def _save(fig: Figure, path: Path) -> Path:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    return path


def _by_data(groups: Sequence[Group]) -> dict[str, list[Group]]:
    out: dict[str, list[Group]] = {}
    for g in sorted(groups, key=lambda g: _data_rank(g["data"])):
        out.setdefault(g["data"], []).append(g)
    return out


def _error_lines(groups: Sequence[Group], x: str, *, xlabel: str, title: str, log_x: bool) -> Figure:
    """Test error (%) against the group key ``x``: one panel per data set, one line per arm, s.d. bars."""
    from ..plotting import figure

    panels = _by_data(groups)
    fig = figure(figsize=(4.6 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (data, rows) in zip(axes, panels.items(), strict=True):
        for arm in sorted({g["arm"] for g in rows}, key=_arm_rank):
            line = sorted((g for g in rows if g["arm"] == arm), key=lambda g: g[x])
            ax.errorbar([g[x] for g in line], [g["test_error_mean_pct"] for g in line],
                        yerr=[g["test_error_sd_pct"] or 0.0 for g in line], fmt="o-", ms=4, capsize=3,
                        color=_colour(arm), label=arm)
        xs = sorted({g[x] for g in rows})
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test error (%)")
        ax.set_title(f"{data}: {title}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _angle_heatmap(groups: Sequence[Group]) -> Figure:
    """Mean angle (degrees) to backprop per depth (rows) and layer W_k (columns), a panel per data set and
    arm, 0–90° on one colour scale, each cell annotated."""
    import numpy as np

    from ..plotting import figure

    panels = [(data, arm, [g for g in rows if g["arm"] == arm])
              for data, rows in _by_data(groups).items() for arm in sorted({g["arm"] for g in rows}, key=_arm_rank)]
    n_cols = min(3, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = figure(figsize=(4.4 * n_cols, 0.6 + 3.4 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    image = None
    for ax, (data, arm, rows) in zip(axes.flat, panels, strict=False):
        depths = sorted({g["depth"] for g in rows})
        n_layers = max(len(g["angle_mean"]) for g in rows)
        grid = np.full((len(depths), n_layers), np.nan)
        for g in rows:
            for k, a in enumerate(g["angle_mean"]):
                if a is not None:
                    grid[depths.index(g["depth"]), k] = a
        image = ax.imshow(grid, vmin=0.0, vmax=90.0, cmap="viridis", aspect="auto", origin="lower")
        for (i, k), a in np.ndenumerate(grid):
            if np.isfinite(a):
                ax.text(k, i, f"{a:.0f}", ha="center", va="center", fontsize=7, color="w" if a < 50 else "k")
        ax.set_xticks(range(n_layers), [str(k + 1) for k in range(n_layers)])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlabel("layer k (W_k)")
        ax.set_ylabel("depth L (hidden layers)")
        ax.set_title(f"{data}: {arm}", fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label="angle to backprop's gradient (°)", shrink=0.9)
    return fig


def write_figures(groups: Sequence[Group], out: Path, *, depth_width: int = 256, width_depth: int = 2,
                  notes: list[str] | None = None) -> list[Path]:
    """error_vs_depth.png (nets of uniform width ``depth_width``), error_vs_width.png (uniform nets of
    ``width_depth`` hidden layers, where a data set has two widths or more) and angle_heatmap.png (arms
    other than backprop with angles, on the depth series) in ``out``; returns the paths drawn and adds a
    line to ``notes`` for each figure skipped."""
    notes = [] if notes is None else notes
    done = [g for g in groups if g["n"] and g["test_error_mean_pct"] is not None]
    written: list[Path] = []

    def skip(name: str, why: str) -> None:
        notes.append(f"{name} skipped: {why}")
        (out / name).unlink(missing_ok=True)

    series = [g for g in done if g["width"] == depth_width]
    if series:
        written.append(_save(_error_lines(series, "depth", xlabel="depth L (hidden layers)",
                                          title=f"width {depth_width}", log_x=False), out / DEPTH_PNG))
    else:
        skip(DEPTH_PNG, f"no finished net of uniform width {depth_width} (--depth-width)")

    at_depth = [g for g in done if g["depth"] == width_depth and isinstance(g["width"], int)]
    widths = {d: {g["width"] for g in at_depth if g["data"] == d} for d in {g["data"] for g in at_depth}}
    wide = [g for g in at_depth if len(widths[g["data"]]) > 1]
    if wide:
        written.append(_save(_error_lines(wide, "width", xlabel="width (units per hidden layer)",
                                          title=f"depth {width_depth}", log_x=True), out / WIDTH_PNG))
    else:
        skip(WIDTH_PNG, f"no data set has nets of two widths or more at depth {width_depth}")

    angles = [g for g in series if g["arm"] != "backprop" and g["angle_mean"]
              and any(a is not None for a in g["angle_mean"])]
    if angles:
        written.append(_save(_angle_heatmap(angles), out / HEATMAP_PNG))
    else:
        skip(HEATMAP_PNG, f"no arm other than backprop has angles (angle_best) on nets of width {depth_width}")
    return written
