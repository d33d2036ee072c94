"""The steady-state mode (docs/model.md §6) against the continuous-time dynamics (§2) at their fixed point."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microcircuit import (
    Conductances,
    Init,
    Model,
    NetworkSpec,
    Plasticity,
    Record,
    Simulation,
    Stream,
    Transfer,
    dendrites,
    increments,
    init_state,
    init_weights,
    simulate,
)
from microcircuit.backprop import feedforward
from microcircuit.network import self_predicting
from microcircuit.steady_state import increments_at, settle


def _model(sizes: tuple[int, ...], self_pred: bool) -> Model:
    return Model(
        network=NetworkSpec(sizes=sizes, transfer=Transfer(kind="logistic"), bias=True,
                            init=Init(W=0.8, B=0.8, IP=0.8, PI=0.8, bias=0.3, self_predicting=self_pred)),
        conductances=Conductances(g_A=0.471, g_som=0.3),
        plasticity=Plasticity(eta_W=1e-3, eta_IP=1e-3, eta_PI=1e-3, eta_B=1e-3, tau_w=0.0),
        simulation=Simulation(dt=0.1, tau_0=0.0, sigma=0.0, dtype="float64"),
    )


def _continuous_fixed_point(model: Model, w, x, u_trgt):
    """Integrate §2 with σ = 0, no plasticity, until the state no longer moves; returns the final state."""
    stream = Stream.of(x[None], u_trgt[None] if u_trgt is not None else None)
    sol = simulate(model, w, init_state(model.network, x.shape[0], "float64"), stream, duration=300.0,
                   plastic=False, record=Record(("u",), stride=1000))
    trace = sol.records[f"u_{model.network.depth}"]
    assert np.max(np.abs(trace[-1] - trace[-2])) < 1e-10, "continuous-time run did not settle"
    return sol.state


@pytest.mark.parametrize("sizes", [(6, 5, 4), (6, 5, 4, 3)])
@pytest.mark.parametrize("with_target", [True, False])
def test_iterated_sweeps_reach_the_continuous_fixed_point(sizes, with_target):
    model = _model(sizes, self_pred=False)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (3, sizes[0]))
    u_trgt = rng.uniform(-1, 1, (3, sizes[-1])) if with_target else None
    with jax.enable_x64(True):
        w = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                   init_weights(model.network, model.conductances, jax.random.key(3), "float64"))
        s = _continuous_fixed_point(model, w, x, u_trgt)
        ss = settle(model, w, jnp.asarray(x), None if u_trgt is None else jnp.asarray(u_trgt), n_passes=100)
        for k, (a, b) in enumerate(zip(ss.u, s.u, strict=True)):
            np.testing.assert_allclose(a, b, atol=1e-8, err_msg=f"u_{k + 1}")
        for k, (a, b) in enumerate(zip(ss.u_inter, s.u_inter, strict=True)):
            np.testing.assert_allclose(a, b, atol=1e-8, err_msg=f"u^I_{k + 1}")
        # one pass is not the fixed point for a random (not self-predicting) net: the test discriminates
        one = settle(model, w, jnp.asarray(x), None if u_trgt is None else jnp.asarray(u_trgt), n_passes=1)
        assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(one.u, s.u, strict=True)) > 1e-4
        # rule increments at the converged sweep equal the continuous rules at the fixed point (§6 step 4)
        d_ss = increments_at(model, w, jnp.asarray(x), ss)
        d_ct = increments(model, w, s, dendrites(model, w, s))  # τ_0 = 0: s.r_in is x
        for name, a_list, b_list in zip(d_ss._fields, d_ss, d_ct, strict=True):
            for i, (a, b) in enumerate(zip(a_list, b_list, strict=True)):
                np.testing.assert_allclose(a, b, atol=1e-9, err_msg=f"increment {name}[{i}]")


@pytest.mark.parametrize("sizes", [(6, 5, 4), (6, 5, 4, 3)])
def test_one_pass_is_exact_for_a_self_predicting_net_without_target(sizes):
    model = _model(sizes, self_pred=True)
    x = np.random.default_rng(2).uniform(0, 1, (4, sizes[0]))
    with jax.enable_x64(True):
        w = self_predicting(init_weights(model.network, model.conductances, jax.random.key(5), "float64"),
                            model.conductances)
        s = _continuous_fixed_point(model, w, x, None)
        one = settle(model, w, jnp.asarray(x), None, n_passes=1)
        ff = feedforward(model, w.W, w.b, jnp.asarray(x))
        for k, (a, b, c) in enumerate(zip(one.u, s.u, ff, strict=True)):
            np.testing.assert_allclose(a, b, atol=1e-8, err_msg=f"u_{k + 1} vs continuous")
            np.testing.assert_allclose(a, c, atol=1e-12, err_msg=f"u_{k + 1} vs feed-forward")
        for k, v in enumerate(one.v_apical):
            assert float(jnp.max(jnp.abs(v))) < 1e-10, f"v_A,{k + 1} not silent"


@pytest.mark.parametrize("sizes", [(6, 5, 4), (6, 5, 4, 3)])
def test_rule9_reading_the_free_state_keeps_a_self_predicting_pi_under_a_target(sizes):
    """Rule (9) at the nudged state moves PI of a self-predicting net (it cancels the target's part of v_A);
    at the state without target (rule9_state = "free") it leaves PI where it is, and every other rule's
    increment is the nudged one."""
    model = _model(sizes, self_pred=True)
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.uniform(0, 1, (5, sizes[0])))
        u_trgt = jnp.asarray(rng.uniform(-1, 1, (5, sizes[-1])))
        w = self_predicting(init_weights(model.network, model.conductances, jax.random.key(6), "float64"),
                            model.conductances)
        nudged = settle(model, w, x, u_trgt)
        free = settle(model, w, x, None)
        d_nudged = increments_at(model, w, x, nudged)
        d_free = increments_at(model, w, x, nudged, free)
        for k in range(len(sizes) - 2):
            assert float(jnp.max(jnp.abs(d_nudged.PI[k]))) > 1e-4, f"nudged rule (9) does not move PI_{k + 1}"
            assert float(jnp.max(jnp.abs(d_free.PI[k]))) < 1e-12, f"free rule (9) moves PI_{k + 1}"
        for name in ("W", "b", "B", "IP", "c"):
            for a, b in zip(getattr(d_nudged, name), getattr(d_free, name), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)
        # the free increment is −v_A r^Iᵀ at the state without target, batch-averaged (rule (9))
        w2 = w._replace(PI=tuple(p * 0.7 for p in w.PI))  # not self-predicting: v_A ≠ 0
        free2 = settle(model, w2, x, None)
        d2 = increments_at(model, w2, x, settle(model, w2, x, u_trgt), free2)
        r_I = jax.nn.sigmoid(free2.u_inter[0])
        np.testing.assert_allclose(d2.PI[0], -free2.v_apical[0].T @ r_I / x.shape[0], rtol=1e-12)
