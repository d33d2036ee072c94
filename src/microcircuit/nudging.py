"""Where the conductance form of the teaching current is exact, and the refusal outside it (docs/model.md §2, §11).

The balanced form g_exc (E_exc − u) + g_inh (E_inh − u) with g_exc + g_inh = g_som equals
g_som (E − u) with E = (g_exc E_exc + g_inh E_inh) / g_som, a point of [E_inh, E_exc] for any nonnegative
conductances. It equals the current form g_som (u_trgt − u) exactly when the teacher u_trgt lies in
[E_inh, E_exc] (g_exc = g_som (u_trgt − E_inh)/(E_exc − E_inh)); a teacher outside that interval cannot be
reached by nonnegative conductances. The package refuses such a teacher rather than nudging towards the
nearest reversal potential, which would break self-prediction (the interneurons could not reproduce a
layer above that lies outside the interval) and the steady states of §2 and §6:

- before a run, a target known from the configuration (:func:`check_targets`) raises a ``ConfigError``;
- during a run, ``simulate`` and ``fixed_point.steady_state`` raise :class:`NudgingRangeError` at the first
  teacher outside the interval (:func:`teacher_flags`, :func:`range_error`).

The teachers are u_{k+1} for the interneurons of layer k (ŭ_{k+1} in prospective mode, §8) and the
low-passed target u_trgt for the output while a target is on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .config import ConfigError, Model, Simulation
from .errors import NudgingRangeError

__all__ = ["check_targets", "range_error", "teacher_flags", "teacher_names"]


def teacher_flags(model: Model, s: object, target_on: jax.Array) -> jax.Array | None:
    """Per teacher (u_2 … u_N as the interneurons' teachers of layers 1 … N−1, then the target): True where
    every value lies in [E_inh, E_exc] (NaN counts as inside: the divergence check reports it). ``None``
    in the current form, which has no range."""
    sim = model.simulation
    if sim.nudging != "conductance":
        return None
    upper = s.u_pro if sim.prospective and s.u_pro else s.u  # type: ignore[attr-defined]  # ŭ = u at rest
    inside = lambda a: ~jnp.any((a < sim.E_inh) | (a > sim.E_exc))  # noqa: E731
    flags = [inside(u) for u in upper[1:]] + [~jnp.asarray(target_on) | inside(s.u_trgt)]  # type: ignore[attr-defined]
    return jnp.stack(flags)


def teacher_names(depth: int) -> list[str]:
    """Names of the teachers in the order of :func:`teacher_flags` (docs/model.md numbering)."""
    return [f"u_{k + 1}, the teacher of the interneurons of layer {k}," for k in range(1, depth)] + [
        "the target u_trgt"
    ]


def range_error(sim: Simulation, depth: int, index: int, time: float | None) -> NudgingRangeError:
    """The error for teacher ``index`` (of :func:`teacher_flags`) found outside [E_inh, E_exc] at ``time`` ms."""
    when = "" if time is None else f" at t = {time:.4g} ms"
    return NudgingRangeError(
        f"simulation.nudging = 'conductance': {teacher_names(depth)[index]} left [simulation.E_inh, "
        f"simulation.E_exc] = [{sim.E_inh:.4g}, {sim.E_exc:.4g}]{when}; nonnegative conductances cannot nudge "
        "towards it (docs/model.md §2). Widen simulation.E_inh and simulation.E_exc to bracket the potentials "
        "the network meets, or use simulation.nudging = 'current'"
    )


def check_targets(sim: Simulation, low: float, high: float, keys: str) -> None:
    """ConfigError, before a run, if target potentials in [low, high] (set by ``keys``) do not fit in
    [E_inh, E_exc] in the conductance form."""
    if sim.nudging != "conductance" or (sim.E_inh <= low and high <= sim.E_exc):
        return
    raise ConfigError(
        f"simulation.nudging = 'conductance': the target potentials {low:.4g} … {high:.4g} (from {keys}) lie "
        f"outside [simulation.E_inh, simulation.E_exc] = [{sim.E_inh:.4g}, {sim.E_exc:.4g}], where nonnegative "
        "conductances cannot nudge; widen simulation.E_inh and simulation.E_exc, or use simulation.nudging = "
        "'current'"
    )
