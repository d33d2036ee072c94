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
    without them. With ``pal.enabled`` the PAL state is added where missing (ξ = 0, r̃ = 0, and the previous
    rates r_{k+1} = φ(ŭ_{k+1}), or φ(u_{k+1}) in the original mode, so that the high-pass starts at rest);
    without PAL it is dropped."""
    if not model.simulation.prospective:
        s = s._replace(u_pro=(), u_inter_pro=()) if (s.u_pro or s.u_inter_pro) else s
    else:
        s = s._replace(u_pro=s.u_pro or s.u, u_inter_pro=s.u_inter_pro or s.u_inter)
    if not model.pal.enabled:
        return s._replace(xi=(), r_hp=(), r_prev=()) if (s.xi or s.r_hp or s.r_prev) else s
    t = model.network.transfer
    upper = (s.u_pro or s.u)[1:]
    return s._replace(
        xi=s.xi or tuple(jnp.zeros_like(u) for u in s.u[:-1]),
        r_hp=s.r_hp or tuple(jnp.zeros_like(u) for u in upper),
        r_prev=s.r_prev or tuple(phi(t, u) for u in upper),
    )


def total_conductances(model: Model, target_on: jax.Array | bool) -> tuple[float, jax.Array | float, float]:
    """g_tot of a hidden pyramid (g_lk + g_B + g_A), of the output (g_lk + g_B, + g_som while a target is
    on) and of an interneuron (g_lk + g_D + g_som), docs/model.md §2."""
    g = model.conductances
    on, off = g.g_lk + g.g_B + g.g_som, g.g_lk + g.g_B
    return g.g_lk + g.g_B + g.g_A, jnp.where(target_on, on, off), g.g_lk + g.g_D + g.g_som


def _prospective_dendrites(model: Model, w: Weights, s: State, target_on: jax.Array | bool) -> Dendrites:
    """docs/model.md §8: one bottom-up sweep at time t. Layer k's basal dendrite receives this step's
    φ(ŭ_{k−1}) (r_0 = x), its apical dendrite the previous step's φ(ŭ_{k+1}) and φ(ŭ^I_k) (a delay of one
    step breaks the loops through B_k and PI_k), and ŭ_k = u_k + du_k/dt / g_tot is the steady state of
    these inputs; then the interneurons: v^I_k from φ(ŭ_k), nudged towards ŭ_{k+1}.

    ``simulation.update_order = "synchronous"``: every dendrite receives the previous step's rates instead
    (the basal dendrite φ(ŭ_{k−1}(t − dt)), the interneuron's φ(ŭ_k(t − dt)), nudged towards ŭ_{k+1}(t − dt)):
    one step of delay per layer; ``r_pre`` then holds the rates that reached the basal dendrites."""
    t, bias = model.network.transfer, model.network.bias
    N = len(s.u)
    sync = model.simulation.update_order == "synchronous"
    g_hidden, g_out, g_inter = total_conductances(model, target_on)
    r_apical = tuple(phi(t, u) for u in s.u_pro[1:])
    r_previous = (phi(t, s.u_pro[0]), *r_apical) if sync else ()  # φ(ŭ_k(t − dt)), k = 1..N, synchronous only
    r_inter_apical = tuple(phi(t, u) for u in s.u_inter_pro)
    v_apical = tuple(matvec(w.B[i], r_apical[i]) + matvec(w.PI[i], r_inter_apical[i]) for i in range(N - 1))
    r, u_pro, v_basal = [], [], []
    pre = s.r_in
    for i in range(N):
        if sync and i > 0:
            pre = r_previous[i - 1]  # §8 synchronous order: the layer below one step earlier
        v_basal.append(matvec(w.W[i], pre) + (w.b[i] if bias else 0.0))  # v_B,k = W_k r_{k−1}
        if i < N - 1:
            du = _du_hidden(model, s.u[i], v_basal[i], _noisy_apical(s, v_apical, i))  # §12: v_A + ξ
            u_pro.append(s.u[i] + du / g_hidden)
        else:
            du = _du_output(model, s.u[i], v_basal[i], s.u_trgt, target_on)
            u_pro.append(s.u[i] + du / g_out)
        r.append(phi(t, u_pro[i]))
        pre = r[i]
    r_in_inter, upper = (r_previous, s.u_pro) if sync else (r, u_pro)
    v_inter = tuple(matvec(w.IP[i], r_in_inter[i]) + (w.c[i] if bias else 0.0) for i in range(N - 1))  # IP_k r_k
    u_inter_pro = tuple(ui + _du_inter(model, ui, v_inter[i], upper[i + 1]) / g_inter for i, ui in enumerate(s.u_inter))
    r_inter = tuple(phi(t, u) for u in u_inter_pro)
    r_pre = (s.r_in, *r_previous[:-1]) if sync else ()
    return Dendrites(tuple(r), r_inter, tuple(v_basal), v_apical, v_inter, tuple(u_pro), u_inter_pro, r_apical,
                     r_inter_apical, r_pre)


def matvec(m: jax.Array, x: jax.Array) -> jax.Array:
    """Batched m @ x_b: (B, n_in) -> (B, n_out), written with the matrix on the left so that XLA:CPU
    does not transpose m (a full copy of the matrix) at every step."""
    return (m @ x.T).T


def dendrites(model: Model, w: Weights, s: State, target_on: jax.Array | bool = False) -> Dendrites:
    """Dendritic potentials as instantaneous functions of presynaptic rates (docs/model.md §2).
    ``target_on`` (whether the teaching current is on) is read only in prospective mode (§8), where the
    output's ŭ_N, and so the interneurons below it, depend on it."""
    if model.simulation.prospective:
        return _prospective_dendrites(model, w, with_prospective(model, s), target_on)
    t = model.network.transfer
    bias = model.network.bias
    N = len(s.u)
    r = tuple(phi(t, u) for u in s.u)
    r_inter = tuple(phi(t, u) for u in s.u_inter)
    pre = (s.r_in, *r[:-1])  # r_0 = x: no φ on the input (docs/model.md §1)
    v_basal = tuple(matvec(w.W[i], pre[i]) + (w.b[i] if bias else 0.0) for i in range(N))  # v_B,k = W_k r_{k-1}
    v_apical = tuple(matvec(w.B[i], r[i + 1]) + matvec(w.PI[i], r_inter[i]) for i in range(N - 1))  # v_A,k
    v_inter = tuple(matvec(w.IP[i], r[i]) + (w.c[i] if bias else 0.0) for i in range(N - 1))  # v^I_k = IP_k r_k
    return Dendrites(r, r_inter, v_basal, v_apical, v_inter)


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
    du.append(_du_output(model, s.u[-1], d.v_basal[-1], s.u_trgt, target_on))
    du_inter = tuple(_du_inter(model, ui, d.v_inter[i], upper[i + 1]) for i, ui in enumerate(s.u_inter))
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


def _du_output(model: Model, u: jax.Array, v_basal: jax.Array, u_trgt: jax.Array, target_on: jax.Array | bool
               ) -> jax.Array:
    """Output pyramid: −g_lk u + g_B (v_B − u) + i_N."""
    g, sim = model.conductances, model.simulation
    i_N = jnp.where(target_on, _nudge(sim, g.g_som, u_trgt, u), 0.0)
    return -g.g_lk * u + g.g_B * (v_basal - u) + i_N


def _du_inter(model: Model, u: jax.Array, v_inter: jax.Array, upper: jax.Array) -> jax.Array:
    """Interneuron: −g_lk u^I + g_D (v^I − u^I) + g_som (u_{k+1} − u^I)."""
    g, sim = model.conductances, model.simulation
    return -g.g_lk * u + g.g_D * (v_inter - u) + _nudge(sim, g.g_som, upper, u)


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
    if model.pal.enabled:
        if pal_draws is None and key is not None and model.pal.sigma > 0:
            pal_draws = pal_noise(model, s, key)
        p = _pal_next(model, s, d, pal_draws)
        s_next = s_next._replace(xi=p.xi, r_hp=p.r_hp, r_prev=p.r_prev)
    return s_next
