"""Neuron dynamics (docs/model.md §2): dendritic potentials, somatic derivatives, one Euler(–Maruyama) step.

Shapes carry a leading batch axis: u[i] is (B, n_{i+1}); docs/model.md's layer k is index k − 1 here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .config import Model, NetworkSpec, Simulation
from .network import Weights
from .spiking import Layout, Transmitter, nudging_fractions
from .transfer import phi

__all__ = [
    "PAL_STREAM", "Dendrites", "State", "dendrites", "derivatives", "filter_factor", "init_state",
    "integrate_potentials", "pal_highpass", "pal_noise", "relaxation", "with_prospective",
]

PAL_STREAM = 0x9A1  # PAL's normal draws at step n come from fold_in(fold_in(key, n), PAL_STREAM) (§12)


class State(NamedTuple):
    """Somatic potentials and the low-passed drive.

    u[i]:       u_{i+1}, pyramidal somata, (B, n_{i+1}), i = 0..N−1
    u_inter[i]: u^I_{i+1}, interneurons of hidden layer i+1, (B, n_{i+2}), i = 0..N−2
    r_in:       r_0, the low-passed input rates, (B, n_0)
    u_trgt:     the low-passed target potential, (B, n_N)
    u_pro[i], u_inter_pro[i]: the prospective potentials ŭ of the previous step, whose rates reach the
                apical dendrites through B and PI (``simulation.prospective``, docs/model.md §8; empty
                otherwise), shaped like u, u_inter
    xi[i]:      ξ_{i+1}, PAL's apical Ornstein–Uhlenbeck noise of hidden layer i+1 at time t, (B, n_{i+1})
    r_hp[i]:    r̃_{i+2}, the high-pass filtered rate of layer i+2 (the layer above hidden layer i+1) at
                t − dt, (B, n_{i+2})
    r_prev[i]:  r_{i+2}(t − dt), the rate of layer i+2 one step earlier, (B, n_{i+2}); these three only with
                ``pal.enabled`` (docs/model.md §12), empty otherwise
    syn[j]:     the synaptic trace population j sends, in rate units, (B, width), in the order of
                :class:`microcircuit.spiking.Layout`
    spikes[j]:  population j's spike counts of the last step, shaped like syn[j]; these two only with
                ``spiking.enabled`` (docs/model.md §13), empty otherwise
    """

    u: tuple[jax.Array, ...]
    u_inter: tuple[jax.Array, ...]
    r_in: jax.Array
    u_trgt: jax.Array
    u_pro: tuple[jax.Array, ...] = ()
    u_inter_pro: tuple[jax.Array, ...] = ()
    xi: tuple[jax.Array, ...] = ()
    r_hp: tuple[jax.Array, ...] = ()
    r_prev: tuple[jax.Array, ...] = ()
    syn: tuple[jax.Array, ...] = ()
    spikes: tuple[jax.Array, ...] = ()


class Dendrites(NamedTuple):
    """Instantaneous quantities at one time point (docs/model.md §2). In prospective mode (§8) the rates
    are φ(ŭ) of this step's prospective potentials ``u_pro``, ``u_inter_pro``, and the apical dendrites
    receive the previous step's rates ``r_apical`` (through B_k) and ``r_inter_apical`` (through PI_k);
    these four are empty in the original mode, where the apical dendrites receive r_{k+1} and r^I_k."""

    r: tuple[jax.Array, ...]  # r_k = φ(u_k), k = 1..N
    r_inter: tuple[jax.Array, ...]  # r^I_k = φ(u^I_k)
    v_basal: tuple[jax.Array, ...]  # v_B,k = W_k r_{k−1} (+ b_k)
    v_apical: tuple[jax.Array, ...]  # v_A,k = B_k r_{k+1} + PI_k r^I_k, hidden layers
    v_inter: tuple[jax.Array, ...]  # v^I_k = IP_k r_k (+ c_k)
    u_pro: tuple[jax.Array, ...] = ()  # ŭ_k = u_k + du_k/dt / g_tot (§8)
    u_inter_pro: tuple[jax.Array, ...] = ()  # ŭ^I_k
    r_apical: tuple[jax.Array, ...] = ()  # φ(ŭ_{k+1}) of the previous step, per hidden layer k
    r_inter_apical: tuple[jax.Array, ...] = ()  # φ(ŭ^I_k) of the previous step
    r_pre: tuple[jax.Array, ...] = ()  # synchronous order (§8): r_0 and φ(ŭ_k) of the previous step, k = 1..N−1
    syn: tuple[jax.Array, ...] = ()  # spiking (§13): every population's synaptic trace after this step's spikes
    spikes: tuple[jax.Array, ...] = ()  # spiking (§13): every population's spike counts of this step


def init_state(spec: NetworkSpec, batch: int, dtype: str = "float32", prospective: bool = False) -> State:
    """All potentials and filters at rest (0); with ``prospective`` the prospective potentials too (§8)."""
    n, N = spec.sizes, spec.depth
    z = lambda m: jnp.zeros((batch, m), dtype)  # noqa: E731
    s = State(
        u=tuple(z(n[i + 1]) for i in range(N)),
        u_inter=tuple(z(n[i + 2]) for i in range(N - 1)),
        r_in=z(n[0]),
        u_trgt=z(n[-1]),
    )
    return s._replace(u_pro=s.u, u_inter_pro=s.u_inter) if prospective else s


def with_prospective(model: Model, s: State) -> State:
    """``s`` in the layout of ``model``'s mode (docs/model.md §8, §12): in prospective mode ŭ = u where the
    state has no prospective potentials yet (a circuit at rest or at a fixed point); in the original mode
    without them. With ``spiking.enabled`` the synaptic traces are added where missing, at their means for
    the state (:func:`_resting_traces`), and the counts at 0 (docs/model.md §13); without it they are dropped.
    With ``pal.enabled`` the PAL state is added where missing (ξ = 0, r̃ = 0, and the previous rates
    r_{k+1} = φ(ŭ_{k+1}), or φ(u_{k+1}) in the original mode, so that the high-pass starts at rest);
    without PAL it is dropped."""
    if not model.simulation.prospective:
        s = s._replace(u_pro=(), u_inter_pro=()) if (s.u_pro or s.u_inter_pro) else s
    else:
        s = s._replace(u_pro=s.u_pro or s.u, u_inter_pro=s.u_inter_pro or s.u_inter)
    if model.spiking.enabled and not s.syn:
        syn = _resting_traces(model, s)
        s = s._replace(syn=syn, spikes=tuple(jnp.zeros_like(x) for x in syn))
    elif not model.spiking.enabled and (s.syn or s.spikes):
        s = s._replace(syn=(), spikes=())
    if not model.pal.enabled:
        return s._replace(xi=(), r_hp=(), r_prev=()) if (s.xi or s.r_hp or s.r_prev) else s
    t = model.network.transfer
    upper = (s.u_pro or s.u)[1:]
    return s._replace(
        xi=s.xi or tuple(jnp.zeros_like(u) for u in s.u[:-1]),
        r_hp=s.r_hp or tuple(jnp.zeros_like(u) for u in upper),
        r_prev=s.r_prev or tuple(phi(t, u) for u in upper),
    )


def _resting_traces(model: Model, s: State) -> tuple[jax.Array, ...]:
    """Every population's trace at its mean for the state ``s`` (docs/model.md §13): the input's r_0, the
    pyramids' and interneurons' min(φ, 1) of ŭ (prospective) or u, silent teachers, the interneurons'
    nudging at the fractions of u_{k+1}; so that a circuit at rest stays at rest."""
    t, sim = model.network.transfer, model.simulation
    lay = Layout.of(model.network, model.spiking)
    u, u_inter = (s.u_pro or s.u, s.u_inter_pro or s.u_inter) if sim.prospective else (s.u, s.u_inter)
    out = [jnp.clip(s.r_in, 0.0, 1.0), *(jnp.minimum(phi(t, x), 1.0) for x in (*u, *u_inter))]
    if lay.nudging:
        out += [jnp.zeros_like(s.u_trgt)] * 2
        for x in u[1:]:
            out += list(nudging_fractions(sim, x))
    return tuple(out)


def total_conductances(model: Model, target_on: jax.Array | bool) -> tuple[float, jax.Array | float, float]:
    """g_tot of a hidden pyramid (g_lk + g_B + g_A), of the output (g_lk + g_B, + g_som while a target is
    on) and of an interneuron (g_lk + g_D + g_som), docs/model.md §2."""
    g = model.conductances
    on, off = g.g_lk + g.g_B + g.g_som, g.g_lk + g.g_B
    return g.g_lk + g.g_B + g.g_A, jnp.where(target_on, on, off), g.g_lk + g.g_D + g.g_som


def _prospective_dendrites(model: Model, w: Weights, s: State, target_on: jax.Array | bool,
                           key: jax.Array | None = None) -> Dendrites:
    """docs/model.md §8: one bottom-up sweep at time t. Layer k's basal dendrite receives this step's
    φ(ŭ_{k−1}) (r_0 = x), its apical dendrite the previous step's φ(ŭ_{k+1}) and φ(ŭ^I_k) (a delay of one
    step breaks the loops through B_k and PI_k), and ŭ_k = u_k + du_k/dt / g_tot is the steady state of
    these inputs; then the interneurons: v^I_k from φ(ŭ_k), nudged towards ŭ_{k+1}.

    ``simulation.update_order = "synchronous"``: every dendrite receives the previous step's rates instead
    (the basal dendrite φ(ŭ_{k−1}(t − dt)), the interneuron's φ(ŭ_k(t − dt)), nudged towards ŭ_{k+1}(t − dt)):
    one step of delay per layer; ``r_pre`` then holds the rates that reached the basal dendrites.

    With ``spiking.enabled`` (§13, sweep order only) each population fires at φ(ŭ) as the sweep reaches it,
    from ``key``; the apical dendrites receive the previous step's traces."""
    t, bias = model.network.transfer, model.network.bias
    N = len(s.u)
    sync = model.simulation.update_order == "synchronous"
    g_hidden, g_out, g_inter = total_conductances(model, target_on)
    tx = Transmitter(model, s.syn, s.spikes, key) if model.spiking.enabled else None
    if tx is None:
        r_apical = tuple(phi(t, u) for u in s.u_pro[1:])
        r_inter_apical = tuple(phi(t, u) for u in s.u_inter_pro)
    else:  # §13: the traces of the previous step's spikes
        r_apical = tuple(s.syn[tx.layout.pyramid(i + 1)] for i in range(N - 1))
        r_inter_apical = tuple(s.syn[tx.layout.inter(i)] for i in range(N - 1))
    r_previous = (phi(t, s.u_pro[0]), *r_apical) if sync else ()  # φ(ŭ_k(t − dt)), k = 1..N, synchronous only
    v_apical = tuple(matvec(w.B[i], r_apical[i]) + matvec(w.PI[i], r_inter_apical[i]) for i in range(N - 1))
    r, u_pro, v_basal, sent = [], [], [], []
    pre = s.r_in if tx is None else tx.send(0, s.r_in)
    basal_pre = [pre]
    for i in range(N):
        if sync and i > 0:
            pre = r_previous[i - 1]  # §8 synchronous order: the layer below one step earlier
        v_basal.append(matvec(w.W[i], pre) + (w.b[i] if bias else 0.0))  # v_B,k = W_k r_{k−1}
        if i < N - 1:
            du = _du_hidden(model, s.u[i], v_basal[i], _noisy_apical(s, v_apical, i))  # §12: v_A + ξ
            u_pro.append(s.u[i] + du / g_hidden)
        else:
            syn = ()
            if tx is not None and tx.layout.nudging:  # §13 the teachers fire now
                f_exc, f_inh = nudging_fractions(model.simulation, s.u_trgt)
                on = jnp.asarray(target_on, s.u_trgt.dtype)
                exc, inh = tx.layout.teacher()
                tx.send(exc, on * f_exc)
                tx.send(inh, on * f_inh)
                syn = tuple(tx.syn)
            du = _du_output(model, s.u[i], v_basal[i], s.u_trgt, target_on, syn)
            u_pro.append(s.u[i] + du / g_out)
        r.append(phi(t, u_pro[i]))
        pre = r[i] if tx is None else tx.send(tx.layout.pyramid(i), r[i])
        sent.append(pre)
        basal_pre.append(pre)
    r_in_inter, upper = (r_previous, s.u_pro) if sync else (sent, u_pro)
    v_inter = tuple(matvec(w.IP[i], r_in_inter[i]) + (w.c[i] if bias else 0.0) for i in range(N - 1))  # IP_k r_k
    u_inter_pro, r_inter, sent_inter = [], [], []
    for i, ui in enumerate(s.u_inter):
        syn = ()
        if tx is not None and tx.layout.nudging:  # §13 nudged by spikes at the fractions of ŭ_{k+1}
            f_exc, f_inh = nudging_fractions(model.simulation, upper[i + 1])
            exc, inh = tx.layout.nudger(i)
            tx.send(exc, f_exc)
            tx.send(inh, f_inh)
            syn = tuple(tx.syn)
        u_inter_pro.append(ui + _du_inter(model, ui, v_inter[i], upper[i + 1], syn, i) / g_inter)
        r_inter.append(phi(t, u_inter_pro[i]))
        if tx is not None:
            sent_inter.append(tx.send(tx.layout.inter(i), r_inter[i]))
    if tx is not None:
        syn, counts = tx.result()
        return Dendrites(tuple(r), tuple(r_inter), tuple(v_basal), v_apical, v_inter, tuple(u_pro),
                         tuple(u_inter_pro), r_apical, r_inter_apical, tuple(basal_pre[:N]), syn, counts)
    r_pre = (s.r_in, *r_previous[:-1]) if sync else ()
    return Dendrites(tuple(r), tuple(r_inter), tuple(v_basal), v_apical, v_inter, tuple(u_pro), tuple(u_inter_pro),
                     r_apical, r_inter_apical, r_pre)


def matvec(m: jax.Array, x: jax.Array) -> jax.Array:
    """Batched m @ x_b: (B, n_in) -> (B, n_out), written with the matrix on the left so that XLA:CPU
    does not transpose m (a full copy of the matrix) at every step."""
    return (m @ x.T).T


def dendrites(model: Model, w: Weights, s: State, target_on: jax.Array | bool = False,
              key: jax.Array | None = None) -> Dendrites:
    """Dendritic potentials as instantaneous functions of presynaptic rates (docs/model.md §2).
    ``target_on`` (whether the teaching current is on) is read in prospective mode (§8), where the
    output's ŭ_N, and so the interneurons below it, depend on it, and by the spiking teachers (§13).

    With ``spiking.enabled`` (§13) every dendrite receives synaptic traces instead of rates: ``key`` is the
    step's key, from which this step's spikes are drawn; without a key no spikes are drawn and the stored
    traces are read (the dendrites of the state's last step)."""
    if model.simulation.prospective:
        return _prospective_dendrites(model, w, with_prospective(model, s), target_on, key)
    t = model.network.transfer
    bias = model.network.bias
    N = len(s.u)
    r = tuple(phi(t, u) for u in s.u)
    r_inter = tuple(phi(t, u) for u in s.u_inter)
    sent, sent_inter, x_in, tx = r, r_inter, s.r_in, None
    if model.spiking.enabled:  # §13: every population sends its synaptic trace instead of its rate
        s = with_prospective(model, s)
        tx = Transmitter(model, s.syn, s.spikes, key)
        lay = tx.layout
        x_in = tx.send(0, s.r_in)
        sent = tuple(tx.send(lay.pyramid(i), ri) for i, ri in enumerate(r))
        sent_inter = tuple(tx.send(lay.inter(i), ri) for i, ri in enumerate(r_inter))
        if lay.nudging:  # the teachers (while a target is on) and the interneurons' nudging, as spikes
            _send_nudging(model, tx, s.u_trgt, target_on, s.u[1:])
    pre = (x_in, *sent[:-1])  # r_0 = x: no φ on the input (docs/model.md §1)
    v_basal = tuple(matvec(w.W[i], pre[i]) + (w.b[i] if bias else 0.0) for i in range(N))  # v_B,k = W_k r_{k-1}
    v_apical = tuple(matvec(w.B[i], sent[i + 1]) + matvec(w.PI[i], sent_inter[i]) for i in range(N - 1))  # v_A,k
    v_inter = tuple(matvec(w.IP[i], sent[i]) + (w.c[i] if bias else 0.0) for i in range(N - 1))  # v^I_k = IP_k r_k
    if tx is None:
        return Dendrites(r, r_inter, v_basal, v_apical, v_inter)
    syn, counts = tx.result()
    return Dendrites(r, r_inter, v_basal, v_apical, v_inter, r_apical=sent[1:], r_inter_apical=sent_inter,
                     r_pre=pre, syn=syn, spikes=counts)


def _send_nudging(model: Model, tx: Transmitter, u_trgt: jax.Array, target_on: jax.Array | bool,
                  upper: tuple[jax.Array, ...]) -> None:
    """§13: the output's teachers fire at the fractions of ``u_trgt`` while a target is on (silent otherwise),
    hidden layer k's interneurons are nudged by populations firing at the fractions of ``upper[k−1]``
    (u_{k+1}, or ŭ_{k+1} in prospective mode)."""
    lay, sim = tx.layout, model.simulation
    on = jnp.asarray(target_on, u_trgt.dtype)
    f_exc, f_inh = nudging_fractions(sim, u_trgt)
    exc, inh = lay.teacher()
    tx.send(exc, on * f_exc)
    tx.send(inh, on * f_inh)
    for i, u in enumerate(upper):
        f_exc, f_inh = nudging_fractions(sim, u)
        exc, inh = lay.nudger(i)
        tx.send(exc, f_exc)
        tx.send(inh, f_inh)


def _spike_nudge(model: Model, syn: tuple[jax.Array, ...], pair: tuple[int, int], u: jax.Array) -> jax.Array:
    """g_som·[s_exc·(E_exc − u) + s_inh·(E_inh − u)], the nudging conductances of two spiking populations
    (their traces s, docs/model.md §13)."""
    g, sim = model.conductances, model.simulation
    return g.g_som * (syn[pair[0]] * (sim.E_exc - u) + syn[pair[1]] * (sim.E_inh - u))


def _nudge(sim: Simulation, g_som: float, target: jax.Array, u: jax.Array) -> jax.Array:
    """Teaching current g_som (u_trgt − u); or its balanced conductance form (docs/model.md §2)."""
    if sim.nudging == "current":
        return g_som * (target - u)
    g_exc = jnp.clip(g_som * (target - sim.E_inh) / (sim.E_exc - sim.E_inh), 0.0, g_som)
    g_inh = g_som - g_exc
    return g_exc * (sim.E_exc - u) + g_inh * (sim.E_inh - u)


def derivatives(
    model: Model, s: State, d: Dendrites, target_on: jax.Array
) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    """Deterministic parts of du_k/dt and du^I_k/dt (docs/model.md §2). In prospective mode the interneurons
    are nudged towards ŭ_{k+1} (§8)."""
    N = len(s.u)
    sim = model.simulation
    upper = (s.u_pro if sim.update_order == "synchronous" else d.u_pro) if sim.prospective else s.u
    du = [_du_hidden(model, s.u[i], d.v_basal[i], _noisy_apical(s, d.v_apical, i)) for i in range(N - 1)]  # §12
    du.append(_du_output(model, s.u[-1], d.v_basal[-1], s.u_trgt, target_on, d.syn))
    du_inter = tuple(_du_inter(model, ui, d.v_inter[i], upper[i + 1], d.syn, i) for i, ui in enumerate(s.u_inter))
    return tuple(du), du_inter


def _noisy_apical(s: State, v_apical: tuple[jax.Array, ...], i: int) -> jax.Array:
    """v_A,k + ξ_k, the apical potential the soma of hidden layer k sees under PAL (docs/model.md §12); v_A,k
    without PAL."""
    return v_apical[i] + s.xi[i] if s.xi else v_apical[i]


def pal_highpass(model: Model, s: State, d: Dendrites) -> tuple[jax.Array, ...]:
    """r̃_{k+1}(t) for every hidden layer k: r̃ ← r̃ + (r(t) − r(t − dt)) − a·r̃ with a = dt/τ_HP (forward
    Euler; 1 − e^(−dt/τ_HP) for the exponential integrator), r(t) the rate layer k+1 sends at t
    (docs/model.md §12)."""
    a = filter_factor(model.simulation, model.pal.tau_hp)
    return tuple(h + (r - rp) - a * h for h, r, rp in zip(s.r_hp, d.r[1:], s.r_prev, strict=True))  # §12 high-pass


def pal_noise(model: Model, s: State, key: jax.Array) -> jax.Array:
    """The standard normal draws of PAL's noise for one step, (B, Σ_k n_k) over the hidden layers k, from
    ``fold_in(key, PAL_STREAM)`` where ``key`` is the step's key (docs/model.md §12)."""
    widths = sum(x.shape[-1] for x in s.xi)
    return jax.random.normal(jax.random.fold_in(key, PAL_STREAM), (s.xi[0].shape[0], widths), s.xi[0].dtype)


def _pal_next(model: Model, s: State, d: Dendrites, noise: jax.Array | None) -> State:
    """ξ(t + dt), r̃(t) and r(t) for the next step (docs/model.md §12). Forward Euler:
    ξ ← ξ + (1/τ_ξ)(σ√(dt τ_ξ) N(0,1) − dt ξ); the exponential integrator takes the exact OU step
    ξ ← e^(−dt/τ_ξ) ξ + σ√((1 − e^(−2dt/τ_ξ))/2) N(0,1). Both have the stationary variance σ²/(2 − dt/τ_ξ)
    (Euler) or σ²/2 (exact); ``noise`` None or σ = 0: ξ only decays."""
    pal, sim = model.pal, model.simulation
    a = filter_factor(sim, pal.tau_xi)
    if sim.integrator == "euler":
        scale = pal.sigma * math.sqrt(sim.dt / pal.tau_xi)  # (1/τ_ξ)·σ√(dt τ_ξ)
    else:
        scale = pal.sigma * math.sqrt(-math.expm1(-2 * sim.dt / pal.tau_xi) / 2)
    xi = [x - a * x for x in s.xi]  # §12 OU decay −(dt/τ_ξ) ξ
    if noise is not None and pal.sigma > 0:
        parts = jnp.split(noise, list(itertools.accumulate(x.shape[-1] for x in s.xi))[:-1], axis=-1)
        xi = [x + scale * p for x, p in zip(xi, parts, strict=True)]  # §12 OU kick σ√(dt/τ_ξ)·N(0,1)
    r_now = tuple(r.astype(rp.dtype) for r, rp in zip(d.r[1:], s.r_prev, strict=True))
    return s._replace(xi=tuple(xi), r_hp=pal_highpass(model, s, d), r_prev=r_now)


def _du_hidden(model: Model, u: jax.Array, v_basal: jax.Array, v_apical: jax.Array) -> jax.Array:
    """Hidden pyramid: −g_lk u + g_B (v_B − u) + g_A (v_A − u)."""
    g = model.conductances
    return -g.g_lk * u + g.g_B * (v_basal - u) + g.g_A * (v_apical - u)


def _spiking_nudging(model: Model, syn: tuple[jax.Array, ...]) -> bool:
    return model.spiking.enabled and model.spiking.nudging == "spikes" and bool(syn)


def _du_output(model: Model, u: jax.Array, v_basal: jax.Array, u_trgt: jax.Array, target_on: jax.Array | bool,
               syn: tuple[jax.Array, ...] = ()) -> jax.Array:
    """Output pyramid: −g_lk u + g_B (v_B − u) + i_N; i_N from the teachers' spikes with spiking nudging
    (the synaptic traces ``syn``, §13)."""
    g, sim = model.conductances, model.simulation
    if _spiking_nudging(model, syn):
        i_N = _spike_nudge(model, syn, Layout.of(model.network, model.spiking).teacher(), u)  # §13
    else:
        i_N = jnp.where(target_on, _nudge(sim, g.g_som, u_trgt, u), 0.0)
    return -g.g_lk * u + g.g_B * (v_basal - u) + i_N


def _du_inter(model: Model, u: jax.Array, v_inter: jax.Array, upper: jax.Array, syn: tuple[jax.Array, ...] = (),
              i: int = 0) -> jax.Array:
    """Interneuron of hidden layer i + 1: −g_lk u^I + g_D (v^I − u^I) + g_som (u_{k+1} − u^I); the nudging
    from spikes with spiking nudging (§13)."""
    g, sim = model.conductances, model.simulation
    if _spiking_nudging(model, syn):
        nudge = _spike_nudge(model, syn, Layout.of(model.network, model.spiking).nudger(i), u)  # §13
    else:
        nudge = _nudge(sim, g.g_som, upper, u)
    return -g.g_lk * u + g.g_D * (v_inter - u) + nudge


def relaxation(sim: Simulation, g: float) -> float:
    """The step factor h of u(t+dt) = u + h·du/dt for a compartment with total conductance g (docs/model.md §2):
    dt for forward Euler; (1 − e^(−g·dt))/g for the exponential integrator, exact when du/dt = I − g·u
    with I held over the step."""
    if sim.integrator == "euler" or g == 0:
        return sim.dt
    return -math.expm1(-g * sim.dt) / g


def _noise_scale(sim: Simulation, g: float) -> float:
    """σ times the standard deviation added per step to a soma of total conductance g (docs/model.md §2).

    Euler–Maruyama: σ·√dt (``noise="sqrt_dt"``) or σ·dt (``"dt"``). Exponential integrator: the exact
    Ornstein–Uhlenbeck increment σ·√((1 − e^(−2g·dt))/(2g)), or σ·h for the ``"dt"`` convention."""
    if sim.integrator == "euler" or g == 0:
        return sim.sigma * (sim.dt**0.5 if sim.noise == "sqrt_dt" else sim.dt)
    if sim.noise == "dt":
        return sim.sigma * relaxation(sim, g)
    return sim.sigma * math.sqrt(-math.expm1(-2 * g * sim.dt) / (2 * g))


def filter_factor(sim: Simulation, tau: float) -> float:
    """a in r(t+dt) = r + a·(x − r) for τ dr/dt = −r + x: dt/τ (Euler) or 1 − e^(−dt/τ) (exponential)."""
    return sim.dt / tau if sim.integrator == "euler" else -math.expm1(-sim.dt / tau)


def integrate_potentials(
    model: Model,
    s: State,
    d: Dendrites,
    x: jax.Array,
    target: jax.Array,
    target_on: jax.Array,
    key: jax.Array | None,
    noise: jax.Array | None = None,
    pal_draws: jax.Array | None = None,
) -> State:
    """One step of all potentials and of the τ_0 input/target filters (docs/model.md §2): Euler–Maruyama, or
    the exponential integrator (``simulation.integrator``, see :func:`relaxation`).

    Noise σ·√dt·N(0,1) per soma (``noise="sqrt_dt"``) or σ·dt·N(0,1) (``noise="dt"``); none if σ = 0.
    While no target is presented the target filter follows u_N, so a new target comes on smoothly.
    With ``pal.enabled`` also PAL's noise ξ, high-pass r̃ and previous rates (docs/model.md §12), with the
    normal draws ``pal_draws`` (B, Σ hidden widths), or drawn by :func:`pal_noise` from ``key``.
    """
    sim, g = model.simulation, model.conductances
    du, du_inter = derivatives(model, s, d, target_on)
    g_hidden, g_inter = g.g_lk + g.g_B + g.g_A, g.g_lk + g.g_D + g.g_som
    g_out_off, g_out_on = g.g_lk + g.g_B, g.g_lk + g.g_B + g.g_som  # the teaching current adds g_som

    def on_off(f: Callable[[Simulation, float], float]) -> jax.Array | float:
        a, b = f(sim, g_out_on), f(sim, g_out_off)
        return a if a == b else jnp.where(target_on, a, b)

    h = [relaxation(sim, g_hidden)] * (len(s.u) - 1) + [on_off(relaxation)]
    u = [ui + hi * dui for ui, hi, dui in zip(s.u, h, du, strict=True)]
    h_inter = relaxation(sim, g_inter)
    u_inter = [ui + h_inter * dui for ui, dui in zip(s.u_inter, du_inter, strict=True)]
    if sim.sigma > 0 and (key is not None or noise is not None):
        scales = [_noise_scale(sim, g_hidden)] * (len(u) - 1) + [on_off(_noise_scale)]
        scales += [_noise_scale(sim, g_inter)] * len(u_inter)
        arrays = u + u_inter
        widths = [a.shape[-1] for a in arrays]
        xi = jax.random.normal(key, (arrays[0].shape[0], sum(widths)), arrays[0].dtype) if noise is None else noise
        parts = jnp.split(xi, list(itertools.accumulate(widths))[:-1], axis=-1)
        arrays = [a + sc * p for a, sc, p in zip(arrays, scales, parts, strict=True)]
        u, u_inter = arrays[: len(u)], arrays[len(u) :]
    if sim.tau_0 > 0:  # τ_0 dr_0/dt = −r_0 + x, and the same for the target
        a = filter_factor(sim, sim.tau_0)
        r_in = s.r_in + a * (x - s.r_in)
        u_trgt = jnp.where(target_on, s.u_trgt + a * (target - s.u_trgt), u[-1])
    else:
        r_in = jnp.broadcast_to(x, s.r_in.shape).astype(s.r_in.dtype)
        u_trgt = jnp.where(target_on, target, u[-1])
    s_next = State(tuple(u), tuple(u_inter), r_in, u_trgt.astype(s.u_trgt.dtype))
    if sim.prospective:
        s_next = s_next._replace(u_pro=d.u_pro, u_inter_pro=d.u_inter_pro)  # §8
    if model.spiking.enabled:
        s_next = s_next._replace(syn=d.syn or s.syn, spikes=d.spikes or s.spikes)  # §13
    if model.pal.enabled:
        if pal_draws is None and key is not None and model.pal.sigma > 0:
            pal_draws = pal_noise(model, s, key)
        p = _pal_next(model, s, d, pal_draws)
        s_next = s_next._replace(xi=p.xi, r_hp=p.r_hp, r_prev=p.r_prev)
    return s_next
