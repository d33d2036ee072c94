"""The microcircuit in continuous time (docs/model.md §2–§3, and §8 in prospective mode).

Each mini-batch is presented for ``stimulus.duration`` ms with its target on and plasticity always on, back
to back, through :func:`microcircuit.simulate.simulate`; the potentials and τ_w traces carry over from one
mini-batch (and epoch) to the next, and with ``pal.enabled`` PAL's apical noise, high-pass state and B rule
(§12) too. Errors are read from the dynamics too: each image for
``training.eval_duration`` ms from rest, no target, σ = 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config, Model, Pal
from ..dynamics import init_state, with_prospective
from ..network import Weights
from ..plasticity import zero_traces
from ..simulate import Stream, simulate
from .base import Arrays, Carry

__all__ = ["ContinuousTime", "dynamic_error_rate"]

EVAL_STREAM = 0xE7A1  # a spiking circuit's test spikes come from fold_in(key(seed), EVAL_STREAM)


def _deterministic(model: Model) -> Model:
    """Testing conditions: σ = 0, and PAL off (no apical noise; B does not learn without plasticity anyway)."""
    return dataclasses.replace(model, simulation=dataclasses.replace(model.simulation, sigma=0.0), pal=Pal())


def dynamic_error_rate(model: Model, w: Weights, x: np.ndarray, y: np.ndarray, duration: float,
                       batch: int = 1000, key: jax.Array | None = None) -> float:
    """Fraction misclassified by the dynamics: each image shown for ``duration`` ms from rest, no target,
    σ = 0, no plasticity; the label is the arg max of u_N at the end. A spiking circuit (docs/model.md §13)
    is tested with its spikes, drawn from ``key`` (``jax.random.key(0)`` if None), batch i from
    ``fold_in(key, i)``."""
    m0 = _deterministic(model)
    key = jax.random.key(0) if key is None else key
    wrong = 0
    for s in range(0, x.shape[0], batch):
        xb = np.asarray(x[s : s + batch], np.float32)
        sol = simulate(m0, w, init_state(model.network, xb.shape[0], model.simulation.dtype), Stream.of(xb[None]),
                       duration=duration, plastic=False, key=jax.random.fold_in(key, s // batch))
        wrong += int(np.sum(np.argmax(np.asarray(sol.state.u[-1]), -1) != y[s : s + batch]))
    return wrong / x.shape[0]


@dataclasses.dataclass(frozen=True)
class ContinuousTime:
    """``training.method = "dynamics"``: the full dynamics, mini-batch after mini-batch."""

    name: str = "dynamics"
    circuit: bool = True
    n_check: int = 2_000

    def unused(self, cfg: Config) -> tuple[str, ...]:
        out = ("training.lr_backprop", "training.loss", "training.n_passes", "training.rule9_state", "training.probe")
        if cfg.training.lr > 0:
            out += ("plasticity.eta_W", "plasticity.eta_IP")
        return out

    def base_lr(self, cfg: Config) -> float:
        return 1.0

    def init(self, cfg: Config, model: Model, w: Weights) -> tuple[Weights, Carry]:
        """The resting state of the mode, with PAL's noise and filter state where ``pal.enabled`` (§12)."""
        state = init_state(model.network, cfg.training.batch, model.simulation.dtype, model.simulation.prospective)
        return w, {"state": with_prospective(model, state), "traces": zero_traces(w)}

    def train(self, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array, u_trgt: jax.Array,
              idx: jax.Array, lr: float, key: jax.Array, offset: int = 0) -> tuple[Weights, Carry]:
        stream = Stream(x[idx], u_trgt[idx], jnp.ones(idx.shape[0], bool))
        spp = round(cfg.stimulus.duration / model.simulation.dt)
        sol = simulate(model, w, carry["state"], stream, duration=cfg.stimulus.duration, key=key,
                       traces=carry["traces"], lr_scale=lr, chunk_steps=spp * idx.shape[0], key_offset=offset * spp)
        return sol.weights, {"state": sol.state, "traces": sol.traces}

    def error_rate(self, cfg: Config, model: Model, w: Weights, x: np.ndarray, y: np.ndarray) -> float:
        key = jax.random.fold_in(jax.random.key(cfg.seed), EVAL_STREAM)  # the spikes of a spiking circuit's test
        return dynamic_error_rate(model, w, x, y, cfg.training.eval_duration, key=key)

    def update(self, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array, u_trgt: jax.Array
               ) -> Arrays | None:
        return None
