"""Errors the library raises on purpose, each naming what went wrong and where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ConfigError

__all__ = ["CheckpointError", "ConfigError", "DivergenceError", "InputError", "NudgingRangeError", "RunInterrupted"]


class InputError(ValueError):
    """Arrays handed to the simulator have the wrong shape or dtype, or hold NaN/Inf."""


class NudgingRangeError(ConfigError):
    """With ``simulation.nudging = "conductance"``, a teacher potential left [E_inh, E_exc], where nonnegative
    conductances cannot nudge towards it (docs/model.md §2); the message names the keys to change."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, of an unknown format version, or was written
    for a configuration that differs in something that changes the computation."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped on SIGINT or SIGTERM after writing a checkpoint of its last consistent point.

    A ``KeyboardInterrupt`` subclass, so ``except Exception`` does not swallow it. Attributes:
    ``signum`` (``signal.SIGINT`` or ``signal.SIGTERM``), ``checkpoint`` (the path written or kept, or
    None), ``exit_code`` (128 + signum: 130 for SIGINT, 143 for SIGTERM) and ``message``.
    """

    def __init__(self, signum: int, message: str, checkpoint: Path | None = None) -> None:
        self.signum, self.checkpoint, self.message = int(signum), checkpoint, message
        self.exit_code = 128 + int(signum)
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class DivergenceError(RuntimeError):
    """The dynamics left the finite, bounded region (NaN, Inf or |u| beyond the configured bound).

    Attributes: ``quantity`` (e.g. ``"u"``, ``"u_inter"``, ``"W"``), ``layer`` (docs/model.md numbering),
    ``time`` (ms of simulated time, at the resolution of the recording stride; None for training that has
    no simulated time, e.g. the steady-state mode) and ``last_good``, the
    (weights, traces, state, step) at the end of the last chunk that was still fine. A runner may set
    ``note`` (where in the run it happened) and ``checkpoint`` (the last good checkpoint, or None when
    there is none); the message then names them.
    """

    ADVICE = ("check weights scales, conductances, dt and the transfer function (an unbounded φ with large "
              "weights may have no fixed point)")

    def __init__(self, quantity: str, layer: int, time: float | None, detail: str, last_good: Any = None,
                 advice: str = ADVICE) -> None:
        self.quantity, self.layer, self.time, self.last_good = quantity, layer, time, last_good
        self.note: str | None = None
        self.checkpoint: Path | None = None
        when = "" if time is None else f" at t = {time:.4g} ms"
        super().__init__(f"{'simulation' if time is not None else 'training'} diverged: {quantity} of layer {layer} "
                         f"{detail}{when}; {advice}")

    def __str__(self) -> str:
        msg = super().__str__()
        if self.note:
            msg += f" ({self.note})"
        if self.checkpoint is not None:
            msg += f"; last good checkpoint: {self.checkpoint}"
        return msg
