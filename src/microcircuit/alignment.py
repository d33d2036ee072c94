"""Alignment of the top-down weights with the forward pathway (docs/model.md §12): pure functions.

- ``frobenius_angle(A, B)``: arccos(tr(AᵀB) / (‖A‖_F ‖B‖_F)) in degrees.
- ∠(W_{k+1}ᵀ, B_k): does B_k point along the transposed forward weights it stands in for?
- ∠(B_k, J_k) with J_k = φ'_k W_{k+1}ᵀ φ'_{k+1}, the direction PAL's rule drives B_k to (§12). φ'_k is
  φ' at the basal prediction v̂_B,k (g_B/(g_lk+g_B+g_A) · v_B,k for hidden layers, g_B/(g_lk+g_B) · v_B,N
  for the output: the feed-forward potentials u⁻ of §5). For a batch of samples b the matrix is averaged
  over the batch: (J_k)_ij = (W_{k+1})_ji · mean_b[φ'(v̂_B,k,b)_i · φ'(v̂_B,k+1,b)_j], i.e. the mean of
  diag(φ'_k,b) W_{k+1}ᵀ diag(φ'_{k+1,b}) over b.

:func:`alignment_angles` takes the inputs of a feed-forward pass (e.g. a whole data set); the recorded
quantity ``alignment`` (:func:`snapshot_angles`) reads the running circuit's basal potentials at the
snapshot, averaged over its batch. Keys use docs/model.md's 1-based layer numbers: ``angle_WT_B_k``,
``angle_B_J_k``. An angle with a zero matrix is undefined: it is NaN.

:func:`update_angles` compares what the circuit learns with backprop: the angle between rule (7)'s update
of every W_k at the nudged steady state (§6) and backprop's update at the same weights (§5), both averaged
over a batch (``angle_update_k``, k = 1..N).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .backprop import backprop_updates, feedforward
from .config import Model
from .dynamics import Dendrites
from .network import Weights
from .steady_state import increments_at, settle
from .transfer import dphi

__all__ = ["alignment_angles", "feedback_targets", "frobenius_angle", "snapshot_angles", "update_angles"]


def frobenius_angle(a: jax.Array, b: jax.Array) -> jax.Array:
    """The angle in degrees between two matrices of one shape, arccos(tr(aᵀb) / (‖a‖_F ‖b‖_F)) (§12);
    NaN if either is zero."""
    if a.shape != b.shape:
        raise ValueError(f"frobenius_angle: shapes differ, {a.shape} and {b.shape}")
    norms = jnp.linalg.norm(a) * jnp.linalg.norm(b)
    cos = jnp.where(norms > 0, jnp.sum(a * b) / jnp.where(norms > 0, norms, 1.0), jnp.nan)
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))  # §12 Frobenius angle


def feedback_targets(model: Model, w: Weights, v_hat: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """J_k = mean_b diag(φ'(v̂_B,k,b)) W_{k+1}ᵀ diag(φ'(v̂_B,k+1,b)) for every hidden layer k, from the basal
    predictions ``v_hat`` (one (B, n_k) array per layer k = 1..N, already attenuated) (§12)."""
    t = model.network.transfer
    d = [dphi(t, v) for v in v_hat]
    N = len(w.W)
    out = []
    for i in range(N - 1):
        mix = jnp.einsum("bi,bj->ij", d[i], d[i + 1]) / d[i].shape[0]  # mean_b φ'_k,b φ'_{k+1,b}ᵀ
        out.append(w.W[i + 1].T * mix)  # §12 φ'_k W_{k+1}ᵀ φ'_{k+1}, batch-averaged
    return tuple(out)


def _angles(model: Model, w: Weights, v_hat: tuple[jax.Array, ...]) -> dict[str, jax.Array]:
    out = {}
    for i, J in enumerate(feedback_targets(model, w, v_hat)):
        out[f"angle_WT_B_{i + 1}"] = frobenius_angle(w.W[i + 1].T, w.B[i])
        out[f"angle_B_J_{i + 1}"] = frobenius_angle(w.B[i], J)
    return out


def alignment_angles(model: Model, w: Weights, x: jax.Array) -> dict[str, jax.Array]:
    """∠(W_{k+1}ᵀ, B_k) and ∠(B_k, J_k) per hidden layer, J_k from the feed-forward pass (§5) of the inputs
    x (B, n_0), averaged over them (see the module docstring)."""
    return _angles(model, w, feedforward(model, w.W, w.b, x))


def snapshot_angles(model: Model, w: Weights, d: Dendrites) -> dict[str, jax.Array]:
    """The same angles with J_k from the circuit's current basal potentials ``d.v_basal`` (attenuated to
    v̂_B,k), averaged over its batch (the recorded quantity ``alignment``)."""
    g = model.conductances
    N = len(d.v_basal)
    v_hat = tuple((g.basal_output if i == N - 1 else g.basal_hidden) * v for i, v in enumerate(d.v_basal))
    return _angles(model, w, v_hat)


def update_angles(model: Model, w: Weights, x: jax.Array, u_trgt: jax.Array) -> dict[str, jax.Array]:
    """``angle_update_k``: the angle between rule (7)'s δW_k at the steady state of inputs x (B, n_0) nudged
    towards u_trgt (B, n_N) (the swept state of §6) and backprop's update of W_k at the same weights (the
    vjp of u⁻_N seeded with e_N = D_N (u_trgt − u⁻_N), §5), each averaged over the batch; for k = 1..N."""
    probe = dataclasses.replace(model, plasticity=dataclasses.replace(
        model.plasticity, eta_W=(1.0,) * len(w.W), eta_IP=0.0, eta_PI=0.0, eta_B=0.0))
    dW = increments_at(probe, w, x, settle(probe, w, x, u_trgt)).W  # rule (7), batch-averaged
    bW, _ = backprop_updates(probe, w, x, u_trgt)
    return {f"angle_update_{k + 1}": frobenius_angle(a, b) for k, (a, b) in enumerate(zip(dW, bW, strict=True))}

