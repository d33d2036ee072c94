"""Does a network run as a circuit? The real dynamics from rest, no target, σ = 0, until they settle.

:func:`settle_potentials` runs images through :func:`microcircuit.simulate.simulate` and measures each
image's *swing*, the largest change of any output potential during the last ``window`` ms; an image
*settles* when its swing is below a tolerance (:func:`settle_fraction`). ``microcircuit analyze settle``
(:mod:`microcircuit.analysis.settle`) builds its report on these.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .config import Model, Record
from .dynamics import init_state
from .errors import InputError
from .network import Weights
from .simulate import Stream, simulate

__all__ = ["RECORD_EVERY", "settle_fraction", "settle_potentials", "whole_steps"]

RECORD_EVERY = 0.5  # ms between the samples of u_N inside the window (and in the figure's traces)


def whole_steps(value: float, dt: float, name: str) -> int:
    n = round(value / dt)
    if not (math.isfinite(value) and value > 0) or n < 1 or abs(n * dt - value) > 1e-6 * value:
        raise InputError(f"{name} = {value:g} ms is not a positive whole number of dt = {dt:g} ms steps")
    return n


def settle_potentials(model: Model, w: Weights, x: np.ndarray, duration: float, window: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Run the images ``x`` (B, n_0) from rest for ``duration`` ms, no target, σ = 0, no plasticity. Returns
    u_N(T) (B, n_N) and the swing (B,): max over the samples of the last ``window`` ms (every
    ``RECORD_EVERY`` ms, and its start) of ‖u_N(t) − u_N(T)‖_∞."""
    dt = model.simulation.dt
    whole_steps(duration - window, dt, "duration − window")
    every = max(1, round(RECORD_EVERY / dt))
    s0 = init_state(model.network, x.shape[0], model.simulation.dtype, model.simulation.prospective)
    stream = Stream.of(np.asarray(x, model.simulation.dtype)[None])
    first = simulate(model, w, s0, stream, duration=duration - window, plastic=False)
    last = simulate(model, w, first.state, stream, duration=window, plastic=False,
                    record=Record(("u",), stride=every), t0=duration - window)
    N = model.network.depth
    end = np.asarray(last.state.u[-1], np.float64)
    samples = [np.asarray(first.state.u[-1], np.float64), *np.asarray(last.records[f"u_{N}"], np.float64)]
    swing = np.max([np.max(np.abs(u - end), axis=-1) for u in samples], axis=0)
    return end, swing


def settle_fraction(model: Model, w: Weights, x: np.ndarray, *, duration: float = 100.0, window: float = 10.0,
                    tol: float = 0.01, batch: int = 500) -> tuple[float, float]:
    """(fraction of the images ``x`` that settle, largest swing), with σ = 0 and no target, ``batch`` images
    at a time (the defaults of ``microcircuit analyze settle``)."""
    model = dataclasses.replace(model, simulation=dataclasses.replace(model.simulation, sigma=0.0))
    swings = [settle_potentials(model, w, x[s : s + batch], duration, window)[1] for s in range(0, x.shape[0], batch)]
    swing = np.concatenate(swings)
    return float(np.mean(swing < tol)), float(np.max(swing))
