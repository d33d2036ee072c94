"""simulate(): reproducibility, noise, batching, chunking, recording, divergence, and input checking."""

from __future__ import annotations

import dataclasses
import importlib

import jax
import numpy as np
import pytest

import reference as ref
from microcircuit.config import ConfigError, Model, NetworkSpec, Plasticity, Record, Simulation, Transfer
from microcircuit.errors import DivergenceError, InputError
from microcircuit.simulate import Stream, simulate

# the module, not the function that the package re-exports under the same name
simulate_module = importlib.import_module("microcircuit.simulate")

SIZES = (5, 4, 3)
DT = 0.1


def _leaves(*trees) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(trees)]


def _problem(seed: int = 0, batch: int = 2, n_pat: int = 3, sizes: tuple[int, ...] = SIZES):
    rng = np.random.default_rng(seed)
    w = ref.random_weights(rng, sizes, scale=1.0, bias_scale=0.5)
    s = ref.random_state(rng, sizes, batch)
    x = rng.uniform(0, 1, (n_pat, batch, sizes[0]))
    target = rng.uniform(-1, 1, (n_pat, batch, sizes[-1]))
    on = np.arange(n_pat) % 2 == 1
    return w, s, Stream(x, target, on)


def _f32(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), tree)


# --------------------------------------------------------------------------------------------------
# Noise, seeds, chunking and recording (float32, σ > 0, every rule plastic)

NOISY = Model(
    network=NetworkSpec(sizes=SIZES, transfer=Transfer(kind="logistic"), bias=True),
    plasticity=Plasticity(eta_W=0.05, eta_IP=0.05, eta_PI=0.05, eta_B=0.05, tau_w=5.0),
    simulation=Simulation(dt=DT, sigma=0.3, dtype="float32"),
)
N_PAT, SPP, STRIDE = 3, 100, 40  # 300 steps: 7 snapshots and a tail of 20 steps


@pytest.fixture(scope="module")
def noisy_runs() -> dict:
    w, s, stream = _problem()
    w, s = ref.to_package_weights(_f32(w)), ref.to_package_state(_f32(s))
    stream = Stream(_f32(stream.x), _f32(stream.target), stream.target_on)
    rec = Record(quantities=("u", "u_inter", "weight_norms"), stride=STRIDE)
    kw = dict(duration=SPP * DT, record=rec)
    return {
        "w0": w,
        "a": simulate(NOISY, w, s, stream, key=jax.random.key(0), **kw),
        "a_again": simulate(NOISY, w, s, stream, key=jax.random.key(0), **kw),
        "b": simulate(NOISY, w, s, stream, key=jax.random.key(1), **kw),
        "chunked": simulate(NOISY, w, s, stream, key=jax.random.key(0), chunk_steps=3 * STRIDE + 7, **kw),
        "tiny_chunks": simulate(NOISY, w, s, stream, key=jax.random.key(0), chunk_steps=1, **kw),
    }


def test_same_seed_gives_identical_results(noisy_runs: dict) -> None:
    a, b = noisy_runs["a"], noisy_runs["a_again"]
    for x, y in zip(_leaves(a.weights, a.traces, a.state), _leaves(b.weights, b.traces, b.state), strict=True):
        np.testing.assert_array_equal(x, y)
    for k in a.records:
        np.testing.assert_array_equal(a.records[k], b.records[k])


def test_other_seed_gives_other_noise(noisy_runs: dict) -> None:
    a, b = noisy_runs["a"], noisy_runs["b"]
    for k in ("u_1", "u_2", "u_inter_1"):
        diff = np.abs(a.records[k] - b.records[k])
        assert np.all(diff[0] > 0), k  # every neuron got other noise, from the first snapshot on
        assert np.mean(diff) > 1e-2, k


@pytest.mark.parametrize("run", ["chunked", "tiny_chunks"])
def test_chunking_does_not_change_the_result(noisy_runs: dict, run: str) -> None:
    """chunk_steps small (a chunk of 3 snapshots + 7, or of 1 step) or large: bit-identical (float32)."""
    a, c = noisy_runs["a"], noisy_runs[run]
    for x, y in zip(_leaves(a.weights, a.traces, a.state), _leaves(c.weights, c.traces, c.state), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.records.keys() == c.records.keys()
    for k in a.records:
        np.testing.assert_array_equal(a.records[k], c.records[k])
    np.testing.assert_array_equal(a.times, c.times)


def test_record_stride_bounds_the_snapshots(noisy_runs: dict) -> None:
    """One snapshot after every `stride` steps (none for the tail): ⌊steps/stride⌋ of them, timed."""
    sol = noisy_runs["a"]
    n = N_PAT * SPP // STRIDE
    assert n == 7
    np.testing.assert_allclose(sol.times, DT * STRIDE * np.arange(1, n + 1))
    assert sol.records["u_1"].shape == (n, 2, SIZES[1])
    assert sol.records["u_2"].shape == (n, 2, SIZES[2])
    assert sol.records["u_inter_1"].shape == (n, 2, SIZES[2])
    assert sol.records["norm_W_1"].shape == (n,)
    # the plasticity was on: weight norms change between snapshots
    assert np.ptp(sol.records["norm_W_1"]) > 1e-4
    assert np.all(np.isfinite(sol.records["u_1"]))


def test_noise_is_euler_maruyama() -> None:
    """σ·√dt·N(0,1) per step (docs/model.md §2, Decision): with all weights 0 a hidden soma is the AR(1)
    process u ← (1 − a)u + σ√dt ξ, a = dt·(g_lk+g_B+g_A), of stationary variance σ²dt/(a(2 − a));
    with noise="dt" the variance is dt times smaller."""
    sizes = (2, 50, 50)
    sigma = 0.5
    batch = 20
    zero_w = ref.to_package_weights(_f32(ref.zeros_like(ref.random_weights(np.random.default_rng(0), sizes))))
    s0 = ref.to_package_state(_f32(ref.rest_state(sizes, batch)))
    stream = Stream.of(np.zeros((1, batch, sizes[0]), np.float32))
    for noise, scale in (("sqrt_dt", DT**0.5), ("dt", DT)):  # (the exponential integrator: below)
        model = Model(network=NetworkSpec(sizes=sizes), simulation=Simulation(dt=DT, sigma=sigma, noise=noise))
        sol = simulate(model, zero_w, s0, stream, duration=200.0, key=jax.random.key(5), plastic=False,
                       record=Record(quantities=("u",), stride=50))
        g = model.conductances
        for k, g_tot in ((1, g.g_lk + g.g_B + g.g_A), (2, g.g_lk + g.g_B)):
            a = DT * g_tot
            want = (sigma * scale) ** 2 / (a * (2 - a))
            samples = sol.records[f"u_{k}"][4:]  # after 20 ms (≫ 1/g_tot); 36 × 20 × 50 samples
            assert abs(np.var(samples) / want - 1) < 0.1, (noise, k, np.var(samples), want)
            assert abs(np.mean(samples)) < 0.05 * np.sqrt(want)


def test_noise_with_the_exponential_integrator_is_exact() -> None:
    """With the exponential integrator a soma is the exact Ornstein–Uhlenbeck process: stationary
    variance σ²/(2g) whatever dt (here dt = 1 ms, where Euler–Maruyama's σ²dt/(a(2 − a)) would be 2.3×
    too large for the output soma and unstable for the hidden one)."""
    sizes, sigma, batch, dt = (2, 50, 50), 0.5, 20, 1.0
    zero_w = ref.to_package_weights(_f32(ref.zeros_like(ref.random_weights(np.random.default_rng(0), sizes))))
    s0 = ref.to_package_state(_f32(ref.rest_state(sizes, batch)))
    stream = Stream.of(np.zeros((1, batch, sizes[0]), np.float32))
    model = Model(network=NetworkSpec(sizes=sizes), simulation=Simulation(dt=dt, sigma=sigma, integrator="exponential"))
    sol = simulate(model, zero_w, s0, stream, duration=2000.0, key=jax.random.key(5), plastic=False,
                   record=Record(quantities=("u",), stride=5))
    g = model.conductances
    for k, g_tot in ((1, g.g_lk + g.g_B + g.g_A), (2, g.g_lk + g.g_B)):
        want = sigma**2 / (2 * g_tot)
        samples = sol.records[f"u_{k}"][4:]
        assert abs(np.var(samples) / want - 1) < 0.1, (k, np.var(samples), want)


# --------------------------------------------------------------------------------------------------
# Deterministic runs in float64


QUIET = Model(
    network=NetworkSpec(sizes=SIZES, transfer=Transfer(kind="logistic"), bias=True),
    plasticity=Plasticity(eta_W=0.05, eta_IP=0.05, eta_PI=0.05, eta_B=0.05, tau_w=5.0),
    simulation=Simulation(dt=DT, sigma=0.0, dtype="float64"),
)


def test_batch_equals_separate_runs() -> None:
    """Without plasticity (σ = 0) a batch of B samples evolves exactly like B separate runs; and with
    σ = 0 the key plays no role."""
    w, s, stream = _problem(batch=3)
    rec = Record(quantities=("u", "u_inter", "v_apical"), stride=50)
    kw = dict(duration=SPP * DT, plastic=False, record=rec)
    whole = simulate(QUIET, ref.to_package_weights(w), ref.to_package_state(s), stream, key=jax.random.key(0), **kw)
    other_key = simulate(QUIET, ref.to_package_weights(w), ref.to_package_state(s), stream, key=jax.random.key(9),
                         **kw)
    for x, y in zip(_leaves(whole.state), _leaves(other_key.state), strict=True):
        np.testing.assert_array_equal(x, y)
    for b in range(3):
        sb = {"u": [a[b : b + 1] for a in s["u"]], "u_inter": [a[b : b + 1] for a in s["u_inter"]],
              "r_in": s["r_in"][b : b + 1], "u_trgt": s["u_trgt"][b : b + 1]}
        st = Stream(stream.x[:, b : b + 1], stream.target[:, b : b + 1], stream.target_on)
        one = simulate(QUIET, ref.to_package_weights(w), ref.to_package_state(sb), st, **kw)
        for x, y in zip(_leaves(one.state), _leaves(whole.state), strict=True):
            np.testing.assert_allclose(x, y[b : b + 1], rtol=1e-13, atol=1e-14)
        for k in whole.records:
            np.testing.assert_allclose(one.records[k][:, 0], whole.records[k][:, b], rtol=1e-13, atol=1e-14)
    # the samples really differ from each other (so the comparison is not trivially true)
    u = np.asarray(whole.state.u[0])
    assert np.min(np.abs(u[0] - u[1])) > 1e-3


@pytest.mark.parametrize("defer", [1, 10], ids=["step_by_step", "deferred"])
def test_continuing_a_run_equals_one_run(defer: int) -> None:
    """Splitting a plastic run into two calls, passing on weights, traces and state, gives the same
    end point as one call over the whole stream (σ = 0, float64; also with deferred blocks of 10)."""
    model = _deferred(QUIET, defer)
    w, s, stream = _problem(batch=2, n_pat=4)
    w, s = ref.to_package_weights(w), ref.to_package_state(s)
    whole = simulate(model, w, s, stream, duration=SPP * DT)
    first = simulate(model, w, s, Stream(*(a[:2] for a in stream)), duration=SPP * DT)
    second = simulate(model, first.weights, first.state, Stream(*(a[2:] for a in stream)), duration=SPP * DT,
                      traces=first.traces)
    for x, y in zip(_leaves(whole.weights, whole.traces, whole.state),
                    _leaves(second.weights, second.traces, second.state), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)
    # dropping the traces at the break is visible, so passing them on matters
    restart = simulate(model, first.weights, first.state, Stream(*(a[2:] for a in stream)), duration=SPP * DT)
    assert np.max(np.abs(np.asarray(restart.weights.W[0]) - np.asarray(whole.weights.W[0]))) > 1e-6


def test_divergence_is_reported() -> None:
    """|u| beyond simulation.divergence_bound raises DivergenceError naming the quantity and layer,
    with the last good point."""
    model = Model(network=NetworkSpec(sizes=SIZES), simulation=Simulation(sigma=0.0, divergence_bound=0.5))
    w = ref.zeros_like(ref.random_weights(np.random.default_rng(0), SIZES))
    w["W"][0] = np.full((SIZES[1], SIZES[0]), 2.0)  # only layer 1 is driven: v_B,1 = 10 at x = 1
    s = ref.rest_state(SIZES, 1)
    stream = Stream.of(np.ones((1, 1, SIZES[0])))
    with pytest.raises(DivergenceError) as info:
        simulate(model, ref.to_package_weights(_f32(w)), ref.to_package_state(_f32(s)), _f32_stream(stream),
                 duration=20.0, record=Record(quantities=(), stride=10), chunk_steps=50)
    err = info.value
    assert (err.quantity, err.layer) == ("u", 1)
    assert 0 < err.time <= 20.0
    assert "u of layer 1" in str(err)
    _, _, s_good, n_good = err.last_good
    assert n_good < round(err.time / DT)
    assert np.max(np.abs(np.asarray(s_good.u[0]))) <= 0.5


def _f32_stream(stream: Stream) -> Stream:
    return Stream(np.asarray(stream.x, np.float32), np.asarray(stream.target, np.float32), stream.target_on)


# --------------------------------------------------------------------------------------------------
# Bad input: a clear InputError before any tracing


@pytest.fixture
def no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to run the compiled loop fail loudly."""

    def boom(*args, **kwargs):
        raise AssertionError("simulate reached the compiled loop: the input was not checked first")

    monkeypatch.setattr(simulate_module, "_chunk", boom)


def _good():
    w, s, stream = _problem()
    return w, s, stream


def _call(w: dict, s: dict, stream: Stream, **kw):
    kw.setdefault("duration", 1.0)
    return simulate(QUIET, ref.to_package_weights(w), ref.to_package_state(s), stream, **kw)


def test_good_input_reaches_the_loop(no_tracing: None) -> None:
    """The fixture works: valid input gets as far as the compiled loop."""
    with pytest.raises(AssertionError, match="compiled loop"):
        _call(*_good())


@pytest.mark.parametrize(
    ("name", "where"),
    [("W", 0), ("W", 1), ("b", 1), ("B", 0), ("PI", 0), ("IP", 0), ("c", 0)],
)
def test_wrong_weight_shape(no_tracing: None, name: str, where: int) -> None:
    w, s, stream = _good()
    w[name][where] = np.zeros(tuple(d + 1 for d in w[name][where].shape))
    with pytest.raises(InputError, match=rf"weights\.{name}\[{where}\]"):
        _call(w, s, stream)


def test_missing_weight_array(no_tracing: None) -> None:
    w, s, stream = _good()
    w["B"] = []
    with pytest.raises(InputError, match=r"weights\.B"):
        _call(w, s, stream)


@pytest.mark.parametrize(("field", "where"), [("u", 0), ("u", 1), ("u_inter", 0), ("r_in", None), ("u_trgt", None)])
def test_wrong_state_shape(no_tracing: None, field: str, where: int | None) -> None:
    w, s, stream = _good()
    if where is None:
        s[field] = np.zeros((s[field].shape[0], s[field].shape[1] + 1))
        pattern = rf"state\.{field}"
    else:
        s[field][where] = np.zeros((s[field][where].shape[0], s[field][where].shape[1] + 1))
        pattern = rf"state\.{field}\[{where}\]"
    with pytest.raises(InputError, match=pattern):
        _call(w, s, stream)


def test_state_batch_mismatch(no_tracing: None) -> None:
    w, s, stream = _good()
    s["u"][1] = np.zeros((s["u"][1].shape[0] + 1, s["u"][1].shape[1]))
    with pytest.raises(InputError, match=r"state\.u\[1\]"):
        _call(w, s, stream)


@pytest.mark.parametrize(
    ("field", "bad", "pattern"),
    [
        ("x", lambda a: a[..., :-1], r"stream\.x"),  # wrong input width
        ("x", lambda a: a[:, :1], r"stream\.x"),  # wrong batch
        ("x", lambda a: a[0], r"stream\.x"),  # missing pattern axis
        ("target", lambda a: a[..., :-1], r"stream\.target"),  # wrong target width while a target is on
        ("target_on", lambda a: a[:-1], r"stream\.target_on"),
    ],
)
def test_wrong_stream_shape(no_tracing: None, field: str, bad, pattern: str) -> None:
    w, s, stream = _good()
    stream = stream._replace(**{field: bad(getattr(stream, field))})
    with pytest.raises(InputError, match=pattern):
        _call(w, s, stream)


def test_non_finite_input(no_tracing: None) -> None:
    w, s, stream = _good()
    x = stream.x.copy()
    x[1, 0, 2] = np.nan
    with pytest.raises(InputError, match=r"stream\.x.*NaN"):
        _call(w, s, stream._replace(x=x))
    target = stream.target.copy()
    target[0, 1, 0] = np.inf
    with pytest.raises(InputError, match=r"stream\.target.*NaN or Inf"):
        _call(w, s, stream._replace(target=target))
    w["PI"][0][1, 1] = np.nan
    with pytest.raises(InputError, match=r"weights\.PI\[0\].*NaN"):
        _call(w, s, stream)


def test_non_finite_state(no_tracing: None) -> None:
    w, s, stream = _good()
    s["u"][0][0, 0] = np.nan
    with pytest.raises(InputError, match=r"state\.u\[0\]"):
        _call(w, s, stream)


def test_wrong_trace_shape(no_tracing: None) -> None:
    w, s, stream = _good()
    tr = ref.zeros_like(w)
    tr["W"][0] = np.zeros((1, w["W"][0].shape[1]))
    with pytest.raises(InputError, match=r"traces\.W\[0\]"):
        _call(w, s, stream, traces=ref.to_package_weights(tr))


def test_bad_duration_and_missing_key(no_tracing: None) -> None:
    w, s, stream = _good()
    with pytest.raises(InputError, match="duration"):
        _call(w, s, stream, duration=0.25)  # not a whole number of dt = 0.1 steps
    with pytest.raises(InputError, match="duration"):
        _call(w, s, stream, duration=-1.0)
    with pytest.raises(InputError, match="duration"):
        _call(w, s, stream, duration=float("nan"))
    noisy = Model(network=QUIET.network, simulation=Simulation(sigma=0.1))
    with pytest.raises(InputError, match="key"):
        simulate(noisy, ref.to_package_weights(w), ref.to_package_state(s), stream, duration=1.0)


def test_legal_looking_calls_that_would_give_nan_or_nothing_are_refused(no_tracing: None) -> None:
    """Issue 39.4: a zero batch, a recording stride longer than the run and a negative learning-rate scale
    are refused before tracing, naming the argument (they used to return NaN or empty records)."""
    w, s, stream = _good()
    empty = {k: ([a[:0] for a in v] if isinstance(v, list) else v[:0]) for k, v in s.items()}
    empty_stream = Stream.of(np.asarray(stream.x)[:, :0])
    with pytest.raises(InputError, match=r"state\.r_in: batch size 0"):
        _call(w, empty, empty_stream)
    steps = round(1.0 / QUIET.simulation.dt) * stream.x.shape[0]
    longer = rf"record\.stride = {steps + 1} steps is longer than the run \({steps} steps\)"
    with pytest.raises(InputError, match=longer):
        _call(w, s, stream, record=Record(quantities=("u",), stride=steps + 1))
    with pytest.raises(InputError, match=r"lr_scale = -0\.5: must be >= 0"):
        _call(w, s, stream, lr_scale=-0.5)
    with pytest.raises(AssertionError, match="compiled loop"):  # the limits themselves are legal
        _call(w, s, stream, record=Record(quantities=("u",), stride=steps), lr_scale=0.0)


@pytest.mark.parametrize("every", [1, 5])
def test_learning_lag_and_held_updates_match_reference(every: int) -> None:
    """plasticity.learning_lag freezes weights and traces for the first steps of each pattern, also when
    the updates are held over ``update_every`` steps (float64, τ_w = 0, against the reference)."""
    lag = 2.0
    model = Model(
        network=NetworkSpec(sizes=SIZES, transfer=Transfer(kind="logistic"), bias=True),
        plasticity=Plasticity(eta_W=0.05, eta_IP=0.05, eta_PI=0.05, eta_B=0.05, tau_w=0.0, learning_lag=lag,
                              update_every=every),
        simulation=Simulation(dt=DT, sigma=0.0, dtype="float64"),
    )
    w, s, stream = _problem(batch=2)
    sol = simulate(model, ref.to_package_weights(w), ref.to_package_state(s), stream, duration=SPP * DT)
    w_ref, _, _, _ = ref.run(ref.params_of(model), w, s, stream.x, stream.target, stream.target_on, SPP, SPP,
                                 lag_steps=round(lag / DT))
    w_no_lag, _, _, _ = ref.run(ref.params_of(model), w, s, stream.x, stream.target, stream.target_on, SPP, SPP)
    got = ref.from_package_weights(sol.weights)
    for name in ref.WEIGHT_NAMES:
        for a, b, c in zip(got[name], w_ref[name], w_no_lag[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
            assert np.max(np.abs(b - c)) > 1e-4, f"the lag makes no difference to {name}: a weak test"


def test_lr_scale_equals_scaled_rates() -> None:
    """lr_scale = 0.4 gives the weights of learning rates × 0.4 (float64), and 0 freezes every weight."""
    w, s, stream = _problem()
    scaled = Model(network=QUIET.network, simulation=QUIET.simulation,
                   plasticity=Plasticity(eta_W=0.02, eta_IP=0.02, eta_PI=0.02, eta_B=0.02, tau_w=5.0))
    kw = dict(duration=SPP * DT)
    a = simulate(QUIET, ref.to_package_weights(w), ref.to_package_state(s), stream, lr_scale=0.4, **kw)
    b = simulate(scaled, ref.to_package_weights(w), ref.to_package_state(s), stream, **kw)
    for x, y in zip(_leaves(a.weights, a.state), _leaves(b.weights, b.state), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13)
    frozen = simulate(QUIET, ref.to_package_weights(w), ref.to_package_state(s), stream, lr_scale=0.0, **kw)
    for x, y in zip(_leaves(frozen.weights), _leaves(ref.to_package_weights(w)), strict=True):
        np.testing.assert_array_equal(x, y)
    moved = max(float(np.max(np.abs(x - y))) for x, y in zip(_leaves(a.weights), _leaves(frozen.weights), strict=True))
    assert moved > 1e-3


def test_update_every_must_divide_the_pattern(no_tracing: None) -> None:
    model = Model(network=NetworkSpec(sizes=SIZES), plasticity=Plasticity(eta_W=0.1, tau_w=0.0, update_every=3),
                  simulation=Simulation(dt=DT, sigma=0.0))
    w, s, stream = _problem()
    with pytest.raises(InputError, match="update_every = 3 must divide the 100 steps"):
        simulate(model, ref.to_package_weights(_f32(w)), ref.to_package_state(_f32(s)), stream, duration=SPP * DT)
    with pytest.raises(InputError, match=r"multiple of plasticity\.update_every"):
        simulate(model, ref.to_package_weights(_f32(w)), ref.to_package_state(_f32(s)), stream, duration=30 * DT,
                 record=Record(quantities=("u",), stride=10))


# --------------------------------------------------------------------------------------------------
# plasticity.defer: the step-by-step updates computed in blocks (exact)


def _deferred(model: Model, k: int, **plasticity) -> Model:
    return dataclasses.replace(model, plasticity=dataclasses.replace(model.plasticity, defer=k, **plasticity))


ALL_QUANTITIES = ("u", "u_inter", "v_basal", "v_apical", "rates", "u_trgt", "weight_norms", "self_prediction")


@pytest.mark.parametrize("tau_w", [5.0, 0.0], ids=["trace", "no_trace"])
def test_deferred_equals_step_by_step_with_noise_and_records(tau_w: float) -> None:
    """σ > 0 (float64, the same noise): blocks of 5 steps give the step-by-step trajectory to 1e-10 —
    every recorded quantity at every snapshot (taken at block ends), final weights, traces and state —
    and are independent of the chunking (a chunk of 3 snapshots + 7 steps, or of one snapshot)."""
    model = dataclasses.replace(NOISY, simulation=dataclasses.replace(NOISY.simulation, dtype="float64"))
    model = _deferred(model, 1, tau_w=tau_w)
    w, s, stream = _problem()
    w, s = ref.to_package_weights(w), ref.to_package_state(s)
    kw = dict(duration=SPP * DT, key=jax.random.key(3), record=Record(quantities=ALL_QUANTITIES, stride=STRIDE))
    step = simulate(model, w, s, stream, **kw)
    runs = {c: simulate(_deferred(model, 5), w, s, stream, chunk_steps=c, **kw) for c in (20_000, 3 * STRIDE + 7, 1)}
    a = runs[20_000]
    for x, y in zip(_leaves(a.weights, a.traces, a.state), _leaves(step.weights, step.traces, step.state), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
    assert a.records.keys() == step.records.keys() and len(a.records) == 16
    for k in step.records:
        np.testing.assert_allclose(a.records[k], step.records[k], rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(a.times, step.times)
    for c in runs.values():  # chunking: bit-identical
        for x, y in zip(_leaves(a.weights, a.traces, a.state), _leaves(c.weights, c.traces, c.state), strict=True):
            np.testing.assert_array_equal(x, y)
        for k in a.records:
            np.testing.assert_array_equal(a.records[k], c.records[k])
    # the run learned, so the comparison is not of frozen weights
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(_leaves(a.weights), _leaves(w), strict=True)) > 1e-2


def test_deferred_lr_scale_and_lag_match_reference() -> None:
    """Deferred blocks of 4 with lr_scale = 0.4 and a learning lag of 1.5 ms (15 steps: the gate changes
    mid-block) give the reference's weights for learning rates × 0.4 (float64, τ_w on); lr_scale = 0
    freezes every weight and trace."""
    lag = 1.5
    model = _deferred(QUIET, 4, learning_lag=lag)
    w, s, stream = _problem(batch=2)
    kw = dict(duration=SPP * DT)
    sol = simulate(model, ref.to_package_weights(w), ref.to_package_state(s), stream, lr_scale=0.4, **kw)
    scaled = _deferred(model, 1, eta_W=0.02, eta_IP=0.02, eta_PI=0.02, eta_B=0.02)
    w_ref, tr_ref, s_ref, _ = ref.run(ref.params_of(scaled), w, s, stream.x, stream.target, stream.target_on, SPP,
                                      SPP, lag_steps=round(lag / DT))
    got_w, got_tr = ref.from_package_weights(sol.weights), ref.from_package_weights(sol.traces)
    for name in ref.WEIGHT_NAMES:
        for a, b, c in zip(got_w[name], w_ref[name], w[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
            assert np.max(np.abs(b - c)) > 1e-3, f"{name} barely moved: a weak test"
        for a, b in zip(got_tr[name], tr_ref[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"traces.{name}")
    np.testing.assert_allclose(np.asarray(sol.state.u[0]), s_ref["u"][0], rtol=1e-10, atol=1e-12)
    frozen = simulate(model, ref.to_package_weights(w), ref.to_package_state(s), stream, lr_scale=0.0, **kw)
    for x, y in zip(_leaves(frozen.weights, frozen.traces), _leaves(ref.to_package_weights(w),
                    ref.to_package_weights(ref.zeros_like(w))), strict=True):
        np.testing.assert_array_equal(x, y)


def test_deferred_divergence_is_reported() -> None:
    """The divergence check still names the array and hands back the last good point."""
    model = Model(network=NetworkSpec(sizes=SIZES), plasticity=Plasticity(eta_W=0.01, defer=5),
                  simulation=Simulation(sigma=0.0, divergence_bound=0.5))
    w = ref.zeros_like(ref.random_weights(np.random.default_rng(0), SIZES))
    w["W"][0] = np.full((SIZES[1], SIZES[0]), 2.0)
    stream = Stream.of(np.ones((1, 1, SIZES[0])))
    with pytest.raises(DivergenceError) as info:
        simulate(model, ref.to_package_weights(_f32(w)), ref.to_package_state(_f32(ref.rest_state(SIZES, 1))),
                 _f32_stream(stream), duration=20.0, record=Record(quantities=(), stride=10), chunk_steps=50)
    assert (info.value.quantity, info.value.layer) == ("u", 1)
    assert np.max(np.abs(np.asarray(info.value.last_good[2].u[0]))) <= 0.5


BIG = (500, 400, 10)  # W_1 alone has 200,000 weights: the smallest size at which "auto" defers


def _auto_k(sizes: tuple[int, ...] = BIG, batch: int = 1, spp: int = 1000, stride: int | None = None,
            plastic: bool = True, **plasticity) -> int:
    p = Plasticity(**{"eta_W": 0.01, "eta_IP": 0.01, "eta_PI": 0.01, "eta_B": 0.01, **plasticity})
    model = Model(network=NetworkSpec(sizes=sizes), plasticity=p)
    return simulate_module.resolve_defer(model, batch, spp, stride, plastic).plasticity.defer


def test_auto_defer_picks_blocks_only_where_they_pay() -> None:
    """defer = "auto" (the default) defers in blocks of the largest K in 50..10 dividing the steps per
    pattern and the record stride, for batch <= 2 and >= 200,000 plastic matrix weights; else 1."""
    assert Plasticity().defer == "auto"
    assert _auto_k() == 50
    assert _auto_k(sizes=(784, 500, 500, 10), batch=2) == 50
    assert _auto_k(spp=30) == 30 and _auto_k(spp=48) == 48 and _auto_k(spp=7) == 1 and _auto_k(spp=1) == 1
    assert _auto_k(stride=120) == 40  # gcd(1000, 120) = 40
    assert _auto_k(batch=3) == 1  # the low-rank terms grow with B²
    assert _auto_k(sizes=(30, 50, 10)) == 1  # dispatch-bound: blocks add kernels
    assert _auto_k(sizes=(490, 400, 10), eta_IP=0.0, eta_PI=0.0, eta_B=0.0) == 50  # W_1, W_2: 196,000 + 4,000
    assert _auto_k(sizes=(489, 400, 10), eta_IP=0.0, eta_PI=0.0, eta_B=0.0) == 1  # 195,600 + 4,000
    assert _auto_k(sizes=(500, 400, 10), eta_W=(0.0, 0.01), eta_B=0.0) == 1  # W_1 frozen: 12,000 plastic
    assert _auto_k(plastic=False) == 1
    assert _auto_k(update_every=4, tau_w=0.0) == 1
    assert _auto_k(defer=7) == 7  # an explicit K is kept


def test_auto_defer_runs_the_deferred_blocks() -> None:
    """With "auto" simulate runs the blocks it chose (bit-identical to defer = 50), and the result is
    the step-by-step trajectory (float64, τ_w on, 100 steps with a pattern switch at 50: 1e-10)."""
    model = Model(
        network=NetworkSpec(sizes=BIG, transfer=Transfer(kind="logistic")),
        plasticity=Plasticity(eta_W=0.05, eta_IP=0.05, eta_PI=0.05, eta_B=0.05, tau_w=2.0),
        simulation=Simulation(sigma=0.0, dtype="float64"),
    )
    rng = np.random.default_rng(0)
    w, s = ref.random_weights(rng, BIG, scale=0.05), ref.rest_state(BIG, 1)
    stream = Stream.of(rng.uniform(0, 1, (2, 1, BIG[0])), rng.uniform(-1, 1, (2, 1, BIG[-1])), np.ones(2, bool))
    run = lambda m: simulate(m, ref.to_package_weights(w), ref.to_package_state(s), stream, duration=50 * 0.1)  # noqa: E731
    auto, fifty, steps = run(model), run(_deferred(model, 50)), run(_deferred(model, 1))
    trees = [_leaves(r.weights, r.traces, r.state) for r in (auto, fifty, steps)]
    for x, y, z in zip(*trees, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, rtol=1e-10, atol=1e-12)
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(_leaves(auto.weights), _leaves(ref.to_package_weights(w)),
                                                          strict=True)) > 1e-6
    # the rounding of the two schemes differs, so bit-equality with defer = 50 shows which one ran
    assert any(np.any(x != z) for x, z in zip(_leaves(fifty.weights), _leaves(steps.weights), strict=True))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(defer=0), 'plasticity.defer: must be an integer >= 1 or "auto", got 0'),
        (dict(defer=2.0), 'plasticity.defer: must be an integer >= 1 or "auto", got 2.0'),
        (dict(defer=True), 'plasticity.defer: must be an integer >= 1 or "auto", got True'),
        (dict(defer="fast"), "plasticity.defer: must be an integer >= 1 or \"auto\", got 'fast'"),
        (dict(defer=4, update_every=2, tau_w=0.0), "plasticity.defer: = 4 cannot be combined with plasticity"
                                                   ".update_every = 2"),
    ],
)
def test_defer_config_is_checked(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        Plasticity(**kw)


def test_defer_must_divide_the_pattern_and_the_stride(no_tracing: None) -> None:
    model = _deferred(QUIET, 3)
    w, s, stream = _problem()
    args = (model, ref.to_package_weights(w), ref.to_package_state(s), stream)
    with pytest.raises(InputError, match=r"plasticity\.defer = 3 must divide the 100 steps of one pattern"):
        simulate(*args, duration=SPP * DT)
    with pytest.raises(InputError, match=r"record\.stride = 10 must be a multiple of plasticity\.defer = 3"):
        simulate(*args, duration=30 * DT, record=Record(quantities=("u",), stride=10))
    with pytest.raises(AssertionError, match="compiled loop"):  # without plasticity K does not apply
        simulate(*args, duration=SPP * DT, plastic=False)
