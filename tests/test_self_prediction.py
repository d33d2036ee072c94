"""The self-predicting state (docs/model.md §4): its formulas, its exactness, and that plasticity keeps it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from microcircuit.config import Conductances, Init, Model, NetworkSpec, Plasticity, Record, Simulation, Transfer
from microcircuit.dynamics import dendrites, derivatives
from microcircuit.network import init_weights, self_predicting
from microcircuit.plasticity import increments
from microcircuit.simulate import Stream, simulate

# Non-default conductances with g_D != g_B: with the defaults the depth-2 factor
# (g_lk+g_D)/g_D · g_B/(g_lk+g_B) is exactly 1, which would hide a formula that drops both factors.
G = Conductances(g_lk=0.1, g_B=1.0, g_A=0.8, g_D=0.6, g_som=0.5)


def _ip_factor(k: int, N: int, g: Conductances = G) -> float:
    """docs/model.md §4: IP_k = [(g_lk+g_D)/g_D]·[g_B/(g_lk+g_B+g_A(k+1))]·W_{k+1}, g_A(N) = 0 (k is 1-based)."""
    g_a_up = 0.0 if k + 1 == N else g.g_A
    return (g.g_lk + g.g_D) / g.g_D * g.g_B / (g.g_lk + g.g_B + g_a_up)


# --------------------------------------------------------------------------------------------------
# The formulas


def test_self_predicting_weights_follow_the_formulas() -> None:
    """PI_k = −B_k, IP_k = factor_k·W_{k+1}, c_k = factor_k·b_{k+1} (depth 3: both kinds of factor);
    Init(self_predicting=True) gives the same as network.self_predicting on the same random draw."""
    spec = NetworkSpec(sizes=(6, 5, 4, 3), bias=True, init=Init(bias=0.5))
    w = init_weights(spec, G, jax.random.key(3))
    sp = self_predicting(w, G)
    N = 3
    for i in range(N - 1):
        np.testing.assert_array_equal(np.asarray(sp.PI[i]), -np.asarray(w.B[i]))
        f = _ip_factor(i + 1, N)
        np.testing.assert_allclose(np.asarray(sp.IP[i]), f * np.asarray(w.W[i + 1]), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(sp.c[i]), f * np.asarray(w.b[i + 1]), rtol=1e-6)
    for name in ("W", "b", "B"):  # nothing else changes
        for a, b in zip(getattr(sp, name), getattr(w, name), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    spec_sp = NetworkSpec(sizes=(6, 5, 4, 3), bias=True, init=Init(bias=0.5, self_predicting=True))
    direct = init_weights(spec_sp, G, jax.random.key(3))
    for a, b in zip(jax.tree_util.tree_leaves(direct), jax.tree_util.tree_leaves(sp), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("sizes", [(5, 4, 3), (5, 4, 4, 3), (5, 4, 3, 4, 2)], ids=["depth2", "depth3", "depth4"])
def test_self_predicting_state_is_an_exact_fixed_point(sizes: tuple[int, ...]) -> None:
    """With self-predicting weights, the feed-forward state (u_k = g_B/(g_lk+g_B+g_A)·v_B,k, u_N =
    g_B/(g_lk+g_B)·v_B,N, u^I_k = u_{k+1}) has v_A = 0, zero time derivatives (no target) and zero
    increments of every rule (7)-(9), to rounding (float64)."""
    N = len(sizes) - 1
    model = Model(
        network=NetworkSpec(sizes=sizes, transfer=Transfer(kind="logistic"), bias=True),
        conductances=G,
        plasticity=Plasticity(eta_W=0.1, eta_IP=0.1, eta_PI=0.1),
        simulation=Simulation(sigma=0.0, dtype="float64"),
    )
    p = ref.params_of(model)
    rng = np.random.default_rng(2)
    w = ref.random_weights(rng, sizes, scale=1.5, bias_scale=0.5)
    with jax.enable_x64(True):
        w = ref.from_package_weights(self_predicting(ref.to_package_weights(w), G))
    s = ref.random_state(rng, sizes, batch=2)
    for k in range(N):  # bottom-up feed-forward state
        v_b = ref.dendrites(p, w, s)["v_basal"][k]
        s["u"][k] = (ref.basal_output(p) if k == N - 1 else ref.basal_hidden(p)) * v_b
    s["u_inter"] = [s["u"][k + 1].copy() for k in range(N - 1)]
    with jax.enable_x64(True):
        pw = jax.tree_util.tree_map(jnp.asarray, ref.to_package_weights(w))
        ps = jax.tree_util.tree_map(jnp.asarray, ref.to_package_state(s))
        d = dendrites(model, pw, ps)
        du, du_inter = derivatives(model, ps, d, jnp.asarray(False))
        delta = ref.from_package_weights(increments(model, pw, ps, d))
        tiny = 1e-13
        assert all(float(jnp.max(jnp.abs(v))) < tiny for v in d.v_apical)
        assert all(float(jnp.max(jnp.abs(v))) < tiny for v in (*du, *du_inter))
    for name in ("W", "b", "IP", "c", "PI"):
        assert all(float(np.max(np.abs(a))) < tiny for a in delta[name]), name
    # the top-down input that the interneurons cancel is not small
    d_ref = ref.dendrites(p, w, s)
    assert min(float(np.max(np.abs(d_ref["r"][k + 1] @ w["B"][k].T))) for k in range(N - 1)) > 0.1


# --------------------------------------------------------------------------------------------------
# Plasticity keeps the self-predicting state (simulation)

# Settled-state tolerances. Measured (both cases): self-predicting start ‖v_A‖ ≲ 4e-8,
# ‖u_{k+1} − u^I_k‖ ≲ 3e-6, relative lateral drift ≲ 2e-8 (IP), 5e-9 (PI), 7e-6 (c); with a 5 % error in
# the IP factor ‖v_A‖ ≳ 2.7e-4 and ‖u_{k+1} − u^I_k‖ ≳ 2e-2; from random lateral weights ≳ 5e-2 and 0.7.
TOL_APICAL = 1e-6
TOL_INTER = 1e-4
TOL_DRIFT = 2e-7
TOL_DRIFT_BIAS = 5e-5

CASES = {
    "30-20-10": ((30, 20, 10), 0.0),  # IP and PI plastic, W frozen
    "30-20-15-10": ((30, 20, 15, 10), 0.002375),  # W plastic too
}


@pytest.fixture(scope="module", params=list(CASES))
def runs(request: pytest.FixtureRequest) -> dict:
    """Three 300 ms runs (three random patterns, no target, σ = 0, the paper's η^IP, η^PI, soft
    rectifier, biases) of the same compiled model: from self-predicting weights (network.self_predicting of
    random W, B, b; Init(self_predicting=True) is the same, see above), from them with
    IP and c scaled by 1.05 (a 5 % wrong IP factor), and from random lateral weights."""
    sizes, eta_w = CASES[request.param]
    model = Model(
        network=NetworkSpec(sizes=sizes, transfer=Transfer(), bias=True),
        conductances=G,
        plasticity=Plasticity(eta_W=eta_w, eta_IP=0.0011875, eta_PI=0.0005, tau_w=30.0),
        simulation=Simulation(dt=0.1, sigma=0.0, dtype="float64"),
    )
    rng = np.random.default_rng(0)
    w_rand = ref.to_package_weights(ref.random_weights(rng, sizes, scale=1.0, bias_scale=0.5))
    with jax.enable_x64(True):
        w_sp = jax.tree_util.tree_map(np.asarray, self_predicting(w_rand, G))
    w_bad = w_sp._replace(IP=tuple(1.05 * a for a in w_sp.IP), c=tuple(1.05 * a for a in w_sp.c))
    s0 = ref.to_package_state(ref.rest_state(sizes, 1))
    x = rng.uniform(0.0, 1.0, (3, 1, sizes[0]))
    rec = Record(quantities=("u", "u_inter", "v_apical"), stride=1000)  # the end of each 100 ms pattern
    out = {"N": len(sizes) - 1}
    for name, w in (("sp", w_sp), ("bad", w_bad), ("rand", w_rand)):
        sol = simulate(model, w, s0, Stream.of(x), duration=100.0, record=rec)
        out[name] = (w, sol)
    return out


def _errors(N: int, w0, sol) -> dict:
    """Largest settled ‖v_A,k‖, ‖u_{k+1} − u^I_k‖ over pattern ends; relative drift of IP, PI and c."""
    r = sol.records
    out = {
        "apical": max(float(np.max(np.linalg.norm(r[f"v_apical_{k}"], axis=-1))) for k in range(1, N)),
        "inter": max(float(np.max(np.linalg.norm(r[f"u_{k + 1}"] - r[f"u_inter_{k}"], axis=-1))) for k in range(1, N)),
    }
    for name in ("IP", "PI", "c"):
        out[name] = max(
            float(np.linalg.norm(np.asarray(b) - np.asarray(a)) / np.linalg.norm(np.asarray(a)))
            for a, b in zip(getattr(w0, name), getattr(sol.weights, name), strict=True)
        )
    return out


def test_self_predicting_state_is_kept(runs: dict) -> None:
    """From the self-predicting initialisation, with the lateral rules on: at the end of every pattern
    ‖v_A‖ ≈ 0 and u^I_k ≈ u_{k+1} in every hidden layer, and IP, PI (and c) do not drift."""
    e = _errors(runs["N"], *runs["sp"])
    assert e["apical"] < TOL_APICAL, e
    assert e["inter"] < TOL_INTER, e
    assert e["IP"] < TOL_DRIFT, e
    assert e["PI"] < TOL_DRIFT, e
    assert e["c"] < TOL_DRIFT_BIAS, e
    # ... while the top-down input being cancelled is sizeable
    sol = runs["sp"][1]
    assert min(float(np.linalg.norm(np.asarray(u))) for u in sol.state.u) > 0.1


def test_wrong_ip_factor_is_detected(runs: dict) -> None:
    """A 5 % error in the IP factor leaves a clearly non-zero apical potential and interneuron mismatch:
    the tolerances above discriminate (by more than 10×)."""
    e = _errors(runs["N"], *runs["bad"])
    assert e["apical"] > 10 * TOL_APICAL, e
    assert e["inter"] > 10 * TOL_INTER, e


def test_random_lateral_weights_are_not_self_predicting(runs: dict) -> None:
    """From random lateral weights the same run is far from self-predicting and the lateral weights move
    well beyond the drift tolerance: the drift check can fail."""
    e = _errors(runs["N"], *runs["rand"])
    assert e["apical"] > 1e3 * TOL_APICAL, e
    assert e["inter"] > 1e3 * TOL_INTER, e
    assert e["IP"] > 5 * TOL_DRIFT, e
    assert e["PI"] > 5 * TOL_DRIFT, e
    assert e["c"] > 5 * TOL_DRIFT_BIAS, e
