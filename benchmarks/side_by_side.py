"""The timing both `bench_pal.py` and `bench_spiking.py` use: a compiled simulation of one config, and
interleaved repeats of several such calls, so that a change in the machine's load hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from microcircuit.config import Config
from microcircuit.dynamics import init_state, with_prospective
from microcircuit.ensemble import simulate_ensemble, stack
from microcircuit.network import init_weights
from microcircuit.simulate import Stream, simulate


def runner(cfg: Config, members: int, steps: int, batch: int = 1, target: tuple[float, float] = (0.1, 1.0)
           ) -> Callable[[], None]:
    """A call that simulates ``steps`` steps of ``cfg`` (compiled by its first call): one circuit
    (``members`` 0) or an ensemble of ``members`` seeds, a batch of ``batch``, inputs U(0, 1) and targets
    U(``target``) drawn once."""
    model = cfg.model
    net, sim = cfg.network, model.simulation
    per_pattern = round(cfg.stimulus.duration / sim.dt)
    patterns = max(1, steps // per_pattern)
    rng = np.random.default_rng(0)
    lead = () if members == 0 else (members,)
    x = rng.uniform(0, 1, (*lead, patterns, batch, net.sizes[0])).astype(np.float32)
    u_trgt = rng.uniform(*target, (*lead, patterns, batch, net.sizes[-1])).astype(np.float32)
    if members == 0:
        w = init_weights(net, cfg.conductances, jax.random.key(0))
        state = with_prospective(model, init_state(net, batch, sim.dtype, sim.prospective))
        stream = Stream.of(x, u_trgt)

        def call() -> None:
            sol = simulate(model, w, state, stream, duration=cfg.stimulus.duration, key=jax.random.key(1),
                           chunk_steps=steps)
            jax.block_until_ready(sol.weights)
        return call
    w = stack([init_weights(net, cfg.conductances, jax.random.key(s)) for s in range(members)])
    state = stack([with_prospective(model, init_state(net, batch, sim.dtype, sim.prospective))] * members)
    stream = Stream(x, u_trgt, np.ones((members, patterns), bool))
    keys = jax.vmap(jax.random.key)(jnp.arange(members))

    def call() -> None:
        sol = simulate_ensemble(model, w, state, stream, duration=cfg.stimulus.duration, keys=keys,
                                chunk_steps=steps)
        jax.block_until_ready(sol.weights)
    return call


def interleaved(calls: dict[str, Callable[[], None]], steps: int, repeats: int
                ) -> tuple[dict[str, float], dict[str, str]]:
    """Steps per second of each call: one warm-up call each (it compiles), then ``repeats`` rounds of one
    call each, in turn. Returns the medians and a cell "median (min-max)" per call."""
    for call in calls.values():
        call()
    rates: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            rates[name].append(steps / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return med, {k: f"{med[k]:,.0f} ({min(v):,.0f}-{max(v):,.0f})" for k, v in rates.items()}
