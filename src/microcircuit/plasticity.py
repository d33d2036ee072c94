"""Dendritic-prediction plasticity (docs/model.md §3): rules (7)–(10), the τ_w trace, the weight update.

Every rule is postsynaptic error × presynaptic rate, averaged over the batch. A matrix whose learning
rate is 0 is frozen: its increment is never computed.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .config import Model
from .dynamics import Dendrites, State, filter_factor, matvec, pal_highpass
from .network import Weights
from .spiking import Layout, count_scale, log_derivative
from .transfer import phi

__all__ = [
    "apply_updates", "from_factors", "increment_factors", "increments", "learning_rates", "order_after", "zero_traces",
]


def zero_traces(w: Weights) -> Weights:
    """Filtered increments Δ, one per weight array, all zero (τ_w dΔ/dt = −Δ + δ, docs/model.md §3)."""
    return jax.tree_util.tree_map(jnp.zeros_like, w)


def increment_factors(
    model: Model,
    w: Weights,
    s: State,
    d: Dendrites,
    top_down: tuple[jax.Array, ...] | None = None,
) -> Weights:
    """The factors of rules (7)–(10) at the state ``s``, in the layout of :class:`Weights`: (post error,
    pre rate) for a matrix, whose increment is mean_b err_b pre_bᵀ; the error alone for a bias; ``None``
    where frozen (η = 0) or without biases. Kept apart so that increments of several steps can be summed
    as one matrix product (``plasticity.update_every``) or kept factored (``plasticity.defer``).

    ``top_down``: the products B_k r_{k+1} of rule (10), when the caller has them already (else computed
    from ``w.B``).

    In prospective mode (docs/model.md §8) ``d.r`` = φ(ŭ), so the rules read ŭ where the original rules
    read u; rules (9) and (10) pair the apical potential with the rates that reached the apical dendrite
    (``d.r_inter_apical``, ``d.r_apical``, of the previous step).

    With ``pal.enabled`` (docs/model.md §12) B_k's factors are PAL's (ξ_k, r̃_{k+1}) instead of rule (10)'s;
    the weight decay −α B_k is added by :func:`increments`."""
    g, p = model.conductances, model.plasticity
    bias = model.network.bias
    N = len(s.u)
    pre = d.r_pre or (s.r_in, *d.r[:-1])  # the rates that reached the basal dendrites (§8 synchronous: t − dt)
    r_top = d.r_apical or d.r[1:]  # the rates at the apical dendrites: r_{k+1}, r^I_k (§8: previous step)
    r_top_inter = d.r_inter_apical or d.r_inter
    post, post_inter, error = _post_factors(model, d)
    W: list = [None] * N
    b: list = [None] * N
    for i in range(N):
        if p.eta_W[i] == 0:
            continue
        att = g.basal_output if i == N - 1 else g.basal_hidden  # v̂_B,k attenuation (rule 7)
        v_hat = att * d.v_basal[i]
        err = error(post[i], v_hat)  # (7) φ(u_k) − φ(v̂_B,k); §13 [S_k − φ(v̂_B,k)]
        W[i] = (err, pre[i])
        b[i] = err if bias else None
    IP: list = [None] * (N - 1)
    c: list = [None] * (N - 1)
    PI: list = [None] * (N - 1)
    B: list = [None] * (N - 1)
    for i in range(N - 1):
        if p.eta_IP[i] != 0:  # (8) [φ(u^I_k) − φ(v̂^I_k)] r_kᵀ, v̂^I_k = g_D/(g_lk+g_D) v^I_k
            v_hat = g.dendrite_inter * d.v_inter[i]
            err = error(post_inter[i], v_hat)
            IP[i] = (err, pre[i + 1])
            c[i] = err if bias else None
        if p.eta_PI[i] != 0:  # (9) [0 − v_A,k] (r^I_k)ᵀ
            PI[i] = (-d.v_apical[i], r_top_inter[i])
        if p.eta_B[i] != 0:  # (10) [φ(u_k) − φ(B_k r_{k+1})] r_{k+1}ᵀ
            pred = matvec(w.B[i], r_top[i]) if top_down is None else top_down[i]
            B[i] = (error(post[i], pred), r_top[i])
    if model.pal.enabled:
        r_hp = pal_highpass(model, s, d)
        for i in range(N - 1):
            if model.pal.eta_B[i] != 0:  # §12 PAL: ξ_k r̃_{k+1}ᵀ
                B[i] = (s.xi[i], r_hp[i])
    return Weights(tuple(W), tuple(b), tuple(B), tuple(PI), tuple(IP), tuple(c))


def _post_factors(model: Model, d: Dendrites) -> tuple[tuple, tuple, Callable[[jax.Array, jax.Array], jax.Array]]:
    """The postsynaptic rates of rules (7), (8), (10) and the error of a post rate against the dendritic
    prediction φ(v̂): φ(u) and post − φ(v̂) in the rate model. In the spiking circuit (docs/model.md §13) a
    neuron fires at r_max·min(φ, 1): the post rate is min(φ(u), 1) for ``spiking.post = "rate"`` and the
    unit's spike train in rate units S = c/(n·r_max·dt) for ``"spikes"`` and ``"spikes_h"`` (whose error is
    weighted by h(v̂) = (ln φ)'(v̂)); the prediction φ(v̂) is not capped, so a dendrite that predicts more than
    its neuron can fire is corrected downwards."""
    t, sp = model.network.transfer, model.spiking
    error = lambda post, v: post - phi(t, v)  # noqa: E731
    if not sp.enabled:
        return d.r, d.r_inter, error
    if sp.post == "rate":
        cap = lambda rates: tuple(jnp.minimum(r, 1.0) for r in rates)  # noqa: E731 - §13 the capped rate
        return cap(d.r), cap(d.r_inter), error
    lay, scale = Layout.of(model.network, sp), count_scale(sp, model.simulation)
    N = len(d.r)
    post = tuple(d.spikes[lay.pyramid(i)] / scale for i in range(N))
    post_inter = tuple(d.spikes[lay.inter(i)] / scale for i in range(N - 1))
    if sp.post == "spikes":
        return post, post_inter, error
    return post, post_inter, lambda s, v: (s - phi(t, v)) * log_derivative(t, v)


def from_factors(w: Weights, factors: Weights, batch: int, only: tuple[str, ...] | None = None) -> Weights:
    """Increments from :func:`increment_factors` (zeros where ``None``). Factors of K steps stacked along
    the batch axis, (K·B, n), give the sum of the K steps' batch means as one matrix product.
    ``only``: compute just these fields of :class:`Weights` (the others are ``None``)."""

    def one(like: jax.Array, f: tuple[jax.Array, jax.Array] | jax.Array | None) -> jax.Array:
        if f is None:
            return jnp.zeros_like(like)
        if isinstance(f, tuple):
            return f[0].T @ f[1] / batch  # Σ err_b pre_bᵀ / B
        return f.sum(0) / batch

    return Weights(*(
        tuple(one(a, f) if only is None or name in only else None for a, f in zip(arrays, fs, strict=True))
        for name, arrays, fs in zip(Weights._fields, w, factors, strict=True)
    ))


def increments(model: Model, w: Weights, s: State, d: Dendrites) -> Weights:
    """Instantaneous increments δ of rules (7)–(10) at the state ``s`` (zeros where frozen), batch-averaged;
    with ``pal.enabled`` B_k's is PAL's mean_b ξ_k r̃_{k+1}ᵀ − α B_k (docs/model.md §12)."""
    delta = from_factors(w, increment_factors(model, w, s, d), s.r_in.shape[0])
    pal = model.pal
    if not pal.enabled or pal.alpha == 0:
        return delta
    B = tuple(x - pal.alpha * b if eta != 0 else x for x, b, eta in zip(delta.B, w.B, pal.eta_B, strict=True))
    return delta._replace(B=B)  # §12 PAL decay −α B_k


def order_after(*trees: object) -> jax.Array:
    """A scalar 0 computed from one element of every array in ``trees``.

    XLA:CPU's copy insertion orders operations only by data dependence. A weight update W + dt·η·Δ does
    not depend on the matrix-vector products that read the old W, nor is the trace update ordered after
    the weight update that reads the old Δ; so XLA cannot write either in place and copies every
    weight and trace at every step of the scan. Adding this zero (x·0 is not folded for floats) to the
    update's coefficients makes the order explicit and the updates in place; the values are unchanged.
    """
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(trees) if leaf.size]
    return 0.0 * sum(leaf.reshape(-1)[0] for leaf in leaves)


def learning_rates(model: Model) -> Weights:
    """η per weight array, in the layout of :class:`Weights` (biases share their matrix's rate); B's is
    ``pal.eta_B`` with PAL (docs/model.md §12), else ``plasticity.eta_B``."""
    p = model.plasticity
    eta_B = model.pal.eta_B if model.pal.enabled else p.eta_B
    return Weights(p.eta_W, p.eta_W, eta_B, p.eta_PI, p.eta_IP, p.eta_IP)


def apply_updates(
    model: Model,
    w: Weights,
    traces: Weights,
    delta: Weights,
    gate: jax.Array | None = None,
    after: jax.Array | None = None,
    only: tuple[str, ...] | None = None,
) -> tuple[Weights, Weights]:
    """One Euler step of the weights: W += dt·η·Δ and τ_w dΔ/dt = −Δ + δ (or W += dt·η·δ when τ_w = 0).
    With ``pal.enabled`` B is stepped unfiltered, B += dt·η_B·δ, whatever τ_w (docs/model.md §12).

    ``gate`` (traced) scales every weight step (learning lag 0/1 times a learning-rate scale); where it
    is not > 0 the traces are held too, e.g. during the learning lag.
    ``after``: a zero from :func:`order_after`, to make the updates in place (see there).
    ``only``: update just these fields of :class:`Weights` (e.g. ``("b", "c")``); the others, whose
    ``delta`` entries are not read, pass through unchanged.
    """
    zero = 0.0 if after is None else after
    dt, tau_w = model.simulation.dt, model.plasticity.tau_w
    a_w = filter_factor(model.simulation, tau_w) if tau_w > 0 else 0.0  # τ_w dΔ/dt = −Δ + δ
    bias = model.network.bias
    rates = learning_rates(model)
    new_w, new_tr = [], []
    for name, ws, trs, ds, etas in zip(Weights._fields, w, traces, delta, rates, strict=True):
        if (name in ("b", "c") and not bias) or (only is not None and name not in only):
            new_w.append(ws)
            new_tr.append(trs)
            continue
        w_out, tr_out = [], []
        for x, tr, dl, eta in zip(ws, trs, ds, etas, strict=True):
            if eta == 0:
                w_out.append(x)
                tr_out.append(tr)
                continue
            if tau_w > 0 and not (name == "B" and model.pal.enabled):  # §12: PAL's B rule is not τ_w-filtered
                step = (dt * eta + zero) * tr
                if gate is not None:
                    step = gate * step
                x_next = x + step
                # the new trace overwrites Δ(t) only after x_next has read it
                tie = zero if after is None else 0.0 * x_next.reshape(-1)[0]
                tr_next = tr + (a_w + tie) * (dl - tr)
                if gate is not None:
                    tr_next = jnp.where(gate > 0, tr_next, tr)
                w_out.append(x_next)
                tr_out.append(tr_next)
            else:
                step = (dt * eta + zero) * dl
                w_out.append(x + (step if gate is None else gate * step))
                tr_out.append(tr)
        new_w.append(tuple(w_out))
        new_tr.append(tuple(tr_out))
    return Weights(*new_w), Weights(*new_tr)
