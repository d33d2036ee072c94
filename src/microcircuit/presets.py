"""The paper's settings as named presets (MODEL.md §7). Each has a full and a ``quick`` variant."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from .config import (
    Config,
    ConfigError,
    Init,
    NetworkSpec,
    Plasticity,
    Record,
    Schedule,
    Simulation,
    Stimulus,
    Transfer,
)

__all__ = ["DEFAULT_PRESET", "PRESETS", "get_preset", "preset_names"]

DEFAULT_PRESET = "fig-s1"


def fig_s1(quick: bool = False) -> Config:
    """Fig. S1: 30-20-10, W and B fixed random, random inputs U(0,1), no target, σ = 0.1;
    η^IP = 0.0002375, η^PI = 0.0005 (MODEL.md §4, §7). φ is the logistic (a config choice, §2)."""
    return Config(
        name="fig-s1-quick" if quick else "fig-s1",
        experiment="self_prediction",
        network=NetworkSpec(sizes=(30, 20, 10), transfer=Transfer(kind="logistic"), init=Init()),
        plasticity=Plasticity(eta_W=0.0, eta_IP=0.0002375, eta_PI=0.0005, eta_B=0.0, tau_w=30.0),
        simulation=Simulation(dt=0.1, tau_0=3.0, sigma=0.1),
        stimulus=Stimulus(kind="random_uniform", n_patterns=1500 if quick else 20_000, duration=100.0),
        record=Record(quantities=("self_prediction",), stride=1000),
        schedule=Schedule(segment=250 if quick else 1000, n_test=50, settle=30.0),
    )


PRESETS: dict[str, Callable[[bool], Config]] = {
    "fig-s1": fig_s1,
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str, *, quick: bool = False) -> Config:
    """The named preset (``quick`` for its short variant); an unknown name fails with a suggestion."""
    quick = quick or name.endswith("-quick")
    base = name.removesuffix("-quick")
    if base not in PRESETS:
        hint = difflib.get_close_matches(name, PRESETS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"unknown preset {name!r}{extra}; available: {', '.join(preset_names())}")
    return PRESETS[base](quick)
