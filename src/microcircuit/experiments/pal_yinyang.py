"""PAL on the Yin-Yang data set (Max et al. 2024; docs/model.md §12, docs/pal.md): does learning the
top-down weights by PAL beat feedback alignment on a small nonlinear classification task?

A circuit (by default 4-30-3, logistic φ, no biases, the PAL conductances) learns online in prospective
mode (docs/model.md §8): every training sample is shown for ``stimulus.duration`` ms with its target on
(output potentials :data:`U_HIGH` = 1.0 for the sample's class, :data:`U_LOW` = 0.1 for the others), one after
the other, in a new random order every epoch, for ``training.epochs`` epochs; W and IP learn by rules (7),
(8) with the τ_w trace, PI by rule (9). The data (:mod:`microcircuit.data.yinyang`) are
``training.n_train`` / ``training.n_validation`` / ``stimulus.n_patterns`` test samples, the same for every
seed; each seed has its own initial weights and sample order. Arms, each ``n_seeds`` seeds as one vmapped
ensemble, with the same initial weights and order per seed:

- ``pal``: B learns by PAL (``[pal]``, apical noise on);
- ``fa``: feedback alignment: PAL off (no noise), B and PI fixed as drawn (PI self-predicting);
- ``control``: the apical noise on but η_B = 0: what the noise alone does;
- ``backprop``: the ceiling: the feed-forward network of docs/model.md §5 with the same initial W, trained
  by online gradient descent on ½‖u⁻_N − u_trgt‖² with step ``training.lr_backprop`` per sample, on the
  same samples in the same order.

Every ``schedule.segment`` epochs each arm's validation and test accuracy is read from the feed-forward
network of §5 at the current W (the circuit's steady state without a target, σ = 0), and the angle of
rule (7)'s update of every W_k to backprop's at the same weights (:func:`microcircuit.alignment.update_angles`,
over the validation samples with their targets): does learning B bring the circuit's updates closer to
backprop's? With them ∠(W_{k+1}ᵀ, B_k) and ∠(B_k, φ'_k W_{k+1}ᵀ φ'_{k+1}) (:mod:`microcircuit.alignment`).
Each arm writes ``pal_yinyang_ARM.json`` when it is done; ``--resume`` skips the arms already there and
continues the arm in progress from its newest checkpoint (``checkpoints/ARM/``, every
``schedule.checkpoint_every`` segments), bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..alignment import alignment_angles, update_angles
from ..backprop import feedforward
from ..checkpoint import checkpoint_path, load_latest, prune_checkpoints, save_checkpoint
from ..config import Config, ConfigError, Model, Pal, Training
from ..data.yinyang import yinyang_splits
from ..dynamics import init_state, with_prospective
from ..ensemble import simulate_ensemble, stack
from ..errors import DivergenceError
from ..network import Weights, init_weights
from ..runs import RunDir, StopRequest
from ..simulate import Stream, precision
from .common import arm_stop_check, train_arms

__all__ = ["ARMS", "arm_model", "check", "run", "stepped", "unused"]

ARMS = ("pal", "fa", "control", "backprop")
_READ_TRAINING = ("training.epochs", "training.n_train", "training.n_validation", "training.lr_backprop")
U_HIGH, U_LOW = 1.0, 0.1  # the target potentials of the sample's class and of the others (the authors')


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps."""
    return ("stimulus.duration",)


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read."""
    training = tuple(f"training.{f.name}" for f in dataclasses.fields(Training)
                     if f"training.{f.name}" not in _READ_TRAINING)
    return (*training, "init_from", "record", "simulation.prospective", "plasticity.eta_B", "stimulus.kind",
            "stimulus.batch",
            "stimulus.teacher_sizes", "stimulus.durations", "stimulus.low", "stimulus.high",
            "schedule.n_test", "schedule.settle")


def check(cfg: Config) -> list[str]:
    """PAL on with B plastic; 4 inputs and 3 classes; enough samples for every class."""
    if not cfg.pal.enabled or not any(cfg.model.pal.eta_B):
        raise ConfigError("pal.enabled: the pal_yinyang experiment compares PAL (pal.enabled = true, pal.eta_B > 0) "
                          "with feedback alignment")
    sizes = cfg.network.sizes
    if sizes[0] != 4 or sizes[-1] != 3:
        raise ConfigError(f"network.sizes: Yin-Yang has 4 inputs and 3 classes, got {list(sizes)}")
    tr = cfg.training
    for key, n in (("training.n_train", tr.n_train), ("training.n_validation", tr.n_validation),
                   ("stimulus.n_patterns", cfg.stimulus.n_patterns)):
        if n < 3:
            raise ConfigError(f"{key}: at least 3 samples (one per class), got {n}")
    if tr.lr_backprop <= 0:
        raise ConfigError(f"training.lr_backprop: the backprop arm's step must be > 0, got {tr.lr_backprop}")
    return []


def arm_model(cfg: Config, arm: str) -> Model:
    """The circuit of one arm (prospective; rule (10) off): PAL as configured (``pal``), its noise without
    the B rule (``control``), or off with PI fixed (``fa``). ``backprop`` uses ``pal``'s network."""
    m = cfg.model
    sim = dataclasses.replace(m.simulation, prospective=True)
    plasticity = dataclasses.replace(m.plasticity, eta_B=0.0)
    pal = m.pal
    if arm == "fa":
        plasticity, pal = dataclasses.replace(plasticity, eta_PI=0.0), Pal()
    elif arm == "control":
        pal = dataclasses.replace(pal, eta_B=0.0)
    return Model(m.network, m.conductances, plasticity, sim, pal)


def _targets(cfg: Config, y: np.ndarray) -> np.ndarray:
    """Output potentials: :data:`U_HIGH` for the class, :data:`U_LOW` for the others."""
    t = np.full((y.shape[0], cfg.network.sizes[-1]), U_LOW, np.float32)
    t[np.arange(y.shape[0]), y] = U_HIGH
    return t


@functools.partial(jax.jit, static_argnames=("model",))
def _accuracy(model: Model, W: tuple[jax.Array, ...], b: tuple[jax.Array, ...], x: jax.Array,
              y: jax.Array) -> jax.Array:
    """(S,) fraction of ``x`` whose arg max of u⁻_N is ``y``, per member (W, b with a leading member axis)."""
    out = jax.vmap(lambda W, b: feedforward(model, W, b, x)[-1])(W, b)
    return jnp.mean(jnp.argmax(out, -1) == y, -1)


@functools.partial(jax.jit, static_argnames=("model",))
def _update_angles(model: Model, w: Weights, x: jax.Array, t: jax.Array) -> dict[str, jax.Array]:
    """{angle_update_k, angle_WT_B_k, angle_B_J_k: (S,)}: rule (7)'s update against backprop's, and B_k
    against W_{k+1}ᵀ and against φ'_k W_{k+1}ᵀ φ'_{k+1}, per member, over the samples x, t."""
    return jax.vmap(lambda w: {**update_angles(model, w, x, t), **alignment_angles(model, w, x)})(w)


@functools.partial(jax.jit, static_argnames=("model",))
def _backprop_epoch(model: Model, W: tuple[jax.Array, ...], b: tuple[jax.Array, ...], x: jax.Array,
                    t: jax.Array, lr: float) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    """One epoch of online gradient descent for every member: x (S, P, n_0), t (S, P, n_N) in order."""

    def loss(W: tuple[jax.Array, ...], b: tuple[jax.Array, ...], x: jax.Array, t: jax.Array) -> jax.Array:
        return 0.5 * jnp.sum((feedforward(model, W, b, x[None])[-1][0] - t) ** 2)

    def member(W: tuple[jax.Array, ...], b: tuple[jax.Array, ...], x: jax.Array, t: jax.Array):
        def step(p, xt):
            gW, gb = jax.grad(loss, argnums=(0, 1))(*p, *xt)
            return (tuple(w - lr * g for w, g in zip(p[0], gW, strict=True)),
                    tuple(c - lr * g for c, g in zip(p[1], gb, strict=True))), None
        return jax.lax.scan(step, (W, b), (x, t))[0]

    return jax.vmap(member)(W, b, x, t)


def _train(cfg: Config, arm: str, say: Callable[[str], None], stop: StopRequest | None = None,
           run_dir: RunDir | None = None) -> dict[str, Any]:
    """One arm for every seed. With a run folder, a checkpoint after every ``schedule.checkpoint_every``
    segments (in ``checkpoints/ARM/``: weights, state, τ_w traces, the curve so far and the state of every
    seed's order generator), from which ``--resume`` continues the arm exactly."""

    stop_check = arm_stop_check(stop, arm)

    model = arm_model(cfg, arm)
    sim, st, tr = model.simulation, cfg.stimulus, cfg.training
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    S, epochs, seg = len(seeds), tr.epochs, cfg.schedule.segment
    data = yinyang_splits(tr.n_train, tr.n_validation, st.n_patterns, seed=0)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data["train"], data["validation"], data["test"]
    t_tr = _targets(cfg, y_tr)
    P = x_tr.shape[0]
    orders = [np.random.default_rng([s, 4]) for s in seeds]
    ctx, cast = precision(sim)
    t0 = time.perf_counter()
    with ctx:
        w = cast(stack([init_weights(cfg.network, cfg.conductances, jax.random.key(s)) for s in seeds]))
        state = cast(stack([with_prospective(model, init_state(cfg.network, 1, sim.dtype, True))] * S))
        traces = jax.tree_util.tree_map(jnp.zeros_like, w)
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 7))(jnp.asarray(seeds, jnp.uint32))
        xv, yv, xt, yt = (jnp.asarray(a) for a in (x_va, y_va, x_te, y_te))
        tv = jnp.asarray(_targets(cfg, y_va))

        def snapshot(w: Weights) -> dict[str, Any]:
            angles = {k: np.asarray(v).tolist() for k, v in _update_angles(model, w, xv, tv).items()}
            return {"validation": np.asarray(_accuracy(model, w.W, w.b, xv, yv)).tolist(),
                    "test": np.asarray(_accuracy(model, w.W, w.b, xt, yt)).tolist(), **angles}

        times, curve = [0], [snapshot(w)]
        diverged = None
        done, segment = 0, 0
        folder = None if run_dir is None else run_dir.checkpoint_dir / arm
        if folder is not None and run_dir is not None and run_dir.resume:
            ck = load_latest(folder, cfg, like={"weights": w, "state": state, "traces": traces},
                             on_skip=lambda p, why: say(f"warning: skipping checkpoint {p.name}: {why}"))
            if ck is not None:
                w, state, traces = (cast(jax.tree_util.tree_map(jnp.asarray, ck.trees[k]))
                                    for k in ("weights", "state", "traces"))
                done, segment = int(ck.counters["epochs"]), int(ck.counters["segment"])
                times, curve = ck.meta["times"], ck.meta["curve"]
                for rng, st_rng in zip(orders, ck.meta["orders"], strict=True):
                    rng.bit_generator.state = st_rng
                say(f"  {arm}: resuming from {ck.path} ({done} of {epochs} epochs done)")
        every = cfg.schedule.checkpoint_every
        while done < epochs:
            n = min(seg, epochs - done)
            idx = np.stack([np.concatenate([rng.permutation(P) for _ in range(n)]) for rng in orders])  # (S, nP)
            if arm == "backprop":
                for e in range(n):
                    part = idx[:, e * P:(e + 1) * P]
                    W, b = _backprop_epoch(model, w.W, w.b, jnp.asarray(x_tr[part], sim.dtype),
                                           jnp.asarray(t_tr[part], sim.dtype), tr.lr_backprop)
                    w = w._replace(W=W, b=b)
                    stop_check(0)
                if not all(bool(jnp.all(jnp.isfinite(a))) for a in w.W):
                    diverged = f"epochs {done + 1}..{done + n}: the weights are no longer finite"
                    say(f"  {arm} diverged: {diverged}")
                    break
            else:
                stream = Stream(x_tr[idx][:, :, None, :], t_tr[idx][:, :, None, :], np.ones(idx.shape, bool))
                seg_keys = jax.vmap(lambda k, i=segment: jax.random.fold_in(k, i))(keys)
                try:
                    sol = simulate_ensemble(model, w, state, stream, duration=st.duration, keys=seg_keys,
                                            traces=traces, chunk_steps=100_000, progress=stop_check)
                except DivergenceError as e:
                    diverged = f"epochs {done + 1}..{done + n}: {e}"
                    say(f"  {arm} diverged: {e}")
                    break
                w, traces, state = sol.weights, sol.traces, sol.state
            done += n
            segment += 1
            times.append(done)
            curve.append(snapshot(w))
            if folder is not None and every and (segment % every == 0 or done >= epochs):
                save_checkpoint(checkpoint_path(folder, done), cfg, {"weights": w, "state": state, "traces": traces},
                                counters={"epochs": done, "segment": segment},
                                meta={"times": times, "curve": curve,
                                      "orders": [rng.bit_generator.state for rng in orders]})
                prune_checkpoints(folder, keep=cfg.schedule.keep_checkpoints)
    final = {k: np.asarray(curve[-1][k]) for k in ("validation", "test")}
    angles = {k: np.asarray(v) for k, v in curve[-1].items() if k.startswith("angle_")}
    return {
        "arm": arm, "seeds": seeds, "epochs": done, "epoch": times, "curve": curve,
        "final": {k: {"mean": float(v.mean()), "sem": float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0,
                      "per_seed": v.tolist()} for k, v in final.items()},
        "update_angles": {k: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "per_seed": v.tolist()}
                          for k, v in angles.items()},
        "diverged": diverged, "wall_s": round(time.perf_counter() - t0, 2),
    }


def _name(arm: str) -> str:
    return f"pal_yinyang_{arm}.json"


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every arm in turn (see the module docstring); the summary and, with a run folder, the figure."""
    check(cfg)
    say = echo or (lambda text: None)

    def report(arm: str, res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        f = res["final"]
        line = (f"{arm}: test accuracy {100 * f['test']['mean']:.2f} ± {100 * f['test']['sem']:.2f} % (validation "
                f"{100 * f['validation']['mean']:.2f} %) after {res['epochs']} epochs ({res['wall_s']:.1f} s)")
        return line, {"test_accuracy": f["test"]["mean"], "validation_accuracy": f["validation"]["mean"]}

    results = train_arms(run_dir, ARMS, _name, lambda arm, stop: _train(cfg, arm, say, stop, run_dir), report, say)
    summary = _summarise(cfg, results)
    if run_dir is not None:
        _figure(run_dir, results)
    return summary


def verdicts(final: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The issue's targets on the final test accuracies (mean, sem per arm): PAL above FA by more than two
    standard errors of the difference, the control within two of FA, PAL at 95 % or more."""
    pal, fa, control = (final[a]["test"] for a in ("pal", "fa", "control"))
    two_se = 2 * float(np.hypot(pal["sem"], fa["sem"]))
    return {"pal_above_fa": pal["mean"] - fa["mean"] > two_se,
            "control_equals_fa": abs(control["mean"] - fa["mean"]) <= 2 * float(np.hypot(control["sem"], fa["sem"])),
            "pal_at_least_95": pal["mean"] >= 0.95}


def _summarise(cfg: Config, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    final = {arm: r["final"] for arm, r in results.items()}
    sizes = "-".join(map(str, cfg.network.sizes))
    headline = [f"Yin-Yang {sizes}, {cfg.n_seeds} seeds, {cfg.training.epochs} epochs of {cfg.training.n_train} "
                "samples; test accuracy, mean ± s.e.m.:"]
    for arm in ARMS:
        t = final[arm]["test"]
        line = f"  {arm:9s} {100 * t['mean']:.2f} ± {100 * t['sem']:.2f} %"
        if arm != "backprop":
            a = results[arm]["update_angles"]
            ups = sorted(k for k in a if k.startswith("angle_update_"))
            line += ("; ∠(rule (7), backprop) " + " / ".join(f"{a[k]['mean']:.1f}°" for k in ups)
                     + f"; ∠(W_2ᵀ, B_1) {a['angle_WT_B_1']['mean']:.1f}°")
        headline.append(line)
    v = verdicts(final)
    headline.append("  PAL above FA by > 2 s.e.: {pal_above_fa}; control = FA within 2 s.e.: {control_equals_fa}; "
                    "PAL >= 95 %: {pal_at_least_95}".format(**{k: "yes" if b else "no" for k, b in v.items()}))
    return {"seeds": [cfg.seed + i for i in range(cfg.n_seeds)], "epochs": cfg.training.epochs,
            "final": final, "verdicts": v,
            "update_angles": {arm: r["update_angles"] for arm, r in results.items()},
            "curves": {arm: {"epoch": r["epoch"],
                             **{k: [float(np.mean(c[k])) for c in r["curve"]] for k in r["curve"][0]
                                if k in ("validation", "test") or k.startswith("angle_")}}
                       for arm, r in results.items()},
            "diverged": {arm: r["diverged"] for arm, r in results.items()},
            "wall_s_per_arm": {arm: r["wall_s"] for arm, r in results.items()}, "headline": headline}


def _figure(run_dir: RunDir, results: dict[str, dict[str, Any]]) -> None:
    from ..plotting import figure

    fig = figure(figsize=(5, 3.4))
    ax = fig.subplots()
    labels = {"pal": "PAL", "fa": "FA (B fixed)", "control": "noise, η$_B$ = 0", "backprop": "backprop"}
    for arm, color in zip(ARMS, ("C0", "C7", "C1", "k"), strict=True):
        r = results[arm]
        acc = 100 * np.asarray([c["test"] for c in r["curve"]])  # (T, S)
        m, s = acc.mean(1), acc.std(1)
        ax.fill_between(r["epoch"], m - s, m + s, color=color, alpha=0.2, lw=0)
        ax.plot(r["epoch"], m, color=color, label=labels[arm])
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Yin-Yang", ylim=(30, 100))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    run_dir.save_figure(fig, "pal_yinyang.png")
