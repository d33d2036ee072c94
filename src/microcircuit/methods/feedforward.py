"""The feed-forward baselines: the network a self-predicting circuit computes (docs/model.md §5), trained by
SGD along backprop's update, feedback alignment's or direct feedback alignment's.

All three start from the same output error (``training.loss``, by default the circuit's own
e_N = D_N (u_trgt − u⁻_N)) and step by ``training.lr`` (or ``training.lr_backprop``) times the update; with
``training.lr`` each layer's step is scaled by the one-rate rule's 1/a_k (:mod:`microcircuit.rates`), so
that the circuit's and these methods' layer rates agree. They differ only in how the error reaches the
hidden layers: through W_{k+1}ᵀ (backprop), through the fixed top-down B_k (feedback alignment,
Lillicrap et al. 2016) or straight from the output through fixed random D_k (n_k × n_N) drawn at the start
with B's initial scale (direct feedback alignment, Nøkland 2016).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..backprop import backprop_updates, direct_feedback_updates
from ..config import Config, Model
from ..network import Weights
from ..rates import layer_gains
from .base import ODE_KEYS, Arrays, Carry, steady_error_rate

__all__ = ["FeedForward", "feedback_matrices", "sgd_updates", "train_batches"]


def feedback_matrices(cfg: Config, model: Model) -> Arrays:
    """Direct feedback alignment's fixed D_k (n_k, n_N), k = 1..N−1: uniform in ±(B_k's initial scale),
    drawn from the run's seed (independent of the weights' draw)."""
    sizes, scales = model.network.sizes, model.network.init.scales(model.network.depth)["B"]
    keys = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), 7), max(1, len(sizes) - 2))
    return tuple(jax.random.uniform(keys[k], (sizes[k + 1], sizes[-1]), model.simulation.dtype, -s, s)
                 for k, s in enumerate(scales))


def sgd_updates(model: Model, method: str, w: Weights, D: Arrays, x: jax.Array, u_trgt: jax.Array,
                loss: str) -> tuple[Arrays, Arrays]:
    """(dW, db) of ``method`` on the mini-batch (x, u_trgt), batch-averaged, at learning rate 1."""
    if method == "direct_feedback_alignment":
        return direct_feedback_updates(model, w, D, x, u_trgt, loss)
    return backprop_updates(model, w, x, u_trgt, loss, feedback_alignment=method == "feedback_alignment")


@functools.partial(jax.jit, static_argnames=("model", "method", "loss", "gains"))
def train_batches(model: Model, w: Weights, D: Arrays, x: jax.Array, u_trgt: jax.Array, idx: jax.Array,
                  lr: jax.Array, *, method: str, loss: str, gains: tuple[float, ...]) -> Weights:
    """SGD over the mini-batches ``idx`` (n, B) of (x, u_trgt) as one ``lax.scan``: W_k += lr·gain_k·dW_k,
    b_k += lr·gain_k·db_k."""

    def body(w: Weights, i: jax.Array) -> tuple[Weights, None]:
        dW, db = sgd_updates(model, method, w, D, x[i], u_trgt[i], loss)
        W = tuple(a + (lr * k) * g for a, g, k in zip(w.W, dW, gains, strict=True))
        b = tuple(a + (lr * k) * g for a, g, k in zip(w.b, db, gains, strict=True)) if model.network.bias else w.b
        return w._replace(W=W, b=b), None

    w, _ = jax.lax.scan(body, w, idx)
    return w


_update = jax.jit(lambda model, method, w, D, x, t, loss: sgd_updates(model, method, w, D, x, t, loss)[0],
                  static_argnums=(0, 1, 6))


@dataclasses.dataclass(frozen=True)
class FeedForward:
    """``training.method`` = ``backprop``, ``feedback_alignment`` or ``direct_feedback_alignment``."""

    name: str
    circuit: bool = False
    n_check: int = 10_000

    def unused(self, cfg: Config) -> tuple[str, ...]:
        out = (*ODE_KEYS, "plasticity.eta_W", "plasticity.eta_IP", "plasticity.eta_PI", "plasticity.eta_B",
                          "training.n_passes", "training.rule9_state", "training.settle_images",
                          "network.init.IP", "network.init.PI", "network.init.self_predicting")
        if cfg.training.lr > 0:
            out += ("training.lr_backprop",)
        if self.name == "backprop":  # nothing to compare with backprop's own gradient; B is never read
            out += ("training.probe", "network.init.B", "network.init.B_transposed")
        return out

    def base_lr(self, cfg: Config) -> float:
        return cfg.training.lr if cfg.training.lr > 0 else cfg.training.lr_backprop

    def gains(self, cfg: Config, model: Model) -> tuple[float, ...]:
        """Each layer's step factor: the one-rate rule's 1/a_k with ``training.lr``, else 1."""
        if cfg.training.lr > 0:
            return layer_gains(model.conductances, model.network.depth)
        return (1.0,) * model.network.depth

    def init(self, cfg: Config, model: Model, w: Weights) -> tuple[Weights, Carry]:
        return w, ({"D": feedback_matrices(cfg, model)} if self.name == "direct_feedback_alignment" else {})

    def train(self, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array, u_trgt: jax.Array,
              idx: jax.Array, lr: float, key: jax.Array, offset: int = 0) -> tuple[Weights, Carry]:
        w = train_batches(model, w, carry.get("D", ()), x, u_trgt, idx, jnp.asarray(lr, x.dtype), method=self.name,
                          loss=cfg.training.loss, gains=self.gains(cfg, model))
        return w, carry

    def error_rate(self, cfg: Config, model: Model, w: Weights, x: np.ndarray, y: np.ndarray) -> float:
        return steady_error_rate(model, w, x, y)

    def update(self, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array, u_trgt: jax.Array
               ) -> Arrays | None:
        if self.name == "backprop":  # its own gradient: nothing to compare
            return None
        lr, gains = self.base_lr(cfg), self.gains(cfg, model)
        upd = _update(model, self.name, w, carry.get("D", ()), x, u_trgt, cfg.training.loss)
        return tuple(lr * k * d for k, d in zip(gains, upd, strict=True))
