"""The microcircuit in the steady-state mode (docs/model.md §6): rules (7)–(10) at the swept steady state.

``training.feedback``: ``random`` keeps B_k as drawn (the paper's model; with η^TD > 0 rule (10) learns it);
``transported`` sets B_k = W_{k+1}ᵀ and PI_k = −B_k at the start and after every update (weight transport,
docs/model.md §5), which separates the circuit's own approximation of backprop from the
feedback-alignment effect of a fixed random B.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config, Model
from ..network import Weights
from ..steady_state import increments_at, settle, train_step
from .base import ODE_KEYS, SETTLE_KEYS, Arrays, Carry, steady_error_rate

__all__ = ["Circuit", "apical_diagnostics", "circuit_update", "train_batches", "transport"]


def transport(w: Weights) -> Weights:
    """B_k = W_{k+1}ᵀ and PI_k = −B_k (symmetric feedback, cancelled by the interneurons, docs/model.md §4–5)."""
    B = tuple(W.T for W in w.W[1:])
    return w._replace(B=B, PI=tuple(-b for b in B))


@functools.partial(jax.jit, static_argnames=("model", "duration", "n_passes", "rule9_state", "transported"))
def train_batches(model: Model, w: Weights, x: jax.Array, u_trgt: jax.Array, idx: jax.Array, lr_scale: jax.Array,
                  *, duration: float, n_passes: int, rule9_state: str, transported: bool) -> Weights:
    """The mini-batches ``idx`` (n, B) of (x, u_trgt), one :func:`microcircuit.steady_state.train_step` each,
    as one ``lax.scan``; with ``transported`` the feedback is transported after every step."""

    def body(w: Weights, i: jax.Array) -> tuple[Weights, None]:
        w = train_step(model, w, x[i], u_trgt[i], lr_scale, duration=duration, n_passes=n_passes,
                       rule9_state=rule9_state)
        return (transport(w) if transported else w), None

    w, _ = jax.lax.scan(body, w, idx)
    return w


@functools.partial(jax.jit, static_argnames=("model", "duration", "n_passes"))
def circuit_update(model: Model, w: Weights, x: jax.Array, u_trgt: jax.Array, *, duration: float,
                   n_passes: int) -> Arrays:
    """The change duration · η_k · δW_k that rule (7) makes to each W_k on the mini-batch (x, u_trgt)."""
    delta = increments_at(model, w, x, settle(model, w, x, u_trgt, n_passes))
    return tuple(duration * eta * d for eta, d in zip(model.plasticity.eta_W, delta.W, strict=True))


@functools.partial(jax.jit, static_argnames=("model", "n_passes"))
def apical_diagnostics(model: Model, w: Weights, x: jax.Array, u_trgt: jax.Array, n_passes: int
                       ) -> tuple[jax.Array, jax.Array]:
    """Per hidden layer, the root-mean-square apical potential without a target (the residue the
    interneurons leave: 0 in an exactly self-predicting circuit) and of the change the target makes to it
    (the error signal), over the mini-batch (docs/model.md §4, §6)."""
    free = settle(model, w, x, None, n_passes).v_apical
    nudged = settle(model, w, x, u_trgt, n_passes).v_apical
    rms = lambda a: jnp.sqrt(jnp.mean(a**2))  # noqa: E731
    return (jnp.stack([rms(a) for a in free]), jnp.stack([rms(b - a) for a, b in zip(free, nudged, strict=True)]))


@dataclasses.dataclass(frozen=True)
class Circuit:
    """``training.method = "microcircuit"``: the paper's steady-state scheme (docs/model.md §6)."""

    name: str = "microcircuit"
    circuit: bool = True
    n_check: int = 10_000

    def unused(self, cfg: Config) -> tuple[str, ...]:
        out = tuple(k for k in ODE_KEYS if not (cfg.training.settle_images and k in SETTLE_KEYS))
        out += ("training.lr_backprop", "training.loss")
        if cfg.training.lr > 0:  # the rates are derived from training.lr (microcircuit.rates)
            out += ("plasticity.eta_W", "plasticity.eta_IP")
        if cfg.training.feedback == "transported":  # B and PI follow W
            out += ("network.init.B", "network.init.PI", "network.init.B_transposed", "plasticity.eta_B",
                    "plasticity.eta_PI")
        return out

    def base_lr(self, cfg: Config) -> float:
        return 1.0

    def init(self, cfg: Config, model: Model, w: Weights) -> tuple[Weights, Carry]:
        return (transport(w) if cfg.training.feedback == "transported" else w), {}

    def train(self, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array, u_trgt: jax.Array,
              idx: jax.Array, lr: float, key: jax.Array, offset: int = 0) -> tuple[Weights, Carry]:
        tr = cfg.training
        w = train_batches(model, w, x, u_trgt, idx, jnp.asarray(lr, x.dtype), duration=cfg.stimulus.duration,
                          n_passes=tr.n_passes, rule9_state=tr.rule9_state, transported=tr.feedback == "transported")
        return w, carry

    def error_rate(self, cfg: Config, model: Model, w: Weights, x: np.ndarray, y: np.ndarray) -> float:
        return steady_error_rate(model, w, x, y)

    def update(self, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array, u_trgt: jax.Array
               ) -> Arrays | None:
        return circuit_update(model, w, x, u_trgt, duration=cfg.stimulus.duration, n_passes=cfg.training.n_passes)
