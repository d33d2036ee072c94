"""The conductance form of the teaching currents (docs/model.md §2, §11): exact where its teachers lie in
[E_inh, E_exc], where it keeps self-prediction and agrees with the fixed point and the steady-state mode, and
refused where a teacher leaves that interval."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microcircuit import Model, NetworkSpec, Simulation, Stream, Transfer, dendrites, init_state, simulate
from microcircuit.config import Conductances, ConfigError, Init, Plasticity, Record
from microcircuit.dynamics import _nudge
from microcircuit.errors import NudgingRangeError
from microcircuit.fixed_point import steady_state
from microcircuit.network import init_weights, self_predicting
from microcircuit.presets import get_preset
from microcircuit.steady_state import settle

SIZES = (6, 5, 4, 3)


def _model(nudging: str, **sim: float) -> Model:
    return Model(
        network=NetworkSpec(sizes=SIZES, transfer=Transfer(kind="logistic"), bias=True,
                            init=Init(W=1.0, B=1.0, bias=0.5, self_predicting=True)),
        conductances=Conductances(g_A=0.471, g_som=0.3),
        plasticity=Plasticity(eta_W=0.0, eta_IP=0.0, eta_PI=0.0),
        simulation=Simulation(sigma=0.0, tau_0=0.0, nudging=nudging, dtype="float64", **sim),
    )


def _weights(model: Model, positive: bool) -> object:
    """Self-predicting weights; with ``positive`` all W, b and B nonnegative, so that with inputs ≥ 0 every
    potential stays within the default [E_inh, E_exc] = [−1/3, 14/3]."""
    w = init_weights(model.network, model.conductances, jax.random.key(3), "float64")
    if positive:
        scale = lambda arrays, s: tuple(s * jnp.abs(a) for a in arrays)  # noqa: E731
        w = self_predicting(w._replace(W=scale(w.W, 0.5), b=scale(w.b, 0.2), B=scale(w.B, 1.0)), model.conductances)
    return w


def _run(model: Model, w: object, x: np.ndarray, target: np.ndarray | None = None, duration: float = 200.0):
    stream = Stream.of(x[None], None if target is None else target[None])
    sol = simulate(model, w, init_state(model.network, x.shape[0], "float64"), stream, duration=duration,
                   plastic=False, record=Record(("u",), stride=100))
    last = sol.records[f"u_{len(SIZES) - 1}"]
    assert np.max(np.abs(last[-1] - last[-2])) < 1e-10, "the dynamics did not settle"
    return sol.state


def test_conductance_current_equals_current_form_inside_the_interval() -> None:
    """g_exc (E_exc − u) + g_inh (E_inh − u) = g_som (u_trgt − u) for teachers in [E_inh, E_exc], any u."""
    sim = Simulation(nudging="conductance", dtype="float64")
    with jax.enable_x64(True):
        target = jnp.linspace(sim.E_inh, sim.E_exc, 7)[:, None]
        u = jnp.linspace(-5.0, 5.0, 9)[None, :]
        current = _nudge(dataclasses.replace(sim, nudging="current"), 0.3, target, u)
        np.testing.assert_allclose(_nudge(sim, 0.3, target, u), current, rtol=0, atol=1e-14)


@pytest.mark.parametrize("E", [None, 10.0], ids=["paper-reversals-positive-net", "wide-reversals-logistic-net"])
def test_self_prediction_and_fixed_points_in_conductance_form(E: float | None) -> None:
    """A self-predicting network without a target, conductance form, σ = 0: the dynamics settle with
    v_A = 0 and u^I_k = u_{k+1} (to 1e-12), at the float64 fixed point and the one-pass steady state of §6
    (exact without a target); with a target on, at the same fixed point as the current form and as the
    sweeps of §6 iterated to convergence. Either with the paper's E_inh = −1/3, E_exc = 14/3 on a network
    whose potentials stay inside, or on a logistic network with signed weights and E = ∓10."""
    sim = {} if E is None else {"E_inh": -E, "E_exc": E}
    model, current = _model("conductance", **sim), _model("current", **sim)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (4, SIZES[0]))
    target = rng.uniform(-0.2, 2.0, (4, SIZES[-1]))
    with jax.enable_x64(True):
        w = _weights(model, positive=E is None)
        s = _run(model, w, x)
        d = dendrites(model, w, s)
        assert max(float(jnp.max(jnp.abs(v))) for v in d.v_apical) < 1e-12
        for k in range(len(SIZES) - 2):
            np.testing.assert_allclose(s.u_inter[k], s.u[k + 1], atol=1e-12)
        if E is not None:  # the case discriminates: the potentials leave the paper's [−1/3, 14/3]
            assert min(float(jnp.min(u)) for u in s.u) < -1 / 3
        fp = steady_state(model, w, x)
        ss = settle(model, w, jnp.asarray(x), n_passes=1)
        for a, b, c in zip(s.u, fp.u, ss.u, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-10)
            np.testing.assert_allclose(a, c, atol=1e-10)

        s_on = _run(model, w, x, target, duration=300.0)
        s_cur = _run(current, w, x, target, duration=300.0)
        fp_on = steady_state(model, w, x, target)
        ss_on = settle(model, w, jnp.asarray(x), jnp.asarray(target), n_passes=200)
        assert np.max(np.abs(s_on.u[-1] - s.u[-1])) > 1e-2  # the target moves the output
        for arrays in (s_cur.u, fp_on.u, ss_on.u):
            for a, b in zip(s_on.u, arrays, strict=True):
                np.testing.assert_allclose(a, b, atol=1e-9)


def test_teacher_outside_the_interval_is_refused() -> None:
    """The logistic network's layer-2 potentials go below E_inh = −1/3: simulate and fixed_point refuse
    with a NudgingRangeError (a ConfigError) naming the keys; the current form runs the same network."""
    model = _model("conductance")
    x = np.random.default_rng(0).uniform(0, 1, (4, SIZES[0]))
    with jax.enable_x64(True):
        w = _weights(model, positive=False)
        with pytest.raises(NudgingRangeError, match=r"simulation\.E_inh.*simulation\.E_exc.*t = ") as info:
            _run(model, w, x)
        assert isinstance(info.value, ConfigError)
        assert "teacher of the interneurons of layer" in str(info.value)
        with pytest.raises(NudgingRangeError, match=r"simulation\.nudging = 'current'"):
            steady_state(model, w, x)
        _run(_model("current"), w, x)


def test_target_outside_the_interval_is_refused() -> None:
    """A target above E_exc stops simulate, naming the target; below it, the same run passes."""
    model = _model("conductance")
    with jax.enable_x64(True):
        w = _weights(model, positive=True)
        x = np.random.default_rng(1).uniform(0, 1, (2, SIZES[0]))
        with pytest.raises(NudgingRangeError, match="the target u_trgt"):
            _run(model, w, x, np.full((2, SIZES[-1]), 5.0), duration=300.0)
        _run(model, w, x, np.full((2, SIZES[-1]), 4.5), duration=300.0)


def test_mnist_dynamics_targets_refused_before_the_run() -> None:
    """MNIST's targets φ⁻¹(0.1) ≈ −2.2 lie below the default E_inh: the experiment's check refuses the
    conductance form before anything runs, naming the keys; wide reversal potentials pass."""
    from microcircuit.experiments import mnist

    cfg = get_preset("mnist-dynamics", quick=True)
    bad = dataclasses.replace(cfg, simulation=dataclasses.replace(cfg.simulation, nudging="conductance"))
    with pytest.raises(ConfigError, match=r"training\.r_low.*simulation\.E_inh"):
        mnist.check(bad)
    wide = dataclasses.replace(bad, simulation=dataclasses.replace(bad.simulation, E_inh=-3.0, E_exc=3.0))
    mnist.check(wide)
