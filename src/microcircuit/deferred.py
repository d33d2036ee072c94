"""Deferred weight updates (``plasticity.defer = K``): the step-by-step updates of docs/model.md §3, exactly,
with each matrix written once per block of K steps instead of at every step.

Per plastic matrix M with trace Δ, rate η and the Euler step of docs/model.md §3 (``plasticity.apply_updates``):

    M_{i+1} = M_i + η·dt·g_i·Δ_i,     Δ_{i+1} = Δ_i + a·on_i·(δ_i − Δ_i),     δ_i = mean_b e_{i,b} p_{i,b}ᵀ

with the gate g_i (learning lag 0/1 times ``lr_scale``), on_i = [g_i > 0] (the trace is held while the
gate is 0), a = ``dynamics.filter_factor(sim, τ_w)`` and (e, p) the factors of rules (7)–(10)
(``plasticity.increment_factors``). The recurrence is linear, so within a block that starts at (M_0, Δ_0)

    Δ_j = α_j·Δ_0 + Σ_{l<j} β_{j,l}·δ_l,       M_j = M_0 + η·dt·(c_j·Δ_0 + Σ_{l<j} s_{j,l}·δ_l)

with scalars shared by every matrix (:class:`Coefficients`): α_0 = 1, c_0 = 0, β_0 = s_0 = 0 and

    c_{j+1} = c_j + g_j·α_j,   s_{j+1} = s_j + g_j·β_j,   α_{j+1} = (1 − a·on_j)·α_j,
    β_{j+1} = (1 − a·on_j)·β_j + a·on_j·1_j.

With τ_w = 0 (W += dt·η·g·δ) c = 0 and s_{j+1} = s_j + g_j·1_j. Each product the dynamics need,
M_j x (v_B,k = W_k r_{k−1}, v_A,k = B_k r_{k+1} + PI_k r^I_k, v^I_k = IP_k r_k of docs/model.md §2, and
rule (10)'s B_k r_{k+1}), is then

    M_j x = M_0 x + η·dt·c_j·(Δ_0 x) + η·dt/B · Σ_{l<j} s_{j,l} Σ_b e_{l,b} (p_{l,b}·x)

— one read of M_0 and one of Δ_0 plus O(K·B·(n_out + n_in)) work on the stored factors — and at the end
of the block M and Δ are updated once, by products with inner dimension K·B (:func:`flush`). The
biases (vectors) keep the step-by-step update. Per step that reads each matrix and its trace once,
instead of streaming them about six times (read for the products, read and write for the weight and
trace updates); it pays off when that traffic dominates (batch 1, large layers; docs/benchmarks.md).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .config import Model
from .dynamics import Dendrites, State, filter_factor, matvec
from .network import Weights
from .plasticity import learning_rates
from .transfer import phi

__all__ = ["MATRICES", "Coefficients", "Pending", "dendrites", "flush", "push", "source", "start"]

MATRICES = ("W", "B", "PI", "IP")  # the fields of Weights handled here; the biases b, c step by step


class Coefficients(NamedTuple):
    """The block's scalars after j steps (module docstring): Δ_j = alpha·Δ_0 + Σ_l beta[l]·δ_l and
    M_j = M_0 + η·dt·(c·Δ_0 + Σ_l s[l]·δ_l), the same for every matrix."""

    j: jax.Array  # int32, steps done in the block
    alpha: jax.Array
    c: jax.Array
    beta: jax.Array  # (K,)
    s: jax.Array  # (K,)


class Pending(NamedTuple):
    """The block so far: its coefficients and the factors of its steps' increments, stacked with row
    l·B + b for step l, sample b. ``err``: per plastic matrix in the layout of :class:`Weights`, the
    postsynaptic errors (K·B, n_out), ``None`` for frozen matrices and the biases. ``pre``: per
    presynaptic population (:func:`source`), the rates (K·B, n_in), stored once however many matrices
    they feed."""

    coef: Coefficients
    err: Weights
    pre: dict[str, jax.Array]


def source(name: str, i: int) -> str:
    """The presynaptic population of matrix ``name``[i]: ``"r{k}"`` for r_k (r_0 the input), ``"rI{k}"``
    for r^I_k (docs/model.md §2: W_k ← r_{k−1}, IP_k ← r_k, B_k ← r_{k+1}, PI_k ← r^I_k)."""
    return {"W": f"r{i}", "IP": f"r{i + 1}", "B": f"r{i + 2}", "PI": f"rI{i + 1}"}[name]


def _plastic(model: Model) -> list[tuple[str, int]]:
    """(field, index) of every plastic matrix (η ≠ 0)."""
    rates = learning_rates(model)
    return [(name, i) for name in MATRICES for i, eta in enumerate(getattr(rates, name)) if eta != 0]


def start(model: Model, w: Weights, block: int, batch: int) -> Pending:
    """An empty block of ``block`` steps for ``batch`` samples, starting from the weights ``w``."""
    dtype = w.W[0].dtype
    zero = jnp.zeros((), dtype)
    coef = Coefficients(jnp.int32(0), jnp.ones((), dtype), zero, jnp.zeros(block, dtype), jnp.zeros(block, dtype))
    plastic = _plastic(model)
    err = Weights(*(
        tuple(jnp.zeros((block * batch, m.shape[0]), dtype) if (name, i) in plastic else None
              for i, m in enumerate(arrays))
        for name, arrays in zip(Weights._fields, w, strict=True)
    ))
    pre = {source(name, i): jnp.zeros((block * batch, getattr(w, name)[i].shape[1]), dtype) for name, i in plastic}
    return Pending(coef, err, pre)


def _per_row(v: jax.Array, batch: int) -> jax.Array:
    """(K,) step coefficients → (K·B,) row coefficients of the stacked factors."""
    return jnp.repeat(v, batch)


def dendrites(model: Model, w: Weights, traces: Weights, pend: Pending, s: State) -> tuple[Dendrites, tuple]:
    """docs/model.md §2's dendritic potentials with the weights of step j of the block, and the top-down
    products B_k r_{k+1} (for rule 10). The biases in ``w`` are current; the matrices in ``w`` and
    ``traces`` are those of the block's start, M_0 and Δ_0, and each product is (module docstring)
    M_j x = M_0 x + η·dt·c_j·(Δ_0 x) + η·dt/B · Σ_l s_l Σ_b e_{l,b} (p_{l,b}·x)."""
    t = model.network.transfer
    bias = model.network.bias
    N = len(s.u)
    rates = learning_rates(model)
    coef = pend.coef
    batch = next(iter(pend.pre.values())).shape[0] // coef.s.shape[0] if pend.pre else 1

    r = tuple(phi(t, u) for u in s.u)
    r_inter = tuple(phi(t, u) for u in s.u_inter)
    now = {f"r{k}": v for k, v in enumerate((s.r_in, *r))}  # r_0 = x: no φ on the input (docs/model.md §1)
    now.update({f"rI{k + 1}": v for k, v in enumerate(r_inter)})
    # s_l·(p_{l,b}·x) for each population, shared by every matrix it feeds: (B, K·B)
    proj = {key: matvec(hist, now[key]) * _per_row(coef.s, batch) for key, hist in pend.pre.items()}

    def mv(name: str, i: int) -> jax.Array:
        key = source(name, i)
        y = matvec(getattr(w, name)[i], now[key])
        err = getattr(pend.err, name)[i]
        if err is None:  # frozen
            return y
        h = model.simulation.dt * getattr(rates, name)[i]
        if model.plasticity.tau_w > 0:
            y = y + (h * coef.c) * matvec(getattr(traces, name)[i], now[key])
        return y + (h / batch) * (proj[key] @ err)

    v_basal = tuple(mv("W", i) + (w.b[i] if bias else 0.0) for i in range(N))  # v_B,k = W_k r_{k−1}
    top = tuple(mv("B", i) for i in range(N - 1))  # B_k r_{k+1}
    v_apical = tuple(top[i] + mv("PI", i) for i in range(N - 1))  # v_A,k = B_k r_{k+1} + PI_k r^I_k
    v_inter = tuple(mv("IP", i) + (w.c[i] if bias else 0.0) for i in range(N - 1))  # v^I_k = IP_k r_k
    return Dendrites(r, r_inter, v_basal, v_apical, v_inter), top


def push(
    model: Model, pend: Pending, factors: Weights, gate: jax.Array | None, after: jax.Array | None = None
) -> Pending:
    """Store step j's increment factors (``plasticity.increment_factors``) and advance the coefficients
    by one step with gate g_j (``None`` = 1). ``after``: a zero from ``plasticity.order_after`` of the
    step's dendrites, so that the stored factors overwrite the buffers in place only after this step's
    products have read them (a presynaptic rate does not depend on those reads)."""
    coef = pend.coef
    K = coef.s.shape[0]
    dtype = coef.s.dtype
    one_j = (jnp.arange(K) == coef.j).astype(dtype)
    g = jnp.ones((), dtype) if gate is None else jnp.asarray(gate, dtype)
    if model.plasticity.tau_w > 0:
        a = filter_factor(model.simulation, model.plasticity.tau_w)
        a_on = a if gate is None else a * (g > 0).astype(dtype)
        coef = Coefficients(
            coef.j + 1,
            (1 - a_on) * coef.alpha,
            coef.c + g * coef.alpha,
            (1 - a_on) * coef.beta + a_on * one_j,
            coef.s + g * coef.beta,
        )
    else:
        coef = coef._replace(j=coef.j + 1, s=coef.s + g * one_j)
    zero = 0.0 if after is None else after

    def store(hist: jax.Array, new: jax.Array) -> jax.Array:
        return jax.lax.dynamic_update_slice_in_dim(hist, new + zero, pend.coef.j * new.shape[0], axis=0)

    err = Weights(*(
        tuple(None if e is None else store(e, f[0]) for e, f in zip(hists, fs, strict=True))
        for hists, fs in zip(pend.err, factors, strict=True)
    ))
    pres = {source(name, i): getattr(factors, name)[i][1] for name, i in _plastic(model)}
    return Pending(coef, err, {key: store(hist, pres[key]) for key, hist in pend.pre.items()})


def _weighted_sum(f: tuple[jax.Array, jax.Array], v: jax.Array) -> jax.Array:
    """Σ_l v_l Σ_b e_{l,b} p_{l,b}ᵀ for the stacked factors f = (err, pre): one product, inner size K·B."""
    err, pre = f
    return (err * _per_row(v, err.shape[0] // v.shape[0])[:, None]).T @ pre


def flush(model: Model, w: Weights, traces: Weights, pend: Pending) -> tuple[Weights, Weights]:
    """The matrices and traces at the end of the block, M_K and Δ_K (module docstring), each written
    once; biases and frozen matrices pass through."""
    coef = pend.coef
    K = coef.s.shape[0]
    trace_on = model.plasticity.tau_w > 0
    rates = learning_rates(model)
    new_w, new_tr = [], []
    for name, ms, trs, errs, etas in zip(Weights._fields, w, traces, pend.err, rates, strict=True):
        w_out, tr_out = [], []
        for i, (m, tr, err, eta) in enumerate(zip(ms, trs, errs, etas, strict=True)):
            if err is None:
                w_out.append(m)
                tr_out.append(tr)
                continue
            f = (err, pend.pre[source(name, i)])
            batch = err.shape[0] // K
            h = model.simulation.dt * eta
            m_next = m + _weighted_sum(f, coef.s * (h / batch))
            if trace_on:
                m_next = m_next + (h * coef.c) * tr
                # Δ is overwritten only after m_next has read it (in place, see plasticity.order_after)
                tie = 0.0 * m_next.reshape(-1)[0]
                tr = (coef.alpha + tie) * tr + _weighted_sum(f, coef.beta / batch)
            w_out.append(m_next)
            tr_out.append(tr)
        new_w.append(tuple(w_out))
        new_tr.append(tuple(tr_out))
    return Weights(*new_w), Weights(*new_tr)
