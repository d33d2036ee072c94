"""The circuit's σ = 0 steady state at a fixed input (and target), by damped fixed-point iteration.

Iterates the steady-state equations of docs/model.md §2,

    hidden:      u_k   = (g_B v_B,k + g_A v_A,k) / (g_lk + g_B + g_A)
    output:      u_N   = (g_B v_B,N + g_som u_trgt) / (g_lk + g_B + g_som)    (g_som term only with a target)
    interneuron: u^I_k = (g_D v^I_k + g_som u_{k+1}) / (g_lk + g_D + g_som)

as u ← u + damping·(F(u) − u), with the dendritic potentials of :func:`microcircuit.dynamics.dendrites`.
It is the same fixed point the Euler integration of ``simulate`` relaxes to (forward Euler is this
iteration with a per-population damping dt·g_total), but the conductances are traced values, so one
compilation per network serves every nudging strength — the sweeps of the backprop analysis need that.
The input filter is at rest: r_0 = x and the low-passed target equals the target.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .config import Model, NetworkSpec
from .dynamics import State, dendrites, init_state
from .network import Weights
from .nudging import range_error, teacher_flags

__all__ = ["steady_state"]


def _step(spec: NetworkSpec, g: jax.Array, w: Weights, s: State, on: jax.Array) -> State:
    """F(u): every potential set to its steady-state value given the others (docs/model.md §2)."""
    g_lk, g_B, g_A, g_D, g_som = g
    d = dendrites(Model(network=spec), w, s)  # uses only the network's transfer function and biases
    N = len(s.u)
    u = [(g_B * d.v_basal[i] + g_A * d.v_apical[i]) / (g_lk + g_B + g_A) for i in range(N - 1)]
    g_out = jnp.where(on, g_som, 0.0)
    u.append((g_B * d.v_basal[-1] + g_out * s.u_trgt) / (g_lk + g_B + g_out))
    u_inter = [(g_D * d.v_inter[i] + g_som * s.u[i + 1]) / (g_lk + g_D + g_som) for i in range(N - 1)]
    return s._replace(u=tuple(u), u_inter=tuple(u_inter))


@functools.partial(jax.jit, static_argnames=("spec", "iterations"))
def _solve(spec: NetworkSpec, g: jax.Array, w: Weights, s: State, on: jax.Array, damping: jax.Array,
           iterations: int) -> State:
    def body(_: int, s: State) -> State:
        f = _step(spec, g, w, s, on)
        mix = lambda a, b: a + damping * (b - a)  # noqa: E731
        return s._replace(u=tuple(map(mix, s.u, f.u)), u_inter=tuple(map(mix, s.u_inter, f.u_inter)))

    return jax.lax.fori_loop(0, iterations, body, s)


def _conductances(model: Model) -> jax.Array:
    c = model.conductances
    return jnp.asarray([c.g_lk, c.g_B, c.g_A, c.g_D, c.g_som], model.simulation.dtype)


def steady_state(
    model: Model,
    w: Weights,
    x: jax.Array,
    u_trgt: jax.Array | None = None,
    *,
    iterations: int = 2000,
    damping: float = 0.5,
) -> State:
    """The σ = 0 fixed point for inputs x (B, n_0), with the target u_trgt (B, n_N) on if given.

    Call it under ``jax.enable_x64(True)`` for float64 models; check convergence with the time derivatives
    of :func:`microcircuit.dynamics.derivatives` at the result.

    The equations are the current form of the teaching currents. With ``simulation.nudging =
    "conductance"`` they are that form's fixed point too as long as every teacher lies in [E_inh, E_exc];
    a fixed point with a teacher outside raises :class:`microcircuit.errors.NudgingRangeError`, as
    ``simulate`` does (:mod:`microcircuit.nudging`).
    """
    dtype = model.simulation.dtype
    x = jnp.asarray(x, dtype)
    s0 = init_state(model.network, x.shape[0], dtype)
    on = jnp.asarray(u_trgt is not None)
    target = s0.u_trgt if u_trgt is None else jnp.asarray(u_trgt, dtype)
    s0 = s0._replace(r_in=x, u_trgt=target)
    w = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), w)
    s = _solve(model.network, _conductances(model), w, s0, on, jnp.asarray(damping, dtype), iterations)
    ok = teacher_flags(model, s, on)
    if ok is not None and not bool(jnp.all(ok)):
        raise range_error(model.simulation, model.network.depth, int(jnp.argmin(ok)), None)
    return s

