"""Results of a sweep: one table of every run (CSV), one of every trial (mean ± spread over seeds) and a
summary plot. Everything is read back from the run folders, so it can be rebuilt at any time.

A row is one seed of one trial. A seed that ran in a vmapped run of several seeds (``seeds-A-B``) takes
its row from that run's per-seed ``members`` summary, so the table reads the same whichever way the
seeds ran; ``run_dir`` names the folder. A sweep with case groups has a column ``cases.GROUP`` per group,
naming the trial's alternative (its label, or ``GROUP[i]``), and one per key its alternatives set (blank
where the trial's alternative does not set it)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import RunDir, RunDirError, atomic_write
from .seeds import MEMBERS, split_members, trial_runs
from .spec import SweepSpec, _plain
from .worker import read_failure

__all__ = ["Collected", "collect", "fmt_params"]

RESULTS = "results.csv"
TRIALS = "trials.csv"
PLOT = "summary.png"


def _cell(v: Any) -> Any:
    if isinstance(v, list | tuple | dict):
        return json.dumps(_plain(v))
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return "" if v is None else v


def _scalar(v: Any) -> bool:
    return isinstance(v, int | float | str | bool) or v is None


def fmt_params(params: dict[str, Any]) -> str:
    def one(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else json.dumps(_plain(v)) if isinstance(v, list | tuple) else str(v)

    return "  ".join(f"{k}={one(v)}" for k, v in params.items()) or "(base config)"


@dataclass
class Collected:
    """``runs``: one dict per run; ``trials``: one per trial with ``mean``, ``std`` (over seeds, ddof 1),
    ``min``, ``max``, ``n``; ``best``: the best trial (by mean) or None; paths of what was written."""

    runs: list[dict[str, Any]]
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    results_csv: Path
    trials_csv: Path
    plot: Path | None


def _read_trial(d: Path) -> dict[str, Any]:
    try:
        info = json.loads((d / "trial.json").read_text())
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


def _case_names(spec: SweepSpec, info: dict[str, Any]) -> dict[str, Any]:
    """``cases.GROUP`` -> the name of the trial's alternative of GROUP (from trial.json's ``cases``)."""
    chosen = info.get("cases") if isinstance(info.get("cases"), dict) else {}
    out: dict[str, Any] = {}
    for g in spec.cases:
        i = chosen.get(g.name)
        out[f"cases.{g.name}"] = g.cases[i].name if isinstance(i, int) and 0 <= i < len(g.cases) else None
    return out


def collect(spec: SweepSpec, folder: Path, *, plot: bool = True) -> Collected:
    """Read every trial folder under ``folder/trials`` and write results.csv, trials.csv and summary.png."""
    if not (folder / "sweep.json").is_file():
        raise RunDirError(f"{folder} holds no sweep (no sweep.json)")
    key = spec.objective.key
    case_cols = [f"cases.{g.name}" for g in spec.cases]
    param_keys = list(spec.varied_keys)
    runs: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    trial_dirs = sorted(p for p in (folder / "trials").glob("trial-*") if p.is_dir())
    for d in trial_dirs:
        info = _read_trial(d)
        params = info.get("params", {}) if isinstance(info.get("params"), dict) else {}
        names = _case_names(spec, info)
        have = trial_runs(d)
        values = []
        n_failed = 0
        for seed in sorted(set(have) | set(spec.seeds)):
            run = have[seed].path if seed in have else d / f"seed-{seed}"
            row: dict[str, Any] = {"trial": d.name, "seed": seed, **names}
            row.update({k: params.get(k) for k in param_keys})
            summary: dict[str, Any] = {}
            if (run / RunDir.SUMMARY).is_file():
                try:
                    whole = json.loads((run / RunDir.SUMMARY).read_text())
                    if not isinstance(whole, dict):
                        raise ValueError("not a JSON object")
                    summary = split_members(whole, have[seed].seeds)[seed]
                    if not isinstance(summary, dict):
                        raise ValueError(f"the summary of seed {seed} is not a JSON object")
                    row["status"] = "complete"
                except (ValueError, TypeError, AttributeError) as e:
                    row["status"] = "unreadable"
                    row["error"] = f"{RunDir.SUMMARY}: {e}"
            elif (failure := read_failure(run)) is not None:
                row["status"] = "failed"
                row["error"] = str(failure.get("error", ""))
                n_failed += 1
            else:
                row["status"] = "partial" if run.is_dir() else "missing"
            obj = summary.get(key)
            row["objective"] = obj if isinstance(obj, int | float) and not isinstance(obj, bool) else None
            if row["objective"] is not None and math.isfinite(row["objective"]):
                values.append(float(row["objective"]))
            row.update({k: v for k, v in summary.items() if k not in ("headline", MEMBERS) and _scalar(v)
                        and k not in row})
            row["run_dir"] = str(run.relative_to(folder))
            runs.append(row)
        n = len(values)
        mean = sum(values) / n if n else None
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 and mean is not None else None
        chosen = info.get("cases") if isinstance(info.get("cases"), dict) else {}
        trial = {"trial": d.name, **names, **{k: params.get(k) for k in param_keys}, "n": n, "failed": n_failed,
                 "mean": mean, "std": std, "min": min(values) if values else None,
                 "max": max(values) if values else None, "shown": spec.shown(chosen, params)}
        if info.get("optuna_number") is not None:
            trial["optuna_number"] = info["optuna_number"]
        trials.append(trial)

    done = [t for t in trials if t["mean"] is not None]
    sign = 1 if spec.objective.direction == "minimize" else -1
    best = min(done, key=lambda t: sign * t["mean"]) if done else None

    run_cols = ["trial", "seed", "status", *case_cols, *param_keys, "objective"]
    extra = sorted({k for r in runs for k in r} - set(run_cols) - {"error", "run_dir"})
    run_cols += [*extra, "error", "run_dir"]
    trial_cols = ["trial", *case_cols, *param_keys, "n", "failed", "mean", "std", "min", "max"]
    if any("optuna_number" in t for t in trials):
        trial_cols.append("optuna_number")
    results_csv, trials_csv = folder / RESULTS, folder / TRIALS
    for path, cols, rows in ((results_csv, run_cols, runs), (trials_csv, trial_cols, trials)):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: _cell(r.get(c)) for c in cols})
        with atomic_write(path) as f:
            f.write(buf.getvalue())
    png = _plot(spec, folder / PLOT, runs, trials, best) if plot else None
    return Collected(runs, trials, best, results_csv, trials_csv, png)


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _plot(spec: SweepSpec, path: Path, runs: list[dict[str, Any]], trials: list[dict[str, Any]],
          best: dict[str, Any] | None) -> Path | None:
    """Objective per trial (seeds as dots, mean ± std across seeds) and against each case group and
    parameter (the first five)."""
    from ..plotting import figure

    done = [t for t in trials if t["mean"] is not None]
    if not done:
        return None
    key = spec.objective.key
    panels = [*((f"cases.{g.name}", False) for g in spec.cases), *((p.key, p.log) for p in spec.params)][:5]
    fig = figure(figsize=(4.2 * (1 + len(panels)), 3.6))
    axes = fig.subplots(1, 1 + len(panels), squeeze=False)
    ax = axes[0, 0]
    index = {t["trial"]: i for i, t in enumerate(trials)}
    seeds_x = [index[r["trial"]] for r in runs if r["objective"] is not None]
    seeds_y = [r["objective"] for r in runs if r["objective"] is not None]
    ax.plot(seeds_x, seeds_y, ".", color="0.6", ms=4, label="seeds")
    ax.errorbar([index[t["trial"]] for t in done], [t["mean"] for t in done],
                yerr=[t["std"] or 0.0 for t in done], fmt="o", ms=4, capsize=3, label="mean ± std")
    if spec.search.kind == "optuna":
        sign = 1 if spec.objective.direction == "minimize" else -1
        xs, ys, cur = [], [], None
        for t in done:
            cur = t["mean"] if cur is None or sign * t["mean"] < sign * cur else cur
            xs.append(index[t["trial"]])
            ys.append(cur)
        ax.step(xs, ys, where="post", color="C3", lw=1, label="best so far")
    if best is not None:
        ax.plot([index[best["trial"]]], [best["mean"]], "*", color="C3", ms=12, label="best")
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(key)
    ax.set_title(f"{spec.name}: {spec.objective.direction} {key}", fontsize=9)
    ax.legend(fontsize=7)
    ys_all = [v for v in seeds_y if v is not None]
    log_y = bool(ys_all) and min(ys_all) > 0 and max(ys_all) / min(ys_all) > 100
    if log_y:
        ax.set_yscale("log")
    for ax, (column, log_x) in zip(axes[0, 1:], panels, strict=True):
        xs = [t.get(column) for t in done]
        if _numeric(xs):
            order = sorted(range(len(done)), key=lambda i: xs[i])
            ax.errorbar([xs[i] for i in order], [done[i]["mean"] for i in order],
                        yerr=[done[i]["std"] or 0.0 for i in order], fmt="o-" if len(panels) == 1 else "o",
                        ms=4, capsize=3)
            positive = min(xs) > 0
            if log_x or (positive and max(xs) / min(xs) > 100):
                ax.set_xscale("log")
        else:
            text = [x if isinstance(x, str) else json.dumps(_plain(x)) for x in xs]
            labels = list(dict.fromkeys(text))
            pos = [labels.index(x) for x in text]
            ax.errorbar(pos, [t["mean"] for t in done], yerr=[t["std"] or 0.0 for t in done], fmt="o", ms=4, capsize=3)
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
        ax.set_xlabel(column)
        ax.set_ylabel(f"{key} (mean ± std over seeds)", fontsize=8)
        if log_y:
            ax.set_yscale("log")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    return path
