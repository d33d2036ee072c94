"""Checks before a run writes anything (docs/runs.md, "Before anything runs").

:func:`preflight` runs every check that does not need the run itself: durations that must be whole
numbers of ``simulation.dt`` steps (naming the key), block sizes, settings the experiment would not read,
the experiment's own checks (data set, layer sizes against the data, ``init_from``), and returns the
warnings that do not stop a run (a dt close to the Euler stability bound). The command line calls it
before it creates the run folder, so a bad setting never leaves a half-made folder behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .config import Config, ConfigError, to_dict
from .experiments import experiment_module

__all__ = ["EULER_ACCURACY", "dt_warnings", "preflight", "unused_settings"]

#: dt·g above which forward Euler is flagged: the step then overshoots the compartment's equilibrium
#: (the factor 1 − g·dt turns negative), so transients oscillate and settled values are distorted, well
#: before the stability bound dt·g = 2.
EULER_ACCURACY = 1.0


def _value(cfg: Config, key: str) -> Any:
    node: Any = to_dict(cfg)
    for part in key.split("."):
        node = node[part]
    return node


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def unused_settings(cfg: Config, changed: Iterable[str]) -> list[str]:
    """The keys among ``changed`` that ``cfg.experiment`` does not read (its module's ``unused(cfg)``)."""
    module = experiment_module(cfg.experiment)
    unused = tuple(getattr(module, "unused", lambda cfg: ())(cfg))
    if not cfg.simulation.prospective and not getattr(module, "BOTH_MODES", False):
        unused += ("simulation.update_order",)  # it orders the prospective sweep (docs/model.md §8)
    if not getattr(module, "runs_spiking", lambda cfg: False)(cfg):  # docs/model.md §13
        unused += ("spiking",)
    return sorted(k for k in changed if _under(k, unused))


def _check_steps(cfg: Config, keys: Iterable[str]) -> None:
    """Each duration in ``keys`` is a whole number of dt steps; steps per pattern and the record stride are
    multiples of the plasticity block (``plasticity.defer`` or ``update_every``)."""
    dt = cfg.simulation.dt
    keys = tuple(keys)
    for key in keys:
        value = _value(cfg, key)
        if value == 0 and key == "plasticity.learning_lag":
            continue
        ratio = value / dt
        if not ratio < 2**31:
            raise ConfigError(f"{key} = {value:g} ms is {ratio:.3g} steps of simulation.dt = {dt:g} ms: too many")
        steps = round(ratio)
        if steps < 1 or abs(steps * dt - value) > 1e-6 * value:
            raise ConfigError(f"{key} = {value:g} ms is not a whole number of simulation.dt = {dt:g} ms steps")
    p = cfg.plasticity
    block, option = (p.defer, "plasticity.defer") if isinstance(p.defer, int) and p.defer > 1 else (
        p.update_every, "plasticity.update_every")
    if block > 1 and "stimulus.duration" in keys:
        spp = round(cfg.stimulus.duration / dt)
        if spp % block:
            raise ConfigError(f"{option} = {block} must divide the {spp} steps of one pattern "
                              f"(stimulus.duration / simulation.dt)")
        if "record.stride" in keys and cfg.record.stride % block:
            raise ConfigError(f"record.stride = {cfg.record.stride} must be a multiple of {option} = {block}")


def dt_warnings(cfg: Config) -> list[str]:
    """Warnings for a forward-Euler dt that is stable but inaccurate: dt·g > :data:`EULER_ACCURACY` for a
    compartment of total conductance g, or dt > τ for the input filter τ_0 or the weight trace τ_w."""
    sim, g = cfg.simulation, cfg.conductances
    if sim.integrator != "euler":
        return []
    rates = {
        "hidden pyramidal soma (g_lk + g_B + g_A)": g.g_lk + g.g_B + g.g_A,
        "output soma with its target (g_lk + g_B + g_som)": g.g_lk + g.g_B + g.g_som,
        "interneuron (g_lk + g_D + g_som)": g.g_lk + g.g_D + g.g_som,
    }
    if sim.tau_0 > 0:
        rates["input filter (1/tau_0)"] = 1 / sim.tau_0
    if cfg.plasticity.tau_w > 0:
        rates["weight trace (1/tau_w)"] = 1 / cfg.plasticity.tau_w
    fast = {name: rate for name, rate in rates.items() if sim.dt * rate > EULER_ACCURACY}
    if not fast:
        return []
    rate = max(fast.values())
    return [
        f"simulation.dt = {sim.dt:g} ms is {sim.dt * rate / 2:.0%} of the Euler stability bound {2 / rate:.3g} ms "
        f"(of the {', '.join(fast)}): each step overshoots the equilibrium, so the numbers are distorted; use "
        f"dt <= {EULER_ACCURACY / rate:.3g} ms or simulation.integrator = \"exponential\""
    ]


def preflight(cfg: Config, changed: Iterable[str] = (), *, strict: bool = True,
              explicit: Iterable[str] = ()) -> list[str]:
    """Every check of ``cfg`` that can be made before a run starts; returns the warnings.

    ``changed``: the keys the user set (``--set``, a TOML file) on top of the preset; setting one that the
    experiment does not read is refused (with ``strict``; else a warning: a config file written from
    scratch has no preset to tell what was set on purpose), so no setting is silently ignored.
    ``explicit``: keys set one by one (``--set``), refused when unused even without ``strict``. Raises
    :class:`ConfigError` (or the experiment's own errors, e.g. ``DataError``) naming the key or file."""
    warnings = []
    explicit = tuple(explicit)
    unused = unused_settings(cfg, {*changed, *explicit})
    refused = unused if strict else unused_settings(cfg, explicit)
    for keys, refuse in ((refused, True), ([k for k in unused if k not in refused], False)):
        if not keys:
            continue
        it = "it" if len(keys) == 1 else "them"
        message = (f"{', '.join(keys)}: not used by the {cfg.experiment!r} experiment of {cfg.name!r}, so "
                   f"setting {it} changes nothing")
        if refuse:
            raise ConfigError(f"{message}; remove {it}")
        warnings.append(message)
    module = experiment_module(cfg.experiment)
    stepped = getattr(module, "stepped", lambda cfg: ())(cfg)
    _check_steps(cfg, stepped)
    warnings += dt_warnings(cfg) if stepped else []
    check = getattr(module, "check", None)
    if check is not None:
        warnings += check(cfg)
    return warnings
