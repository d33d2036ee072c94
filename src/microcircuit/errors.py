"""Errors the library raises on purpose, each naming what went wrong and where."""

from __future__ import annotations

from typing import Any

from .config import ConfigError

__all__ = ["ConfigError", "DivergenceError", "InputError"]


class InputError(ValueError):
    """Arrays handed to the simulator have the wrong shape or dtype, or hold NaN/Inf."""


class DivergenceError(RuntimeError):
    """The dynamics left the finite, bounded region (NaN, Inf or |u| beyond the configured bound).

    Attributes: ``quantity`` (e.g. ``"u"``, ``"u_inter"``, ``"W"``), ``layer`` (MODEL.md numbering),
    ``time`` (ms of simulated time, at the resolution of the recording stride) and ``last_good``, the
    (weights, traces, state, step) at the end of the last chunk that was still fine.
    """

    def __init__(self, quantity: str, layer: int, time: float, detail: str, last_good: Any = None) -> None:
        self.quantity, self.layer, self.time, self.last_good = quantity, layer, time, last_good
        super().__init__(
            f"simulation diverged: {quantity} of layer {layer} {detail} at t = {time:.4g} ms; "
            "check weights scales, conductances, dt and the transfer function (an unbounded φ with large "
            "weights may have no fixed point)"
        )
