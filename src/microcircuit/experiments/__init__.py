"""One module per experiment; each exposes ``run(cfg, run_dir, *, progress, echo) -> summary``."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from ..config import Config, ConfigError
from ..runs import RunDir

__all__ = ["EXPERIMENTS", "get_experiment"]

# name in Config.experiment -> module under microcircuit.experiments
EXPERIMENTS: dict[str, str] = {
    "self_prediction": "self_prediction",
    "target_propagation": "target_propagation",
    "regression": "regression",
    "backprop_link": "backprop_link",
    "mnist": "mnist",
}

Runner = Callable[..., dict[str, Any]]


def get_experiment(name: str) -> Runner:
    """The ``run`` function of experiment ``name``; unknown names fail with a suggestion."""
    if name not in EXPERIMENTS:
        hint = difflib.get_close_matches(name, EXPERIMENTS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"experiment: unknown experiment {name!r}{extra}; available: {', '.join(EXPERIMENTS)}")
    module = importlib.import_module(f".{EXPERIMENTS[name]}", __name__)
    return module.run


def run_experiment(cfg: Config, run_dir: RunDir | None, **kw: Any) -> dict[str, Any]:
    return get_experiment(cfg.experiment)(cfg, run_dir, **kw)
