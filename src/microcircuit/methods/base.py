"""The interface every training method of the classification experiment implements, and what they share.

A method trains the network on mini-batches and reads out its error; the experiment
(:mod:`microcircuit.experiments.mnist`) owns the data, the epochs, validation, checkpoints and logging.
Whatever a method carries from one mini-batch to the next besides the weights (the potentials of the
continuous-time circuit, the fixed feedback matrices of direct feedback alignment) is its *carry*, a
dict of pytrees that is checkpointed with the weights, so that a resumed run continues bit for bit.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config, Model
from ..network import Weights
from ..steady_state import predict

__all__ = ["Arrays", "Carry", "Method", "steady_error_rate"]

Arrays = tuple[jax.Array, ...]
#: the pytrees a method carries from one mini-batch to the next, by name (checkpointed with the weights)
Carry = dict[str, Any]

# settings only the continuous-time dynamics read (the steady-state sweeps and SGD never integrate the ODEs)
ODE_KEYS = ("simulation.dt", "simulation.integrator", "simulation.tau_0", "simulation.sigma", "simulation.noise",
            "simulation.nudging", "simulation.E_exc", "simulation.E_inh", "simulation.divergence_bound",
            "plasticity.tau_w", "plasticity.learning_lag", "plasticity.update_every", "plasticity.defer",
            "training.eval_duration", "simulation.prospective", "simulation.update_order", "pal")
# what running a trained circuit as a circuit (training.settle_images) reads of them
SETTLE_KEYS = ("simulation.dt", "simulation.integrator", "simulation.tau_0", "simulation.nudging",
               "simulation.E_exc", "simulation.E_inh", "simulation.divergence_bound", "simulation.prospective",
               "simulation.update_order")


class Method(Protocol):
    """One way of training the classification network (``training.method``).

    ``circuit``: it has interneurons and apical compartments (self-prediction and the apical residue are
    logged). ``n_check``: training images whose error is logged per epoch.
    """

    name: str
    circuit: bool
    n_check: int

    def unused(self, cfg: Config) -> tuple[str, ...]:
        """The config keys this method does not read (beyond the experiment's own)."""
        ...

    def base_lr(self, cfg: Config) -> float:
        """The learning-rate factor of epoch 1 (``training.lr_decay`` scales it per epoch)."""
        ...

    def init(self, cfg: Config, model: Model, w: Weights) -> tuple[Weights, Carry]:
        """The starting weights (as the method needs them) and carry."""
        ...

    def train(self, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array, u_trgt: jax.Array,
              idx: jax.Array, lr: float, key: jax.Array, offset: int = 0) -> tuple[Weights, Carry]:
        """Train on the mini-batches ``idx`` (n, B) of (x, u_trgt), in order, at learning-rate factor ``lr``;
        ``key`` is the epoch's and ``offset`` the index of ``idx``'s first mini-batch in the epoch (a method
        that draws random numbers draws them by position in the epoch)."""
        ...

    def error_rate(self, cfg: Config, model: Model, w: Weights, x: np.ndarray, y: np.ndarray) -> float:
        """The fraction of the images ``x`` misclassified (arg max of the output, no target, σ = 0)."""
        ...

    def update(self, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array, u_trgt: jax.Array
               ) -> Arrays | None:
        """The change of each W_k that one mini-batch (x, u_trgt) would make at factor 1, or None where the
        method has no such single-batch update (continuous time)."""
        ...


@functools.partial(jax.jit, static_argnames=("model",))
def _labels(model: Model, w: Weights, x: jax.Array) -> jax.Array:
    return jnp.argmax(predict(model, w, x), axis=-1)


def steady_error_rate(model: Model, w: Weights, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Fraction of misclassified images: arg max of the output potentials of the forward sweep (no target,
    σ = 0; the feed-forward u⁻_N of docs/model.md §5, which is also what the steady-state circuit settles to)."""
    wrong = 0
    for s in range(0, x.shape[0], batch):
        pred = np.asarray(_labels(model, w, jnp.asarray(x[s : s + batch], model.simulation.dtype)))
        wrong += int(np.sum(pred != y[s : s + batch]))
    return wrong / x.shape[0]
