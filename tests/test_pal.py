"""PAL, learned backprojections by noise-driven alignment (docs/model.md §12)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from microcircuit.alignment import alignment_angles, feedback_targets, frobenius_angle
from microcircuit.config import (
    Conductances,
    Config,
    ConfigError,
    Init,
    Model,
    NetworkSpec,
    Pal,
    Plasticity,
    Record,
    Schedule,
    Simulation,
    Stimulus,
    Transfer,
    apply_overrides,
)
from microcircuit.dynamics import init_state, with_prospective
from microcircuit.ensemble import simulate_ensemble, stack, unstack
from microcircuit.errors import InputError
from microcircuit.network import init_weights
from microcircuit.simulate import Stream, simulate, step

SIZES = (4, 5, 3, 2)  # two hidden layers


def _model(prospective: bool, *, dtype: str = "float64", **pal: object) -> Model:
    return Model(
        network=NetworkSpec(sizes=SIZES, transfer=Transfer(kind="logistic")),
        conductances=Conductances(g_lk=0.03, g_B=0.1, g_A=0.06, g_D=0.1, g_som=0.06),
        plasticity=Plasticity(eta_W=(0.3, 0.2, 0.1), eta_IP=(0.2, 0.1), eta_PI=(0.5, 0.4), tau_w=0.5),
        simulation=Simulation(dt=0.01, tau_0=0.0, sigma=0.0, dtype=dtype, prospective=prospective),
        pal=Pal(**{"enabled": True, "sigma": 0.3, "tau_xi": 0.1, "tau_hp": 0.1, "eta_B": (40.0, 20.0),
                   "alpha": 0.01, **pal}),
    )


@pytest.mark.parametrize("prospective", [False, True])
def test_pal_steps_match_float64_oracle(prospective: bool) -> None:
    model = _model(prospective)
    pr = ref.params_of(model)
    q = ref.PalParams(sigma=0.3, tau_xi=0.1, tau_hp=0.1, eta_B=(40.0, 20.0), alpha=0.01)
    rng = np.random.default_rng(7)
    batch, N = 3, len(SIZES) - 1
    w = ref.random_weights(rng, SIZES)
    tr = {k: [rng.normal(0, 0.1, a.shape) for a in v] for k, v in ref.zeros_like(w).items()}
    s = ref.random_state(rng, SIZES, batch)
    if prospective:
        s["u_pro"] = [rng.uniform(-1, 1, u.shape) for u in s["u"]]
        s["u_inter_pro"] = [rng.uniform(-1, 1, u.shape) for u in s["u_inter"]]
    s["xi"] = [rng.normal(0, 0.2, (batch, SIZES[k + 1])) for k in range(N - 1)]
    s["r_hp"] = [rng.normal(0, 0.1, (batch, SIZES[k + 2])) for k in range(N - 1)]
    s["r_prev"] = [rng.uniform(0, 1, (batch, SIZES[k + 2])) for k in range(N - 1)]
    x = rng.uniform(0, 1, (batch, SIZES[0]))
    target = rng.uniform(-1, 1, (batch, SIZES[-1]))
    B0, tr0_B = [b.copy() for b in w["B"]], [b.copy() for b in tr["B"]]
    with jax.enable_x64(True):
        wj, trj, sj = ref.to_package_weights(w), ref.to_package_weights(tr), ref.to_package_state(s)
        for n in range(3):
            draws = [rng.normal(size=(batch, SIZES[k + 1])) for k in range(N - 1)]
            on = n > 0
            w, tr, s = ref.pal_step(pr, q, w, tr, s, x, target, on, draws)
            wj, trj, sj = step(model, wj, trj, sj, jnp.asarray(x), jnp.asarray(target), jnp.asarray(on), None,
                               pal_draws=jnp.concatenate(draws, axis=-1))
        got_w, got_tr, got_s = ref.from_package_weights(wj), ref.from_package_weights(trj), ref.from_package_state(sj)
    for name in ref.WEIGHT_NAMES:
        for a, b in zip(got_w[name], w[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
        for a, b in zip(got_tr[name], tr[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"trace {name}")
    for key in ("u", "u_inter", "xi", "r_hp", "r_prev") + (("u_pro", "u_inter_pro") if prospective else ()):
        for a, b in zip(got_s[key], s[key], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=key)
    # B moved by PAL (not frozen by accident), and its τ_w trace was neither used nor changed
    for k in range(N - 1):
        assert np.abs(got_w["B"][k] - B0[k]).max() > 1e-4
        assert np.array_equal(got_tr["B"][k], tr0_B[k])


def _stream(rng: np.random.Generator, P: int, batch: int, sizes: tuple[int, ...] = SIZES) -> Stream:
    return Stream.of(rng.uniform(0, 1, (P, batch, sizes[0])).astype(np.float32),
                     rng.uniform(-1, 1, (P, batch, sizes[-1])).astype(np.float32), rng.random(P) < 0.5)


@pytest.mark.parametrize("prospective", [False, True])
def test_silent_pal_leaves_the_dynamics_bit_identical(prospective: bool) -> None:
    on = _model(prospective, dtype="float32", sigma=0.0, eta_B=0.0)
    off = dataclasses.replace(on, pal=Pal())
    on = dataclasses.replace(on, simulation=dataclasses.replace(on.simulation, sigma=0.1))
    off = dataclasses.replace(off, simulation=on.simulation)
    w = init_weights(on.network, on.conductances, jax.random.key(1))
    stream = _stream(np.random.default_rng(1), 6, 2)
    kw = dict(duration=0.2, key=jax.random.key(3), record=Record(("u", "v_apical"), stride=5))
    a = simulate(on, w, init_state(on.network, 2, prospective=prospective), stream, **kw)
    b = simulate(off, w, init_state(on.network, 2, prospective=prospective), stream, **kw)
    for x, y in zip(jax.tree_util.tree_leaves((a.weights, a.traces)), jax.tree_util.tree_leaves((b.weights, b.traces)),
                    strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(a.state.u + a.state.u_inter, b.state.u + b.state.u_inter, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    for k in b.records:
        assert np.array_equal(a.records[k], b.records[k]), k
    assert a.state.xi and not b.state.xi
    assert all(np.all(np.asarray(x) == 0) for x in a.state.xi)


@pytest.mark.parametrize(("integrator", "dt", "tau"), [("euler", 0.05, 0.1), ("exponential", 0.05, 0.1)])
def test_ou_noise_has_the_derived_variance_and_correlation(integrator: str, dt: float, tau: float) -> None:
    """Euler: ξ' = (1 − dt/τ) ξ + σ√(dt/τ) N, so Var = σ²(dt/τ)/(1 − (1 − dt/τ)²) = σ²/(2 − dt/τ) and the
    lag-n correlation (1 − dt/τ)^n. Exact OU step: Var = σ²/2, correlation e^(−n dt/τ). (Not σ²τ/2.)"""
    sigma = 0.4
    model = Model(
        network=NetworkSpec(sizes=(2, 6, 2), transfer=Transfer(kind="logistic")),
        plasticity=Plasticity(tau_w=0.0),
        simulation=Simulation(dt=dt, tau_0=0.0, sigma=0.0, integrator=integrator, prospective=True),
        pal=Pal(enabled=True, sigma=sigma, tau_xi=tau, tau_hp=tau),
    )
    w = init_weights(model.network, model.conductances, jax.random.key(0))
    batch, steps = 64, 3000
    sol = simulate(model, w, init_state(model.network, batch), Stream.of(np.full((1, batch, 2), 0.5, np.float32)),
                   duration=steps * dt, key=jax.random.key(5), plastic=False, record=Record(("pal_noise",), stride=1))
    xi = sol.records["xi_1"][200:]  # (T, B, n), after the transient from ξ = 0
    a = 1 - dt / tau if integrator == "euler" else np.exp(-dt / tau)
    var = sigma**2 / (2 - dt / tau) if integrator == "euler" else sigma**2 / 2
    assert np.var(xi) == pytest.approx(var, rel=0.04)
    assert abs(np.mean(xi)) < 0.02 * sigma
    z = xi - xi.mean()
    for lag in (1, 2, 4):
        corr = np.mean(z[lag:] * z[:-lag]) / np.mean(z * z)
        assert corr == pytest.approx(a**lag, abs=0.02), lag


def _linear_model(sigma: float, eta_B: float, alpha: float = 1e-3, prospective: bool = True) -> Model:
    """3-6-4, near-linear logistic (small weights), self-predicting start, W frozen, only B and PI learn."""
    return Model(
        network=NetworkSpec(sizes=(3, 6, 4), transfer=Transfer(kind="logistic"),
                            init=Init(W=0.5, B=0.5, IP=0.5, PI=0.5, self_predicting=True)),
        conductances=Conductances(g_lk=0.03, g_B=0.1, g_A=0.06, g_D=0.1, g_som=0.06),
        plasticity=Plasticity(eta_PI=1.0, tau_w=0.0),
        simulation=Simulation(dt=0.01, tau_0=0.0, sigma=0.0, prospective=prospective),
        pal=Pal(enabled=True, sigma=sigma, tau_xi=0.1, tau_hp=0.1, eta_B=eta_B, alpha=alpha),
    )


def test_pal_turns_B_towards_W_transposed_and_sigma_zero_only_decays() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (400, 1, 3)).astype(np.float32)
    stream = Stream.of(x)
    model = _linear_model(sigma=0.2, eta_B=300.0)
    w0 = init_weights(model.network, model.conductances, jax.random.key(2))
    start = float(frobenius_angle(w0.W[1].T, w0.B[0]))
    sol = simulate(model, w0, init_state(model.network, 1), stream, duration=1.0, key=jax.random.key(1))
    end = float(frobenius_angle(sol.weights.W[1].T, sol.weights.B[0]))
    assert start > 90 and end < 40, (start, end)  # from beyond 90° to well below it
    # σ = 0: ξ stays 0, so B only decays: B(T) = B(0)·(1 − dt·η_B·α)^n, its direction unchanged
    quiet = _linear_model(sigma=0.0, eta_B=300.0, alpha=1e-5)
    sol0 = simulate(quiet, w0, init_state(model.network, 1), stream, duration=1.0)
    decay = (1 - 0.01 * 300 * 1e-5) ** (400 * 100)  # e^(−1.2)
    np.testing.assert_allclose(np.asarray(sol0.weights.B[0]), np.asarray(w0.B[0]) * decay, rtol=5e-3)
    assert float(frobenius_angle(sol0.weights.W[1].T, sol0.weights.B[0])) == pytest.approx(start, abs=1e-3)


def test_pal_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^pal\.eta_B"):
        Config(pal=Pal(eta_B=1.0))  # PAL off
    with pytest.raises(ConfigError, match=r"^plasticity\.eta_B"):
        Config(pal=Pal(enabled=True, eta_B=1.0), plasticity=Plasticity(eta_B=0.1))
    with pytest.raises(ConfigError, match=r"^plasticity\.defer"):
        Config(pal=Pal(enabled=True), plasticity=Plasticity(defer=10))
    with pytest.raises(ConfigError, match=r"^plasticity\.update_every"):
        Config(pal=Pal(enabled=True), plasticity=Plasticity(update_every=2, tau_w=0.0))
    with pytest.raises(ConfigError, match=r"^simulation\.dt.*pal\.tau_xi"):
        Config(pal=Pal(enabled=True, tau_xi=0.04), simulation=Simulation(dt=0.1))
    with pytest.raises(ConfigError, match=r"^pal\.eta_B"):
        Config(pal=Pal(enabled=True, eta_B=(1.0, 2.0)))  # one hidden layer
    with pytest.raises(ConfigError, match=r"^pal\.sigma"):
        apply_overrides(Config(), ["pal.sigma=-1"])
    with pytest.raises(ConfigError, match=r"^pal\.tau_hp"):
        apply_overrides(Config(), ["pal.tau_hp=0"])
    with pytest.raises(ConfigError, match=r"^pal\.enabled"):
        apply_overrides(Config(), ["pal.enabled=1"])
    with pytest.raises(ConfigError, match=r"pal\.alpa.*did you mean 'pal\.alpha'"):
        apply_overrides(Config(), ["pal.alpa=1"])
    with pytest.raises(ConfigError, match=r"^record\.quantities.*pal"):
        Config(record=Record(("pal_noise",)))
    ok = apply_overrides(Config(), ["pal.enabled=true", "pal.eta_B=2.0", "plasticity.defer=\"auto\""])
    assert ok.model.pal.eta_B == (2.0,)
    model = _linear_model(0.1, 1.0)
    w = init_weights(model.network, model.conductances, jax.random.key(0))
    with pytest.raises(InputError, match="key"):
        simulate(model, w, init_state(model.network, 1), Stream.of(np.zeros((1, 1, 3), np.float32)), duration=0.1)


def test_ensemble_members_match_separate_pal_runs() -> None:
    model = _linear_model(sigma=0.2, eta_B=100.0)
    rng = np.random.default_rng(3)
    streams = [_stream(rng, 4, 1, (3, 6, 4)) for _ in range(2)]
    ws = [init_weights(model.network, model.conductances, jax.random.key(i)) for i in range(2)]
    keys = jax.random.split(jax.random.key(9), 2)
    ens = simulate_ensemble(model, stack(ws), stack([init_state(model.network, 1, prospective=True)] * 2),
                            stack(streams), duration=0.5, keys=keys)
    for i in range(2):
        one = simulate(model, ws[i], init_state(model.network, 1), streams[i], duration=0.5, key=keys[i])
        got = unstack((ens.weights, ens.state), i)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves((one.weights, one.state)),
                        strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        assert not np.allclose(np.asarray(got[0].B[0]), np.asarray(ws[i].B[0]))


def test_a_run_split_in_two_resumes_bit_for_bit(tmp_path) -> None:
    from microcircuit.experiments.common import build, run_segments
    from microcircuit.runs import RunDir

    cfg = Config(
        network=NetworkSpec(sizes=(3, 6, 4), transfer=Transfer(kind="logistic"),
                            init=Init(W=0.5, B=0.5, IP=0.5, PI=0.5, self_predicting=True)),
        conductances=Conductances(g_lk=0.03, g_B=0.1, g_A=0.06, g_D=0.1, g_som=0.06),
        plasticity=Plasticity(eta_W=0.1, eta_PI=1.0, tau_w=0.0),
        simulation=Simulation(dt=0.01, tau_0=0.0, sigma=0.05, prospective=True),
        pal=Pal(enabled=True, sigma=0.2, eta_B=100.0, alpha=1e-3),
        stimulus=Stimulus(duration=0.5, n_patterns=8),
        record=Record(("alignment",), stride=25),
        schedule=Schedule(segment=4, checkpoint_every=1),
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 1, 3)).astype(np.float32)

    def make_stream(index: int, n: int) -> Stream:
        return Stream.of(x[index * 4: index * 4 + n])

    def go(path, n: int, resume: bool = False):
        model, w, s = build(cfg)
        return run_segments(cfg, RunDir.create(path, resume=resume), model, w, s, make_stream, lambda w: {},
                            n_patterns=n)

    whole, _, rec_whole = go(tmp_path / "a", 8)
    go(tmp_path / "b", 4)  # the first half; its checkpoint holds ξ, r̃ and the previous rates
    split, _, rec_split = go(tmp_path / "b", 8, resume=True)
    assert split.state.xi and split.state.r_hp and split.state.r_prev
    for a, b in zip(jax.tree_util.tree_leaves((whole.weights, whole.state)),
                    jax.tree_util.tree_leaves((split.weights, split.state)), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    for k in rec_whole:
        assert np.array_equal(rec_whole[k], rec_split[k]), k


def test_with_prospective_adds_and_drops_the_pal_state() -> None:
    model = _linear_model(0.1, 1.0)
    s = with_prospective(model, init_state(model.network, 2))
    assert [a.shape for a in s.xi] == [(2, 6)] and [a.shape for a in s.r_hp] == [(2, 4)]
    np.testing.assert_allclose(np.asarray(s.r_prev[0]), 0.5)  # φ(0) of the logistic
    plain = dataclasses.replace(model, pal=Pal())
    assert with_prospective(plain, s).xi == ()


# --------------------------------------------------------------------------------------------------
# Alignment metrics against NumPy


def test_alignment_angles_match_numpy() -> None:
    model = _model(False, dtype="float32")
    rng = np.random.default_rng(4)
    w = ref.to_package_weights(ref.random_weights(rng, SIZES))
    x = rng.uniform(0, 1, (7, SIZES[0]))
    got = {k: float(v) for k, v in alignment_angles(model, w, jnp.asarray(x)).items()}
    pr = ref.params_of(model)
    W = [np.asarray(a, np.float64) for a in w.W]
    B = [np.asarray(a, np.float64) for a in w.B]

    def angle(a: np.ndarray, b: np.ndarray) -> float:
        return np.degrees(np.arccos(np.trace(a.T @ b) / np.linalg.norm(a) / np.linalg.norm(b)))

    r, dphi = x, []
    for k in range(3):  # the feed-forward pass of docs/model.md §5, φ' at the basal prediction
        u = (ref.basal_output(pr) if k == 2 else ref.basal_hidden(pr)) * (r @ W[k].T)
        r = ref.phi(pr, u)
        dphi.append(r * (1 - r))
    for k in range(2):
        J = np.mean([np.diag(dphi[k][b]) @ W[k + 1].T @ np.diag(dphi[k + 1][b]) for b in range(7)], axis=0)
        assert got[f"angle_WT_B_{k + 1}"] == pytest.approx(angle(W[k + 1].T, B[k]), abs=1e-3)
        assert got[f"angle_B_J_{k + 1}"] == pytest.approx(angle(B[k], J), abs=1e-3)
    assert float(frobenius_angle(jnp.eye(3), 2 * jnp.eye(3))) == pytest.approx(0, abs=1e-2)
    assert float(frobenius_angle(jnp.eye(2), -jnp.eye(2))) == pytest.approx(180, abs=1e-2)
    assert np.isnan(float(frobenius_angle(jnp.zeros((2, 2)), jnp.eye(2))))
    assert len(feedback_targets(model, w, tuple(jnp.asarray(d) for d in dphi))) == 2
    with pytest.raises(ValueError, match="shapes"):
        frobenius_angle(jnp.eye(2), jnp.eye(3))


def test_alignment_is_recordable() -> None:
    model = _linear_model(0.2, 300.0)
    w = init_weights(model.network, model.conductances, jax.random.key(2))
    x = np.random.default_rng(0).uniform(0, 1, (20, 1, 3)).astype(np.float32)
    sol = simulate(model, w, init_state(model.network, 1), Stream.of(x), duration=1.0, key=jax.random.key(1),
                   record=Record(("alignment",), stride=100))
    a = sol.records["angle_WT_B_1"]
    assert a.shape == (20,) and np.all(np.isfinite(a)) and a[-1] < a[0]
    assert sol.records["angle_B_J_1"].shape == (20,)


# --------------------------------------------------------------------------------------------------
# The pal-alignment preset


def test_pal_alignment_quick_runs_and_pal_aligns_where_fa_does_not(tmp_path) -> None:
    from microcircuit.config import merge
    from microcircuit.experiments import pal_alignment
    from microcircuit.presets import get_preset
    from microcircuit.runs import RunDir

    quick = get_preset("pal-alignment", quick=True)
    assert quick.name == "pal-alignment-quick" and quick.pal.enabled
    # 60 ms on one hidden layer fewer: seconds, mostly compilation, instead of a minute
    cfg = merge(quick, {"training": {"epochs": 1}, "stimulus": {"n_patterns": 60},
                        "network": {"sizes": [5, 20, 10, 5]}})
    run = RunDir.create(tmp_path / "run")
    summary = pal_alignment.run(cfg, run)
    assert set(summary) >= {"final", "curves", "headline", "seeds", "simulated_ms", "diverged"}
    assert summary["simulated_ms"] == pytest.approx(60.0)
    for arm in pal_alignment.ARMS:
        assert summary["diverged"][arm] is None
        for name in ("angle_WT_B", "angle_B_J"):
            stats = summary["final"][arm][name]
            assert len(stats["mean"]) == len(stats["std"]) == 2 and len(stats["per_seed"]) == 2
            assert len(summary["curves"][arm][name]["mean"]) == len(summary["curves"][arm]["time_ms"]) == 2
    pal, fa = (np.asarray(summary["final"][a]["angle_WT_B"]["per_seed"]) for a in ("pal", "fa"))
    assert np.all(pal < fa - 5), (pal, fa)
    start = np.asarray(summary["curves"]["fa"]["angle_WT_B"]["mean"])
    np.testing.assert_allclose(start[-1], start[0], atol=1e-3)  # FA's B does not move
    assert (tmp_path / "run" / "pal_alignment.png").exists()
    again = pal_alignment.run(cfg, RunDir(tmp_path / "run", resume=True))  # every arm read back, none rerun
    assert again["final"] == json.loads(json.dumps(summary["final"]))
    with pytest.raises(ConfigError, match=r"^pal\.enabled"):
        pal_alignment.check(merge(cfg, {"pal": {"enabled": False, "eta_B": 0.0}}))


def test_bad_pal_state_is_an_input_error() -> None:
    model = _linear_model(0.1, 1.0)
    w = init_weights(model.network, model.conductances, jax.random.key(0))
    s = with_prospective(model, init_state(model.network, 1, prospective=True))
    stream = Stream.of(np.zeros((1, 1, 3), np.float32))
    with pytest.raises(InputError, match=r"state\.xi\[0\] \(layer 1\): expected shape \(1, 6\)"):
        simulate(model, w, s._replace(xi=(jnp.zeros((1, 5)),)), stream, duration=0.1, key=0)
    with pytest.raises(InputError, match=r"state\.r_hp\[0\] \(layer 1\) holds NaN"):
        simulate(model, w, s._replace(r_hp=(jnp.full((1, 4), jnp.nan),)), stream, duration=0.1, key=0)


def test_pal_teacher_quick_runs(tmp_path) -> None:
    from microcircuit.config import merge
    from microcircuit.experiments import pal_teacher
    from microcircuit.presets import get_preset
    from microcircuit.runs import RunDir

    cfg = merge(get_preset("pal-teacher-quick"), {"training": {"epochs": 2}, "stimulus": {"n_patterns": 20},
                                                   "schedule": {"segment": 1}})
    s0 = pal_teacher.student_weights(cfg, 0)
    assert float(s0.B[0][0, 0]) < 0 and all(float(a[0, 0]) < 0 for a in s0.W)  # B starts with the wrong sign
    summary = pal_teacher.run(cfg, RunDir.create(tmp_path / "run"))
    assert set(summary) >= {"final_error", "initial_error", "B_1_positive_fraction", "curves", "headline"}
    for arm in pal_teacher.ARMS:
        assert summary["diverged"][arm] is None and len(summary["curves"][arm]["time_ms"]) == 3
        assert np.isfinite(summary["final_error"][arm]["mean"])
    assert summary["curves"]["fa"]["B_1_mean"][-1] == summary["curves"]["fa"]["B_1_mean"][0]  # fixed B
    assert summary["curves"]["pal"]["B_1_mean"][-1] != summary["curves"]["pal"]["B_1_mean"][0]
    # the teacher: every bottom-up weight 2, its output the feed-forward potential of docs/model.md §5
    model = pal_teacher.arm_model(cfg, "pal")
    x = jnp.asarray([[0.5]])
    g = model.conductances
    u1 = g.basal_hidden * 2.0 * 0.5
    expected = g.basal_output * 2.0 / (1 + np.exp(-u1))
    assert float(pal_teacher.teacher_outputs(model, x)[0, 0]) == pytest.approx(expected, rel=1e-5)


def test_pal_yinyang_arms_differ_as_designed() -> None:
    from microcircuit.experiments import pal_yinyang
    from microcircuit.presets import get_preset

    cfg = get_preset("pal-yinyang-quick")
    fa, control, pal = (pal_yinyang.arm_model(cfg, a) for a in ("fa", "control", "pal"))
    assert not fa.pal.enabled and not any(fa.plasticity.eta_PI)  # FA: no noise, B and PI fixed
    assert control.pal.enabled and control.pal.sigma > 0 and not any(control.pal.eta_B)  # noise, no B rule
    assert pal.pal.enabled and all(pal.pal.eta_B) and all(pal.plasticity.eta_PI)
    assert all(m.simulation.prospective for m in (fa, control, pal))


def test_pal_yinyang_backprop_epoch_descends_the_loss() -> None:
    """One epoch of the ceiling's online gradient descent lowers ½‖u⁻_N − u_trgt‖² on the samples it saw."""
    from microcircuit.backprop import feedforward
    from microcircuit.data.yinyang import yinyang
    from microcircuit.ensemble import stack
    from microcircuit.experiments import pal_yinyang
    from microcircuit.network import init_weights
    from microcircuit.presets import get_preset

    cfg = get_preset("pal-yinyang-quick")
    model = pal_yinyang.arm_model(cfg, "backprop")
    x, y = yinyang(60, seed=1)
    t = pal_yinyang._targets(cfg, y)
    w = stack([init_weights(cfg.network, cfg.conductances, jax.random.key(s)) for s in (0, 1)])

    def loss(W, b):
        return [float(0.5 * np.sum((np.asarray(feedforward(model, tuple(a[m] for a in W), tuple(a[m] for a in b),
                                                            jnp.asarray(x))[-1]) - t) ** 2)) for m in (0, 1)]

    W, b = pal_yinyang._backprop_epoch(model, w.W, w.b, jnp.asarray(np.stack([x, x])), jnp.asarray(np.stack([t, t])),
                                       0.03)
    before, after = loss(w.W, w.b), loss(W, b)
    assert all(a < 0.9 * b0 for a, b0 in zip(after, before, strict=True)), (before, after)

    # one step against the gradient written out in float64 NumPy (no biases, logistic φ, docs/model.md §5)
    g = model.conductances
    W0, W1 = (np.asarray(a[0], np.float64) for a in w.W)
    xs, ts = x[0].astype(np.float64), t[0].astype(np.float64)
    u1 = g.basal_hidden * W0 @ xs
    r1 = 1 / (1 + np.exp(-u1))
    e = g.basal_output * W1 @ r1 - ts
    dW1 = g.basal_output * np.outer(e, r1)
    dW0 = g.basal_hidden * np.outer(g.basal_output * (W1.T @ e) * r1 * (1 - r1), xs)
    (W0_new, W1_new), _ = pal_yinyang._backprop_epoch(model, tuple(a[:1] for a in w.W), tuple(a[:1] for a in w.b),
                                                      jnp.asarray(x[None, :1]), jnp.asarray(t[None, :1]), 0.03)
    np.testing.assert_allclose(np.asarray(W0_new[0]), W0 - 0.03 * dW0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(W1_new[0]), W1 - 0.03 * dW1, rtol=1e-5, atol=1e-7)


def test_pal_in_the_mnist_runners_continuous_time(tmp_path) -> None:
    """training.method = "dynamics" with pal.enabled: B learns by PAL, and the checkpoint holds PAL's state."""
    from microcircuit.checkpoint import latest_checkpoint, load_checkpoint
    from microcircuit.config import apply_overrides
    from microcircuit.experiments import mnist
    from microcircuit.experiments.common import build
    from microcircuit.preflight import preflight
    from microcircuit.presets import get_preset
    from microcircuit.runs import RunDir

    cfg = apply_overrides(get_preset("mnist-dynamics-le-quick"), [
        "pal.enabled=true", "pal.eta_B=0.2", "pal.sigma=0.01", "pal.alpha=1e-6", "simulation.dt=0.1",
        "training.n_train=40", "training.n_validation=20", "training.epochs=1"])
    assert preflight(cfg, ["pal.enabled", "pal.eta_B", "pal.sigma", "pal.alpha"]) == []  # read, not refused
    run = RunDir.create(tmp_path / "run")
    run.write_config(cfg)
    summary = mnist.run(cfg, run)
    assert 0 <= summary["test_error"] <= 1
    ck = load_checkpoint(latest_checkpoint(run.checkpoint_dir))
    assert any(name.startswith("xi") for name in ck.trees["state"]), sorted(ck.trees["state"])
    w0 = build(cfg)[1]
    B_end = ck.trees["weights"]["B/0"]
    assert not np.allclose(B_end, np.asarray(w0.B[0]))  # rule (10) is off in this preset: PAL moved B


def test_update_angles_against_backprop() -> None:
    """Rule (7) at the nudged steady state points along backprop's update when B_k = W_{k+1}ᵀ (the closer, the
    weaker the nudge, docs/model.md §5), and not with a random B; the output layer's update always does."""
    import dataclasses

    from microcircuit.alignment import update_angles
    from microcircuit.network import init_weights, self_predicting
    from microcircuit.presets import get_preset

    cfg = get_preset("pal-yinyang")
    x = jax.random.uniform(jax.random.key(1), (50, 4))
    t = jax.random.uniform(jax.random.key(2), (50, 3))
    out = {}
    for g_som in (0.06, 0.01):
        model = dataclasses.replace(cfg.model, conductances=dataclasses.replace(cfg.conductances, g_som=g_som))
        w = init_weights(cfg.network, model.conductances, jax.random.key(0))
        transported = self_predicting(w._replace(B=(w.W[1].T,)), model.conductances)
        out[g_som] = {k: float(v) for k, v in update_angles(model, transported, x, t).items()}
        random_B = {k: float(v) for k, v in update_angles(model, w, x, t).items()}
        assert random_B["angle_update_1"] > 45 and random_B["angle_update_2"] < 2, random_B
        assert out[g_som]["angle_update_1"] < 2 and out[g_som]["angle_update_2"] < 2, out
    assert out[0.01]["angle_update_1"] < out[0.06]["angle_update_1"]


def test_pal_yinyang_runs_and_resumes_an_arm_from_its_checkpoint_bit_for_bit(tmp_path) -> None:
    """The quick experiment, every arm and metric; then an arm stopped after its first segment continues
    from checkpoints/ARM/ to the uninterrupted result, the noise, the τ_w traces and the orders included."""
    import json

    from microcircuit.checkpoint import list_checkpoints
    from microcircuit.config import merge
    from microcircuit.experiments import pal_yinyang
    from microcircuit.presets import get_preset
    from microcircuit.runs import RunDir

    cfg = merge(get_preset("pal-yinyang-quick"), {"training": {"epochs": 2, "n_train": 30, "n_validation": 30},
                                                  "stimulus": {"n_patterns": 30}, "schedule": {"segment": 1}})
    run = RunDir.create(tmp_path / "run")
    run.write_config(cfg)
    first = pal_yinyang.run(cfg, run)
    for arm in pal_yinyang.ARMS:
        assert first["diverged"][arm] is None and first["curves"][arm]["epoch"] == [0, 1, 2]
        assert 0 <= first["final"][arm]["test"]["mean"] <= 1
        assert set(first["update_angles"][arm]) == {"angle_update_1", "angle_update_2", "angle_WT_B_1", "angle_B_J_1"}
        assert len(first["curves"][arm]["angle_update_1"]) == 3
        assert 0 <= first["update_angles"][arm]["angle_update_2"]["mean"] < 10  # the output layer's: aligned
    assert set(first["verdicts"]) == {"pal_above_fa", "control_equals_fa", "pal_at_least_95"}
    assert (tmp_path / "run" / "pal_yinyang.png").is_file()
    for arm in pal_yinyang.ARMS:  # as if stopped during the second segment
        (tmp_path / "run" / f"pal_yinyang_{arm}.json").unlink()
        found = list_checkpoints(run.checkpoint_dir / arm)
        assert [n for n, _ in found] == [1, 2]
        found[-1][1].unlink()
    again = pal_yinyang.run(cfg, RunDir.create(tmp_path / "run", resume=True))
    for arm in pal_yinyang.ARMS:
        assert again["final"][arm] == first["final"][arm], arm
        assert again["curves"][arm] == first["curves"][arm], arm
    assert json.loads(json.dumps(again["update_angles"])) == json.loads(json.dumps(first["update_angles"]))
