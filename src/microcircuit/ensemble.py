"""Several independent circuits simulated together: ``simulate`` with a leading ensemble axis.

Each member (e.g. one seed of an experiment) has its own weights, state, patterns and noise key; the
same :class:`~microcircuit.config.Model` drives them all. The pure :func:`~microcircuit.simulate.step`
is scanned over time and ``jax.vmap``-ed over the members, so one compiled loop advances every member
by the same Euler steps (docs/model.md §2–§3) with the same semantics as ``simulate``: step n of a member
shows pattern ``n // steps_per_pattern``, draws its noise from ``fold_in(key, n)`` and applies the
learning lag (PAL's noise, docs/model.md §12, and the spikes, §13, from ``fold_in(key, n)`` as in
``simulate``). Nothing is recorded inside the loop; callers evaluate between calls.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from .config import Model
from .dynamics import State, with_prospective
from .errors import DivergenceError, InputError
from .network import Weights
from .plasticity import zero_traces
from .simulate import Stream, precision, step, steps_per_pattern

__all__ = ["EnsembleSolution", "simulate_ensemble", "stack", "unstack"]

T = TypeVar("T")


class EnsembleSolution(NamedTuple):
    """Final weights, traces and state, every leaf with the leading ensemble axis."""

    weights: Weights
    traces: Weights
    state: State


def stack(trees: list[T]) -> T:
    """Stack a list of equally shaped pytrees along a new leading (ensemble) axis."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def unstack(tree: T, index: int) -> T:
    """Member ``index`` of an ensemble pytree."""
    return jax.tree_util.tree_map(lambda a: a[index], tree)


@functools.partial(jax.jit, static_argnames=("model", "steps", "spp", "lag", "plastic"))
def _advance(
    model: Model,
    w: Weights,
    tr: Weights,
    s: State,
    stream: Stream,
    keys: jax.Array,
    n0: jax.Array,
    lr_scale: jax.Array | None,
    *,
    steps: int,
    spp: int,
    lag: int,
    plastic: bool,
) -> tuple[Weights, Weights, State]:
    """``steps`` Euler steps of every member, starting at step ``n0`` of the stream."""
    noisy = model.simulation.sigma > 0 or (model.pal.enabled and model.pal.sigma > 0) or model.spiking.enabled  # §13

    def member(w: Weights, tr: Weights, s: State, stream: Stream, key: jax.Array) -> tuple[Weights, Weights, State]:
        def body(c: tuple[Weights, Weights, State, jax.Array], _: None) -> tuple[tuple, None]:
            w, tr, s, n = c
            p = n // spp  # the pattern on show
            gate = ((n % spp) >= lag).astype(s.r_in.dtype) if (plastic and lag > 0) else None
            if lr_scale is not None:
                gate = lr_scale if gate is None else gate * lr_scale
            k = jax.random.fold_in(key, n) if noisy else None
            w, tr, s = step(model, w, tr, s, stream.x[p], stream.target[p], stream.target_on[p], k, plastic, gate)
            return (w, tr, s, n + 1), None

        (w, tr, s, _), _ = jax.lax.scan(body, (w, tr, s, n0), None, length=steps)
        return w, tr, s

    return jax.vmap(member)(w, tr, s, stream, keys)


def _bounded(s: State, bound: float) -> np.ndarray:
    """(arrays, members): True where the array (u_1..u_N, u^I_1..u^I_{N−1}) is finite and within ``bound``."""
    arrays = (*s.u, *s.u_inter)
    return np.stack([np.asarray(jnp.all(jnp.abs(a.reshape(a.shape[0], -1)) <= bound, axis=1)) for a in arrays])


def simulate_ensemble(
    model: Model,
    weights: Weights,
    state: State,
    stream: Stream,
    *,
    duration: float,
    keys: jax.Array,
    plastic: bool = True,
    traces: Weights | None = None,
    chunk_steps: int = 20_000,
    progress: Callable[[int], None] | None = None,
    lr_scale: float | None = None,
) -> EnsembleSolution:
    """Present each member's ``stream`` (each pattern for ``duration`` ms) and integrate all members.

    Args:
        model: shared by every member (static under jit).
        weights, state: every leaf with a leading ensemble axis of size S; ``state`` fixes the batch B.
        stream: ``x`` (S, P, B, n_0), ``target`` (S, P, B, n_N), ``target_on`` (S, P).
        duration: presentation time per pattern in ms (a whole number of dt steps).
        keys: (S,) PRNG keys for the somatic noise, one per member.
        plastic: apply rules (7)–(10).
        traces: the τ_w-filtered increments to continue from (zeros if ``None``).
        chunk_steps: steps per compiled call; divergence is checked and ``progress`` called per chunk.
        lr_scale: a factor ≥ 0 on every learning rate (traced: changing it does not recompile); ``None`` = 1.

    Raises:
        InputError: inconsistent ensemble sizes or a duration that is not whole steps.
        DivergenceError: a member's potentials became NaN/Inf or left ``simulation.divergence_bound``.
    """
    sim = model.simulation
    state = with_prospective(model, state)  # adds or drops ŭ and PAL's state (docs/model.md §8, §12)
    S = stream.x.shape[0]
    sizes = {a.shape[0] for a in jax.tree_util.tree_leaves((weights, state, stream))} | {len(keys)}
    if sizes != {S} or stream.x.ndim != 4 or stream.target_on.ndim != 2:
        raise InputError(f"every weight, state and stream array needs the same leading ensemble axis, got {sizes}")
    if lr_scale is not None and not lr_scale >= 0:
        raise InputError(f"lr_scale = {lr_scale}: must be >= 0 (a negative factor would reverse every rule)")
    if plastic and model.plasticity.update_every > 1:
        raise InputError("plasticity.update_every > 1 is supported by simulate(), not by seed ensembles: set it to 1")
    if model.spiking.enabled and np.size(stream.x) and not 0 <= float(np.min(stream.x)) <= float(np.max(stream.x)) <= 1:
        raise InputError("stream.x: the spiking circuit's inputs fire at r_max·x, so x must lie in [0, 1] "
                         "(docs/model.md §13): rescale the inputs")
    spp = steps_per_pattern(duration, sim.dt)
    total = spp * stream.x.shape[1]
    lag = round(model.plasticity.learning_lag / sim.dt)
    ctx, cast = precision(sim)
    with ctx:
        dt = jnp.dtype(sim.dtype)
        w, s = cast(weights), cast(state)
        tr = jax.vmap(zero_traces)(w) if traces is None else cast(traces)
        lr = None if lr_scale is None else jnp.asarray(lr_scale, dt)
        stream = stream.cast(dt)
        done = 0
        while done < total:
            steps = min(chunk_steps, total - done)
            before = (w, tr, s)
            w, tr, s = _advance(
                model, w, tr, s, stream, keys, jnp.int32(done), lr, steps=steps, spp=spp, lag=lag, plastic=plastic
            )
            ok = _bounded(s, sim.divergence_bound)
            if not ok.all():
                index, member = (int(i[0]) for i in np.nonzero(~ok))
                N = len(s.u)
                quantity, layer = ("u", index + 1) if index < N else ("u_inter", index - N + 1)
                raise DivergenceError(
                    quantity, layer, (done + steps) * sim.dt,
                    f"of ensemble member {member} became NaN/Inf or exceeded |u| > {sim.divergence_bound:g}", before,
                )
            done += steps
            if progress is not None:
                progress(steps)
        return EnsembleSolution(w, tr, s)
