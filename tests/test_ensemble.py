"""simulate_ensemble: several circuits in one vmapped loop behave exactly like separate ``simulate`` calls."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from microcircuit.config import Model, NetworkSpec, Plasticity, Simulation
from microcircuit.dynamics import init_state
from microcircuit.ensemble import simulate_ensemble, stack, unstack
from microcircuit.errors import DivergenceError, InputError
from microcircuit.network import init_weights
from microcircuit.simulate import Stream, simulate

MODEL = Model(
    network=NetworkSpec(sizes=(6, 5, 3)),
    plasticity=Plasticity(eta_W=(0.01, 0.005), eta_IP=0.01, eta_PI=0.05, learning_lag=2.0),
    simulation=Simulation(sigma=0.3),
)


def _inputs(S: int = 3, P: int = 4) -> tuple:
    rng = np.random.default_rng(0)
    ws = [init_weights(MODEL.network, MODEL.conductances, jax.random.key(i)) for i in range(S)]
    x = rng.uniform(-1, 1, (S, P, 2, 6)).astype(np.float32)
    t = rng.uniform(-1, 1, (S, P, 2, 3)).astype(np.float32)
    on = np.tile(np.arange(P) % 2 == 1, (S, 1))
    keys = jax.random.split(jax.random.key(5), S)
    return ws, x, t, on, keys


def test_members_match_separate_simulations() -> None:
    """Each member (own weights, patterns, targets, noise key; learning lag on) ends where ``simulate``
    ends for it alone, and chunking does not matter."""
    ws, x, t, on, keys = _inputs()
    S = len(ws)
    state = stack([init_state(MODEL.network, 2)] * S)
    sol = simulate_ensemble(MODEL, stack(ws), state, Stream(x, t, on), duration=5.0, keys=keys, chunk_steps=70)
    for i in range(S):
        ref = simulate(MODEL, ws[i], init_state(MODEL.network, 2), Stream(x[i], t[i], on[i]), duration=5.0, key=keys[i])
        for a, b in zip(jax.tree_util.tree_leaves(unstack(sol, i)), jax.tree_util.tree_leaves(
                (ref.weights, ref.traces, ref.state)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_bad_shapes_and_divergence_are_reported() -> None:
    ws, x, t, on, keys = _inputs()
    state = stack([init_state(MODEL.network, 2)] * 3)
    with pytest.raises(InputError, match="ensemble axis"):
        simulate_ensemble(MODEL, stack(ws), state, Stream(x[:2], t[:2], on[:2]), duration=5.0, keys=keys)
    with pytest.raises(InputError, match="whole number"):
        simulate_ensemble(MODEL, stack(ws), state, Stream(x, t, on), duration=0.05, keys=keys)
    big = [w._replace(W=tuple(a * 1e6 for a in w.W)) for w in ws]
    with pytest.raises(DivergenceError, match="ensemble member 0"):
        simulate_ensemble(MODEL, stack(big), state, Stream(x * 1e3, t, on), duration=5.0, keys=keys)
