"""Plasticity rules (7)-(10) (docs/model.md §3): attenuation factors, increments and the weight/trace update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from microcircuit.config import Conductances, Model, NetworkSpec, Plasticity, Simulation, Transfer
from microcircuit.dynamics import dendrites
from microcircuit.network import self_predicting
from microcircuit.plasticity import apply_updates, increments, zero_traces

# Distinct, non-default conductances, so that no two factors coincide by accident.
G = Conductances(g_lk=0.13, g_B=1.1, g_A=0.7, g_D=0.9, g_som=0.35)
SIZES = (5, 4, 4, 3)  # two hidden layers and an output: every factor of rule (7) occurs


def _model(bias: bool = True, **plasticity) -> Model:
    rates = {"eta_W": (0.1, 0.2, 0.3), "eta_IP": (0.4, 0.5), "eta_PI": (0.6, 0.7), "eta_B": (0.8, 0.9)}
    rates.update(plasticity)
    return Model(
        network=NetworkSpec(sizes=SIZES, transfer=Transfer(kind="logistic"), bias=bias),
        conductances=G,
        plasticity=Plasticity(**rates),
        simulation=Simulation(dt=0.1, sigma=0.0, dtype="float64"),
    )


def _increments(model: Model, w: dict, s: dict) -> dict:
    """The package's increments δ at (w, s), as float64 NumPy."""
    with jax.enable_x64(True):
        pw, ps = ref.to_package_weights(w), ref.to_package_state(s)
        pw = jax.tree_util.tree_map(jnp.asarray, pw)
        ps = jax.tree_util.tree_map(jnp.asarray, ps)
        delta = increments(model, pw, ps, dendrites(model, pw, ps))
        return ref.from_package_weights(delta)


def _maxabs(arrays: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(a))) for a in arrays)


# --------------------------------------------------------------------------------------------------
# Conductance-derived factors


def test_conductance_factors() -> None:
    """λ_A, λ_N, λ_I (docs/model.md §5) and the attenuation factors of rules (7)-(8) (docs/model.md §3)."""
    g_lk, g_B, g_A, g_D, g_som = 0.13, 1.1, 0.7, 0.9, 0.35
    assert G.lambda_A == pytest.approx(g_A / (g_lk + g_B + g_A), rel=1e-15)
    assert G.lambda_N == pytest.approx(g_som / (g_lk + g_B + g_som), rel=1e-15)
    assert G.lambda_I == pytest.approx(g_som / (g_lk + g_D + g_som), rel=1e-15)
    assert G.basal_hidden == pytest.approx(g_B / (g_lk + g_B + g_A), rel=1e-15)
    assert G.basal_output == pytest.approx(g_B / (g_lk + g_B), rel=1e-15)
    assert G.dendrite_inter == pytest.approx(g_D / (g_lk + g_D), rel=1e-15)
    assert G.dendrite_inter < 1.0  # the trap g_D/g_lk + g_D would be ≈ 7.8 here
    # the paper's defaults
    d = Conductances()
    assert d.lambda_A == pytest.approx(0.8 / 1.9)
    assert d.lambda_N == pytest.approx(0.8 / 1.9)
    assert d.lambda_I == pytest.approx(0.8 / 1.9)
    assert d.dendrite_inter == pytest.approx(1.0 / 1.1)


# --------------------------------------------------------------------------------------------------
# Increments against the reference


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_increments_match_reference(bias: bool) -> None:
    """Every rule's batch-averaged increment δ (biases included) equals the reference at random states."""
    model = _model(bias=bias)
    p = ref.params_of(model)
    rng = np.random.default_rng(21)
    for _ in range(3):
        w = ref.random_weights(rng, SIZES, scale=1.5, bias_scale=1.0)
        s = ref.random_state(rng, SIZES, batch=4, scale=2.0)
        got = _increments(model, w, s)
        want = ref.increments(p, w, s, ref.dendrites(p, w, s))
        for name in ref.WEIGHT_NAMES:
            for k, (a, b) in enumerate(zip(got[name], want[name], strict=True)):
                if name in ("b", "c") and not bias:
                    continue  # no biases: their increments are unused
                assert np.max(np.abs(b)) > 1e-4, f"{name}[{k}]: degenerate test state"
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"{name}[{k}]")


def test_batch_increment_is_mean_of_single_sample_increments() -> None:
    """The increment of a batch is the average of the per-sample increments (rules are batch-averaged)."""
    model = _model()
    rng = np.random.default_rng(4)
    w = ref.random_weights(rng, SIZES, scale=1.5, bias_scale=1.0)
    s = ref.random_state(rng, SIZES, batch=3, scale=2.0)
    whole = _increments(model, w, s)
    singles = []
    for b in range(3):
        sb = {"u": [a[b : b + 1] for a in s["u"]], "u_inter": [a[b : b + 1] for a in s["u_inter"]],
              "r_in": s["r_in"][b : b + 1], "u_trgt": s["u_trgt"][b : b + 1]}
        singles.append(_increments(model, w, sb))
    for name in ref.WEIGHT_NAMES:
        for k in range(len(whole[name])):
            mean = np.mean([sg[name][k] for sg in singles], axis=0)
            np.testing.assert_allclose(whole[name][k], mean, rtol=1e-12, atol=1e-15)


def test_frozen_matrices_get_no_increment() -> None:
    """η = 0 freezes a matrix: its increment is zero whatever the state."""
    model = _model(eta_W=(0.1, 0.0, 0.3), eta_IP=(0.0, 0.5), eta_PI=(0.6, 0.0), eta_B=0.0)
    rng = np.random.default_rng(8)
    w = ref.random_weights(rng, SIZES, scale=1.5, bias_scale=1.0)
    s = ref.random_state(rng, SIZES, batch=2, scale=2.0)
    got = _increments(model, w, s)
    for name, k in (("W", 1), ("b", 1), ("IP", 0), ("c", 0), ("PI", 1), ("B", 0), ("B", 1)):
        assert np.all(got[name][k] == 0), f"{name}[{k}] is frozen"
    for name, k in (("W", 0), ("W", 2), ("IP", 1), ("PI", 0)):
        assert np.max(np.abs(got[name][k])) > 1e-4, f"{name}[{k}] is plastic"


# --------------------------------------------------------------------------------------------------
# Attenuation factors: the dendritic prediction is attenuated exactly as docs/model.md §3 says


def _predicted_state(p: ref.Params, w: dict, rng: np.random.Generator, f_hidden: float, f_output: float,
                     f_inter: float) -> dict:
    """A state whose somata sit at the given multiple of their dendritic potential, built bottom-up:
    u_k = f·v_B,k (f_hidden for hidden layers, f_output for the output), then u^I_k = f_inter·v^I_k."""
    s = ref.random_state(rng, SIZES, batch=3, scale=2.0)
    N = len(SIZES) - 1
    for k in range(N):  # v_B,k depends only on layers below k
        v_b = ref.dendrites(p, w, s)["v_basal"][k]
        s["u"][k] = (f_output if k == N - 1 else f_hidden) * v_b
    v_i = ref.dendrites(p, w, s)["v_inter"]
    s["u_inter"] = [f_inter * v for v in v_i]
    return s


def test_attenuation_factors_rules_7_and_8() -> None:
    """With u_k = g_B/(g_lk+g_B+g_A)·v_B,k (hidden), u_N = g_B/(g_lk+g_B)·v_B,N and
    u^I_k = g_D/(g_lk+g_D)·v^I_k, the rules (7), (8) and their bias rules give exactly zero; with any of
    the known-wrong factors (g_D/g_lk + g_D; hidden and output factors swapped) they do not."""
    model = _model()
    p = ref.params_of(model)
    rng = np.random.default_rng(33)
    w = ref.random_weights(rng, SIZES, scale=1.5, bias_scale=1.0)
    right = dict(f_hidden=G.g_B / (G.g_lk + G.g_B + G.g_A), f_output=G.g_B / (G.g_lk + G.g_B),
                 f_inter=G.g_D / (G.g_lk + G.g_D))
    got = _increments(model, w, _predicted_state(p, w, rng, **right))
    for name in ("W", "b", "IP", "c"):
        assert _maxabs(got[name]) < 1e-14, name

    wrong_inter = _increments(model, w, _predicted_state(p, w, rng, **{**right, "f_inter": G.g_D / G.g_lk + G.g_D}))
    assert min(_maxabs([a]) for a in wrong_inter["IP"]) > 1e-3
    assert min(_maxabs([a]) for a in wrong_inter["c"]) > 1e-3
    swapped = _increments(model, w, _predicted_state(p, w, rng, f_hidden=right["f_output"],
                                                     f_output=right["f_hidden"], f_inter=right["f_inter"]))
    assert min(_maxabs([a]) for a in swapped["W"]) > 1e-3
    assert min(_maxabs([a]) for a in swapped["b"]) > 1e-3


def test_rule_10_top_down_prediction() -> None:
    """Rule (10) is zero when u_k = B_k r_{k+1} (built top-down), and not otherwise."""
    model = _model()
    p = ref.params_of(model)
    rng = np.random.default_rng(12)
    w = ref.random_weights(rng, SIZES, scale=1.5)
    s = ref.random_state(rng, SIZES, batch=3, scale=2.0)
    N = len(SIZES) - 1
    for k in range(N - 2, -1, -1):  # u_k from r_{k+1}, top-down
        s["u"][k] = ref.phi(p, s["u"][k + 1]) @ w["B"][k].T
    got = _increments(model, w, s)
    assert _maxabs(got["B"]) < 1e-14
    s["u"][0] = s["u"][0] * 1.05
    assert _maxabs([_increments(model, w, s)["B"][0]]) > 1e-4


def test_rule_9_silences_the_apical_dendrite() -> None:
    """Rule (9) is zero exactly when v_A,k = 0: with self-predicting PI = −B and u^I_k = u_{k+1};
    otherwise it is −v_A,k (r^I_k)ᵀ, which pushes v_A towards 0 (δPI·r^I has the sign of −v_A)."""
    model = _model()
    p = ref.params_of(model)
    rng = np.random.default_rng(13)
    w = ref.random_weights(rng, SIZES, scale=1.5)
    with jax.enable_x64(True):
        sp = ref.from_package_weights(self_predicting(ref.to_package_weights(w), G))
    s = ref.random_state(rng, SIZES, batch=1, scale=2.0)
    s["u_inter"] = [s["u"][k + 1].copy() for k in range(len(SIZES) - 2)]
    assert _maxabs(_increments(model, sp, s)["PI"]) < 1e-14
    got = _increments(model, w, s)["PI"]
    d = ref.dendrites(p, w, s)
    for k, dpi in enumerate(got):
        change = d["r_inter"][k] @ dpi.T  # the first-order change of v_A,k along δPI_k
        assert np.all(change * d["v_apical"][k] <= 0)
        assert np.max(np.abs(change)) > 1e-4


# --------------------------------------------------------------------------------------------------
# The weight update (W += dt·η·Δ, τ_w trace) against the reference


@pytest.mark.parametrize("tau_w", [7.0, 0.0], ids=["trace", "no_trace"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_apply_updates_matches_reference(tau_w: float, bias: bool) -> None:
    """One update with per-layer rates, some frozen: W += dt·η·Δ(t) and Δ += dt/τ_w (δ − Δ) (or
    W += dt·η·δ with τ_w = 0); b learns with η_W, c with η_IP; frozen arrays and, without biases, b and c
    keep weights and traces."""
    model = _model(bias=bias, eta_W=(0.1, 0.0, 0.3), eta_IP=(0.4, 0.0), eta_PI=(0.0, 0.7), eta_B=(0.8, 0.9),
                   tau_w=tau_w)
    p = ref.params_of(model)
    rng = np.random.default_rng(17)
    w = ref.random_weights(rng, SIZES, bias_scale=1.0)
    tr = ref.random_weights(rng, SIZES, bias_scale=1.0)
    delta = ref.random_weights(rng, SIZES, bias_scale=1.0)
    want_w, want_tr = ref.apply_increments(p, w, tr, delta)
    with jax.enable_x64(True):
        args = [jax.tree_util.tree_map(jnp.asarray, ref.to_package_weights(a)) for a in (w, tr, delta)]
        got_w, got_tr = (ref.from_package_weights(a) for a in apply_updates(model, *args))
        paused_w, paused_tr = (ref.from_package_weights(a) for a in apply_updates(model, *args, jnp.float64(0.0)))
    for name in ref.WEIGHT_NAMES:
        for k in range(len(w[name])):
            np.testing.assert_allclose(got_w[name][k], want_w[name][k], rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(got_tr[name][k], want_tr[name][k], rtol=1e-14, atol=1e-15)
            np.testing.assert_array_equal(paused_w[name][k], w[name][k])  # gate 0: nothing moves
            np.testing.assert_array_equal(paused_tr[name][k], tr[name][k])
    # the test discriminates: plastic arrays moved by dt·η·Δ (or δ), frozen ones did not
    moved = delta if tau_w == 0 else tr
    np.testing.assert_allclose(got_w["W"][0] - w["W"][0], 0.1 * 0.1 * moved["W"][0], rtol=1e-12)
    np.testing.assert_allclose(got_w["IP"][0] - w["IP"][0], 0.1 * 0.4 * moved["IP"][0], rtol=1e-12)
    np.testing.assert_array_equal(got_w["W"][1], w["W"][1])
    if bias:
        np.testing.assert_allclose(got_w["b"][2] - w["b"][2], 0.1 * 0.3 * moved["b"][2], rtol=1e-12)
        np.testing.assert_allclose(got_w["c"][0] - w["c"][0], 0.1 * 0.4 * moved["c"][0], rtol=1e-12)
    else:
        np.testing.assert_array_equal(got_w["b"][0], w["b"][0])


def test_zero_traces() -> None:
    rng = np.random.default_rng(0)
    w = ref.to_package_weights(ref.random_weights(rng, SIZES))
    with jax.enable_x64(True):
        z = zero_traces(w)
    for a, b in zip(jax.tree_util.tree_leaves(z), jax.tree_util.tree_leaves(w), strict=True):
        assert a.shape == b.shape
        assert not np.any(np.asarray(a))
