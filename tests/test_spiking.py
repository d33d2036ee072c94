"""The spiking circuit (docs/model.md §13): counts, the mean-field limit, convergence to the rate model, the
spike-based rules, the checks, and the spiking-bars experiment."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from microcircuit import (
    Conductances,
    InputError,
    Model,
    NetworkSpec,
    Plasticity,
    Simulation,
    Spiking,
    Stream,
    Transfer,
    dendrites,
    get_preset,
    init_state,
    init_weights,
    simulate,
)
from microcircuit.config import ConfigError, apply_overrides
from microcircuit.dynamics import with_prospective
from microcircuit.plasticity import increments
from microcircuit.preflight import preflight
from microcircuit.spiking import Layout, log_derivative, poisson_counts
from microcircuit.transfer import dphi, phi

SPEC = NetworkSpec(sizes=(4, 6, 5, 3), transfer=Transfer(kind="soft_rectifier", gamma=0.2))
RATES = Plasticity(eta_W=(0.1, 0.05, 0.02), eta_IP=0.1, eta_PI=0.1, eta_B=0.01, tau_w=0.0)


def _model(prospective: bool = False, dtype: str = "float64", **spiking) -> Model:
    sim = Simulation(dt=0.1, sigma=0.0, dtype=dtype, prospective=prospective, integrator="exponential")
    sp = Spiking(enabled=True, **spiking) if spiking else Spiking()
    return Model(network=SPEC, plasticity=RATES, simulation=sim, spiking=sp)


def _stream(P: int = 3, B: int = 4, seed: int = 0) -> Stream:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (P, B, SPEC.sizes[0]))
    target = rng.uniform(0.0, 1.5, (P, B, SPEC.sizes[-1]))  # inside [E_inh, E_exc]
    return Stream.of(x, target, np.arange(P) % 2 == 0)


@pytest.fixture
def x64():
    """float64 arrays for the float64 oracles."""
    with jax.enable_x64(True):
        yield


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, float) - np.asarray(y, float))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


@pytest.mark.parametrize("prospective", [False, True], ids=["original", "prospective"])
def test_expected_counts_are_the_rate_model_exactly(prospective, x64):
    """With every count at its mean (``counts = "mean"``) and no synaptic filter the spiking circuit, its
    spike-sent teaching and nudging and its spike-based rules are the rate model: potentials, weights and
    traces agree to float64 rounding over three patterns with the target on and off."""
    w = init_weights(SPEC, Conductances(), jax.random.key(1))
    s0 = init_state(SPEC, 4, "float64")
    ref = simulate(_model(prospective), w, s0, _stream(), duration=4.0)
    sol = simulate(_model(prospective, counts="mean"), w, s0, _stream(), duration=4.0)
    assert _max_diff(sol.state.u, ref.state.u) < 1e-12
    assert _max_diff(sol.state.u_inter, ref.state.u_inter) < 1e-12
    assert _max_diff(sol.weights, ref.weights) < 1e-12
    moved = _max_diff(sol.weights, w)
    assert moved > 1e-4  # the rules did act
    # and the Poisson circuit is a different, noisy one
    noisy = simulate(_model(prospective, n=100), w, s0, _stream(), duration=4.0, key=jax.random.key(0))
    assert _max_diff(noisy.state.u, ref.state.u) > 1e-3


@pytest.mark.parametrize("lam", [1e-3, 0.3, 2.0, 25.0, 60.0])
def test_poisson_counts_have_the_poisson_mean_and_variance(lam):
    """Counts drawn by inversion (means up to 30) and by jax.random.poisson (above): mean λ and variance λ
    within five standard errors over 400,000 draws, and the P(0) of the Poisson law."""
    n = 400_000
    c = np.asarray(poisson_counts(jax.random.key(7), np.full(n, lam, np.float32), lam))
    assert np.all(c >= 0) and np.all(c == np.round(c))
    se_mean = np.sqrt(lam / n)
    assert abs(c.mean() - lam) < 5 * se_mean
    se_var = np.sqrt((2 * lam**2 + lam) / n)  # standard error of the sample variance of a Poisson law
    assert abs(c.var() - lam) < 5 * se_var
    p0 = np.exp(-lam)
    assert abs(np.mean(c == 0) - p0) < 5 * np.sqrt(p0 * (1 - p0) / n) + 1e-9


def test_counts_of_the_circuit_have_mean_and_variance_of_their_rates():
    """One step of the circuit: each unit's count has mean n·r_max·min(φ, 1)·dt and Poisson variance (the
    same state drawn with 4,000 keys)."""
    model = _model(dtype="float32", n=50, r_max=100.0)
    w = init_weights(SPEC, Conductances(), jax.random.key(2), "float32")
    rng = np.random.default_rng(3)
    s = init_state(SPEC, 1, "float32")
    s = s._replace(u=tuple(np.asarray(rng.normal(0, 3, u.shape), np.float32) for u in s.u))
    s = with_prospective(model, s)
    draw = jax.jit(jax.vmap(lambda k: dendrites(model, w, s, False, k).spikes))
    counts = draw(jax.random.split(jax.random.key(4), 4000))
    lay = Layout.of(SPEC, model.spiking)
    scale = 50 * 100.0 * 0.1 / 1000
    for i, u in enumerate(s.u):
        lam = scale * np.minimum(np.asarray(phi(SPEC.transfer, u)), 1.0)[0]
        c = np.asarray(counts[lay.pyramid(i)])[:, 0]
        assert np.all(np.abs(c.mean(0) - lam) < 5 * np.sqrt(lam / 4000) + 1e-6)
        assert np.all(np.abs(c.var(0) - lam) < 5 * np.sqrt((2 * lam**2 + lam) / 4000) + 1e-6)


def _slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def test_spiking_converges_to_its_mean_field_limit_like_one_over_root_of_spikes(x64):
    """Measured, not assumed, with a synaptic filter of 2 ms: against the same circuit sending expected counts
    (its n·r_max → ∞ limit, which at τ_syn = 0 is the rate model, see above) the error of the potentials after
    10 ms and of the weight change per ms, ΔW/T, fall like (n·r_max)^(−1/2) (log-log slopes −0.5 ± 0.12 over
    n = 30..3,000), and ΔW/T falls with T from a settled state (slope between −0.8 and −0.4 from T = 10 to
    80 ms). Errors are RMS over 6 samples and 2 keys; the rates are small enough that the
    weights do not feed back on the dynamics."""
    slow = dataclasses.replace(RATES, eta_W=(1e-3, 5e-4, 2e-4), eta_IP=1e-3, eta_PI=1e-3, eta_B=1e-4)

    def model(**spiking) -> Model:
        return dataclasses.replace(_model(tau_syn=2.0, **spiking), plasticity=slow)

    w = init_weights(SPEC, Conductances(), jax.random.key(1))
    x = np.random.default_rng(0).uniform(0, 1, (1, 6, SPEC.sizes[0]))
    target = np.random.default_rng(1).uniform(0.2, 1.2, (1, 6, SPEC.sizes[-1]))
    stream = Stream.of(x, target, True)
    rms = lambda a: float(np.sqrt(np.mean(np.square(a))))  # noqa: E731
    flat = lambda arrays: np.concatenate([np.ravel(a) for a in arrays])  # noqa: E731

    def errors(n: int, T: float, s0) -> tuple[float, float]:
        # chunks of 100 steps: the same compiled loop for every duration
        ref = simulate(model(counts="mean"), w, s0, stream, duration=T, chunk_steps=100)
        du, dw = [], []
        for k in range(2):
            sol = simulate(model(n=n), w, s0, stream, duration=T, key=jax.random.key(k), chunk_steps=100)
            du.append(flat(sol.state.u) - flat(ref.state.u))
            dw.append(flat(sol.weights.W) - flat(ref.weights.W))
        return rms(du), rms(dw) / T

    rest = init_state(SPEC, 6, "float64")
    ns = [30, 300, 3000]
    by_n = [errors(n, 10.0, rest) for n in ns]
    assert abs(_slope(ns, [e[0] for e in by_n]) + 0.5) < 0.12
    assert abs(_slope(ns, [e[1] for e in by_n]) + 0.5) < 0.12
    settled = simulate(model(counts="mean"), w, rest, stream, duration=30.0, plastic=False).state
    Ts = [10.0, 80.0]
    slope_T = _slope(Ts, [errors(3000, T, settled)[1] for T in Ts])
    assert -0.8 < slope_T < -0.4


def test_spike_rules_weight_the_error_by_h_on_request(x64):
    """``post = "spikes_h"`` multiplies the post factor of rules (7), (8) and (10) by h(v̂) = (ln φ)'(v̂): in
    the mean-field limit the increments are the rate model's with the errors so weighted; h is φ'/φ."""
    v = np.linspace(-30, 10, 41)
    for t in (SPEC.transfer, Transfer(kind="logistic")):
        h = np.asarray(log_derivative(t, v))
        ratio = np.asarray(dphi(t, v)) / np.asarray(phi(t, v))
        ok = np.isfinite(ratio)
        assert np.allclose(h[ok], ratio[ok], rtol=1e-6) and np.all(np.isfinite(h))
    spec = NetworkSpec(sizes=(4, 3, 2), transfer=SPEC.transfer)  # rule (7) of W_1, from the input
    w = init_weights(spec, Conductances(), jax.random.key(5))
    sim = Simulation(dt=0.1, sigma=0.0, dtype="float64")
    s = init_state(spec, 2, "float64")
    s = s._replace(u=(np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]]), s.u[1]), r_in=np.full((2, 4), 0.5))
    plain = Model(network=spec, simulation=sim, plasticity=Plasticity(eta_W=1.0))
    hm = dataclasses.replace(plain, spiking=Spiking(enabled=True, counts="mean", post="spikes_h"))
    s_h = with_prospective(hm, s)
    d0, d1 = dendrites(plain, w, s), dendrites(hm, w, s_h, False, jax.random.key(0))
    v_hat = plain.conductances.basal_hidden * np.asarray(d0.v_basal[0])
    h = np.asarray(log_derivative(spec.transfer, v_hat))
    err = (np.asarray(d0.r[0]) - np.asarray(phi(spec.transfer, v_hat))) * h
    want = err.T @ np.asarray(s.r_in) / 2
    got = np.asarray(increments(hm, w, s_h, d1).W[0])
    assert np.allclose(got, want, rtol=1e-10, atol=1e-14)


def test_bad_spiking_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"spiking\.r_max"):
        Model(simulation=Simulation(dt=10.0, integrator="exponential"), spiking=Spiking(enabled=True, r_max=200.0))
    with pytest.raises(ConfigError, match=r"pal\.enabled"):
        apply_overrides(get_preset("pal-teacher", quick=True), ["spiking.enabled=true"])
    with pytest.raises(ConfigError, match=r"plasticity\.update_every"):
        Model(plasticity=Plasticity(update_every=5), spiking=Spiking(enabled=True))
    with pytest.raises(ConfigError, match=r"spiking\.post"):
        Spiking(post="voltage")
    with pytest.raises(ConfigError, match=r"spiking\.n"):
        Spiking(n=0)
    # an experiment that never runs the spiking circuit refuses the section
    cfg = apply_overrides(get_preset("fig1", quick=True), ["spiking.enabled=true"])
    with pytest.raises(ConfigError, match=r"spiking\.enabled: not used"):
        preflight(cfg, ["spiking.enabled"])
    # the inputs fire at r_max·x: x outside [0, 1] is refused before anything runs
    w = init_weights(SPEC, Conductances(), jax.random.key(1))
    bad = Stream.of(np.full((1, 2, 4), 1.5), np.zeros((1, 2, 3)))
    with pytest.raises(InputError, match=r"stream.x: .* \[0, 1\]"):
        simulate(_model(dtype="float32", n=10), w, init_state(SPEC, 2), bad, duration=1.0, key=jax.random.key(0))
    with pytest.raises(InputError, match=r"key"):
        simulate(_model(dtype="float32", n=10), w, init_state(SPEC, 2), _stream(B=2), duration=1.0)


def test_records_hold_spikes_and_traces():
    model = _model(dtype="float32", n=20)
    w = init_weights(SPEC, Conductances(), jax.random.key(1), "float32")
    from microcircuit import Record

    sol = simulate(model, w, init_state(SPEC, 2), _stream(B=2), duration=2.0, key=jax.random.key(0),
                   record=Record(("spikes", "synapses"), stride=1))
    assert set(sol.records) >= {"spikes_pyr_1", "spikes_inter_2", "syn_input", "syn_teacher_exc", "syn_nudge_inh_1"}
    c = sol.records["spikes_pyr_2"]
    assert c.shape == (60, 2, 5) and np.all(c == np.round(c)) and c.sum() > 0
    assert np.all(sol.records["syn_teacher_exc"][20:40] == 0)  # the second pattern has no target: silent teacher
