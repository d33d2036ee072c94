"""One module per experiment; each exposes ``run(cfg, run_dir, *, progress, echo) -> summary``, and one
that runs ``Config.n_seeds`` consecutive seeds as one vmapped program also
``member_summaries(run_dir, summary) -> {seed: summary}`` (:func:`member_summaries_of`)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..config import Config, ConfigError
from ..runs import RunDir

__all__ = ["EXPERIMENTS", "experiment_module", "get_experiment", "member_summaries_of"]

# name in Config.experiment -> module under microcircuit.experiments
EXPERIMENTS: dict[str, str] = {
    "self_prediction": "self_prediction",
    "target_propagation": "target_propagation",
    "regression": "regression",
    "backprop_link": "backprop_link",
    "mnist": "mnist",
    "le_bars": "le_bars",
    "pal_alignment": "pal_alignment",
    "pal_teacher": "pal_teacher",
}

Runner = Callable[..., dict[str, Any]]


#: ``member_summaries(run_dir, summary) -> {seed: that member's summary}`` of a finished ensemble run.
MemberSummaries = Callable[[Path, dict[str, Any]], dict[int, dict[str, Any]]]


def experiment_module(name: str) -> ModuleType:
    """The module of experiment ``name``; unknown names fail with a suggestion. Besides ``run``, a module
    may define what :func:`microcircuit.preflight.preflight` checks before a run: ``stepped(cfg)`` (the
    duration keys that must be whole numbers of dt steps), ``unused(cfg)`` (the keys it does not read)
    and ``check(cfg) -> warnings`` (its own checks: data, shapes, ``init_from``)."""
    if name not in EXPERIMENTS:
        hint = difflib.get_close_matches(name, EXPERIMENTS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"experiment: unknown experiment {name!r}{extra}; available: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f".{EXPERIMENTS[name]}", __name__)


def get_experiment(name: str) -> Runner:
    """The ``run`` function of experiment ``name``; unknown names fail with a suggestion."""
    return experiment_module(name).run


def member_summaries_of(name: str) -> MemberSummaries | None:
    """The ``member_summaries`` function of experiment ``name`` if it runs ``Config.n_seeds`` consecutive
    seeds as one vmapped program (each member computing what a run of its seed alone computes); None for
    every other experiment, which ignores ``n_seeds``, and for unknown names."""
    return getattr(experiment_module(name), "member_summaries", None) if name in EXPERIMENTS else None


def run_experiment(cfg: Config, run_dir: RunDir | None, **kw: Any) -> dict[str, Any]:
    return get_experiment(cfg.experiment)(cfg, run_dir, **kw)
