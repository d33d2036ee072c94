"""The simulation entry point: a stream of patterns through the circuit, as a jit-compiled ``lax.scan``.

``simulate(model, weights, state, stream, ...)`` integrates docs/model.md §2–§3 with forward Euler and returns
the final weights, traces and state plus the recorded snapshots. The loop is nested: a scan over
``record.stride`` steps inside a scan over snapshots, run in chunks so that a progress bar can advance
and divergence is checked between chunks; memory grows with the number of snapshots, not of steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import alignment, deferred
from .config import Model, Record, Simulation
from .dynamics import Dendrites, State, dendrites, integrate_potentials, with_prospective
from .errors import DivergenceError, InputError
from .network import Weights
from .nudging import range_error, teacher_flags
from .plasticity import (
    apply_updates,
    from_factors,
    increment_factors,
    increments,
    learning_rates,
    order_after,
    zero_traces,
)
from .spiking import Layout

__all__ = ["Solution", "Stream", "as_key", "resolve_defer", "simulate", "step"]

NOISE_BLOCK_ELEMENTS = 1 << 22  # noise drawn per record when stride * batch * width is at most this (16 MB f32)


class Stream(NamedTuple):
    """Patterns presented back to back, each for the same duration.

    x:         (P, B, n_0) input rates per pattern (r_0 = x, docs/model.md §1)
    target:    (P, B, n_N) target potentials u_trgt per pattern
    target_on: (P,) bool, whether the teaching current is on during that pattern
    """

    x: jax.Array
    target: jax.Array
    target_on: jax.Array

    @classmethod
    def of(cls, x: np.ndarray, target: np.ndarray | None = None, target_on: np.ndarray | bool | None = None) -> Stream:
        """Build a stream from (P, B, n_0) inputs and optional (P, B, n_N) targets; 2-D means B = 1."""
        x = np.asarray(x)
        if x.ndim == 2:
            x = x[:, None, :]
        if target is None:
            target = np.zeros((*x.shape[:2], 1), x.dtype)
            on = np.zeros(x.shape[0], bool) if target_on is None else np.broadcast_to(target_on, x.shape[:1])
        else:
            target = np.asarray(target)
            if target.ndim == 2:
                target = target[:, None, :]
            on = np.ones(x.shape[0], bool) if target_on is None else np.broadcast_to(target_on, x.shape[:1])
        return cls(x, target, np.asarray(on, bool))

    def cast(self, dtype: Any) -> Stream:
        """The same stream as device arrays: inputs and targets in ``dtype``, flags as bool."""
        return Stream(jnp.asarray(self.x, dtype), jnp.asarray(self.target, dtype), jnp.asarray(self.target_on, bool))


class Solution(NamedTuple):
    """What ``simulate`` returns: final weights, traces and state; snapshots; their times (ms)."""

    weights: Weights
    traces: Weights
    state: State
    records: dict[str, np.ndarray]
    times: np.ndarray


class _Carry(NamedTuple):
    weights: Weights
    traces: Weights
    state: State
    n: jax.Array  # steps done in this call
    bad: jax.Array  # −1, or the index of the first array that left the bounded region (then of a teacher, 2N−1 on)
    bad_step: jax.Array


def step(
    model: Model,
    w: Weights,
    traces: Weights,
    s: State,
    x: jax.Array,
    target: jax.Array,
    target_on: jax.Array,
    key: jax.Array | None,
    plastic: bool = True,
    gate: jax.Array | None = None,
    noise: jax.Array | None = None,
    pal_draws: jax.Array | None = None,
) -> tuple[Weights, Weights, State]:
    """One synchronous Euler step (docs/model.md §3, Decision): every dendritic potential, rate and weight
    increment is computed from the state at t, then potentials and weights are updated together.

    ``noise``: the somatic normal draws (else drawn from ``key``); ``pal_draws``: PAL's (docs/model.md §12;
    else drawn from ``fold_in(key, PAL_STREAM)``); the spiking circuit's counts come from
    ``fold_in(key, SPIKE_STREAM)`` (docs/model.md §13). A state without the mode's layout gets it first
    (:func:`~microcircuit.dynamics.with_prospective`; a no-op for a state from ``simulate``)."""
    s = with_prospective(model, s)
    if model.spiking.enabled and key is None:
        raise InputError("key: the spiking circuit (spiking.enabled) draws its spikes from the step's key; pass one")
    d = dendrites(model, w, s, target_on, key if model.spiking.enabled else None)
    s_next = integrate_potentials(model, s, d, x, target, target_on, key, noise, pal_draws)
    if plastic:
        delta = increments(model, w, s, d)
        w, traces = apply_updates(model, w, traces, delta, gate, after=order_after(d, delta))
    return w, traces, s_next


def _snapshot(model: Model, quantities: tuple[str, ...], w: Weights, s: State, target_on: jax.Array
              ) -> dict[str, jax.Array]:
    """The recorded quantities at one time point, keyed with docs/model.md's 1-based layer numbers."""
    out: dict[str, jax.Array] = {}
    d: Dendrites = dendrites(model, w, s, target_on)
    N = len(s.u)
    for q in quantities:
        if q == "u":
            out.update({f"u_{i + 1}": u for i, u in enumerate(s.u)})
        elif q == "u_inter":
            out.update({f"u_inter_{i + 1}": u for i, u in enumerate(s.u_inter)})
        elif q == "v_basal":
            out.update({f"v_basal_{i + 1}": v for i, v in enumerate(d.v_basal)})
        elif q == "v_apical":
            out.update({f"v_apical_{i + 1}": v for i, v in enumerate(d.v_apical)})
        elif q == "rates":
            out.update({f"r_{i + 1}": r for i, r in enumerate(d.r)})
        elif q == "u_trgt":
            out["u_trgt"] = s.u_trgt
        elif q == "u_prospective":  # docs/model.md §8
            out.update({f"u_pro_{i + 1}": u for i, u in enumerate(s.u_pro)})
            out.update({f"u_inter_pro_{i + 1}": u for i, u in enumerate(s.u_inter_pro)})
        elif q == "pal_noise":  # docs/model.md §12
            out.update({f"xi_{i + 1}": x for i, x in enumerate(s.xi)})
        elif q in ("spikes", "synapses"):  # docs/model.md §13
            names = Layout.of(model.network, model.spiking).names()
            if q == "spikes":
                out.update({f"spikes_{name}": c for name, c in zip(names, s.spikes, strict=True)
                            if name.startswith(("pyr", "inter"))})
            else:
                out.update({f"syn_{name}": x for name, x in zip(names, s.syn, strict=True)})
        elif q == "alignment":  # docs/model.md §12
            out.update(alignment.snapshot_angles(model, w, d))
        elif q == "weight_norms":
            for name, arrays in zip(Weights._fields, w, strict=True):
                if name not in ("b", "c"):
                    out.update({f"norm_{name}_{i + 1}": jnp.linalg.norm(a) for i, a in enumerate(arrays)})
        elif q == "self_prediction":
            for i in range(N - 1):
                out[f"apical_error_{i + 1}"] = jnp.mean(jnp.sum(d.v_apical[i] ** 2, -1))  # ‖v_A,k‖²
                out[f"inter_error_{i + 1}"] = jnp.mean(jnp.sum((s.u[i + 1] - s.u_inter[i]) ** 2, -1))
    return out


def _bounded_flags(s: State, bound: float) -> jax.Array:
    """Per array of (u_1..u_N, u^I_1..u^I_{N−1}): True where all finite and |u| ≤ bound."""
    arrays = (*s.u, *s.u_inter)
    return jnp.stack([jnp.all(jnp.abs(a) <= bound) for a in arrays])  # NaN compares False


def _check_teachers(model: Model, c: _Carry, target_on: jax.Array) -> _Carry:
    """In the conductance form, mark the first teacher of the state about to be stepped that lies outside
    [E_inh, E_exc] (index 2N−1 + its index in :func:`microcircuit.nudging.teacher_flags`)."""
    ok = teacher_flags(model, c.state, target_on)
    if ok is None:
        return c
    newly = (c.bad < 0) & ~jnp.all(ok)
    first = (2 * model.network.depth - 1 + jnp.argmin(ok)).astype(c.bad.dtype)
    return c._replace(bad=jnp.where(newly, first, c.bad), bad_step=jnp.where(newly, c.n, c.bad_step))


@functools.partial(
    jax.jit, static_argnames=("model", "quantities", "n_records", "stride", "spp", "lag", "plastic", "keep")
)
def _chunk(
    model: Model,
    carry: _Carry,
    stream: Stream,
    key: jax.Array,
    lr_scale: jax.Array | None,
    offset: jax.Array,
    *,
    quantities: tuple[str, ...],
    n_records: int,
    stride: int,
    spp: int,
    lag: int,
    plastic: bool,
    keep: bool,
) -> tuple[_Carry, dict[str, jax.Array]]:
    """``n_records`` × ``stride`` steps; a snapshot after each ``stride`` (kept if ``keep``)."""
    noisy = model.simulation.sigma > 0
    pal_noisy = model.pal.enabled and model.pal.sigma > 0  # PAL draws from fold_in(fold_in(key, n), PAL_STREAM)
    keyed = pal_noisy or model.spiking.enabled  # so do the spikes, from SPIKE_STREAM (docs/model.md §13)

    batch = carry.state.r_in.shape[0]
    width = sum(u.shape[-1] for u in (*carry.state.u, *carry.state.u_inter))
    dtype = carry.state.r_in.dtype
    # Draw the noise of a whole record at once when it is small: the same numbers as drawing per step
    # (step n uses fold_in(key, n)), but one vectorised threefry call instead of two small loops per step.
    block = noisy and stride * batch * width <= NOISE_BLOCK_ELEMENTS
    draw = lambda n: jax.random.normal(jax.random.fold_in(key, offset + n), (batch, width), dtype)  # noqa: E731

    K, defer = block_steps(model, plastic)

    def gate_at(n: jax.Array) -> jax.Array | None:  # learning lag (0/1) times the learning-rate scale
        lag_gate = ((n % spp) >= lag).astype(dtype) if (plastic and lag > 0) else None
        if lr_scale is None:
            return lag_gate
        return lr_scale if lag_gate is None else lag_gate * lr_scale

    def one_step(c: _Carry, xi: jax.Array | None) -> tuple[_Carry, None]:
        p = c.n // spp  # the pattern on show
        c = _check_teachers(model, c, stream.target_on[p])
        if noisy and xi is None:
            xi = draw(c.n)
        k = jax.random.fold_in(key, offset + c.n) if keyed else None  # only PAL's draws and the spikes use it here
        w, tr, s = step(
            model, c.weights, c.traces, c.state, stream.x[p], stream.target[p], stream.target_on[p], k,
            plastic, gate_at(c.n), noise=xi,
        )
        return c._replace(weights=w, traces=tr, state=s, n=c.n + 1), None

    def one_block(c: _Carry, xis: jax.Array | None) -> tuple[_Carry, None]:
        """K steps with the weights held, then the K steps' increments at once (plasticity.update_every)."""

        def sub(c: _Carry, xi: jax.Array | None) -> tuple[_Carry, Weights]:
            p = c.n // spp
            c = _check_teachers(model, c, stream.target_on[p])
            if noisy and xi is None:
                xi = draw(c.n)
            d = dendrites(model, c.weights, c.state, stream.target_on[p])
            s = integrate_potentials(model, c.state, d, stream.x[p], stream.target[p], stream.target_on[p], None, xi)
            f = increment_factors(model, c.weights, c.state, d)
            if plastic and lag > 0:  # a gate of 0 or 1 on both factors
                f = jax.tree_util.tree_map(lambda a: a * ((c.n % spp) >= lag).astype(dtype), f)
            return c._replace(state=s, n=c.n + 1), f

        c, fs = jax.lax.scan(sub, c, xis, length=K)
        fs = jax.tree_util.tree_map(lambda a: a.reshape(-1, a.shape[-1]), fs)  # (K·B, n): steps as batch
        delta = from_factors(c.weights, fs, batch)
        w, tr = apply_updates(model, c.weights, c.traces, delta, lr_scale, after=order_after(delta))
        return c._replace(weights=w, traces=tr), None

    def one_deferred_block(c: _Carry, xis: jax.Array | None) -> tuple[_Carry, None]:
        """K exact steps with the matrices' updates deferred to the block's end (plasticity.defer)."""

        def sub(cp: tuple[_Carry, deferred.Pending], xi: jax.Array | None) -> tuple[tuple, None]:
            c, pend = cp
            p = c.n // spp
            c = _check_teachers(model, c, stream.target_on[p])
            if noisy and xi is None:
                xi = draw(c.n)
            gate = gate_at(c.n)
            d, top = deferred.dendrites(model, c.weights, c.traces, pend, c.state)
            s = integrate_potentials(model, c.state, d, stream.x[p], stream.target[p], stream.target_on[p], None, xi)
            f = increment_factors(model, c.weights, c.state, d, top_down=top)
            after = order_after(d)
            biases = ("b", "c")  # step by step; the matrices' updates are deferred
            delta = from_factors(c.weights, f, batch, only=biases)
            w, tr = apply_updates(model, c.weights, c.traces, delta, gate, after=after, only=biases)
            pend = deferred.push(model, pend, f, gate, after=after)
            return (c._replace(weights=w, traces=tr, state=s, n=c.n + 1), pend), None

        (c, pend), _ = jax.lax.scan(sub, (c, deferred.start(model, c.weights, K, batch)), xis, length=K)
        w, tr = deferred.flush(model, c.weights, c.traces, pend)
        return c._replace(weights=w, traces=tr), None

    def one_record(c: _Carry, _: None) -> tuple[_Carry, dict[str, jax.Array]]:
        xs = jax.vmap(draw)(c.n + jnp.arange(stride, dtype=c.n.dtype)) if block else None
        if K > 1:
            xs = None if xs is None else xs.reshape(stride // K, K, *xs.shape[1:])
            c, _ = jax.lax.scan(one_deferred_block if defer else one_block, c, xs, length=stride // K)
        else:
            c, _ = jax.lax.scan(one_step, c, xs, length=stride)
        flags = _bounded_flags(c.state, model.simulation.divergence_bound)
        first_bad = jnp.argmin(flags)  # first False
        newly = (c.bad < 0) & ~jnp.all(flags)
        c = c._replace(
            bad=jnp.where(newly, first_bad.astype(c.bad.dtype), c.bad),
            bad_step=jnp.where(newly, c.n, c.bad_step),
        )
        on = stream.target_on[jnp.maximum(c.n - 1, 0) // spp]  # the pattern just shown
        return c, (_snapshot(model, quantities, c.weights, c.state, on) if keep else {})

    return jax.lax.scan(one_record, carry, None, length=n_records)


def _weight_shapes(n: tuple[int, ...]) -> dict[str, list[tuple[int, ...]]]:
    """The shape of every array of :class:`Weights` for layer sizes ``n`` (docs/model.md §1)."""
    N = len(n) - 1
    return {
        "W": [(n[i + 1], n[i]) for i in range(N)],
        "b": [(n[i + 1],) for i in range(N)],
        "B": [(n[i + 1], n[i + 2]) for i in range(N - 1)],
        "PI": [(n[i + 1], n[i + 2]) for i in range(N - 1)],
        "IP": [(n[i + 2], n[i + 1]) for i in range(N - 1)],
        "c": [(n[i + 2],) for i in range(N - 1)],
    }


def _check_inputs(
    model: Model, w: Weights, s: State, stream: Stream, duration: float, traces: Weights | None = None
) -> int:
    """Shapes, finiteness and timing, checked on the host before any tracing. Returns steps/pattern."""
    n, N = model.network.sizes, model.network.depth
    expect = _weight_shapes(n)
    for label, tree in (("weights", w), ("traces", traces), ("state", s), ("stream", stream)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            kind = np.dtype(getattr(leaf, "dtype", np.asarray(leaf).dtype)).kind
            if kind not in "biuf":
                where = label + jax.tree_util.keystr(path)
                raise InputError(f"{where}: expected real numbers, got dtype {np.asarray(leaf).dtype} (complex or "
                                 "non-numeric values are not simulated)")
    for label, tree in (("weights", w), ("traces", traces)):
        if tree is None:
            continue
        for name, arrays in zip(Weights._fields, tree, strict=True):
            if len(arrays) != len(expect[name]):
                want = len(expect[name])
                raise InputError(f"{label}.{name}: expected {want} arrays for sizes {n}, got {len(arrays)}")
            for i, (a, shp) in enumerate(zip(arrays, expect[name], strict=True)):
                if tuple(a.shape) != shp:
                    raise InputError(f"{label}.{name}[{i}] (layer {i + 1}): expected shape {shp}, got {tuple(a.shape)}")
                if not np.all(np.isfinite(np.asarray(a))):
                    raise InputError(f"{label}.{name}[{i}] (layer {i + 1}) holds NaN or Inf")
    batch = s.r_in.shape[0] if s.r_in.ndim == 2 else -1
    if batch == 0:
        raise InputError("state.r_in: batch size 0: the state needs at least one sample (shape (B, n_0), B >= 1)")
    shapes = {"state.r_in": (s.r_in, n[0]), "state.u_trgt": (s.u_trgt, n[-1])}
    shapes.update({f"state.u[{i}] (layer {i + 1})": (u, n[i + 1]) for i, u in enumerate(s.u)})
    shapes.update({f"state.u_inter[{i}] (layer {i + 1})": (u, n[i + 2]) for i, u in enumerate(s.u_inter)})
    for name, widths in (("xi", n[1:N]), ("r_hp", n[2:]), ("r_prev", n[2:])):  # PAL's state (docs/model.md §12)
        arrays = getattr(s, name)
        if model.pal.enabled and len(arrays) != N - 1:  # a model without PAL has none (with_prospective)
            raise InputError(f"state.{name}: expected {N - 1} arrays (one per hidden layer), got {len(arrays)}")
        shapes.update({f"state.{name}[{i}] (layer {i + 1})": (a, widths[i]) for i, a in enumerate(arrays)})
    if model.spiking.enabled:  # the spiking state (docs/model.md §13)
        layout = Layout.of(model.network, model.spiking)
        for name in ("syn", "spikes"):
            arrays = getattr(s, name)
            if len(arrays) != len(layout.widths()):
                raise InputError(f"state.{name}: expected {len(layout.widths())} arrays (one per population: "
                                 f"{', '.join(layout.names())}), got {len(arrays)}")
            shapes.update({f"state.{name}[{i}] ({p})": (a, wd) for i, (a, p, wd)
                           in enumerate(zip(arrays, layout.names(), layout.widths(), strict=True))})
        lo, hi = (float(f(np.asarray(stream.x))) for f in (np.min, np.max)) if np.size(stream.x) else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise InputError(f"stream.x: the spiking circuit's inputs fire at r_max·x, so x must lie in [0, 1]; got "
                             f"values in [{lo:g}, {hi:g}] (rescale the inputs)")
    if len(s.u) != N or len(s.u_inter) != N - 1:
        raise InputError(f"state: expected {N} somatic and {N - 1} interneuron arrays for sizes {n}")
    for name, (a, width) in shapes.items():
        if tuple(a.shape) != (batch, width):
            raise InputError(f"{name}: expected shape ({batch}, {width}), got {tuple(a.shape)}")
        if not np.all(np.isfinite(np.asarray(a))):
            raise InputError(f"{name} holds NaN or Inf")
    P = stream.x.shape[0] if stream.x.ndim == 3 else -1
    for name, a, shp in (
        ("stream.x", stream.x, (P, batch, n[0])),
        ("stream.target", stream.target, (P, batch, None)),
        ("stream.target_on", stream.target_on, (P,)),
    ):
        if a.ndim != len(shp) or any(e is not None and e != g for e, g in zip(shp, a.shape, strict=True)):
            want = tuple("n_N" if e is None else e for e in shp)
            raise InputError(f"{name}: expected shape {want} (P patterns, batch {batch}), got {tuple(a.shape)}")
        if not np.all(np.isfinite(np.asarray(a, float))):
            raise InputError(f"{name} holds NaN or Inf")
    if P < 1:
        raise InputError("stream.x: needs at least one pattern")
    if np.any(np.asarray(stream.target_on)) and stream.target.shape[-1] != n[-1]:
        raise InputError(f"stream.target: expected width n_N = {n[-1]}, got {stream.target.shape[-1]}")
    spp = steps_per_pattern(duration, model.simulation.dt)
    if spp * P >= 2**31:
        raise InputError(f"{spp * P} steps in one call: split the stream (at most 2**31 − 1 steps per call)")
    return spp


def block_steps(model: Model, plastic: bool) -> tuple[int, bool]:
    """The steps K of one block of the loop and whether it is a deferred (exact) block: K =
    ``plasticity.defer`` (True) or ``plasticity.update_every`` (False); 1 when not plastic.
    ``defer = "auto"`` counts as 1 here: :func:`resolve_defer` replaces it first."""
    p = model.plasticity
    if not plastic:
        return 1, False
    return (p.defer, True) if p.defer != "auto" and p.defer > 1 else (p.update_every, False)


# plasticity.defer = "auto" (docs/benchmarks.md, "Deferred updates"): deferring pays where the step streams
# large matrices for few samples; it costs more than it saves for small networks or large batches.
AUTO_DEFER_MAX_BATCH = 2
AUTO_DEFER_MIN_WEIGHTS = 200_000  # plastic matrix entries (784-500-500-10: 1.41 M; 30-50-10: 3,100)
AUTO_DEFER_BLOCKS = range(50, 9, -1)  # the largest admissible K in 50..10 (the benchmark's best was 50)


def resolve_defer(model: Model, batch: int, spp: int, stride: int | None = None, plastic: bool = True) -> Model:
    """``model`` with ``plasticity.defer = "auto"`` replaced by a block size K (an integer K leaves it
    unchanged). K is the largest of 50..10 that divides the steps per pattern ``spp`` (and ``stride``,
    the record stride, if given) when the run is plastic, ``update_every`` = 1, the batch is at most
    2 and at least 200,000 matrix weights are plastic; else 1 (step by step). Either way the updates
    are the exact step-by-step ones (:mod:`microcircuit.deferred`)."""
    p = model.plasticity
    if p.defer != "auto":
        return model
    if model.simulation.prospective or model.pal.enabled or model.spiking.enabled:  # not implemented (§8, §12, §13)
        return dataclasses.replace(model, plasticity=dataclasses.replace(p, defer=1))
    shapes, rates = _weight_shapes(model.network.sizes), learning_rates(model)
    plastic_weights = sum(math.prod(shp) for name in ("W", "B", "PI", "IP")
                          for shp, eta in zip(shapes[name], getattr(rates, name), strict=True) if eta != 0)
    k = 1
    if plastic and p.update_every == 1 and batch <= AUTO_DEFER_MAX_BATCH and plastic_weights >= AUTO_DEFER_MIN_WEIGHTS:
        period = spp if stride is None else math.gcd(spp, stride)
        k = next((b for b in AUTO_DEFER_BLOCKS if period % b == 0), 1)
    return dataclasses.replace(model, plasticity=dataclasses.replace(p, defer=k))


def as_key(key: Any) -> jax.Array | None:
    """A PRNG key: a typed key (``jax.random.key``), a raw ``PRNGKey`` array, or a non-negative int seed
    (turned into ``jax.random.key(seed)``); anything else is an :class:`InputError`."""
    if key is None:
        return None
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        if not 0 <= int(key) < 2**32:
            raise InputError(f"key: an int seed must be in [0, 2**32), got {key}")
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                                       or (key.dtype == jnp.uint32 and key.shape == (2,))):
        return key
    raise InputError(f"key: expected a PRNG key (jax.random.key(seed)) or an int seed, got {type(key).__name__} "
                     f"{key!r:.60}")


def steps_per_pattern(duration: float, dt: float) -> int:
    """The number of Euler steps in a presentation of ``duration`` ms; InputError unless it is whole."""
    if not (isinstance(duration, int | float) and math.isfinite(duration) and duration > 0):
        raise InputError(f"duration must be a positive number of ms, got {duration!r}")
    spp = round(duration / dt)
    if spp < 1 or abs(spp * dt - duration) > 1e-6 * duration:
        raise InputError(f"duration {duration} ms is not a whole number of dt = {dt} ms steps")
    return spp


def precision(sim: Simulation) -> tuple[contextlib.AbstractContextManager[Any], Callable[[Any], Any]]:
    """The context to run in (x64 on for float64) and a caster of pytrees to ``sim.dtype``.
    Use the caster inside the context."""
    ctx = jax.enable_x64(True) if sim.dtype == "float64" else contextlib.nullcontext()

    def cast(tree: Any) -> Any:
        dt = jnp.dtype(sim.dtype)
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dt), tree)

    return ctx, cast


def _name_of(model: Model, index: int) -> tuple[str, int]:
    N = model.network.depth
    return ("u", index + 1) if index < N else ("u_inter", index - N + 1)


def simulate(
    model: Model,
    weights: Weights,
    state: State,
    stream: Stream,
    *,
    duration: float,
    key: jax.Array | None = None,
    plastic: bool = True,
    record: Record | None = None,
    traces: Weights | None = None,
    t0: float = 0.0,
    chunk_steps: int = 20_000,
    progress: bool | Callable[[int], None] = False,
    lr_scale: float | jax.Array | None = None,
    key_offset: int = 0,
) -> Solution:
    """Present ``stream`` (each pattern for ``duration`` ms) and integrate the circuit.

    Args:
        model: conductances, plasticity, simulation settings and network spec (static under jit).
        weights: the starting weights.
        state: the starting state; it fixes the batch size B.
        stream: the patterns, see :class:`Stream`.
        duration: presentation time per pattern in ms (a whole number of dt steps).
        key: PRNG key for the somatic noise; step n uses ``fold_in(key, key_offset + n)``, so results do not
            depend on chunking (PAL's noise ``fold_in(fold_in(key, key_offset + n), PAL_STREAM)``, the spiking
            circuit's counts ``SPIKE_STREAM``). Needed when σ > 0, with PAL's noise and for spikes.
        plastic: apply rules (7)–(10) (matrices with η = 0 stay frozen either way).
        record: what to record and how often; ``None`` records nothing.
        traces: the τ_w-filtered increments to continue from (zeros if ``None``).
        t0: time (ms) of the first step, used only to label the snapshots.
        chunk_steps: steps per compiled call; the progress bar and divergence checks advance per chunk.
        progress: ``True`` for a tqdm bar, or a callable receiving the number of steps done per chunk.
        lr_scale: a factor on every learning rate (traced: changing it does not recompile), e.g. for a
            learning-rate schedule; ``None`` = 1.
        key_offset: the number of steps before this call in a run cut into calls (traced), so that the random
            numbers of a step depend on its place in the run, not on where the run was cut.

    Raises:
        InputError: bad shapes or NaN/Inf inputs, before any tracing.
        DivergenceError: NaN, Inf or |u| beyond ``simulation.divergence_bound``; carries the last good
            (weights, traces, state, step).
        NudgingRangeError: with ``simulation.nudging = "conductance"``, a teacher potential outside
            [E_inh, E_exc] (:mod:`microcircuit.nudging`).
    """
    sim = model.simulation
    if sim.sigma > 0 and key is None:
        raise InputError("key: a PRNG key is needed when simulation.sigma > 0 (e.g. jax.random.key(0))")
    if model.pal.enabled and model.pal.sigma > 0 and key is None:
        raise InputError("key: a PRNG key is needed when pal.enabled and pal.sigma > 0 (e.g. jax.random.key(0))")
    if model.spiking.enabled and model.spiking.counts == "poisson" and key is None:
        raise InputError("key: a PRNG key is needed when spiking.enabled (the spikes are drawn from it)")
    if lr_scale is not None and not isinstance(lr_scale, jax.core.Tracer) and np.any(np.asarray(lr_scale) < 0):
        raise InputError(f"lr_scale = {lr_scale}: must be >= 0 (a negative factor would reverse every rule)")
    key = as_key(key)
    state = with_prospective(model, state)  # adds or drops ŭ and PAL's state (docs/model.md §8, §12)
    spp = _check_inputs(model, weights, state, stream, duration, traces)
    if record is not None and record.quantities and record.stride > spp * stream.x.shape[0]:
        raise InputError(f"record.stride = {record.stride} steps is longer than the run ({spp * stream.x.shape[0]} "
                         "steps): nothing would be recorded; choose a stride of at most the run's steps")
    model = resolve_defer(model, state.r_in.shape[0], spp, record.stride if record else None, plastic)
    K, defer = block_steps(model, plastic)
    option = "plasticity.defer" if defer else "plasticity.update_every"
    if spp % K:
        raise InputError(f"{option} = {K} must divide the {spp} steps of one pattern")
    record = record or Record(quantities=(), stride=max(K, min(spp, chunk_steps) // K * K))
    stride = record.stride
    if stride % K:
        raise InputError(f"record.stride = {stride} must be a multiple of {option} = {K}")
    total = spp * stream.x.shape[0]
    lag = round(model.plasticity.learning_lag / sim.dt)
    ctx, cast = precision(sim)
    with ctx:
        dt = jnp.dtype(sim.dtype)
        weights, state = cast(weights), cast(state)
        traces = zero_traces(weights) if traces is None else cast(traces)
        stream = stream.cast(dt)
        key = jax.random.key(0) if key is None else key
        lr = None if lr_scale is None else jnp.asarray(lr_scale, dt)
        offset = jnp.int32(key_offset)
        carry = _Carry(weights, traces, state, jnp.int32(0), jnp.int32(-1), jnp.int32(-1))
        per_chunk = max(1, chunk_steps // stride)
        n_rec_total, tail = divmod(total, stride)
        pieces: list[dict[str, np.ndarray]] = []
        bar = None
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="step", unit_scale=True, leave=False, disable=total < 5 * chunk_steps)
        report = bar.update if bar is not None else (progress if callable(progress) else None)
        kw = dict(quantities=record.quantities, spp=spp, lag=lag, plastic=plastic)
        done_rec = 0
        try:
            while done_rec < n_rec_total or tail:
                if done_rec < n_rec_total:
                    n_rec = min(per_chunk, n_rec_total - done_rec)
                    args = dict(n_records=n_rec, stride=stride, keep=True)
                    done_rec += n_rec
                    steps = n_rec * stride
                else:
                    args, steps, tail = dict(n_records=1, stride=tail, keep=False), tail, 0
                before = carry
                carry, snaps = _chunk(model, carry, stream, key, lr, offset, **kw, **args)
                if int(carry.bad) >= 2 * model.network.depth - 1:  # a teacher outside [E_inh, E_exc]
                    bad = int(carry.bad) - (2 * model.network.depth - 1)
                    raise range_error(sim, model.network.depth, bad, t0 + int(carry.bad_step) * sim.dt)
                if int(carry.bad) >= 0:
                    quantity, layer = _name_of(model, int(carry.bad))
                    t = t0 + int(carry.bad_step) * sim.dt
                    last_good = (before.weights, before.traces, before.state, int(before.n))
                    raise DivergenceError(
                        quantity, layer, t, f"became NaN/Inf or exceeded |u| > {sim.divergence_bound:g}", last_good
                    )
                if args["keep"] and snaps:
                    pieces.append(jax.device_get(snaps))
                if report is not None:
                    report(steps)
        finally:
            if bar is not None:
                bar.close()
        records = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]} if pieces else {}
        times = t0 + sim.dt * stride * np.arange(1, n_rec_total + 1) if record.quantities else np.zeros(0)
        return Solution(carry.weights, carry.traces, carry.state, records, times)
