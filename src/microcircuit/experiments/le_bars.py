"""Latent Equilibrium's microcircuit experiment (Haider et al. 2021, Fig. 3): learning Bars at short
presentation times, original against prospective dynamics (docs/model.md §8, docs/prospective.md).

A 9-30-3 circuit (soft rectifier log(1 + eˣ), no biases) starts self-predicting (docs/model.md §4) and
learns the 8 Bars patterns (:func:`microcircuit.data.bars.bars`) online: every epoch shows them in a new
random order, each for T ms, back to back, with the target potential (``TARGET_HIGH`` for the pattern's
class, ``TARGET_LOW`` for the others) nudging the output; W_1, W_2 and IP learn, B and PI stay fixed, no
noise. The learning rates are given at the presentation time ``stimulus.duration`` and scaled by
``stimulus.duration`` / T, so η·T is the same for every T (rules 7–8 change the weights by the same amount
per pattern once settled). For every T of ``stimulus.durations`` both modes (``simulation.prospective``
false and true; the config's own value is not read) train ``n_seeds`` seeds as one vmapped ensemble each.
Every ``schedule.segment`` epochs the circuits are tested on the 8 patterns from rest, without target or
plasticity, each shown for T ms in a fixed random order: the class is the arg max of the output potential
(u_N, or ŭ_N in prospective mode) averaged over the presentation. The same seed gives the same initial
weights and pattern order in both modes and at every T.

Each (T, mode) writes its result file ``le_bars_T{T}_{mode}.json`` into the run folder when it is done;
``--resume`` skips the pairs already there, so a killed run goes on with the next unfinished one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config, ConfigError, Model
from ..data.bars import bars
from ..dynamics import init_state
from ..ensemble import simulate_ensemble, stack
from ..errors import RunInterrupted
from ..network import Weights, init_weights
from ..plasticity import zero_traces
from ..runs import RunDir, StopRequest, graceful_stop
from ..simulate import Stream, precision, step, steps_per_pattern
from .common import MNIST_TRAINING_KEYS, train_epochs

__all__ = ["MODES", "TARGET_HIGH", "TARGET_LOW", "check", "check_sizes", "mode_model", "run", "stepped", "test_outputs",
           "unused"]

TARGET_LOW, TARGET_HIGH = 0.1, 1.0  # target potentials of the wrong and the right class
MODES = ("original", "prospective")
BOTH_MODES = True  # simulation.update_order applies to the prospective runs (microcircuit.preflight)


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps (``stimulus.durations`` is checked by :func:`check`)."""
    return ("stimulus.duration",)


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read."""
    return (*MNIST_TRAINING_KEYS, "init_from", "record",
            "simulation.prospective", "stimulus.kind",
            "stimulus.n_patterns", "stimulus.batch", "stimulus.low", "stimulus.high", "stimulus.teacher_sizes",
            "schedule.n_test", "schedule.settle", "schedule.checkpoint_every", "schedule.keep_checkpoints", "pal")


def check_sizes(cfg: Config) -> None:
    """The network must be 9-…-3: 3 × 3 Bars, 3 classes."""
    n = cfg.network.sizes
    if n[0] != 9 or n[-1] != 3:
        raise ConfigError(f"network.sizes: the Bars task needs 9 inputs and 3 outputs, got {n}")


def check(cfg: Config) -> list[str]:
    """The network must be 9-…-3 (3 × 3 Bars, 3 classes); every T a whole number of dt steps."""
    check_sizes(cfg)
    for T in _durations(cfg):
        spp = round(T / cfg.simulation.dt)
        if spp < 1 or abs(spp * cfg.simulation.dt - T) > 1e-6 * T:
            raise ConfigError(f"stimulus.durations: {T} ms is not a whole number of dt = {cfg.simulation.dt} ms steps")
    return []


def _durations(cfg: Config) -> tuple[float, ...]:
    return cfg.stimulus.durations or (cfg.stimulus.duration,)


def mode_model(cfg: Config, mode: str, T: float) -> Model:
    """The model of one (mode, T): ``simulation.prospective`` set by the mode, every learning rate times
    ``stimulus.duration`` / T (η·T fixed)."""
    scale = cfg.stimulus.duration / T
    p = cfg.model.plasticity
    plasticity = dataclasses.replace(
        p, eta_W=tuple(e * scale for e in p.eta_W), eta_IP=tuple(e * scale for e in p.eta_IP),
        eta_PI=tuple(e * scale for e in p.eta_PI), eta_B=tuple(e * scale for e in p.eta_B))
    sim = dataclasses.replace(cfg.simulation, prospective=mode == "prospective")
    return Model(cfg.network, cfg.conductances, plasticity, sim)


@functools.partial(jax.jit, static_argnames=("model", "spp"))
def test_outputs(model: Model, w: Weights, x: jax.Array, *, spp: int) -> jax.Array:
    """Every member's output potential (u_N, or ŭ_N in prospective mode) averaged over each pattern's
    presentation of ``spp`` steps: patterns x (S, P, n_0) shown back to back from rest, no target, no
    plasticity, σ = 0. Returns (S, P, n_N)."""
    n_out = model.network.sizes[-1]
    sim = model.simulation

    def member(w: Weights, xs: jax.Array) -> jax.Array:
        s0 = init_state(model.network, 1, sim.dtype, sim.prospective)
        tr = zero_traces(w)
        target = jnp.zeros((1, n_out), xs.dtype)
        off = jnp.asarray(False)

        def pattern(s: Any, xp: jax.Array) -> tuple[Any, jax.Array]:
            def one(c: tuple, _: None) -> tuple[tuple, None]:
                s, acc = c
                _, _, s = step(model, w, tr, s, xp[None], target, off, None, plastic=False)
                return (s, acc + (s.u_pro[-1] if sim.prospective else s.u[-1])), None

            (s, acc), _ = jax.lax.scan(one, (s, jnp.zeros((1, n_out), xs.dtype)), None, length=spp)
            return s, acc[0] / spp

        _, outs = jax.lax.scan(pattern, s0, xs)
        return outs

    return jax.vmap(member)(w, x)


def _train(cfg: Config, mode: str, T: float, say: Callable[[str], None], stop: StopRequest | None = None
           ) -> dict[str, Any]:
    """Train one mode at one T for every seed (one ensemble); the test accuracies every segment. On
    SIGINT/SIGTERM (``stop``) it raises :class:`RunInterrupted` within one chunk of steps."""

    def stop_check(_: int) -> None:
        if stop:
            raise RunInterrupted(stop.signum, f"interrupted by {stop.name} during T = {T:g} ms, {mode}: the (T, mode) "
                                 "pairs already written stay; --resume RUN_DIR continues with this one")

    model = mode_model(cfg, mode, T)
    sim = model.simulation
    x, y = bars()
    P, n_out = x.shape[0], cfg.network.sizes[-1]
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    S, epochs, seg = len(seeds), cfg.training.epochs, cfg.schedule.segment
    spp = steps_per_pattern(T, sim.dt)
    targets = np.where(np.eye(n_out, dtype=bool)[y], TARGET_HIGH, TARGET_LOW).astype(np.float32)
    order_rng = [np.random.default_rng([s, 1]) for s in seeds]  # the same orders in both modes and at every T
    test_order = np.stack([np.random.default_rng([s, 2]).permutation(P) for s in seeds])  # (S, P)
    ctx, cast = precision(sim)
    t0 = time.perf_counter()
    with ctx:
        w = cast(stack([init_weights(cfg.network, cfg.conductances, jax.random.key(s)) for s in seeds]))
        state = stack([init_state(cfg.network, 1, sim.dtype, sim.prospective)] * S)
        traces = None
        keys = jax.random.split(jax.random.key(cfg.seed), S)
        x_test = jnp.asarray(x[test_order], sim.dtype)

        def accuracy(w: Weights) -> np.ndarray:
            out = np.asarray(test_outputs(model, w, x_test, spp=spp))
            return np.mean(np.argmax(out, -1) == y[test_order], axis=1)

        def advance(stream: Stream, segment: int, done: int) -> None:
            nonlocal w, traces, state
            sol = simulate_ensemble(model, w, state, stream, duration=T, keys=keys, traces=traces,
                                    chunk_steps=200_000, progress=stop_check)
            w, traces, state = sol.weights, sol.traces, sol.state

        curve_epochs, curve, diverged, done = train_epochs(
            x, targets, order_rng, epochs, seg, advance, lambda segment: accuracy(w),
            lambda e: say(f"  {mode} T = {T:g} ms diverged: {e}"))
        w_max = [float(jnp.max(jnp.abs(a))) for a in w.W]
    final = curve[-1] if diverged is None else np.full(S, np.nan)
    return {
        "T": T, "mode": mode, "seeds": seeds, "epochs": done, "steps_per_pattern": spp,
        "final_accuracy": [float(a) for a in final],
        "curve_epochs": curve_epochs, "curve": [[float(a) for a in c] for c in curve],
        "max_abs_W": w_max, "diverged": diverged, "wall_s": round(time.perf_counter() - t0, 2),
    }


def _name(T: float, mode: str) -> str:
    return f"le_bars_T{T:g}_{mode}.json"


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every (T, mode) in turn, smallest T first; see the module docstring."""
    check(cfg)
    say = echo or (lambda text: None)
    with graceful_stop() as stop:
        results = _all_pairs(cfg, run_dir, say, stop)
    summary = _summarise(cfg, results)
    if run_dir is not None:
        _figure(run_dir, summary)
    return summary


def _all_pairs(cfg: Config, run_dir: RunDir | None, say: Callable[[str], None], stop: StopRequest
               ) -> dict[tuple[float, str], dict[str, Any]]:
    results: dict[tuple[float, str], dict[str, Any]] = {}
    for T in sorted(_durations(cfg)):
        for mode in MODES:
            path = None if run_dir is None else run_dir.file(_name(T, mode))
            if path is not None and run_dir.resume and path.exists():
                results[T, mode] = json.loads(path.read_text())
                say(f"T = {T:g} ms, {mode}: done before, {np.mean(results[T, mode]['final_accuracy']):.3f}")
                continue
            res = _train(cfg, mode, T, say, stop)
            results[T, mode] = res
            acc = np.asarray(res["final_accuracy"])
            say(f"T = {T:g} ms, {mode}: test accuracy {np.nanmean(acc):.3f} ± {np.nanstd(acc):.3f} over "
                f"{len(acc)} seeds ({res['wall_s']:.1f} s)")
            if run_dir is not None:
                run_dir.write_json(_name(T, mode), res)
                run_dir.log(T=T, mode=mode, accuracy_mean=float(np.nanmean(acc)), accuracy_std=float(np.nanstd(acc)),
                            wall_s=res["wall_s"], diverged=res["diverged"] is not None)
    return results


def _summarise(cfg: Config, results: dict[tuple[float, str], dict[str, Any]]) -> dict[str, Any]:
    durations = sorted(_durations(cfg))
    table: dict[str, dict[str, Any]] = {mode: {} for mode in MODES}
    for (T, mode), res in results.items():
        acc = np.asarray(res["final_accuracy"], float)
        table[mode][f"{T:g}"] = {
            "mean": float(np.nanmean(acc)), "std": float(np.nanstd(acc)), "min": float(np.nanmin(acc)),
            "max": float(np.nanmax(acc)), "per_seed": res["final_accuracy"], "epochs": res["epochs"],
            "wall_s": res["wall_s"], "diverged": res["diverged"], "max_abs_W": res["max_abs_W"],
        }
    headline = [f"final test accuracy on Bars after {cfg.training.epochs} epochs, mean over "
                f"{cfg.n_seeds} seeds (original / prospective):"]
    for T in durations:
        a, b = table["original"][f"{T:g}"]["mean"], table["prospective"][f"{T:g}"]["mean"]
        headline.append(f"  T = {T:g} ms: {a:.3f} / {b:.3f}")
    return {"durations_ms": durations, "seeds": [cfg.seed + i for i in range(cfg.n_seeds)],
            "epochs": cfg.training.epochs, "accuracy": table,
            "train_wall_s": round(sum(r["wall_s"] for r in results.values()), 1), "headline": headline}


def _figure(run_dir: RunDir, summary: dict[str, Any]) -> None:
    from ..plotting import figure

    fig = figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    T = np.asarray(summary["durations_ms"])
    for mode, color in zip(MODES, ("C0", "C3"), strict=True):
        rows = [summary["accuracy"][mode][f"{t:g}"] for t in T]
        mean = np.array([r["mean"] for r in rows])
        std = np.array([r["std"] for r in rows])
        ax.fill_between(T, mean - std, np.minimum(mean + std, 1.0), color=color, alpha=0.2, lw=0)
        ax.plot(T, mean, "o-", color=color, label=f"{mode} (mean ± std)")
        for t, r in zip(T, rows, strict=True):
            ax.plot([t] * len(r["per_seed"]), r["per_seed"], ".", color=color, ms=3, alpha=0.4)
    ax.set_xscale("log")
    ax.axhline(1 / 3, color="0.6", ls=":", lw=1, label="chance")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("presentation time T (ms)")
    ax.set_ylabel("final test accuracy")
    ax.set_title(f"Bars, 9-30-3, {summary['epochs']} epochs, {len(summary['seeds'])} seeds")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    run_dir.save_figure(fig, "le_bars.png")
