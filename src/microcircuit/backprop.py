"""The feed-forward network a self-predicting circuit computes, and its backprop reference (docs/model.md §5).

u⁻_k = g_B/(g_lk+g_B+g_A) · v_B,k for hidden layers and u⁻_N = g_B/(g_lk+g_B) · v_B,N, with
v_B,k = W_k r⁻_{k−1} (+ b_k) and r⁻_0 = x. Backprop propagates an output error down through this
network by a vector–Jacobian product: by default the circuit's own e_N = D_N (u_trgt − u⁻_N), or the
negative gradient of another loss on the output (``LOSSES``, docs/model.md §5). Feedback alignment
(Lillicrap et al. 2016) is the same product with the error sent from layer k+1 to layer k through a fixed
matrix B_k in place of W_{k+1}ᵀ (``feedback``). Direct feedback alignment (Nøkland 2016) sends the output
error to every hidden layer k at once through a fixed matrix D_k (``direct_feedback_updates``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .config import BACKPROP_LOSSES, Conductances, Model
from .network import Weights
from .transfer import dphi, phi

__all__ = [
    "LOSSES",
    "angle",
    "backprop_updates",
    "direct_feedback_updates",
    "feedforward",
    "output_error",
    "update_scale",
]


Arrays = tuple[jax.Array, ...]

# The output errors backprop can start from (training.loss; docs/model.md §5):
# circuit: the circuit's error e_N = D_N (u_trgt − u⁻_N) in potential space (the link of §5);
# cross_entropy: −∂/∂u_N of the softmax cross-entropy of the potentials u⁻_N, the label the arg max of u_trgt;
# rate_mse: −∂/∂u_N of ½‖φ(u_trgt) − φ(u⁻_N)‖², the squared error of the rates.
LOSSES = BACKPROP_LOSSES


@jax.custom_vjp
def _fed_back(r: jax.Array, W: jax.Array, B: jax.Array) -> jax.Array:
    """r Wᵀ, whose cotangent reaches r through the feedback matrix B (n_in, n_out) instead of through Wᵀ:
    the one place where feedback alignment differs from backprop (docs/model.md §5)."""
    return r @ W.T


def _fed_back_fwd(r: jax.Array, W: jax.Array, B: jax.Array) -> tuple[jax.Array, tuple]:
    return r @ W.T, (r, B)


def _fed_back_bwd(res: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    r, B = res
    return g @ B.T, g.T @ r, jnp.zeros_like(B)


_fed_back.defvjp(_fed_back_fwd, _fed_back_bwd)


def feedforward(model: Model, W: Arrays, b: Arrays, x: jax.Array, feedback: Arrays | None = None) -> Arrays:
    """u⁻_1..u⁻_N for inputs x (B, n_0), docs/model.md §5 (apical compartments silent, no target). With
    ``feedback`` = (B_1 .. B_{N−1}) the values are the same, but a vector–Jacobian product sends the error
    from layer k+1 to layer k through B_k rather than W_{k+1}ᵀ (feedback alignment)."""
    g, t = model.conductances, model.network.transfer
    N = len(W)
    r = x
    us = []
    for i in range(N):
        att = g.basal_output if i == N - 1 else g.basal_hidden
        drive = r @ W[i].T if feedback is None or i == 0 else _fed_back(r, W[i], feedback[i - 1])
        v = drive + (b[i] if model.network.bias else 0.0)
        u = att * v
        us.append(u)
        r = phi(t, u)
    return tuple(us)


def output_error(model: Model, u_N: jax.Array, u_trgt: jax.Array, loss: str = "circuit") -> jax.Array:
    """The error backprop seeds at the output, per sample (B, n_N): e_N = D_N (u_trgt − u⁻_N) for
    ``circuit``, else −∂L/∂u_N of the named loss (``LOSSES``)."""
    t = model.network.transfer
    if loss == "circuit":
        return dphi(t, u_N) * (u_trgt - u_N)
    if loss == "cross_entropy":
        label = jax.nn.one_hot(jnp.argmax(u_trgt, axis=-1), u_N.shape[-1], dtype=u_N.dtype)
        return label - jax.nn.softmax(u_N, axis=-1)
    if loss == "rate_mse":
        return dphi(t, u_N) * (phi(t, u_trgt) - phi(t, u_N))
    raise ValueError(f"unknown backprop loss {loss!r}; expected one of {LOSSES}")


def backprop_updates(model: Model, w: Weights, x: jax.Array, u_trgt: jax.Array,
                     loss: str = "circuit", feedback_alignment: bool = False) -> tuple[Arrays, Arrays]:
    """Backprop's update direction for (W_k, b_k), batch-averaged: the vjp of u⁻_N seeded with
    :func:`output_error` (by default e_N = D_N (u_trgt − u⁻_N), docs/model.md §5; note the D_N).
    With ``feedback_alignment`` the error reaches layer k through the fixed ``w.B[k−1]`` instead of
    W_{k+1}ᵀ (Lillicrap et al. 2016; docs/model.md §5). Returns (dW, db), each W-shaped."""
    feedback = tuple(w.B) if feedback_alignment else None

    def out(W: Arrays, b: Arrays) -> jax.Array:
        return feedforward(model, W, b, x, feedback)[-1]

    u_N, vjp = jax.vjp(out, w.W, w.b)
    e_N = output_error(model, u_N, u_trgt, loss)
    dW, db = vjp(e_N / x.shape[0])
    return dW, db


def direct_feedback_updates(model: Model, w: Weights, D: Arrays, x: jax.Array, u_trgt: jax.Array,
                            loss: str = "circuit") -> tuple[Arrays, Arrays]:
    """Direct feedback alignment (Nøkland 2016) on the feed-forward network of docs/model.md §5: the output
    error e_N (:func:`output_error`) reaches hidden layer k through the fixed matrix ``D[k−1]`` (n_k, n_N),
    δ_k = φ'(u⁻_k) ⊙ D_k e_N, δ_N = e_N, and ΔW_k = a_k δ_k r⁻_{k−1}ᵀ, Δb_k = a_k δ_k with a_k the
    attenuation of layer k (as backprop's gradient carries it). Batch-averaged; returns (dW, db)."""
    g, t = model.conductances, model.network.transfer
    us = feedforward(model, w.W, w.b, x)
    N = len(us)
    e_N = output_error(model, us[-1], u_trgt, loss)
    pre = (x, *(phi(t, u) for u in us[:-1]))
    dW, db = [], []
    for k in range(N):
        att = g.basal_output if k == N - 1 else g.basal_hidden
        delta = e_N if k == N - 1 else dphi(t, us[k]) * (e_N @ D[k].T)
        dW.append(att * delta.T @ pre[k] / x.shape[0])
        db.append(att * jnp.mean(delta, axis=0) if model.network.bias else jnp.zeros_like(w.b[k]))
    return tuple(dW), tuple(db)


def angle(a: jax.Array, b: jax.Array) -> jax.Array:
    """Angle in degrees between two arrays seen as vectors (e.g. a circuit update and backprop's)."""
    cos = jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))


def update_scale(g: Conductances, depth: int) -> tuple[float, ...]:
    """Per layer k = 1..N, the factor by which rule (7)'s update at the steady state exceeds
    :func:`backprop_updates` in the weak-nudging limit (docs/model.md §5, B_k = W_{k+1}ᵀ, self-predicting):
    λ_N·λ_A^{N−k}, divided by the attenuation factors g_B/(g_lk+g_B+g_A) of the hidden layers k..N−1 and
    g_B/(g_lk+g_B) of the output, which the feed-forward network's gradient carries and the circuit's
    errors do not."""
    N = depth
    out = []
    for k in range(1, N + 1):
        attenuation = g.basal_output * g.basal_hidden ** (N - k)
        out.append(g.lambda_N * g.lambda_A ** (N - k) / attenuation)
    return tuple(out)
