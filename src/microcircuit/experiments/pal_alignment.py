"""PAL's alignment experiment (Max et al. 2024; docs/model.md §12): B-only learning with the forward
weights frozen, the top-down weights B_k learning by PAL's rule, and how well they align with W_{k+1}ᵀ.

A circuit (by default 5-20-10-20-5, logistic φ, no biases) starts self-predicting (docs/model.md §4, so
PI_k = −B_k and IP_k ∝ W_{k+1}). Every seed has its own data set of ``stimulus.n_patterns`` random inputs
U(``stimulus.low``, ``stimulus.high``); every epoch shows them in a new random order, each held for
``stimulus.duration`` ms, back to back, without target, for ``training.epochs`` epochs. W and IP stay fixed
(whatever ``plasticity.eta_W``, ``eta_IP``); PI learns by rule (9) with ``plasticity.eta_PI``; B learns by
PAL's rule with the ``[pal]`` settings. Three arms, each ``n_seeds`` seeds as one vmapped ensemble, with the
same initial weights, data and order per seed:

- ``pal``: PAL with prospective rates (docs/model.md §8; ``simulation.prospective`` is not read);
- ``fa``: feedback alignment's fixed B (PAL off: no noise, η_B = 0), the reference that stays where B started;
- ``original``: PAL without prospective rates, the ablation (the noise is low-passed by the membranes).

Every ``schedule.segment`` epochs the angles ∠(W_{k+1}ᵀ, B_k) and ∠(B_k, φ'_k W_{k+1}ᵀ φ'_{k+1}) per hidden layer
are measured (:func:`microcircuit.alignment.alignment_angles`, φ' at the basal prediction of the feed-forward
pass over the seed's whole data set, averaged over its inputs). Each arm writes ``pal_alignment_ARM.json``
when it is done; ``--resume`` skips the arms already there.
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

from ..alignment import alignment_angles
from ..config import Config, ConfigError, Model, Pal
from ..dynamics import init_state, with_prospective
from ..ensemble import simulate_ensemble, stack
from ..errors import DivergenceError
from ..network import Weights, init_weights
from ..runs import RunDir, StopRequest
from ..simulate import Stream, precision
from .common import MNIST_TRAINING_KEYS, arm_stop_check, train_arms

__all__ = ["ARMS", "arm_model", "check", "run", "stepped", "unused"]

ARMS = ("pal", "fa", "original")
ANGLES = ("angle_WT_B", "angle_B_J")


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps."""
    return ("stimulus.duration",)


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read."""
    return (*MNIST_TRAINING_KEYS, "init_from", "record", "simulation.prospective",
            "plasticity.eta_W", "plasticity.eta_IP", "plasticity.eta_B",
            "stimulus.kind", "stimulus.batch", "stimulus.teacher_sizes", "stimulus.durations",
            "schedule.n_test", "schedule.settle", "schedule.checkpoint_every", "schedule.keep_checkpoints")


def check(cfg: Config) -> list[str]:
    """PAL must be on (``pal.enabled``), with B plastic in some layer."""
    if not cfg.pal.enabled:
        raise ConfigError("pal.enabled: the pal_alignment experiment compares PAL with feedback alignment; set it "
                          "to true")
    if not any(cfg.model.pal.eta_B):
        raise ConfigError("pal.eta_B: every hidden layer's rate is 0, so PAL would not learn; give B a rate")
    return []


def arm_model(cfg: Config, arm: str) -> Model:
    """The model of one arm: W and IP frozen, PI by rule (9); PAL with or without prospective rates, or off."""
    m = cfg.model
    plasticity = dataclasses.replace(m.plasticity, eta_W=0.0, eta_IP=0.0, eta_B=0.0)
    sim = dataclasses.replace(m.simulation, prospective=arm != "original")
    pal = Pal() if arm == "fa" else m.pal
    return Model(m.network, m.conductances, plasticity, sim, pal)


def _data(cfg: Config, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """The seed's data set (n_patterns, n_0) and the generator of its epoch orders (the same in every arm)."""
    st = cfg.stimulus
    x = np.random.default_rng([seed, 3]).uniform(st.low, st.high, (st.n_patterns, cfg.network.sizes[0]))
    return x.astype(np.float32), np.random.default_rng([seed, 4])


@functools.partial(jax.jit, static_argnames=("model",))
def _angles(model: Model, w: Weights, x: jax.Array) -> dict[str, jax.Array]:
    return jax.vmap(lambda w, x: alignment_angles(model, w, x))(w, x)


def _stack_angles(model: Model, w: Weights, x: jax.Array, layers: int) -> dict[str, np.ndarray]:
    """{angle name: (S, hidden layers)} for every member."""
    a = {k: np.asarray(v) for k, v in _angles(model, w, x).items()}
    return {name: np.stack([a[f"{name}_{k + 1}"] for k in range(layers)], axis=1) for name in ANGLES}


def _train(cfg: Config, arm: str, say: Callable[[str], None], stop: StopRequest | None = None) -> dict[str, Any]:
    """One arm for every seed (one ensemble); the angles every ``schedule.segment`` epochs."""

    stop_check = arm_stop_check(stop, arm)

    model = arm_model(cfg, arm)
    sim = model.simulation
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    S, epochs, seg = len(seeds), cfg.training.epochs, cfg.schedule.segment
    P, dur, layers = cfg.stimulus.n_patterns, cfg.stimulus.duration, cfg.network.depth - 1
    data = [_data(cfg, s) for s in seeds]
    ctx, cast = precision(sim)
    t0 = time.perf_counter()
    with ctx:
        w = cast(stack([init_weights(cfg.network, cfg.conductances, jax.random.key(s)) for s in seeds]))
        state = cast(stack([with_prospective(model, init_state(cfg.network, 1, sim.dtype, sim.prospective))] * S))
        traces = None
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 7))(jnp.asarray(seeds, jnp.uint32))
        x_all = jnp.asarray(np.stack([x for x, _ in data]), sim.dtype)  # (S, P, n_0)
        times, curve = [0.0], [_stack_angles(model, w, x_all, layers)]
        diverged = None
        done, segment = 0, 0
        while done < epochs:
            n = min(seg, epochs - done)
            idx = np.stack([np.concatenate([rng.permutation(P) for _ in range(n)]) for _, rng in data])  # (S, nP)
            xs = np.stack([x[i] for (x, _), i in zip(data, idx, strict=True)])[:, :, None, :]
            zeros = np.zeros((S, xs.shape[1], 1, cfg.network.sizes[-1]), np.float32)
            stream = Stream(xs, zeros, np.zeros(idx.shape, bool))
            seg_keys = jax.vmap(lambda k, i=segment: jax.random.fold_in(k, i))(keys)
            try:
                sol = simulate_ensemble(model, w, state, stream, duration=dur, keys=seg_keys, traces=traces,
                                        chunk_steps=100_000, progress=stop_check)
            except DivergenceError as e:
                diverged = f"epochs {done + 1}..{done + n}: {e}"
                say(f"  {arm} diverged: {e}")
                break
            w, traces, state = sol.weights, sol.traces, sol.state
            done += n
            segment += 1
            times.append(done * P * dur)
            curve.append(_stack_angles(model, w, x_all, layers))
        B_norm = [[float(v) for v in jnp.linalg.norm(b.reshape(S, -1), axis=1)] for b in w.B]
    final = curve[-1]
    return {
        "arm": arm, "seeds": seeds, "epochs": done, "time_ms": times,
        **{name: [c[name].tolist() for c in curve] for name in ANGLES},  # [time][seed][layer]
        "final": {name: {"mean": np.nanmean(final[name], 0).tolist(), "std": np.nanstd(final[name], 0).tolist(),
                         "per_seed": final[name].tolist()} for name in ANGLES},
        "B_norm": B_norm, "diverged": diverged, "wall_s": round(time.perf_counter() - t0, 2),
    }


def _name(arm: str) -> str:
    return f"pal_alignment_{arm}.json"


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every arm in turn (see the module docstring); the summary and, with a run folder, the figure."""
    check(cfg)
    say = echo or (lambda text: None)

    def report(arm: str, res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        line = (f"{arm}: ∠(Wᵀ, B) = {_fmt(res['final']['angle_WT_B'])}, ∠(B, φ'Wᵀφ') = "
                f"{_fmt(res['final']['angle_B_J'])} ({res['wall_s']:.1f} s)")
        return line, {f"{name}_{k + 1}": m for name in ANGLES for k, m in enumerate(res["final"][name]["mean"])}

    results = train_arms(run_dir, ARMS, _name, lambda arm, stop: _train(cfg, arm, say, stop), report, say)
    summary = _summarise(cfg, results)
    if run_dir is not None:
        _figure(run_dir, summary, results)
    return summary


def _fmt(stats: dict[str, Any]) -> str:
    return " / ".join(f"{m:.1f} ± {s:.1f}°" for m, s in zip(stats["mean"], stats["std"], strict=True))


def _summarise(cfg: Config, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    final = {arm: {name: {k: res["final"][name][k] for k in ("mean", "std", "per_seed")} for name in ANGLES}
             for arm, res in results.items()}
    curves = {arm: {"time_ms": res["time_ms"],
                    **{name: {"mean": np.nanmean(np.asarray(res[name], float), 1).tolist(),
                              "std": np.nanstd(np.asarray(res[name], float), 1).tolist()} for name in ANGLES}}
              for arm, res in results.items()}
    sizes, seconds = "-".join(map(str, cfg.network.sizes)), results["pal"]["time_ms"][-1] / 1000
    headline = [f"{sizes}, {cfg.n_seeds} seeds, {seconds:g} s simulated; final angles per hidden layer, mean ± s.d. "
                "over seeds:"]
    for arm in ARMS:
        headline.append(f"  {arm:9s} ∠(Wᵀ, B) {_fmt(final[arm]['angle_WT_B'])};  ∠(B, φ'Wᵀφ') "
                        f"{_fmt(final[arm]['angle_B_J'])}")
    return {"seeds": [cfg.seed + i for i in range(cfg.n_seeds)], "epochs": cfg.training.epochs,
            "simulated_ms": results["pal"]["time_ms"][-1], "final": final, "curves": curves,
            "diverged": {arm: res["diverged"] for arm, res in results.items()},
            "wall_s_per_arm": {arm: res["wall_s"] for arm, res in results.items()},
            "train_wall_s": round(sum(r["wall_s"] for r in results.values()), 1), "headline": headline}


def _figure(run_dir: RunDir, summary: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    from ..plotting import figure

    layers = len(summary["final"]["pal"]["angle_WT_B"]["mean"])
    fig = figure(figsize=(3.2 * layers, 5.6))
    axes = np.asarray(fig.subplots(2, layers, squeeze=False))
    labels = {"pal": "PAL (prospective)", "fa": "FA (B fixed)", "original": "PAL, original dynamics"}
    titles = {"angle_WT_B": "∠(W$_{k+1}^T$, B$_k$)", "angle_B_J": "∠(B$_k$, φ'W$_{k+1}^T$φ')"}
    for row, name in enumerate(ANGLES):
        for k in range(layers):
            ax = axes[row, k]
            for arm, color in zip(ARMS, ("C0", "C7", "C3"), strict=True):
                c = summary["curves"][arm]
                t = np.asarray(c["time_ms"]) / 1000
                m, s = np.asarray(c[name]["mean"])[:, k], np.asarray(c[name]["std"])[:, k]
                ax.fill_between(t, m - s, m + s, color=color, alpha=0.2, lw=0)
                ax.plot(t, m, color=color, label=labels[arm])
            ax.set_ylim(0, 120)
            ax.set_title(f"{titles[name]}, k = {k + 1}", fontsize=9)
            ax.set_xlabel("time (s)")
            if k == 0:
                ax.set_ylabel("angle (°)")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    run_dir.save_figure(fig, "pal_alignment.png")
