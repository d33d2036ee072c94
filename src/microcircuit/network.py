"""The weights pytree and its initialisation: random, and self-predicting (docs/model.md §1, §4).

Indexing: docs/model.md numbers layers 1..N; the tuples here are 0-based, so ``W[i]`` is W_{i+1}.
``W``/``b`` have N entries (one per layer above the input); ``B``, ``PI``, ``IP``, ``c`` have N − 1,
one per hidden layer.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .config import Conductances, NetworkSpec

__all__ = ["Weights", "init_weights", "self_predicting", "self_predicting_distance", "self_predicting_weights"]


class Weights(NamedTuple):
    """All synaptic weights (post ← pre), docs/model.md §1.

    W[i]:  W_{i+1}, bottom-up onto the basal dendrite, shape (n_{i+1}, n_i)
    b[i]:  bias of W_{i+1} (a constant presynaptic input of 1), shape (n_{i+1},)
    B[i]:  B_{i+1}, top-down onto the apical dendrite, shape (n_{i+1}, n_{i+2})
    PI[i]: PI_{i+1}, interneurons → apical dendrite, shape (n_{i+1}, n_{i+2})
    IP[i]: IP_{i+1}, pyramids → interneuron dendrite, shape (n_{i+2}, n_{i+1})
    c[i]:  bias of IP_{i+1}, shape (n_{i+2},)
    """

    W: tuple[jax.Array, ...]
    b: tuple[jax.Array, ...]
    B: tuple[jax.Array, ...]
    PI: tuple[jax.Array, ...]
    IP: tuple[jax.Array, ...]
    c: tuple[jax.Array, ...]


def init_weights(spec: NetworkSpec, conductances: Conductances, key: jax.Array, dtype: str = "float32") -> Weights:
    """Uniform random weights in [−scale, scale] per matrix (``spec.init``; with ``spec.init.B_transposed``
    B_k = W_{k+1}ᵀ rescaled to B's scale), then optionally the self-predicting formulas of docs/model.md §4.
    Biases b_k are ``spec.init.bias_mean`` (0 by default) plus a uniform spread of ``spec.init.bias``; all
    are zero when ``spec.bias`` is off."""
    n = spec.sizes
    N = spec.depth
    s = spec.init
    keys = iter(jax.random.split(key, 6 * N))

    def unif(shape: tuple[int, ...], scale: float) -> jax.Array:
        return jax.random.uniform(next(keys), shape, dtype, -scale, scale)

    scale = s.scales(N)
    W = tuple(unif((n[i + 1], n[i]), scale["W"][i]) for i in range(N))
    b = tuple(m + unif((n[i + 1],), s.bias) for i, m in enumerate(s.bias_means(N)))
    B = tuple(unif((n[i + 1], n[i + 2]), scale["B"][i]) for i in range(N - 1))
    if s.B_transposed:  # symmetric feedback at the start; the random draw above keeps the other keys
        B = tuple(W[i + 1].T * (scale["B"][i] / scale["W"][i + 1]) for i in range(N - 1))
    PI = tuple(unif((n[i + 1], n[i + 2]), scale["PI"][i]) for i in range(N - 1))
    IP = tuple(unif((n[i + 2], n[i + 1]), scale["IP"][i]) for i in range(N - 1))
    c = tuple(unif((n[i + 2],), s.bias) for i in range(N - 1))
    if not spec.bias:
        b = tuple(jnp.zeros_like(x) for x in b)
        c = tuple(jnp.zeros_like(x) for x in c)
    w = Weights(W, b, B, PI, IP, c)
    return self_predicting(w, conductances) if s.self_predicting else w


def self_predicting_weights(w: Weights, conductances: Conductances) -> tuple[tuple[jax.Array, ...], ...]:
    """The (PI, IP, c) that make ``w`` self-predicting, docs/model.md §4:

    PI_k = −B_k;  IP_k = [(g_lk + g_D)/g_D] · [g_B/(g_lk + g_B + g_A(k+1))] · W_{k+1}  (biases alike),
    with g_A(k+1) = 0 when k + 1 = N (the output layer has no apical compartment).
    """
    g = conductances
    N = len(w.W)
    inv_d = (g.g_lk + g.g_D) / g.g_D
    PI, IP, c = [], [], []
    for i in range(N - 1):  # hidden layer k = i + 1
        upper_is_output = i + 1 == N - 1
        g_A_up = 0.0 if upper_is_output else g.g_A
        factor = inv_d * g.g_B / (g.g_lk + g.g_B + g_A_up)
        PI.append(-w.B[i])
        IP.append(factor * w.W[i + 1])
        c.append(factor * w.b[i + 1])
    return tuple(PI), tuple(IP), tuple(c)


def self_predicting(w: Weights, conductances: Conductances) -> Weights:
    """``w`` with PI, IP (and interneuron biases) set to their self-predicting values (docs/model.md §4)."""
    PI, IP, c = self_predicting_weights(w, conductances)
    return w._replace(PI=PI, IP=IP, c=c)


def self_predicting_distance(w: Weights, conductances: Conductances) -> dict[str, tuple[float, ...]]:
    """How far the interneuron weights are from the self-predicting values of docs/model.md §4, per hidden layer:
    ‖IP_k − IP*_k‖ / ‖IP*_k‖ (IP*_k ∝ W_{k+1}) and ‖PI_k + B_k‖ / ‖B_k‖. 0 is exactly self-predicting; a
    circuit whose interneurons lost track of W_{k+1} sends spurious apical errors down (docs/results.md)."""
    PI_sp, IP_sp, _ = self_predicting_weights(w, conductances)

    def rel(a: jax.Array, b: jax.Array) -> float:
        scale = float(jnp.linalg.norm(b))
        return float(jnp.linalg.norm(a - b)) / scale if scale > 0 else float(jnp.linalg.norm(a))

    return {"IP": tuple(rel(a, b) for a, b in zip(w.IP, IP_sp, strict=True)),
            "PI": tuple(rel(a, b) for a, b in zip(w.PI, PI_sp, strict=True))}
