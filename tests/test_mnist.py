"""The MNIST trainer (steady-state mode, docs/model.md §6-§7): it learns, baselines run, resume is exact."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microcircuit.config import ConfigError, apply_overrides
from microcircuit.errors import RunInterrupted
from microcircuit.experiments import mnist as mnist_exp
from microcircuit.experiments.common import build
from microcircuit.presets import DYN_GAIN, get_preset
from microcircuit.runs import RunDir
from microcircuit.steady_state import settle, train_step

TINY = ["network.sizes=[784,30,20,10]", "training.n_train=300", "training.n_validation=100",
        "training.epochs=3", "schedule.keep_checkpoints=5"]


def _npz(path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, the file closed (an open one is a ResourceWarning when collected)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_quick_preset_learns_the_embedded_subset(tmp_path):
    """`microcircuit run mnist --quick`: well above chance on the subset's 1,000 test images."""
    cfg = get_preset("mnist", quick=True)
    summary = mnist_exp.run(cfg, RunDir.create(tmp_path / "run"))
    assert summary["test_error"] < 0.15, summary["headline"]
    assert (tmp_path / "run" / "learning_curve.png").is_file()
    rows = RunDir(tmp_path / "run").metrics()
    assert [r["epoch"] for r in rows] == list(range(1, cfg.training.epochs + 1))
    # the interneurons follow W_2, W_3 (§4): 0.07 % and 0.4 % off after 40 epochs; with IP_1 frozen 5-9 %
    assert all(max(r["ip_distance"]) < 0.02 and r["pi_distance"] == [0.0, 0.0] for r in rows), rows[-1]
    # docs/results.md quotes this run: its row must be what the run gives (so it cannot go stale)
    best = min(rows, key=lambda r: r["validation_error"])
    row = (f"| `mnist --quick` (subset, seed 0) | | {100 * summary['test_error']:.2f} % | "
           f"{100 * best['validation_error']:.2f} % ({best['epoch']} / {cfg.training.epochs}) |")
    assert row in (Path(__file__).parents[1] / "docs" / "results.md").read_text(), row


def test_dynamics_learn_the_embedded_subset():
    """`microcircuit run mnist-dynamics --quick`, 2 epochs: the continuous-time dynamics learn (errors read
    from the dynamics too)."""
    cfg = apply_overrides(get_preset("mnist-dynamics", quick=True), ["training.epochs=2"])
    summary = mnist_exp.run(cfg, None)
    # chance: 0.9; validation 0.425, 0.21 after epochs 1-2 (session 9 preset; session 6: 0.345, 0.13)
    assert summary["test_error"] < 0.35, summary["headline"]


def test_dynamics_preset_keeps_the_steady_change_per_mini_batch():
    """`mnist-dynamics` has B = 1 where `mnist` has 3, and rates from `rescale_top_down` times DYN_GAIN: to
    first order in the error, one mini-batch changes every W_k and IP_k DYN_GAIN times as much as the
    steady-state preset does over its 100 ms (§6, float64, a target 1e-4 from the free output so that the
    change is linear)."""
    steady_cfg = get_preset("mnist", quick=True)
    dyn_cfg = get_preset("mnist-dynamics", quick=True)
    assert dyn_cfg.network.init.B == 1.0 and steady_cfg.network.init.B == 3.0
    with jax.enable_x64(True):
        (ms, ws, _), (md, wd, _) = (build(apply_overrides(c, ["simulation.dtype=float64"]))
                                    for c in (steady_cfg, dyn_cfg))
        np.testing.assert_allclose(wd.B[0], ws.B[0] / 3, rtol=1e-6)  # same draw, a third of the scale
        x = jax.random.uniform(jax.random.key(0), (10, 784), jnp.float64)
        free = settle(ms, ws, x).u[-1]
        u_trgt = free + 1e-4 * jax.random.normal(jax.random.key(1), free.shape, jnp.float64)
        window = dyn_cfg.stimulus.duration - dyn_cfg.plasticity.learning_lag
        d_steady = train_step(ms, ws, x, u_trgt, duration=100.0)
        d_dyn = train_step(md, wd, x, u_trgt, duration=window)
    for name, k in [("W", 0), ("W", 1), ("W", 2), ("IP", 0), ("IP", 1)]:  # IP_k keeps tracking W_{k+1}
        a = np.asarray(getattr(d_dyn, name)[k] - getattr(wd, name)[k])
        b = DYN_GAIN * np.asarray(getattr(d_steady, name)[k] - getattr(ws, name)[k])
        assert np.linalg.norm(a - b) < 0.02 * np.linalg.norm(b), (name, k)


@pytest.mark.parametrize("preset", ["mnist-backprop", "mnist-shallow", "mnist-frozen-w2", "mnist-learned-feedback"])
def test_baselines_run_and_beat_chance(tmp_path, preset):
    cfg = apply_overrides(get_preset(preset, quick=True), ["training.epochs=2", "training.n_train=1800"])
    summary = mnist_exp.run(cfg, None)
    assert summary["validation_error"] < 0.8, (preset, summary["validation_error"])  # chance: 0.9


@pytest.mark.parametrize("arm", [["training.method=feedback_alignment", "training.lr=0.2"],
                                 ["training.method=direct_feedback_alignment", "training.lr=0.2"],
                                 ["training.feedback=transported", "training.lr=0.05"],
                                 ["training.method=microcircuit", "training.lr=0.02"]])
def test_scaling_arms_learn_and_report_per_layer_diagnostics(tmp_path, arm):
    """Every arm of the depth study runs with the one-rate rule at its rate of examples/scaling.toml (2 hidden
    layers; the feed-forward arms and the transported circuit learn the subset above chance in 2 epochs, the
    random-B circuit at its capped rate is slower), logs the per-layer angle and norm ratio each epoch (the
    circuits also the apical residue and the self-prediction distances) and puts the best epoch's in the
    summary; a circuit is run as a circuit after training (training.settle_images)."""
    sets = ["network.sizes=[784,100,60,10]", "training.n_validation=200", "training.epochs=2",
            "training.probe=50", *arm]
    circuit = "microcircuit" in arm[0] or "feedback=" in arm[0]
    if circuit:
        sets.append("training.settle_images=30")
    cfg = apply_overrides(get_preset("scaling", quick=True), sets)
    summary = mnist_exp.run(cfg, RunDir.create(tmp_path / "run"))
    if arm[0] != "training.method=microcircuit":
        assert summary["validation_error"] < 0.8, summary["validation_error"]  # chance: 0.9
    rows = [r for r in RunDir(tmp_path / "run").metrics() if "epoch" in r and "event" not in r]
    assert len(rows) == 2
    for r in rows:
        assert len(r["angle"]) == len(r["norm_ratio"]) == 3
        assert all(0 <= a <= 180 for a in r["angle"]) and all(n > 0 for n in r["norm_ratio"])
        assert ("apical_residue" in r) == circuit and ("ip_distance" in r) == circuit
    best = rows[summary["best_epoch"] - 1]
    assert summary["angle_best"] == best["angle"] and summary["train_error"] == best["train_error_10k"]
    if circuit:
        assert len(summary["apical_residue_best"]) == 2
        assert 0.0 <= summary["settle_fraction"] <= 1.0 and summary["settle_swing_max"] >= 0.0
        assert summary["feedback"] == ("transported" if "transported" in arm[0] else "random")
    else:
        assert "settle_fraction" not in summary and summary["feedback"] is None


def test_settings_an_arm_does_not_read_are_refused(tmp_path):
    """The settle check is the circuit's, the per-layer rates are derived from training.lr: setting what the
    method does not read is one line and exit 2 (docs/runs.md)."""
    from click.testing import CliRunner

    from microcircuit.cli import main

    for sets, key in ((["training.method=backprop", "training.settle_images=10"], "training.settle_images"),
                      (["plasticity.eta_W=0.1"], "plasticity.eta_W"),
                      (["training.feedback=transported", "network.init.B=2.0"], "network.init.B"),
                      (["training.method=backprop", "training.feedback=transported"], "training.feedback")):
        args = ["run", "scaling", "--quick", "--out", str(tmp_path / "r"), "--no-progress"]
        r = CliRunner().invoke(main, [*args, *(x for s in sets for x in ("--set", s))])
        assert r.exit_code == 2, (sets, r.output)
        assert key in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("preset", ["mnist", "mnist-dynamics"])
def test_float64_runs_in_float64(tmp_path, preset):
    """simulation.dtype = float64 trains in float64 throughout (data, weights, saved best weights), with
    no truncation warning (warnings are errors here)."""
    cfg = apply_overrides(get_preset(preset, quick=True), [*TINY, "training.epochs=1", "training.n_train=100",
                                                            "simulation.dtype=float64"])
    mnist_exp.run(cfg, RunDir.create(tmp_path / "run"))
    saved = _npz(tmp_path / "run" / "weights_best.npz")
    assert {a.dtype for a in saved.values()} == {np.dtype("float64")}


def test_frozen_matrices_do_not_move():
    cfg = apply_overrides(get_preset("mnist-frozen-w2", quick=True), ["network.sizes=[784,30,20,10]"])
    model, w, _ = build(cfg)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (10, 784)), jnp.float32)
    t = jnp.asarray(np.random.default_rng(1).uniform(-2, 1, (10, 10)), jnp.float32)
    w2 = train_step(model, w, x, t, 1.0, duration=100.0)
    rates = model.plasticity
    for name, etas in (("W", rates.eta_W), ("IP", rates.eta_IP), ("PI", rates.eta_PI), ("B", rates.eta_B)):
        for i, eta in enumerate(etas):
            moved = not np.array_equal(getattr(w2, name)[i], getattr(w, name)[i])
            assert moved == (eta > 0), f"{name}[{i}] with eta {eta}: moved={moved}"
    assert rates.eta_W[1] == 0 and rates.eta_W[0] > 0  # the preset freezes W_2 and trains W_1


SPIKING = ["spiking.enabled=true", "spiking.n=10", "spiking.tau_syn=1.0", "simulation.E_exc=8.0",
           "simulation.E_inh=-8.0"]


@pytest.mark.parametrize(("preset", "extra"), [("mnist", []), ("mnist-dynamics", []), ("mnist-dynamics-le", SPIKING)],
                         ids=["mnist", "mnist-dynamics", "spiking"])
def test_interrupted_run_resumes_bit_for_bit(tmp_path, monkeypatch, preset, extra):
    """SIGINT in epoch 2, then resume: the same curve, test error and best weights, bit for bit (the
    dynamics also carry potentials from epoch to epoch: they are checkpointed too; the spiking circuit its
    synaptic traces, and its spikes come from keys that do not depend on where the run was cut)."""
    cfg = apply_overrides(get_preset(preset, quick=True), [*TINY, *extra])
    reference = mnist_exp.run(cfg, RunDir.create(tmp_path / "ref"))

    calls = {"n": 0}
    name = "_train_chunk"
    real = getattr(mnist_exp, name)

    def interrupting(*args, **kwargs):  # SIGINT to ourselves in the middle of epoch 2
        calls["n"] += 1
        if calls["n"] == 35:  # 30 mini-batches per epoch: this is epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(mnist_exp, name, interrupting)
    monkeypatch.setattr(mnist_exp, "_CHUNK", 1)  # one mini-batch per compiled call, so the stop lands mid-epoch
    run_dir = RunDir.create(tmp_path / "run")
    with pytest.raises(RunInterrupted) as info:
        mnist_exp.run(cfg, run_dir)
    assert info.value.exit_code == 130
    assert info.value.checkpoint is not None and info.value.checkpoint.name.startswith("ckpt-")
    monkeypatch.setattr(mnist_exp, name, real)
    resumed = mnist_exp.run(cfg, RunDir.create(tmp_path / "run", resume=True))
    assert resumed["validation_curve"] == reference["validation_curve"]
    assert resumed["test_error"] == reference["test_error"]
    a = _npz(tmp_path / "ref" / "weights_best.npz")
    b = _npz(tmp_path / "run" / "weights_best.npz")
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    epochs = [r["epoch"] for r in RunDir(tmp_path / "run").metrics() if "event" not in r]
    assert epochs == [1, 2, 3]  # no duplicated rows


def test_backprop_direction_matches_autodiff_of_the_paper_loss():
    """backprop_updates is −∂/∂W of ½‖e‖² with e_N = D_N (u_trgt − u_N) held fixed (docs/model.md §5)."""
    from microcircuit.backprop import backprop_updates, feedforward

    cfg = apply_overrides(get_preset("mnist", quick=True), ["network.sizes=[12,7,5,4]", "network.init.W=0.5"])
    model, w, _ = build(cfg)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (3, 12)), jnp.float32)
    t = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (3, 4)), jnp.float32)
    dW, _ = backprop_updates(model, w, x, t)
    u_N = feedforward(model, w.W, w.b, x)[-1]
    from microcircuit.transfer import dphi

    e = jax.lax.stop_gradient(dphi(model.network.transfer, u_N) * (t - u_N))
    grads = jax.grad(lambda W: -jnp.sum(e * feedforward(model, W, w.b, x)[-1]) / 3)(w.W)
    for a, g in zip(dW, grads, strict=True):
        np.testing.assert_allclose(a, -g, rtol=1e-5, atol=1e-7)


def test_resume_may_stop_at_a_checkpointed_epoch(tmp_path, monkeypatch):
    """--resume with --set training.epochs=2 finishes a 3-epoch run interrupted in epoch 3 as a 2-epoch
    run: the same curve, test error and best weights as a run configured for 2 epochs from the start."""
    cfg3 = apply_overrides(get_preset("mnist", quick=True), TINY)
    cfg2 = apply_overrides(cfg3, ["training.epochs=2"])
    reference = mnist_exp.run(cfg2, RunDir.create(tmp_path / "ref"))
    real = mnist_exp._train_chunk
    calls = {"n": 0}

    def interrupting(*args, **kwargs):  # SIGINT in epoch 3 (30 mini-batches per epoch)
        calls["n"] += 1
        if calls["n"] == 65:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(mnist_exp, "_train_chunk", interrupting)
    monkeypatch.setattr(mnist_exp, "_CHUNK", 1)
    with pytest.raises(RunInterrupted):
        mnist_exp.run(cfg3, RunDir.create(tmp_path / "run"))
    monkeypatch.setattr(mnist_exp, "_train_chunk", real)
    with pytest.raises(ConfigError, match=r"training\.epochs = 1, but .* holds 2 epochs"):
        mnist_exp.run(apply_overrides(cfg3, ["training.epochs=1"]), RunDir.create(tmp_path / "run", resume=True))
    cut = mnist_exp.run(cfg2, RunDir.create(tmp_path / "run", resume=True))
    assert cut["validation_curve"] == reference["validation_curve"]
    assert cut["test_error"] == reference["test_error"]
    a, b = _npz(tmp_path / "ref" / "weights_best.npz"), _npz(tmp_path / "run" / "weights_best.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_extends_a_finished_run(tmp_path):
    """`microcircuit run --resume RUN --set training.epochs=3` on a finished 2-epoch run trains epoch 3 from its
    last checkpoint: the same curve, test error and best weights as a 3-epoch run; the 2-epoch summary is kept.
    Without more epochs the finished run is left alone."""
    from click.testing import CliRunner

    from microcircuit.cli import main

    def cli(*args):
        return CliRunner().invoke(main, ["run", *map(str, args), "--no-progress"])

    tiny = [a for t in TINY for a in ("--set", t)]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert cli("mnist", "--quick", *tiny, "--out", ref).exit_code == 0
    two_epochs = [a.replace("training.epochs=3", "training.epochs=2") for a in tiny]
    assert cli("mnist", "--quick", *two_epochs, "--out", run).exit_code == 0
    two = (run / "summary.json").read_text()
    r = cli("--resume", run, "--set", "training.epochs=2")
    assert r.exit_code == 0 and "already complete" in r.output, r.output
    r = cli("--resume", run, "--set", "training.epochs=3")
    assert r.exit_code == 0 and "extending the finished run from 2 to 3 epochs" in r.output, r.output
    assert (run / "summary-2-epochs.json").read_text() == two
    a, b = (json.loads((d / "summary.json").read_text()) for d in (ref, run))
    assert (b["epochs"], b["validation_curve"], b["test_error"]) == (3, a["validation_curve"], a["test_error"])
    wa, wb = _npz(ref / "weights_best.npz"), _npz(run / "weights_best.npz")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert [r["epoch"] for r in RunDir(run).metrics() if "event" not in r] == [1, 2, 3]
