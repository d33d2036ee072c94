"""PAL's teacher–student test (Max et al. 2024; docs/model.md §12): a student whose top-down weights start
with the wrong sign learns a teacher only if B can flip, which PAL's rule does and a fixed B cannot.

Teacher and student have the same layers (by default 1-1-1, logistic φ, no biases). The teacher's every
bottom-up weight is ``TEACHER_W`` (= 2); its output for an input is the feed-forward potential u⁻_N of
docs/model.md §5 (the steady state of a self-predicting teacher circuit), which the student's output is
nudged towards. The student's W_k and B_k start negative, −|U(−scale, scale)| with ``network.init``'s
scales, i.e. U(−scale, 0): B_k has the opposite sign of the W_{k+1} the student must learn, so with a fixed
B the hidden error points the wrong way. The student starts self-predicting (PI, IP, docs/model.md §4) and
learns W, IP and PI (``plasticity``, with its τ_w trace) in prospective mode (docs/model.md §8); B learns by
PAL (``[pal]``). Every seed has its own ``stimulus.n_patterns`` inputs U(``stimulus.low``,
``stimulus.high``), shown in a new random order every epoch, each for ``stimulus.duration`` ms with its
target on, for ``training.epochs`` epochs. Arms, each ``n_seeds`` seeds as one vmapped ensemble, with the same
initial weights, data and order per seed:

- ``pal``: B learns by PAL;
- ``fa``: feedback alignment, PAL off (B fixed, no apical noise).

Every ``schedule.segment`` epochs: the student's squared output error ⟨‖u⁻_N − u_teacher‖²⟩ on the seed's
inputs, through the feed-forward network of docs/model.md §5 (backprop trains this network to 0 error,
since the teacher is one of the students), and the student's weights. Each arm writes
``pal_teacher_ARM.json`` when it is done; ``--resume`` skips the arms already there.
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

from ..backprop import feedforward
from ..config import Config, ConfigError, Model, Pal
from ..dynamics import init_state, with_prospective
from ..ensemble import simulate_ensemble, stack
from ..errors import DivergenceError
from ..network import Weights, init_weights, self_predicting
from ..runs import RunDir, StopRequest
from ..simulate import Stream, precision
from .common import MNIST_TRAINING_KEYS, arm_stop_check, train_arms

__all__ = ["ARMS", "TEACHER_W", "arm_model", "check", "run", "stepped", "student_weights", "teacher_outputs",
           "unused"]

ARMS = ("pal", "fa")
TEACHER_W = 2.0


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps."""
    return ("stimulus.duration",)


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read."""
    return (*MNIST_TRAINING_KEYS, "init_from", "record", "simulation.prospective",
            "plasticity.eta_B", "network.init.self_predicting", "network.init.B_transposed",
            "stimulus.kind", "stimulus.batch", "stimulus.teacher_sizes", "stimulus.durations",
            "schedule.n_test", "schedule.settle", "schedule.checkpoint_every", "schedule.keep_checkpoints")


def check(cfg: Config) -> list[str]:
    """PAL must be on with B plastic; no biases (the teacher has none)."""
    if not cfg.pal.enabled or not any(cfg.model.pal.eta_B):
        raise ConfigError("pal.enabled: the pal_teacher experiment compares PAL (pal.enabled = true, pal.eta_B > 0) "
                          "with a fixed B")
    if cfg.network.bias:
        raise ConfigError("network.bias: the teacher has no biases; set it to false")
    return []


def arm_model(cfg: Config, arm: str) -> Model:
    """The model of one arm: prospective; PAL as configured (``pal``) or off (``fa``)."""
    m = cfg.model
    sim = dataclasses.replace(m.simulation, prospective=True)
    plasticity = dataclasses.replace(m.plasticity, eta_B=0.0)
    return Model(m.network, m.conductances, plasticity, sim, m.pal if arm == "pal" else Pal())


def student_weights(cfg: Config, seed: int) -> Weights:
    """The student's start: W_k and B_k = −|U(−scale, scale)|, then PI and IP self-predicting (§4)."""
    w = init_weights(cfg.network, cfg.conductances, jax.random.key(seed))
    w = w._replace(W=tuple(-jnp.abs(a) for a in w.W), B=tuple(-jnp.abs(a) for a in w.B))
    return self_predicting(w, cfg.conductances)


def teacher_outputs(model: Model, x: jax.Array) -> jax.Array:
    """The teacher's output potentials u⁻_N for inputs x (P, n_0): every bottom-up weight ``TEACHER_W``."""
    n = model.network.sizes
    W = tuple(jnp.full((n[i + 1], n[i]), TEACHER_W, x.dtype) for i in range(len(n) - 1))
    return feedforward(model, W, tuple(jnp.zeros(n[i + 1], x.dtype) for i in range(len(n) - 1)), x)[-1]


@functools.partial(jax.jit, static_argnames=("model",))
def _errors(model: Model, w: Weights, x: jax.Array, u_t: jax.Array) -> jax.Array:
    """(S,) mean over the inputs of ‖u⁻_N − u_teacher‖² per member."""
    out = jax.vmap(lambda w, x: feedforward(model, w.W, w.b, x)[-1])(w, x)
    return jnp.mean(jnp.sum((out - u_t) ** 2, -1), -1)


def _train(cfg: Config, arm: str, say: Callable[[str], None], stop: StopRequest | None = None) -> dict[str, Any]:
    stop_check = arm_stop_check(stop, arm)

    model = arm_model(cfg, arm)
    sim, st = model.simulation, cfg.stimulus
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    S, epochs, seg, P = len(seeds), cfg.training.epochs, cfg.schedule.segment, st.n_patterns
    n0 = cfg.network.sizes[0]
    xs = [np.random.default_rng([s, 3]).uniform(st.low, st.high, (P, n0)).astype(np.float32) for s in seeds]
    orders = [np.random.default_rng([s, 4]) for s in seeds]
    ctx, cast = precision(sim)
    t0 = time.perf_counter()
    with ctx:
        x_all = jnp.asarray(np.stack(xs), sim.dtype)  # (S, P, n_0)
        u_t = jax.vmap(lambda x: teacher_outputs(model, x))(x_all)  # (S, P, n_N)
        u_np = np.asarray(u_t, np.float32)
        w = cast(stack([student_weights(cfg, s) for s in seeds]))
        state = cast(stack([with_prospective(model, init_state(cfg.network, 1, sim.dtype, True))] * S))
        traces = None
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 7))(jnp.asarray(seeds, jnp.uint32))

        def snapshot(w: Weights) -> dict[str, Any]:
            return {"error": np.asarray(_errors(model, w, x_all, u_t)).tolist(),
                    "W": [np.asarray(a).reshape(S, -1).tolist() for a in w.W],
                    "B": [np.asarray(a).reshape(S, -1).tolist() for a in w.B]}

        times, curve = [0.0], [snapshot(w)]
        diverged = None
        done, segment = 0, 0
        while done < epochs:
            n = min(seg, epochs - done)
            idx = np.stack([np.concatenate([rng.permutation(P) for _ in range(n)]) for rng in orders])  # (S, nP)
            x_seg = np.stack([x[i] for x, i in zip(xs, idx, strict=True)])[:, :, None, :]
            t_seg = np.stack([u_np[m][i] for m, i in enumerate(idx)])[:, :, None, :]
            stream = Stream(x_seg, t_seg, np.ones(idx.shape, bool))
            seg_keys = jax.vmap(lambda k, i=segment: jax.random.fold_in(k, i))(keys)
            try:
                sol = simulate_ensemble(model, w, state, stream, duration=st.duration, keys=seg_keys, traces=traces,
                                        chunk_steps=100_000, progress=stop_check)
            except DivergenceError as e:
                diverged = f"epochs {done + 1}..{done + n}: {e}"
                say(f"  {arm} diverged: {e}")
                break
            w, traces, state = sol.weights, sol.traces, sol.state
            done += n
            segment += 1
            times.append(done * P * st.duration)
            curve.append(snapshot(w))
    final = curve[-1]
    err = np.asarray(final["error"])
    B_last = np.asarray(final["B"][0])  # (S, n)
    return {
        "arm": arm, "seeds": seeds, "epochs": done, "time_ms": times, "curve": curve,
        "final_error": {"mean": float(np.mean(err)), "std": float(np.std(err)), "per_seed": err.tolist()},
        "initial_error": curve[0]["error"], "B_1_positive_fraction": float(np.mean(B_last > 0)),
        "diverged": diverged, "wall_s": round(time.perf_counter() - t0, 2),
    }


def _name(arm: str) -> str:
    return f"pal_teacher_{arm}.json"


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both arms in turn (see the module docstring); the summary and, with a run folder, the figure."""
    check(cfg)
    say = echo or (lambda text: None)

    def report(arm: str, res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        e = res["final_error"]
        line = (f"{arm}: error {e['mean']:.3g} ± {e['std']:.2g}, B_1 > 0 in {res['B_1_positive_fraction']:.0%} "
                f"({res['wall_s']:.1f} s)")
        return line, {"error": e["mean"], "B_positive": res["B_1_positive_fraction"]}

    results = train_arms(run_dir, ARMS, _name, lambda arm, stop: _train(cfg, arm, say, stop), report, say)
    summary = _summarise(cfg, results)
    if run_dir is not None:
        _figure(run_dir, results)
    return summary


def _summarise(cfg: Config, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    headline = [f"teacher–student {'-'.join(map(str, cfg.network.sizes))}, {cfg.n_seeds} seeds, "
                f"{cfg.training.epochs} epochs; final squared output error (backprop reaches 0), mean ± s.d.:"]
    for arm in ARMS:
        r = results[arm]
        e, start, pos = r["final_error"], np.mean(r["initial_error"]), r["B_1_positive_fraction"]
        headline.append(f"  {arm:4s} {e['mean']:.3g} ± {e['std']:.2g} (start {start:.3g}); B_1 positive in {pos:.0%} "
                        "of seeds")
    return {"seeds": [cfg.seed + i for i in range(cfg.n_seeds)], "epochs": cfg.training.epochs,
            "teacher_W": TEACHER_W,
            "final_error": {arm: r["final_error"] for arm, r in results.items()},
            "initial_error": {arm: r["initial_error"] for arm, r in results.items()},
            "B_1_positive_fraction": {arm: r["B_1_positive_fraction"] for arm, r in results.items()},
            "curves": {arm: {"time_ms": r["time_ms"],
                             "error_mean": [float(np.mean(c["error"])) for c in r["curve"]],
                             "B_1_mean": [float(np.mean(c["B"][0])) for c in r["curve"]]}
                       for arm, r in results.items()},
            "diverged": {arm: r["diverged"] for arm, r in results.items()},
            "wall_s_per_arm": {arm: r["wall_s"] for arm, r in results.items()}, "headline": headline}


def _figure(run_dir: RunDir, results: dict[str, dict[str, Any]]) -> None:
    from ..plotting import figure

    fig = figure(figsize=(9, 3.4))
    ax_e, ax_b, ax_w = fig.subplots(1, 3)
    for arm, color in zip(ARMS, ("C0", "C7"), strict=True):
        r = results[arm]
        t = np.asarray(r["time_ms"]) / 1000
        err = np.asarray([c["error"] for c in r["curve"]])  # (T, S)
        B = np.asarray([np.asarray(c["B"][0])[:, 0] for c in r["curve"]])
        W = np.asarray([np.asarray(c["W"][-1])[:, 0] for c in r["curve"]])
        ax_e.semilogy(t, err, color=color, alpha=0.6, lw=1)
        ax_b.plot(t, B, color=color, alpha=0.6, lw=1)
        ax_w.plot(t, W, color=color, alpha=0.6, lw=1)
        ax_e.plot([], [], color=color, label={"pal": "PAL", "fa": "FA (B fixed)"}[arm])
    ax_b.axhline(0, color="0.6", lw=0.8)
    ax_e.set_title("output error vs teacher", fontsize=9)
    ax_b.set_title("B$_1$ (first entry)", fontsize=9)
    ax_w.set_title(f"W$_N$ (first entry; teacher {TEACHER_W:g})", fontsize=9)
    for ax in (ax_e, ax_b, ax_w):
        ax.set_xlabel("time (s)")
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    run_dir.save_figure(fig, "pal_teacher.png")
