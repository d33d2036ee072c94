"""Fast steady-state mode (docs/model.md §6): the fixed point of §2 by up/down sweeps instead of integration.

One pass (the paper's scheme, used for MNIST):

1. forward, k = 1..N, silent apicals: u_k = (1 − λ_A) b_k (hidden), u_N = b_N, u^I_k = d_k, with
   b_k = g_B/(g_lk+g_B) · W_k r_{k−1} and d_k = g_D/(g_lk+g_D) · IP_k r_k;
2. nudge the output: u_N = (1 − λ_N) b_N + λ_N u_trgt;
3. backward, k = N−1..1: u^I_k = (1 − λ_I) d_k + λ_I u_{k+1}; v_A,k = B_k r_{k+1} + PI_k r^I_k;
   u_k = (1 − λ_A) b_k + λ_A v_A,k;
4. rules (7)–(10) at these potentials, with predictions v̂_B,k = (1 − λ_A) b_k, v̂_B,N = b_N, v̂^I_k = d_k;
   with ``rule9_state = "free"`` rule (9) reads the apical potential of the same sweep without the
   nudge of step 2 instead (docs/model.md §6, "What rule (9) reads").

Further passes repeat the sweeps with the current apical potentials (no longer silent) and nudged
interneurons; repeated to convergence they reach the fixed point of the continuous-time dynamics.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .backprop import feedforward
from .config import Model
from .network import Weights
from .transfer import phi

__all__ = ["SteadyState", "increments_at", "predict", "settle", "train_step"]


class SteadyState(NamedTuple):
    """Potentials and dendritic predictions at the sweep's end (batch-first, 0-based like State)."""

    u: tuple[jax.Array, ...]  # u_1..u_N
    u_inter: tuple[jax.Array, ...]  # u^I_1..u^I_{N−1}
    b: tuple[jax.Array, ...]  # apical-free basal values b_k
    d: tuple[jax.Array, ...]  # interneuron dendritic predictions d_k
    v_apical: tuple[jax.Array, ...]  # v_A,k


def settle(
    model: Model, w: Weights, x: jax.Array, u_trgt: jax.Array | None = None, n_passes: int = 1
) -> SteadyState:
    """The steady state for inputs ``x`` (B, n_0), nudged towards ``u_trgt`` (B, n_N) if given (§6)."""
    g, t, bias = model.conductances, model.network.transfer, model.network.bias
    N = len(w.W)
    basal = g.g_B / (g.g_lk + g.g_B)  # b_k = basal · W_k r_{k−1}
    dend = g.dendrite_inter  # d_k = g_D/(g_lk+g_D) · IP_k r_k
    lam_A, lam_N, lam_I = g.lambda_A, g.lambda_N, g.lambda_I
    u: list[jax.Array] = [jnp.zeros((x.shape[0], W.shape[0]), x.dtype) for W in w.W]
    u_I: list[jax.Array] = [jnp.zeros((x.shape[0], IP.shape[0]), x.dtype) for IP in w.IP]
    b = list(u)
    d = list(u_I)
    v_A = [jnp.zeros_like(ui) for ui in u[:-1]]  # silent apicals in the first pass
    for p in range(n_passes):
        r_prev = x  # r_0 = x (docs/model.md §1)
        for k in range(N):  # forward sweep
            b[k] = basal * (r_prev @ w.W[k].T + (w.b[k] if bias else 0.0))
            if k < N - 1:
                u[k] = (1 - lam_A) * b[k] + lam_A * v_A[k]
            else:
                u[k] = b[k]
            r_prev = phi(t, u[k])
            if k < N - 1:
                d[k] = dend * (r_prev @ w.IP[k].T + (w.c[k] if bias else 0.0))
                u_I[k] = d[k] if p == 0 else (1 - lam_I) * d[k] + lam_I * u[k + 1]
        if u_trgt is not None:  # nudge the output
            u[N - 1] = (1 - lam_N) * b[N - 1] + lam_N * u_trgt
        for k in range(N - 2, -1, -1):  # backward sweep
            u_I[k] = (1 - lam_I) * d[k] + lam_I * u[k + 1]
            v_A[k] = phi(t, u[k + 1]) @ w.B[k].T + phi(t, u_I[k]) @ w.PI[k].T  # v_A,k
            u[k] = (1 - lam_A) * b[k] + lam_A * v_A[k]
    return SteadyState(tuple(u), tuple(u_I), tuple(b), tuple(d), tuple(v_A))


def increments_at(model: Model, w: Weights, x: jax.Array, ss: SteadyState, free: SteadyState | None = None) -> Weights:
    """Batch-averaged increments of rules (7)–(10) at the swept state (§6 step 4); zeros where η = 0.
    ``free`` (the state of the same inputs without a target), if given, is what rule (9) reads."""
    g, p, t, bias = model.conductances, model.plasticity, model.network.transfer, model.network.bias
    N = len(w.W)
    r = [phi(t, u) for u in ss.u]
    pre = [x, *r[:-1]]
    B = x.shape[0]
    outer = lambda e, a: e.T @ a / B  # noqa: E731
    zeros = lambda arrays: [jnp.zeros_like(a) for a in arrays]  # noqa: E731
    dW, db, dB, dPI, dIP, dc = (zeros(a) for a in w)
    for k in range(N):
        if p.eta_W[k] == 0:
            continue
        pred = ss.b[k] if k == N - 1 else (1 - g.lambda_A) * ss.b[k]  # v̂_B,k
        err = r[k] - phi(t, pred)  # (7)
        dW[k] = outer(err, pre[k])
        if bias:
            db[k] = err.mean(0)
    for k in range(N - 1):
        r_I = phi(t, ss.u_inter[k])
        if p.eta_IP[k] != 0:
            err = r_I - phi(t, ss.d[k])  # (8)
            dIP[k] = outer(err, r[k])
            if bias:
                dc[k] = err.mean(0)
        if p.eta_PI[k] != 0:
            v_A, r_lat = (ss.v_apical[k], r_I) if free is None else (free.v_apical[k], phi(t, free.u_inter[k]))
            dPI[k] = outer(-v_A, r_lat)  # (9)
        if p.eta_B[k] != 0:
            dB[k] = outer(r[k] - phi(t, r[k + 1] @ w.B[k].T), r[k + 1])  # (10)
    return Weights(*(tuple(a) for a in (dW, db, dB, dPI, dIP, dc)))


@functools.partial(jax.jit, static_argnames=("model", "duration", "n_passes", "rule9_state"))
def train_step(
    model: Model,
    w: Weights,
    x: jax.Array,
    u_trgt: jax.Array,
    lr_scale: jax.Array | float = 1.0,
    *,
    duration: float,
    n_passes: int = 1,
    rule9_state: str = "nudged",
) -> Weights:
    """One mini-batch: settle, then W += lr_scale · duration · η · δ for every plastic matrix (η per ms).
    ``rule9_state``: rule (9) reads the nudged state (``"nudged"``) or the state without the target
    (``"free"``, docs/model.md §6)."""
    ss = settle(model, w, x, u_trgt, n_passes)
    p = model.plasticity
    free = settle(model, w, x, None, n_passes) if rule9_state == "free" and any(p.eta_PI) else None
    delta = increments_at(model, w, x, ss, free)
    rates = Weights(p.eta_W, p.eta_W, p.eta_B, p.eta_PI, p.eta_IP, p.eta_IP)
    skip_bias = not model.network.bias
    out = []
    for name, ws, ds, etas in zip(Weights._fields, w, delta, rates, strict=True):
        if skip_bias and name in ("b", "c"):
            out.append(ws)
        else:
            triples = zip(ws, ds, etas, strict=True)
            out.append(tuple(a if eta == 0 else a + (lr_scale * duration * eta) * da for a, da, eta in triples))
    return Weights(*out)


def predict(model: Model, w: Weights, x: jax.Array) -> jax.Array:
    """Output potentials with no target: the forward sweep, which is the feed-forward u⁻_N of §5."""
    return feedforward(model, w.W, w.b, x)[-1]
