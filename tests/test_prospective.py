"""Prospective dynamics, Latent Equilibrium (docs/model.md §8): against the float64 NumPy reference, no
relaxation lag, the same fixed points and weight increments as the original mode, config and checkpoints,
the ensemble runner, and the Bars experiment (docs/prospective.md)."""

from __future__ import annotations

import dataclasses
import signal

import jax
import numpy as np
import pytest

import reference as ref
from microcircuit.checkpoint import CheckpointError, load_latest, save_checkpoint
from microcircuit.config import (
    Conductances,
    Config,
    ConfigError,
    Init,
    Model,
    NetworkSpec,
    Plasticity,
    Record,
    Simulation,
    Transfer,
    apply_overrides,
)
from microcircuit.data.bars import bars
from microcircuit.dynamics import dendrites, init_state
from microcircuit.ensemble import simulate_ensemble, stack, unstack
from microcircuit.errors import RunInterrupted
from microcircuit.network import init_weights
from microcircuit.plasticity import increments
from microcircuit.presets import get_preset
from microcircuit.runs import RunDir, StopRequest
from microcircuit.simulate import Stream, resolve_defer, simulate


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(1e-12, float(np.max(np.abs(b)))))


# --------------------------------------------------------------------------------------------------
# 1. The prospective step against the float64 reference

# (integrator, dt, tau_w, update_every, defer, update_order)
SCHEMES = {
    "euler": ("euler", 0.1, 5.0, 1, 1, "sweep"),
    "exponential-dt1.25": ("exponential", 1.25, 5.0, 1, 1, "sweep"),
    "euler-update-every-5": ("euler", 0.1, 0.0, 5, 1, "sweep"),
    "euler-defer-auto": ("euler", 0.1, 5.0, 1, "auto", "sweep"),
    "euler-synchronous": ("euler", 0.1, 5.0, 1, 1, "synchronous"),
}


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_prospective_trajectory_matches_reference(scheme: str) -> None:
    """A 5-4-4-3 circuit in prospective mode, batch 3, biases, all four rules plastic, a target switched on
    and off, from a random state with random prospective potentials, float64: the potentials at every
    snapshot, ŭ, the final state, weights and traces match the reference step by step to 1e-10."""
    integrator, dt, tau_w, every, defer, order = SCHEMES[scheme]
    sizes = (5, 4, 4, 3)
    N = len(sizes) - 1
    model = Model(
        network=NetworkSpec(sizes=sizes, transfer=Transfer(kind="soft_rectifier", gamma=0.5, beta=1.5, theta=0.5),
                            bias=True),
        conductances=Conductances(g_som=2.0 if integrator == "exponential" else 0.8),
        plasticity=Plasticity(eta_W=0.05, eta_IP=0.04, eta_PI=0.03, eta_B=0.06, tau_w=tau_w, update_every=every,
                              defer=defer),
        simulation=Simulation(dt=dt, tau_0=3.0, sigma=0.0, dtype="float64", integrator=integrator, prospective=True,
                              update_order=order),
    )
    p = ref.params_of(model)
    assert p.prospective
    rng = np.random.default_rng(11)
    spp, stride = round(25.0 / dt), round(10.0 / dt)
    w0 = ref.random_weights(rng, sizes, scale=1.0, bias_scale=0.5)
    s0 = ref.random_state(rng, sizes, 3)
    s0["u_pro"] = [rng.uniform(-1, 1, u.shape) for u in s0["u"]]
    s0["u_inter_pro"] = [rng.uniform(-1, 1, u.shape) for u in s0["u_inter"]]
    x = rng.uniform(0.0, 1.0, (4, 3, sizes[0]))
    target = rng.uniform(-1.0, 1.0, (4, 3, sizes[-1]))
    on = np.array([False, True, True, False])

    w_ref, tr_ref, s_ref, snaps = ref.run(p, w0, s0, x, target, on, spp, stride)
    sol = simulate(model, ref.to_package_weights(w0), ref.to_package_state(s0), Stream(x, target, on),
                   duration=spp * dt, record=Record(quantities=("u", "u_inter", "u_prospective"), stride=stride))
    for name in ref.WEIGHT_NAMES:  # the comparison is not vacuous: every array learned
        for a, a0 in zip(w_ref[name], w0[name], strict=True):
            assert np.max(np.abs(a - a0)) > 1e-2, name
    for k in range(N):
        assert _rel_err(sol.records[f"u_{k + 1}"], np.stack([sn["u"][k] for sn in snaps])) < 1e-10
        assert _rel_err(sol.records[f"u_pro_{k + 1}"], np.stack([sn["u_pro"][k] for sn in snaps])) < 1e-10
    for k in range(N - 1):
        assert _rel_err(sol.records[f"u_inter_pro_{k + 1}"], np.stack([sn["u_inter_pro"][k] for sn in snaps])) < 1e-10
    s_jax = ref.from_package_state(sol.state)
    for key in ("u", "u_inter", "u_pro", "u_inter_pro"):
        for a, b in zip(s_jax[key], s_ref[key], strict=True):
            assert _rel_err(a, b) < 1e-10, key
    w_jax, tr_jax = ref.from_package_weights(sol.weights), ref.from_package_weights(sol.traces)
    for name in ref.WEIGHT_NAMES:
        for k in range(len(w_ref[name])):
            assert _rel_err(w_jax[name][k], w_ref[name][k]) < 1e-10, f"weights.{name}[{k}]"
            assert _rel_err(tr_jax[name][k], tr_ref[name][k]) < 1e-10, f"traces.{name}[{k}]"


def test_prospective_differs_from_original_and_float32_agrees() -> None:
    """The mode changes the trajectory (the comparison above is not of two identical programs), and the
    float32 run of the prospective mode follows the float64 one to float32 rounding."""
    sizes = (5, 4, 3)
    base = Model(network=NetworkSpec(sizes=sizes, bias=True, init=Init(bias=0.5)),
                 plasticity=Plasticity(eta_W=0.05, eta_IP=0.04, eta_PI=0.03, tau_w=5.0),
                 simulation=Simulation(sigma=0.0, dtype="float64", prospective=True))
    w = init_weights(base.network, base.conductances, jax.random.key(0))  # simulate casts to float64
    rng = np.random.default_rng(0)
    stream = Stream.of(rng.uniform(0, 1, (3, 2, 5)), rng.uniform(-1, 1, (3, 2, 3)))
    run = lambda m: simulate(m, w, init_state(m.network, 2), stream, duration=10.0)  # noqa: E731
    pro64 = run(base)
    pro32 = run(dataclasses.replace(base, simulation=dataclasses.replace(base.simulation, dtype="float32")))
    orig = run(dataclasses.replace(base, simulation=dataclasses.replace(base.simulation, prospective=False)))
    assert not orig.state.u_pro and pro64.state.u_pro
    change = lambda sol: np.asarray(sol.weights.W[0], np.float64) - np.asarray(w.W[0], np.float64)  # noqa: E731
    assert _rel_err(change(orig), change(pro64)) > 1e-2  # learning during the transients differs
    for a, b in zip(jax.tree_util.tree_leaves((pro32.weights, pro32.state)),
                    jax.tree_util.tree_leaves((pro64.weights, pro64.state)), strict=True):
        assert _rel_err(a, b) < 1e-4


# --------------------------------------------------------------------------------------------------
# 2. No relaxation lag; the same fixed points and increments


def _chain(prospective: bool, update_order: str = "sweep") -> tuple[Model, object]:
    """A self-predicting 6-5-5-4 chain (N = 3), logistic, no plasticity, σ = 0, no input filter."""
    model = Model(
        network=NetworkSpec(sizes=(6, 5, 5, 4), transfer=Transfer(kind="logistic"),
                            init=Init(W=2.0, B=1.0, self_predicting=True)),
        simulation=Simulation(dt=0.1, tau_0=0.0, sigma=0.0, dtype="float64", prospective=prospective,
                              update_order=update_order),
    )
    return model, init_weights(model.network, model.conductances, jax.random.key(3))  # cast by simulate


def test_step_response_has_no_relaxation_lag() -> None:
    """After a step in the input, a 3-layer chain in prospective mode sends its new output ŭ_N at the
    next step, while the original mode's u_N is still more than half the way off after 3·τ_eff and more
    than 10 % off after 6·τ_eff (τ_eff = 1/g_tot ≈ 0.53 ms for a hidden layer here)."""
    rng = np.random.default_rng(5)
    x0, x1 = rng.uniform(0, 1, (2, 1, 1, 6))
    out = {}
    for prospective in (False, True):
        model, w = _chain(prospective)
        settle = simulate(model, w, init_state(model.network, 1), Stream.of(x0), duration=60.0,
                          plastic=False)
        final = simulate(model, w, settle.state, Stream.of(x1), duration=60.0, plastic=False).state
        q = "u_prospective" if prospective else "u"
        key = "u_pro_3" if prospective else "u_3"
        sol = simulate(model, w, settle.state, Stream.of(x1), duration=5.0, plastic=False,
                       record=Record(quantities=(q,), stride=1))
        start, end = np.asarray(settle.state.u[-1])[0], np.asarray(final.u[-1])[0]
        trace = sol.records[key][:, 0]
        out[prospective] = np.max(np.abs(trace - end), axis=1) / np.max(np.abs(end - start))
    assert np.max(np.abs(end - start)) > 0.05  # a real step
    tau = 1.0 / (0.1 + 1.0 + 0.8)  # hidden g_tot; the output's g_lk + g_B is slower still
    lagfree, lagging = out[True], out[False]
    # the input filter state r_0 takes the new x after one step; the bottom-up sweep carries it to ŭ_N in
    # the next (index 1 = after 2 steps, 0.2 ms), and with exact self-prediction no apical echo follows
    assert lagfree[0] > 0.99
    assert lagfree[1] < 1e-6 and lagfree[2:].max() < 1e-12
    assert lagging[3] > 0.99 and lagging[8] > 0.8  # the original relaxes over ~τ per layer
    assert lagging[round(3 * tau / 0.1)] > 0.5 and lagging[round(6 * tau / 0.1)] > 0.1


def test_synchronous_order_delays_each_layer_by_one_step() -> None:
    """simulation.update_order = "synchronous": a step in the input reaches ŭ_k of layer k one step later
    per layer (k + 1 steps after the switch, the first for the input filter), where the sweep takes 2."""
    rng = np.random.default_rng(5)
    x0, x1 = rng.uniform(0, 1, (2, 1, 1, 6))
    model, w = _chain(True, "synchronous")
    settle = simulate(model, w, init_state(model.network, 1), Stream.of(x0), duration=60.0, plastic=False)
    final = simulate(model, w, settle.state, Stream.of(x1), duration=60.0, plastic=False).state
    sol = simulate(model, w, settle.state, Stream.of(x1), duration=1.0, plastic=False,
                   record=Record(quantities=("u_prospective",), stride=1))
    for k in (1, 2, 3):
        start, end = np.asarray(settle.state.u_pro[k - 1])[0], np.asarray(final.u_pro[k - 1])[0]
        off = np.max(np.abs(sol.records[f"u_pro_{k}"][:, 0] - end), axis=1) / np.max(np.abs(end - start))
        assert off[k - 1] > 0.99, (k, off[:5])  # index i = after i + 1 steps: not there yet
        assert off[k] < 1e-6, (k, off[:5])  # there one step later per layer
    with pytest.raises(ConfigError, match="update_order"):
        Simulation(update_order="backwards")


def test_same_fixed_point_and_increments_at_equilibrium() -> None:
    """With a target on and the weights frozen, both modes settle to the same potentials (ŭ = u there),
    and at that fixed point rules (7)–(10) give the same increments in both modes (float64)."""
    states = {}
    models = {}
    for prospective in (False, True):
        model, w = _chain(prospective)
        model = dataclasses.replace(model, plasticity=Plasticity(eta_W=0.1, eta_IP=0.1, eta_PI=0.1, eta_B=0.1))
        rng = np.random.default_rng(9)
        stream = Stream.of(rng.uniform(0, 1, (1, 2, 6)), rng.uniform(-1, 1, (1, 2, 4)))
        s = simulate(model, w, init_state(model.network, 2), stream, duration=200.0, plastic=False).state
        states[prospective], models[prospective] = s, model
    for a, b in zip(states[False].u + states[False].u_inter, states[True].u + states[True].u_inter, strict=True):
        assert _rel_err(a, b) < 1e-9
    for a, b in zip(states[True].u_pro + states[True].u_inter_pro, states[True].u + states[True].u_inter,
                    strict=True):
        assert _rel_err(a, b) < 1e-9  # ŭ = u at the fixed point
    on = np.asarray(True)
    deltas = {}
    with jax.enable_x64(True):
        for prospective in (False, True):
            model, s = models[prospective], states[prospective]
            w = jax.tree_util.tree_map(lambda a: jax.numpy.asarray(a, "float64"), _chain(prospective)[1])
            deltas[prospective] = increments(model, w, s, dendrites(model, w, s, on))
    for a, b in zip(jax.tree_util.tree_leaves(deltas[False]), jax.tree_util.tree_leaves(deltas[True]), strict=True):
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) < 1e-9 * max(1.0, float(np.max(np.abs(b))))
    assert max(float(np.max(np.abs(np.asarray(a)))) for a in deltas[True].W) > 1e-3  # the target drives learning


# --------------------------------------------------------------------------------------------------
# 3. Config, checkpoints, ensemble


def test_config_validation() -> None:
    cfg = apply_overrides(Config(), ["simulation.prospective=true"])
    assert cfg.simulation.prospective is True
    with pytest.raises(ConfigError, match=r"simulation\.prospective"):
        apply_overrides(Config(), ["simulation.prospective=1"])
    with pytest.raises(ConfigError, match=r"simulation\.prospective"):
        Simulation(prospective="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="u_prospective"):
        Config(record=Record(quantities=("u_prospective",)))
    with pytest.raises(ConfigError, match=r"plasticity\.defer.*simulation\.prospective"):
        Model(plasticity=Plasticity(defer=10), simulation=Simulation(prospective=True))
    big = Model(network=NetworkSpec(sizes=(784, 500, 500, 10)), plasticity=Plasticity(eta_W=0.1),
                simulation=Simulation(prospective=True))
    assert resolve_defer(big, 1, 1000).plasticity.defer == 1
    assert resolve_defer(dataclasses.replace(big, simulation=Simulation()), 1, 1000).plasticity.defer == 50


def test_checkpoints_of_the_two_modes_are_incompatible(tmp_path) -> None:
    """A checkpoint of the prospective mode holds ŭ and is refused by a run in the original mode."""
    cfg = apply_overrides(Config(), ["simulation.prospective=true"])
    w = init_weights(cfg.network, cfg.conductances, jax.random.key(0))
    s = init_state(cfg.network, 1, prospective=True)
    assert len(jax.tree_util.tree_leaves(s)) == len(jax.tree_util.tree_leaves(init_state(cfg.network, 1))) + 3
    save_checkpoint(tmp_path / "ckpt-000001.npz", cfg, {"weights": w, "state": s})
    assert load_latest(tmp_path, cfg, like={"weights": w, "state": s}) is not None
    with pytest.raises(CheckpointError):
        load_latest(tmp_path, Config(), like={"weights": w, "state": init_state(cfg.network, 1)})


def test_ensemble_matches_separate_simulations() -> None:
    """Prospective members in one vmapped loop end where ``simulate`` ends for each (plastic, noisy)."""
    model = Model(network=NetworkSpec(sizes=(6, 5, 3)),
                  plasticity=Plasticity(eta_W=(0.01, 0.005), eta_IP=0.01, eta_PI=0.05),
                  simulation=Simulation(sigma=0.3, prospective=True))
    rng = np.random.default_rng(0)
    ws = [init_weights(model.network, model.conductances, jax.random.key(i)) for i in range(2)]
    x, t = rng.uniform(-1, 1, (2, 3, 2, 6)).astype(np.float32), rng.uniform(-1, 1, (2, 3, 2, 3)).astype(np.float32)
    on = np.tile(np.arange(3) % 2 == 1, (2, 1))
    keys = jax.random.split(jax.random.key(5), 2)
    sol = simulate_ensemble(model, stack(ws), stack([init_state(model.network, 2)] * 2), Stream(x, t, on),
                            duration=5.0, keys=keys, chunk_steps=70)
    for i in range(2):
        one = simulate(model, ws[i], init_state(model.network, 2), Stream(x[i], t[i], on[i]), duration=5.0,
                       key=keys[i])
        for a, b in zip(jax.tree_util.tree_leaves(unstack(sol, i)),
                        jax.tree_util.tree_leaves((one.weights, one.traces, one.state)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# 4. The Bars experiment


def test_bars_data_set() -> None:
    """8 patterns of 3 × 3 pixels, one bar of three 1s each: 3 horizontal, 3 vertical, 2 diagonal, all distinct."""
    x, y = bars()
    assert x.shape == (8, 9) and y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert np.all(x.sum(1) == 3) and len({tuple(r) for r in x}) == 8
    imgs = x.reshape(8, 3, 3)
    assert all(np.any(np.all(im == 1, axis=1)) for im in imgs[:3])  # a full row
    assert all(np.any(np.all(im == 1, axis=0)) for im in imgs[3:6])  # a full column
    assert np.array_equal(imgs[6], np.eye(3)) and np.array_equal(imgs[7], np.eye(3)[::-1])
    xn, _ = bars(noise=0.01, seed=1)
    assert np.all((xn >= x) & (xn <= x + 0.01)) and not np.array_equal(xn, x)


def test_le_bars_quick_prospective_learns_where_original_lags(tmp_path) -> None:
    """The quick preset (2 seeds, 100 epochs, T = 0.5 and 10 ms): the prospective circuit learns the task
    at T = 0.5 ms, below τ_eff ≈ 5 ms, better than the original one; results are written per (T, mode) and
    a resumed run reuses them."""
    from microcircuit.experiments import le_bars

    cfg = get_preset("le-bars-quick")
    run = RunDir.create(tmp_path / "run")
    summary = le_bars.run(cfg, run)
    acc = summary["accuracy"]
    assert acc["prospective"]["0.5"]["mean"] > acc["original"]["0.5"]["mean"] + 0.2
    assert acc["prospective"]["10"]["mean"] > 0.6
    assert (tmp_path / "run" / "le_bars.png").exists()
    assert len(list((tmp_path / "run").glob("le_bars_T*.json"))) == 4
    again = le_bars.run(cfg, RunDir(tmp_path / "run", resume=True))
    assert again["accuracy"] == summary["accuracy"]
    stop = StopRequest()
    stop.signum = signal.SIGINT  # as graceful_stop's handler sets it
    with pytest.raises(RunInterrupted, match="--resume"):
        le_bars._train(cfg, "original", 0.5, lambda text: None, stop)
