"""The spiking circuit learns Bars (docs/model.md §13, docs/spiking.md).

A 9-…-3 circuit (by default 9-30-3) learns the 8 Bars patterns (:func:`microcircuit.data.bars.bars`) online:
every epoch shows them in a new random order, each for ``stimulus.duration`` ms with the target potential
(``TARGET_HIGH`` = 1.0 for the pattern's class, ``TARGET_LOW`` = 0.1 for the others, as in
:mod:`~microcircuit.experiments.le_bars`) nudging the output, back to back, with plasticity always on (the
rates of ``plasticity``, times ``training.lr_decay`` per epoch, the factor updated every segment). With
``spiking.enabled`` every population spikes (``[spiking]``); with it off the same run is the rate circuit,
the twin to compare with. Arms, each
``n_seeds`` seeds as one vmapped ensemble with the same initial forward weights and order per seed:

- ``self_predicting``: the circuit starts in the self-predicting state (docs/model.md §4);
- ``random``: every matrix starts random, and the lateral weights learn the self-predicting state while the
  task is learned (rules 8 and 9 need ``plasticity.eta_IP`` and ``plasticity.eta_PI`` > 0).

Every ``schedule.segment`` epochs the circuits are tested without target or plasticity, each pattern from
rest for ``stimulus.duration`` ms, spikes drawn as in training (their own keys): on the 8 training patterns
and on ``schedule.n_test`` held-out noisy bars (:func:`noisy_bars`, noise :data:`TEST_NOISE`, the same set for
every seed). The class is the arg max of the output potential (ŭ_N in prospective mode) averaged over the
presentation. The tests count every spike of the pyramids and interneurons: spikes per pattern, the mean rate
per neuron and the highest rate of any unit's neurons over one pattern.

Each arm writes ``spiking_bars_ARM.json`` when it is done; ``--resume`` skips the arms already there. The run
draws ``spiking_bars.png`` (learning curves) and ``spiking_raster.png`` (spike counts and rates of the first
seed's circuit on the 8 patterns after training).
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

from ..config import Config, ConfigError, Model, Record, Training
from ..data.bars import bars
from ..dynamics import init_state, with_prospective
from ..ensemble import simulate_ensemble, stack, unstack
from ..network import Weights, init_weights
from ..plasticity import zero_traces
from ..runs import RunDir, StopRequest
from ..simulate import Stream, precision, simulate, step, steps_per_pattern
from ..spiking import Layout
from .common import arm_stop_check, train_arms, train_epochs
from .le_bars import TARGET_HIGH, TARGET_LOW, check_sizes

__all__ = ["ARMS", "TEST_NOISE", "arm_model", "check", "noisy_bars", "run",
           "runs_spiking", "stepped", "test_outputs", "unused"]

ARMS = ("self_predicting", "random")
TEST_NOISE = 0.2  # held-out bars: every pixel moves towards the other value by U(0, TEST_NOISE)
_STREAM_TEST = 1 << 20  # test keys: fold_in(member key, _STREAM_TEST + segment)


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps."""
    return ("stimulus.duration",)


def runs_spiking(cfg: Config) -> bool:
    """The experiment runs the spiking circuit, or its rate twin with ``spiking.enabled = false``."""
    return True


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read."""
    training = tuple(f"training.{f.name}" for f in dataclasses.fields(Training) if f.name not in ("epochs", "lr_decay"))
    return (*training, "init_from", "record", "network.init.self_predicting", "stimulus.kind",
            "stimulus.n_patterns", "stimulus.batch", "stimulus.low", "stimulus.high", "stimulus.teacher_sizes",
            "stimulus.durations", "schedule.settle", "schedule.checkpoint_every", "schedule.keep_checkpoints", "pal")


def check(cfg: Config) -> list[str]:
    """9 inputs and 3 outputs; the random arm needs plastic lateral weights."""
    check_sizes(cfg)
    p = cfg.model.plasticity
    if not (any(p.eta_IP) and any(p.eta_PI)):
        raise ConfigError("plasticity.eta_PI: the 'random' arm learns the self-predicting state with rules (8) and "
                          f"(9): set plasticity.eta_IP and eta_PI > 0 (got {p.eta_IP}, {p.eta_PI})")
    if cfg.schedule.n_test < 1:
        raise ConfigError(f"schedule.n_test: the held-out test needs at least 1 pattern, got {cfg.schedule.n_test}")
    return []


def noisy_bars(n: int, seed: int, noise: float = TEST_NOISE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` held-out bars in [0, 1], the classes in turn, each a random bar of its class (of the 9 distinct
    3 × 3 bars) whose pixels move towards the other value by U(0, ``noise``): x = b·(1 − ξ) + (1 − b)·ξ."""
    rng = np.random.default_rng([seed, 3])
    x_all, y_all = bars(samples_per_class=3, drop_last=False)
    labels = np.arange(n) % 3
    picks = np.array([rng.choice(np.flatnonzero(y_all == c)) for c in labels])
    b = x_all[picks]
    xi = rng.uniform(0.0, noise, b.shape)
    return (b * (1 - xi) + (1 - b) * xi).astype(np.float32), labels.astype(np.int32)


def arm_model(cfg: Config, arm: str) -> Model:
    """The model of an arm: the config's, with the self-predicting start of the arm."""
    init = dataclasses.replace(cfg.network.init, self_predicting=arm == "self_predicting")
    m = cfg.model
    return dataclasses.replace(m, network=dataclasses.replace(m.network, init=init))


@functools.partial(jax.jit, static_argnames=("model", "spp"))
def test_outputs(model: Model, w: Weights, x: jax.Array, keys: jax.Array, *, spp: int
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Every member's output potential (u_N, or ŭ_N in prospective mode) averaged over each pattern's
    presentation of ``spp`` steps from rest, no target, no plasticity: patterns x (S, P, n_0), keys (S,).
    Also the spikes of all pyramids and interneurons per pattern (S, P) and the largest count of one unit over
    a pattern (S, P) (zeros for the rate circuit). Pattern p's spikes come from fold_in(key, p)."""
    n_out = model.network.sizes[-1]
    sim, spiking = model.simulation, model.spiking.enabled
    counted = ()
    if spiking:
        lay = Layout.of(model.network, model.spiking)
        counted = tuple(lay.pyramid(i) for i in range(lay.depth)) + tuple(lay.inter(i) for i in range(lay.depth - 1))

    def member(w: Weights, xs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        tr = zero_traces(w)
        target = jnp.zeros((1, n_out), xs.dtype)
        off = jnp.asarray(False)

        def pattern(_: None, inp: tuple[jax.Array, jax.Array]) -> tuple[None, tuple]:
            xp, p = inp
            s0 = with_prospective(model, init_state(model.network, 1, sim.dtype, sim.prospective))
            k_p = jax.random.fold_in(key, p)

            def one(c: tuple, n: jax.Array) -> tuple[tuple, None]:
                s, acc, units = c
                _, _, s = step(model, w, tr, s, xp[None], target, off, jax.random.fold_in(k_p, n), plastic=False)
                if spiking:
                    units = units + jnp.concatenate([s.spikes[j][0] for j in counted])
                return (s, acc + (s.u_pro[-1] if sim.prospective else s.u[-1]), units), None

            width = sum(model.network.sizes[1:]) + sum(model.network.sizes[2:]) if spiking else 1
            c0 = (s0, jnp.zeros((1, n_out), xs.dtype), jnp.zeros(width, xs.dtype))
            (_, acc, units), _ = jax.lax.scan(one, c0, jnp.arange(spp))
            return None, (acc[0] / spp, jnp.sum(units), jnp.max(units))

        _, (outs, total, peak) = jax.lax.scan(pattern, None, (xs, jnp.arange(xs.shape[0])))
        return outs, total, peak

    return jax.vmap(member)(w, x, keys)


def _train(cfg: Config, arm: str, say: Callable[[str], None], stop: StopRequest | None) -> dict[str, Any]:
    """Train one arm for every seed (one ensemble); test every segment."""
    model = arm_model(cfg, arm)
    sim, sp = model.simulation, model.spiking
    T = cfg.stimulus.duration
    x, y = bars()
    n_out = cfg.network.sizes[-1]
    x_held, y_held = noisy_bars(cfg.schedule.n_test, cfg.seed)
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    S, epochs, seg = len(seeds), cfg.training.epochs, cfg.schedule.segment
    spp = steps_per_pattern(T, sim.dt)
    targets = np.where(np.eye(n_out, dtype=bool)[y], TARGET_HIGH, TARGET_LOW).astype(np.float32)
    order_rng = [np.random.default_rng([s, 1]) for s in seeds]  # the same orders in every arm
    ctx, cast = precision(sim)
    t0 = time.perf_counter()
    with ctx:
        w = cast(stack([init_weights(model.network, model.conductances, jax.random.key(s)) for s in seeds]))
        state = stack([init_state(model.network, 1, sim.dtype, sim.prospective)] * S)
        traces = None
        keys = jnp.stack([jax.random.key(s) for s in seeds])
        x_train = jnp.asarray(np.broadcast_to(x, (S, *x.shape)), sim.dtype)
        x_test = jnp.asarray(np.broadcast_to(x_held, (S, *x_held.shape)), sim.dtype)

        def evaluate(w: Weights, index: int) -> dict[str, np.ndarray]:
            k = jax.vmap(lambda k: jax.random.fold_in(k, _STREAM_TEST + index))(keys)
            out_tr, *_ = test_outputs(model, w, x_train, k, spp=spp)
            out_te, total, peak = test_outputs(model, w, x_test, jax.vmap(lambda k: jax.random.fold_in(k, 1))(k),
                                               spp=spp)
            units = sum(model.network.sizes[1:]) + sum(model.network.sizes[2:])
            seconds = T / 1000.0
            return {
                "train": np.mean(np.argmax(np.asarray(out_tr), -1) == y, axis=1),
                "held_out": np.mean(np.argmax(np.asarray(out_te), -1) == y_held, axis=1),
                "spikes_per_pattern": np.mean(np.asarray(total), axis=1),
                "mean_rate_hz": np.mean(np.asarray(total), axis=1) / (units * sp.n * seconds),
                "max_rate_hz": np.max(np.asarray(peak), axis=1) / (sp.n * seconds),
            }

        def advance(stream: Stream, segment: int, done: int) -> None:
            nonlocal w, traces, state
            seg_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, segment)
            sol = simulate_ensemble(model, w, state, stream, duration=T, keys=seg_keys, traces=traces,
                                    chunk_steps=100_000, progress=arm_stop_check(stop, arm),
                                    lr_scale=cfg.training.lr_decay ** done)
            w, traces, state = sol.weights, sol.traces, sol.state

        curve_epochs, curve, diverged, done = train_epochs(
            x, targets, order_rng, epochs, seg, advance, lambda segment: evaluate(w, segment),
            lambda e: say(f"  {arm} diverged: {e}"))
        raster = _raster(model, unstack(w, 0), x, T, jax.random.fold_in(jax.random.key(seeds[0]), 7))
    last = curve[-1]
    reached = [next((e for e, c in zip(curve_epochs, curve, strict=True) if c["held_out"][m] == 1.0), None)
               for m in range(S)]
    return {
        "arm": arm, "seeds": seeds, "epochs": done, "steps_per_pattern": spp, "spiking": sp.enabled,
        "final_train_accuracy": [float(a) for a in last["train"]],
        "final_held_out_accuracy": [float(a) for a in last["held_out"]],
        "first_epoch_held_out_100": reached,
        "spikes_per_pattern": [float(a) for a in last["spikes_per_pattern"]],
        "mean_rate_hz": [float(a) for a in last["mean_rate_hz"]],
        "max_rate_hz": [float(a) for a in last["max_rate_hz"]],
        "curve_epochs": curve_epochs,
        "curve_train": [[float(a) for a in c["train"]] for c in curve],
        "curve_held_out": [[float(a) for a in c["held_out"]] for c in curve],
        "raster": raster, "diverged": diverged, "wall_s": round(time.perf_counter() - t0, 2),
    }


def _raster(model: Model, w: Weights, x: np.ndarray, T: float, key: jax.Array) -> dict[str, Any]:
    """The spike counts (spiking) and rates of one circuit on the 8 patterns, one after the other starting
    from rest, no target, no plasticity, every step (for the raster figure)."""
    s0 = init_state(model.network, 1, model.simulation.dtype, model.simulation.prospective)
    quantities = ("spikes", "rates") if model.spiking.enabled else ("rates",)
    sol = simulate(model, w, s0, Stream.of(x), duration=T, key=key, plastic=False, record=Record(quantities, 1))
    return {k: np.asarray(v)[:, 0].tolist() for k, v in sol.records.items()} | {"time_ms": sol.times.tolist()}


def _file(arm: str) -> str:
    return f"spiking_bars_{arm}.json"


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every arm in turn; see the module docstring."""
    check(cfg)
    say = echo or (lambda text: None)

    def report(arm: str, res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        held = np.asarray(res["final_held_out_accuracy"])
        rates = (f", {np.mean(res['mean_rate_hz']):.1f} Hz mean, {np.max(res['max_rate_hz']):.0f} Hz max"
                 if res["spiking"] else "")
        line = (f"{arm}: held-out accuracy {held.mean():.3f} (min {held.min():.3f}) over {len(held)} seeds after "
                f"{res['epochs']} epochs{rates} ({res['wall_s']:.1f} s)")
        return line, {"held_out_mean": float(held.mean()), "held_out_min": float(held.min())}

    results = train_arms(run_dir, ARMS, _file, lambda arm, stop: _train(cfg, arm, say, stop), report, say)
    summary = _summarise(cfg, results)
    if run_dir is not None:
        _figures(run_dir, summary, results)
    return summary


def _summarise(cfg: Config, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    table = {}
    for arm, res in results.items():
        held, train = np.asarray(res["final_held_out_accuracy"]), np.asarray(res["final_train_accuracy"])
        table[arm] = {
            "held_out_mean": float(held.mean()), "held_out_min": float(held.min()),
            "train_mean": float(train.mean()), "seeds_at_100": int(np.sum(held == 1.0)),
            "first_epoch_held_out_100": res["first_epoch_held_out_100"],
            "spikes_per_pattern": float(np.mean(res["spikes_per_pattern"])),
            "mean_rate_hz": float(np.mean(res["mean_rate_hz"])), "max_rate_hz": float(np.max(res["max_rate_hz"])),
            "epochs": res["epochs"], "wall_s": res["wall_s"], "diverged": res["diverged"],
        }
    kind = "spiking" if cfg.spiking.enabled else "rate"
    headline = [f"Bars, {kind} circuit {'-'.join(map(str, cfg.network.sizes))}, {cfg.stimulus.duration:g} ms per "
                f"pattern, {cfg.training.epochs} epochs, {cfg.n_seeds} seeds: held-out accuracy (seeds at 100 %)"]
    for arm, row in table.items():
        rates = (f"; {row['mean_rate_hz']:.1f} Hz mean, {row['max_rate_hz']:.0f} Hz max, "
                 f"{row['spikes_per_pattern']:,.0f} spikes per pattern" if cfg.spiking.enabled else "")
        headline.append(f"  {arm}: {row['held_out_mean']:.3f} ({row['seeds_at_100']} of {cfg.n_seeds}){rates}")
    return {"arms": table, "seeds": [cfg.seed + i for i in range(cfg.n_seeds)], "epochs": cfg.training.epochs,
            "duration_ms": cfg.stimulus.duration, "spiking": cfg.spiking.enabled, "neurons_per_unit": cfg.spiking.n,
            "train_wall_s": round(sum(r["wall_s"] for r in results.values()), 1), "headline": headline}


def _figures(run_dir: RunDir, summary: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    from ..plotting import figure

    fig = figure(figsize=(8, 3.4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("curve_train", "curve_held_out"), ("8 training patterns", "held-out noisy bars"),
                              strict=True):
        for arm, color in zip(ARMS, ("C0", "C3"), strict=True):
            if arm not in results:
                continue
            e, c = np.asarray(results[arm]["curve_epochs"]), np.asarray(results[arm][key])
            ax.plot(e, c, color=color, alpha=0.25, lw=0.8)
            ax.plot(e, c.mean(1), "o-", color=color, ms=3, label=f"{arm} (mean of {c.shape[1]})")
        ax.axhline(1 / 3, color="0.6", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Bars, {'spiking' if summary['spiking'] else 'rate'} circuit, {summary['duration_ms']:g} ms "
                 "per pattern")
    fig.tight_layout()
    run_dir.save_figure(fig, "spiking_bars.png")
    _raster_figure(run_dir, results[next(a for a in ARMS if a in results)], summary["neurons_per_unit"])


def _raster_figure(run_dir: RunDir, res: dict[str, Any], n: int) -> None:
    """Each layer's firing, per unit, in 1 ms bins (Hz per neuron, from the spike counts of its n neurons), over
    the 8 patterns; the rate circuit's φ (as r_max-free rates) where there are no spikes."""
    from ..plotting import figure

    rec = {k: np.asarray(v) for k, v in res["raster"].items()}
    t = rec["time_ms"]
    dt = float(t[1] - t[0]) if t.size > 1 else 1.0
    per_bin = max(1, round(1.0 / dt))
    layers = sorted(k.removeprefix("r_") for k in rec if k.startswith("r_"))
    spiking = any(k.startswith("spikes_") for k in rec)
    fig = figure(figsize=(8, 1.4 + 1.5 * len(layers)))
    axes = np.atleast_1d(fig.subplots(len(layers), 1, sharex=True))
    for ax, layer in zip(axes, layers, strict=True):
        values = rec[f"spikes_pyr_{layer}"] if spiking else rec[f"r_{layer}"]
        bins = values.shape[0] // per_bin
        binned = values[: bins * per_bin].reshape(bins, per_bin, -1)
        shown = binned.sum(1) / (n * per_bin * dt / 1000.0) if spiking else binned.mean(1)
        im = ax.imshow(shown.T, aspect="auto", origin="lower", interpolation="nearest", cmap="magma",
                       extent=(float(t[0]) - dt, float(t[0]) - dt + bins * per_bin * dt, -0.5, shown.shape[1] - 0.5))
        ax.set_ylabel(f"layer {layer}\nunit")
        fig.colorbar(im, ax=ax, label="Hz per neuron" if spiking else "φ", pad=0.01)
        for edge in np.arange(1, 8) * (t[-1] - t[0] + dt) / 8 + t[0] - dt:
            ax.axvline(edge, color="w", lw=0.5, alpha=0.6)
    axes[-1].set_xlabel("time (ms), the 8 patterns one after the other")
    axes[0].set_title(f"firing of each unit's {n:,} neurons in 1 ms bins, first seed after training" if spiking
                      else "rates φ, first seed after training")
    fig.tight_layout()
    run_dir.save_figure(fig, "spiking_raster.png")
