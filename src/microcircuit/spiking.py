"""The spiking circuit's primitives (docs/model.md §13): populations, spike counts, synaptic traces.

Every unit of the rate model is a population of ``spiking.n`` Poisson neurons firing at ``r_max`` · f each,
f = min(φ, 1) for a pyramid or an interneuron, the input x for an input pixel, and the teaching fractions of
:func:`nudging_fractions` for a teacher. A step draws one count c per unit with mean λ = n·r_max·f·dt, so
the cost does not grow with n; ρ = c / (n·r_max·dt), the spike train in the rate model's units, has mean f.
A synaptic trace low-passes ρ: s ← s + a·(ρ − s), a = 1 − e^(−dt/τ_syn) (or dt/τ_syn under forward Euler),
a = 1 for τ_syn = 0; its mean is f, so a weight means the same in the rate and the spiking circuit.

The state keeps one trace and one count per population, in the order of :class:`Layout`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .config import Model, NetworkSpec, Simulation, Spiking, Transfer
from .transfer import dphi, phi

__all__ = [
    "INVERSION_MAX_MEAN", "SPIKE_STREAM", "Layout", "Transmitter", "count_scale", "inversion_terms", "log_derivative",
    "nudging_fractions", "poisson_counts",
]

SPIKE_STREAM = 0x5B1  # the counts of step n come from fold_in(fold_in(fold_in(key, n), SPIKE_STREAM), population)


class Layout(NamedTuple):
    """The populations of a circuit of depth N, in the state's order: the input, the pyramids of layers
    1..N, the interneurons of hidden layers 1..N−1; with spiking nudging also the output's excitatory and
    inhibitory teachers and, per hidden layer, the excitatory and inhibitory nudging of its interneurons."""

    sizes: tuple[int, ...]
    nudging: bool

    @classmethod
    def of(cls, spec: NetworkSpec, sp: Spiking) -> Layout:
        return cls(tuple(spec.sizes), sp.nudging == "spikes")

    @property
    def depth(self) -> int:
        return len(self.sizes) - 1

    def pyramid(self, i: int) -> int:
        """Index of layer i + 1's pyramids (i = 0..N−1)."""
        return 1 + i

    def inter(self, i: int) -> int:
        """Index of hidden layer i + 1's interneurons (i = 0..N−2)."""
        return self.depth + 1 + i

    def teacher(self) -> tuple[int, int]:
        """Indices of the output's excitatory and inhibitory teachers."""
        return 2 * self.depth, 2 * self.depth + 1

    def nudger(self, i: int) -> tuple[int, int]:
        """Indices of the excitatory and inhibitory populations that nudge hidden layer i + 1's interneurons."""
        return 2 * self.depth + 2 + 2 * i, 2 * self.depth + 3 + 2 * i

    def widths(self) -> tuple[int, ...]:
        n, N = self.sizes, self.depth
        out = (n[0], *n[1:], *n[2:])
        if self.nudging:
            out += (n[-1], n[-1], *(w for i in range(N - 1) for w in (n[i + 2], n[i + 2])))
        return out

    def names(self) -> tuple[str, ...]:
        """Record names of the populations, with docs/model.md's 1-based layer numbers."""
        N = self.depth
        out = ("input", *(f"pyr_{i + 1}" for i in range(N)), *(f"inter_{i + 1}" for i in range(N - 1)))
        if self.nudging:
            out += ("teacher_exc", "teacher_inh")
            out += tuple(f"{kind}_{i + 1}" for i in range(N - 1) for kind in ("nudge_exc", "nudge_inh"))
        return out


def count_scale(sp: Spiking, sim: Simulation) -> float:
    """n·r_max·dt, the expected count of a unit firing at f = 1 in one step (dt in ms, r_max in Hz)."""
    return sp.n * sp.r_max * sim.dt / 1000.0


def nudging_fractions(sim: Simulation, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The firing fractions (f_exc, f_inh) of the populations that nudge a soma towards ``target``
    (docs/model.md §13): f_exc = (target − E_inh)/(E_exc − E_inh) clipped to [0, 1], f_inh = 1 − f_exc, so
    that g_som·[f_exc·(E_exc − u) + f_inh·(E_inh − u)] = g_som·(target − u) on average."""
    f = jnp.clip((target - sim.E_inh) / (sim.E_exc - sim.E_inh), 0.0, 1.0)
    return f, 1.0 - f


def log_derivative(t: Transfer, v: jax.Array) -> jax.Array:
    """h(v) = (ln φ)'(v) = φ'(v)/φ(v), the Urbanczik–Senn weighting of the spike-based error (§13)."""
    if t.kind == "soft_rectifier":
        x = t.beta * (v - t.theta)
        deep = x < -20.0  # σ(x)/softplus(x) → 1 as x → −∞, where both underflow
        xs = jnp.where(deep, 0.0, x)
        return t.beta * jnp.where(deep, 1.0, jax.nn.sigmoid(xs) / jax.nn.softplus(xs))
    if t.kind == "logistic":
        return jax.nn.sigmoid(-v)
    return dphi(t, v) / phi(t, v)


INVERSION_MAX_MEAN = 64.0  # up to this largest mean, counts are drawn by inversion (poisson_counts)
INVERSION_UNROLL = 64  # terms per iteration of the inversion loop: unrolled (fast) up to 64, a loop beyond


def inversion_terms(lam_max: float) -> int:
    """The number of terms K of :func:`poisson_counts` for means up to ``lam_max``: P(count > K) < 1e-12."""
    return math.ceil(lam_max + 7.0 * math.sqrt(lam_max) + 8.0)


def poisson_counts(key: jax.Array, lam: jax.Array, lam_max: float) -> jax.Array:
    """Poisson counts of means ``lam`` (every element ≤ ``lam_max``, a static bound), in ``lam``'s dtype.

    Up to :data:`INVERSION_MAX_MEAN` by inversion with one uniform v per count and K =
    :func:`inversion_terms` steps: c = #{k ≥ 1: v < P(C ≥ k)}, the tail P(C ≥ k) = 1 − e^(−λ) − Σ_{1≤j<k} p_j
    kept directly (no 1 − F cancellation), and a tail within rounding of 0 counts no further. It is a loop of
    fused elementwise steps (:data:`INVERSION_UNROLL` terms each), where ``jax.random.poisson``'s rejection
    loops cost several times more per draw. Larger means use ``jax.random.poisson``."""
    if lam_max > INVERSION_MAX_MEAN:
        return jax.random.poisson(key, lam, lam.shape).astype(lam.dtype)
    v = jax.random.uniform(key, lam.shape, lam.dtype)
    tail = -jnp.expm1(-lam)  # P(C ≥ 1)
    floor = 4.0 * jnp.finfo(lam.dtype).eps * tail  # below this the tail is rounding
    p = jnp.exp(-lam)  # P(C = 0)

    def term(k: jax.Array, carry: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        c, p, tail = carry
        c = c + ((v < tail) & (tail > floor)).astype(lam.dtype)
        p = p * lam / k.astype(lam.dtype)  # P(C = k)
        return c, p, tail - p  # P(C ≥ k + 1)

    K = inversion_terms(lam_max)
    c, _, _ = jax.lax.fori_loop(1, K + 1, term, (jnp.zeros_like(lam), p, tail), unroll=min(K, INVERSION_UNROLL))
    return c


class Transmitter:
    """The spikes of one step (docs/model.md §13), populations sent one by one in the order the dynamics
    needs them. ``key`` None sends nothing new: every population reads its stored trace (used to look at a
    state, e.g. for a record). Used while tracing a step; :meth:`result` gives the new traces and counts."""

    def __init__(self, model: Model, syn: tuple[jax.Array, ...], counts: tuple[jax.Array, ...],
                 key: jax.Array | None) -> None:
        sp, sim = model.spiking, model.simulation
        self.layout = Layout.of(model.network, sp)
        self.scale = count_scale(sp, sim)
        self.mean = sp.counts == "mean"
        if sp.tau_syn == 0:
            self.a = 1.0
        else:
            self.a = sim.dt / sp.tau_syn if sim.integrator == "euler" else -math.expm1(-sim.dt / sp.tau_syn)
        self.syn, self.counts = list(syn), list(counts)
        self.key = None if key is None else jax.random.fold_in(key, SPIKE_STREAM)

    def send(self, index: int, fraction: jax.Array) -> jax.Array:
        """Population ``index`` fires at r_max·min(max(fraction, 0), 1) per neuron; returns its new trace."""
        if self.key is None:
            return self.syn[index]
        old = self.syn[index]
        lam = self.scale * jnp.clip(fraction, 0.0, 1.0)  # §13 λ = n·r_max·f·dt
        c = lam if self.mean else poisson_counts(jax.random.fold_in(self.key, index), lam, self.scale)
        rho = c / self.scale  # §13 ρ = c/(n·r_max·dt), mean f
        trace = old + self.a * (rho - old)  # §13 synaptic trace, mean f
        self.syn[index], self.counts[index] = trace, c.astype(old.dtype)
        return trace

    def rho(self, index: int) -> jax.Array:
        """ρ of population ``index`` this step (its count in rate units)."""
        return self.counts[index] / self.scale

    def result(self) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        return tuple(self.syn), tuple(self.counts)
