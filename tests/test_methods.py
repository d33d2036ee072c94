"""The training methods (microcircuit.methods) against float64 NumPy oracles: direct feedback alignment, the
circuit with transported feedback, the one-rate rule of microcircuit.rates and the per-layer diagnostics."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microcircuit.backprop import backprop_updates, direct_feedback_updates, update_scale
from microcircuit.config import Conductances, Config, Init, Model, NetworkSpec, Plasticity, Simulation, Training
from microcircuit.config import Transfer as Phi
from microcircuit.experiments.mnist import layer_diagnostics
from microcircuit.methods import METHODS, get_method
from microcircuit.methods.circuit import circuit_update, transport
from microcircuit.network import init_weights, self_predicting_weights
from microcircuit.rates import circuit_rates, layer_gains, resolve_model

SIZES = {"depth2": (12, 8, 5), "depth3": (12, 8, 6, 5), "depth5": (12, 8, 7, 6, 6, 5)}


def _logistic(u: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-u))


def _forward(g: Conductances, W: list, b: list, x: np.ndarray) -> tuple[list, list, list]:
    """The feed-forward network of docs/model.md §5 in NumPy: attenuations, potentials, presynaptic rates."""
    N = len(W)
    att = [g.basal_hidden] * (N - 1) + [g.basal_output]
    rs, us = [x], []
    for k in range(N):
        us.append(att[k] * (rs[-1] @ W[k].T + b[k]))
        rs.append(_logistic(us[-1]))
    return att, us, rs


def _slope(u: np.ndarray) -> np.ndarray:
    return _logistic(u) * (1 - _logistic(u))


def _dfa_numpy(g: Conductances, W: list, b: list, D: list, x: np.ndarray, u_trgt: np.ndarray) -> tuple[list, list]:
    """Direct feedback alignment in float64 NumPy: e = φ'(u_N) (u_trgt − u_N); δ_k = φ'(u_k) ⊙ (D_k e) for
    hidden layers, δ_N = e; ΔW_k = a_k δ_kᵀ r_{k−1} / batch, Δb_k = a_k mean(δ_k)."""
    att, us, rs = _forward(g, W, b, x)
    N = len(W)
    e = _slope(us[-1]) * (u_trgt - us[-1])
    dW, db = [], []
    for k in range(N):
        delta = e if k == N - 1 else _slope(us[k]) * (e @ D[k].T)
        dW.append(att[k] * delta.T @ rs[k] / len(x))
        db.append(att[k] * delta.mean(0))
    return dW, db


def _backprop_numpy(g: Conductances, W: list, b: list, x: np.ndarray, u_trgt: np.ndarray) -> list:
    """Backprop's ΔW_k (docs/model.md §5) in float64 NumPy, the error sent down through W_{k+1}ᵀ."""
    att, us, rs = _forward(g, W, b, x)
    delta = _slope(us[-1]) * (u_trgt - us[-1])
    dW = [None] * len(W)
    for k in reversed(range(len(W))):
        dW[k] = att[k] * delta.T @ rs[k] / len(x)
        if k:
            delta = _slope(us[k - 1]) * ((att[k] * delta) @ W[k])
    return dW


def _model(sizes: tuple[int, ...], g: Conductances | None = None, **plasticity: object) -> Model:
    return Model(network=NetworkSpec(sizes=sizes, transfer=Phi(kind="logistic"), bias=True,
                                     init=Init(W=1.0, B=1.0, bias=0.5, self_predicting=True)),
                 conductances=g or Conductances(), plasticity=Plasticity(**plasticity),
                 simulation=Simulation(sigma=0.0, dtype="float64"))


def _data(sizes: tuple[int, ...], n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.uniform(0, 1, (n, sizes[0])), rng.uniform(-2, 1, (n, sizes[-1]))


@pytest.mark.parametrize("name", list(SIZES))
def test_direct_feedback_alignment_matches_a_numpy_reference(name: str) -> None:
    """direct_feedback_updates equals the float64 oracle in every layer, equals backprop at the output and
    differs from it below."""
    sizes = SIZES[name]
    model = _model(sizes)
    x, t = _data(sizes)
    with jax.enable_x64(True):
        w = init_weights(model.network, model.conductances, jax.random.key(2), "float64")
        D = tuple(jax.random.uniform(jax.random.key(10 + k), (n, sizes[-1]), jnp.float64, -1, 1)
                  for k, n in enumerate(sizes[1:-1]))
        dfa = direct_feedback_updates(model, w, D, jnp.asarray(x), jnp.asarray(t))
        bp = backprop_updates(model, w, jnp.asarray(x), jnp.asarray(t))
    dW, db = _dfa_numpy(model.conductances, *(list(map(np.asarray, a)) for a in (w.W, w.b, D)), x, t)
    for k, (a, ref) in enumerate(zip((*dfa[0], *dfa[1]), (*dW, *db), strict=True)):
        assert np.max(np.abs(ref)) > 1e-6, k
        np.testing.assert_allclose(np.asarray(a), ref, rtol=1e-10, atol=1e-14, err_msg=str(k))
    np.testing.assert_allclose(np.asarray(dfa[0][-1]), np.asarray(bp[0][-1]), rtol=1e-12)
    for k in range(len(sizes) - 2):
        assert not np.allclose(np.asarray(dfa[0][k]), np.asarray(bp[0][k])), k


def test_the_methods_take_one_sgd_step_along_their_update() -> None:
    """One mini-batch of each feed-forward method moves W_k by exactly lr × its oracle update (float64)."""
    sizes = SIZES["depth3"]
    x, t = _data(sizes, 10)
    for name in ("backprop", "direct_feedback_alignment"):
        cfg = Config(network=NetworkSpec(sizes=sizes, transfer=Phi(kind="logistic"), bias=True,
                                         init=Init(W=1.0, B=1.0, bias=0.5)),
                     simulation=Simulation(dtype="float64"), training=Training(method=name, lr=0.3, batch=10))
        method = get_method(name)
        with jax.enable_x64(True):
            model = resolve_model(cfg)
            w0 = init_weights(model.network, model.conductances, jax.random.key(5), "float64")
            w0, carry = method.init(cfg, model, w0)
            w1, _ = method.train(cfg, model, w0, carry, jnp.asarray(x), jnp.asarray(t),
                                 jnp.arange(10, dtype=jnp.int32)[None], method.base_lr(cfg), jax.random.key(0))
        W, b = [np.asarray(a) for a in w0.W], [np.asarray(a) for a in w0.b]
        if name == "backprop":
            ref = _backprop_numpy(model.conductances, W, b, x, t)
        else:
            ref = _dfa_numpy(model.conductances, W, b, [np.asarray(d) for d in carry["D"]], x, t)[0]
        gains = layer_gains(model.conductances, len(W))  # the one-rate rule's 1/a_k (training.lr is set)
        for k in range(len(W)):
            np.testing.assert_allclose(np.asarray(w1.W[k]) - W[k], 0.3 * gains[k] * ref[k], rtol=1e-9, atol=1e-13,
                                       err_msg=f"{name} W_{k + 1}")


def test_direct_feedback_matrices_are_fixed_by_the_seed() -> None:
    cfg = Config(network=NetworkSpec(sizes=(6, 5, 4, 3), init=Init(B=(0.5, 2.0))),
                 training=Training(method="direct_feedback_alignment"))
    method = METHODS["direct_feedback_alignment"]
    (_, a), (_, b) = (method.init(cfg, cfg.model, None) for _ in range(2))
    assert [d.shape for d in a["D"]] == [(5, 3), (4, 3)]
    assert all(np.array_equal(p, q) for p, q in zip(a["D"], b["D"], strict=True))
    assert float(jnp.max(jnp.abs(a["D"][0]))) <= 0.5 < float(jnp.max(jnp.abs(a["D"][1]))) <= 2.0
    other = method.init(dataclasses.replace(cfg, seed=1), cfg.model, None)[1]
    assert not np.array_equal(a["D"][0], other["D"][0])


def test_circuit_rates_follow_the_derivation() -> None:
    """η_k·T·λ_N·λ_A^{N−k} = lr in every layer; η^IP_k = c_k η_{k+1} / λ_I with IP*_k = c_k W_{k+1} (the
    self-predicting formula of network.self_predicting_weights); the circuit's update scale
    (update_scale: λ_N λ_A^{N−k}/a_k) times η_k·T is lr/a_k, the feed-forward methods' layer gain."""
    g = Conductances(g_lk=0.1, g_B=1.0, g_A=1.1, g_D=0.7, g_som=0.4714)
    for depth in (2, 4, 7):
        eta_W, eta_IP = circuit_rates(g, depth, 0.05, 100.0)
        gains = layer_gains(g, depth)
        for k, (eta, s, gain) in enumerate(zip(eta_W, update_scale(g, depth), gains, strict=True)):
            n_up = depth - (k + 1)  # layers between W_k and the output
            assert eta * 100.0 * g.lambda_N * g.lambda_A**n_up == pytest.approx(0.05, rel=1e-12)
            assert gain == pytest.approx(1 / (g.basal_output * g.basal_hidden**n_up), rel=1e-12)
            assert eta * 100.0 * s == pytest.approx(0.05 * gain, rel=1e-12)
        w = init_weights(NetworkSpec(sizes=(3,) * (depth + 1)), g, jax.random.key(0))
        IP = self_predicting_weights(w, g)[1]
        for k, eta in enumerate(eta_IP):
            c = float(IP[k][0, 0] / w.W[k + 1][0, 0])
            assert eta == pytest.approx(c * eta_W[k + 1] / g.lambda_I, rel=1e-6)
        if depth == 2:  # with g_D = g_B the factor is 1 below the output (the mnist preset's formula)
            same = dataclasses.replace(g, g_D=g.g_B)
            assert circuit_rates(same, 2, 0.05, 100.0)[1][0] == pytest.approx(eta_W[1] / same.lambda_I)
        # the bottom layer's rate is the output's times λ_A^-(N−1): the error's fading undone
        assert eta_W[0] / eta_W[-1] == pytest.approx(g.lambda_A ** -(depth - 1), rel=1e-9)


def test_resolve_model_derives_the_rates_only_for_the_circuits() -> None:
    base = Config(network=NetworkSpec(sizes=(6, 5, 4, 3)), stimulus=dataclasses.replace(Config().stimulus,
                                                                                         duration=50.0))
    for method, derived in (("microcircuit", True), ("backprop", False), ("feedback_alignment", False)):
        cfg = dataclasses.replace(base, training=Training(method=method, lr=0.2))
        eta_W = resolve_model(cfg).plasticity.eta_W
        if derived:
            assert eta_W == circuit_rates(cfg.conductances, 3, 0.2, 50.0)[0]
        else:
            assert eta_W == (0.0, 0.0, 0.0)
    untouched = dataclasses.replace(base, training=Training(method="microcircuit"))
    assert resolve_model(untouched) == untouched.model


@pytest.mark.parametrize("name", list(SIZES))
def test_transported_circuit_with_the_rate_rule_is_backprop_at_weak_nudging(name: str) -> None:
    """With B_k = W_{k+1}ᵀ (transport) and the rates of the one-rate rule, rule (7) at the swept steady state
    moves every W_k by lr/a_k × backprop's gradient as the nudging weakens: angle and norm ratio against a float64
    NumPy backprop, at every depth with the same rule. The per-layer diagnostics report the same numbers."""
    sizes = SIZES[name]
    g = Conductances(g_som=0.002)
    lr = 0.1
    eta_W, eta_IP = circuit_rates(g, len(sizes) - 1, lr, 100.0)
    model = _model(sizes, g, eta_W=eta_W, eta_IP=eta_IP)
    x, t = _data(sizes)
    cfg = Config(network=model.network, conductances=g, simulation=model.simulation,
                 training=Training(method="microcircuit", feedback="transported", lr=lr, probe=7))
    method = METHODS["microcircuit"]
    with jax.enable_x64(True):
        w, _ = method.init(cfg, model, init_weights(model.network, g, jax.random.key(1), "float64"))
        upd = circuit_update(model, w, jnp.asarray(x), jnp.asarray(t), duration=100.0, n_passes=1)
        diag = layer_diagnostics(method, cfg, model, w, {}, jnp.asarray(x), jnp.asarray(t))
    ref = _backprop_numpy(g, [np.asarray(a) for a in w.W], [np.asarray(a) for a in w.b], x, t)
    for k, (a, r, gain) in enumerate(zip(upd, ref, layer_gains(g, len(sizes) - 1), strict=True)):
        a = np.asarray(a)
        cos = np.sum(a * r) / (np.linalg.norm(a) * np.linalg.norm(r))
        deg = np.degrees(np.arccos(min(1.0, cos)))
        ratio = np.linalg.norm(a) / (lr * gain * np.linalg.norm(r))
        assert deg < 1.0, (k, deg)
        assert ratio == pytest.approx(1.0, abs=0.02), k
        assert diag["angle"][k] == pytest.approx(deg, abs=2e-3)
        assert diag["norm_ratio"][k] == pytest.approx(ratio, rel=1e-3)
    # the interneurons cancel the transported feedback: no apical residue without a target
    assert max(diag["apical_residue"]) < 1e-12 < min(diag["apical_error"])


def test_random_feedback_turns_the_hidden_updates_away() -> None:
    """The same circuit with its random B (not transported) keeps the output's update and turns the hidden
    ones away from backprop: the diagnostics tell the two feedback choices apart."""
    sizes = SIZES["depth3"]
    g = Conductances(g_som=0.002)
    eta_W, eta_IP = circuit_rates(g, 3, 0.1, 100.0)
    model = _model(sizes, g, eta_W=eta_W, eta_IP=eta_IP)
    x, t = _data(sizes)
    cfg = Config(network=model.network, conductances=g, simulation=model.simulation,
                 training=Training(method="microcircuit", lr=0.1))
    with jax.enable_x64(True):
        w = init_weights(model.network, g, jax.random.key(1), "float64")
        diag = layer_diagnostics(METHODS["microcircuit"], cfg, model, w, {}, jnp.asarray(x), jnp.asarray(t))
    assert diag["angle"][-1] < 1.0
    assert min(diag["angle"][:-1]) > 20.0


def test_transport_keeps_feedback_symmetric_through_training() -> None:
    """After every update of a transported circuit B_k = W_{k+1}ᵀ and PI_k = −B_k exactly; a random circuit's
    B does not move."""
    sizes = (10, 6, 5, 4)
    model = _model(sizes, eta_W=(0.01, 0.01, 0.01), eta_IP=(0.01, 0.01))
    x, t = _data(sizes, 20)
    idx = jnp.arange(20, dtype=jnp.int32).reshape(4, 5)
    for feedback in ("transported", "random"):
        cfg = Config(network=model.network, plasticity=model.plasticity, simulation=Simulation(sigma=0.0),
                     training=Training(method="microcircuit", feedback=feedback, batch=5))
        w0 = init_weights(model.network, model.conductances, jax.random.key(0))
        w0, carry = METHODS["microcircuit"].init(cfg, cfg.model, w0)
        w1, _ = METHODS["microcircuit"].train(cfg, cfg.model, w0, carry, jnp.asarray(x, jnp.float32),
                                              jnp.asarray(t, jnp.float32), idx, 1.0, jax.random.key(0))
        assert not np.array_equal(w1.W[1], w0.W[1])
        if feedback == "transported":
            for k in range(2):
                np.testing.assert_array_equal(w1.B[k], w1.W[k + 1].T)
                np.testing.assert_array_equal(w1.PI[k], -w1.B[k])
        else:
            for k in range(2):
                np.testing.assert_array_equal(w1.B[k], w0.B[k])
    assert transport(w0).B[0].shape == w0.B[0].shape
