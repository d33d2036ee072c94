"""Fig. 2: nonlinear regression against a teacher network (docs/model.md §5, §7).

A student microcircuit 30-50-10 (10 interneurons, soft rectifier) starts from random weights, not
self-predicting. A teacher 30-20-10 with weights U(−1, 1) defines the target potential
u_trgt = 10·W2ᵗ φ(2·W1ᵗ x), i.e. the target rate r_trgt = φ(u_trgt); inputs x ~ U(−1, 1), a new one every
``stimulus.duration`` ms. All student weights but the fixed random top-down B learn (the paper's
η_1 = 0.0011875, η_2 = 0.0005, η^IP = 0.0011875, η^PI = 0.0059375 in the ``fig2`` preset; ``fig2-fast``
speeds them up, see ``presets.FIG2_SPEEDUP``) under noise σ = 0.3. On the same data, initial weights
and noise, two baselines: the shallow learner (the same circuit with the hidden bottom-up weights W_1
frozen, so only the output's W_2 learns the task; the lateral rules still run) and a backprop-trained
feed-forward network of the student's shape (docs/model.md §5's network and output error, plain SGD, one
step per trial of the size rule (7) takes for weak nudging: η_k · duration · λ_N·λ_A^{N−k}·c_k), and the
same network trained by feedback alignment (the error sent down through the student's fixed B_k instead of
W_{k+1}ᵀ, the same steps), the rule the circuit approximates when B is random.

Every ``schedule.segment`` trials all three are tested on ``schedule.n_test`` held-out inputs at σ = 0,
no target, after ``schedule.settle`` ms: squared error of the output rates against the teacher's; the
self-prediction mismatches ‖v_A‖² and ‖u_{k+1} − u^I_k‖² (the state must emerge); the angle between
W_{k+1} and B_kᵀ, for the circuit and for feedback alignment (the paper saw about 45°). ``n_seeds``
seeds (student, teacher, data and noise) run together as one vmapped ensemble.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..backprop import angle, backprop_updates, feedforward, update_scale
from ..config import Config, Model
from ..dynamics import dendrites, init_state, with_prospective
from ..ensemble import simulate_ensemble, stack
from ..errors import DivergenceError
from ..network import Weights, self_predicting_weights
from ..plasticity import zero_traces
from ..runs import RunDir
from ..simulate import Stream
from ..transfer import phi
from .common import Segment, build, deterministic, segmented_run

__all__ = ["member_summaries", "run", "stepped", "teacher_potential", "unused"]


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps."""
    return ("stimulus.duration", "schedule.settle", "plasticity.learning_lag")


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read: the targets always come from a teacher network."""
    return ("training", "init_from", "record", "stimulus.kind")

TEACHER_GAINS = (2.0, 10.0)  # u_trgt = 10·W2ᵗ φ(2·W1ᵗ x) (docs/model.md §7)
LEARNERS = ("microcircuit", "shallow", "backprop", "feedback_alignment")
FEEDFORWARD = ("backprop", "feedback_alignment")  # learners trained by _sgd, not simulated


def teacher_potential(t_W: tuple[np.ndarray, ...], cfg: Config, x: np.ndarray) -> np.ndarray:
    """The teacher's output potential g_N·W_Nᵗ φ(… φ(g_1·W_1ᵗ x)) for inputs x (..., n_0)."""
    tr = cfg.network.transfer
    r = x
    for i, W in enumerate(t_W):
        u = TEACHER_GAINS[1 if i == len(t_W) - 1 else 0] * (r @ W.T)
        r = np.asarray(phi(tr, jnp.asarray(u)))
    return u


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The four learners side by side, segment by segment, through
    :func:`~microcircuit.experiments.common.segmented_run`: checkpoints at segment boundaries hold the
    microcircuit's ensemble weights, traces and state (trees ``weights``, ``traces``, ``state``), the
    shallow learner's (tree ``shallow``), backprop's and feedback alignment's W, b (trees ``backprop``,
    ``feedback_alignment``), the seeds' keys and the metric rows, so ``--resume`` continues bit for bit;
    SIGINT/SIGTERM and divergence as in docs/runs.md."""
    st, sch = cfg.stimulus, cfg.schedule
    N = cfg.network.depth
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    S = len(seeds)
    model = cfg.model
    shallow = dataclasses.replace(  # the same circuit with W_1 .. W_{N−1} frozen
        model, plasticity=dataclasses.replace(model.plasticity, eta_W=(0.0,) * (N - 1) + model.plasticity.eta_W[-1:])
    )
    w0 = stack([build(dataclasses.replace(cfg, seed=s, n_seeds=1))[1] for s in seeds])
    task = _Task(cfg, seeds)
    x_test, u_test = task.data([2], sch.n_test)
    test = _Evaluator(model, x_test, np.asarray(phi(cfg.network.transfer, jnp.asarray(u_test))), sch.settle)
    # The backprop and feedback-alignment references: SGD on docs/model.md §5's network; per trial the step that
    # rule (7) takes in the weak-nudging limit, η_k · duration · λ_N·λ_A^{N−k}·c_k (backprop.update_scale).
    lrs = tuple(eta * st.duration * c for eta, c in zip(model.plasticity.eta_W, update_scale(model.conductances, N),
                                                          strict=True))
    circuit0 = {"weights": w0, "traces": jax.vmap(zero_traces)(w0),
                "state": stack([with_prospective(model, init_state(cfg.network, 1, model.simulation.dtype,
                                                                   model.simulation.prospective))] * S)}
    carry0 = {**circuit0, "shallow": circuit0, **{name: {"W": w0.W, "b": w0.b} for name in FEEDFORWARD}}

    def advance(seg: Segment, c: dict[str, Any], on_chunk: Callable[[int], None]) -> tuple[dict[str, Any], dict]:
        """Every learner through the segment's trials, on the same inputs, targets, initial weights and noise."""
        x, u = task.data([1, seg.index], seg.count)
        stream = Stream(x[:, :, None], u[:, :, None], np.ones((S, seg.count), bool))
        out: dict[str, Any] = {}
        for name, m, circuit in (("microcircuit", model, c), ("shallow", shallow, c["shallow"])):
            try:
                sol = simulate_ensemble(m, circuit["weights"], circuit["state"], stream, duration=st.duration,
                                        keys=seg.key, traces=circuit["traces"], progress=lambda k: on_chunk(k * S))
            except DivergenceError as e:
                raise _in_run(e, seg.t0, f"the {name} ensemble") from None
            out[name] = {"weights": sol.weights, "traces": sol.traces, "state": sol.state}
        for name in FEEDFORWARD:
            W, b = _sgd(model, c[name]["W"], c[name]["b"], w0.B, jnp.asarray(x), jnp.asarray(u), lrs,
                        name == "feedback_alignment")
            for i, a in enumerate((*W, *b)):
                if not bool(jnp.all(jnp.isfinite(a))):
                    kind, layer = ("W", i + 1) if i < len(W) else ("b", i - len(W) + 1)
                    raise DivergenceError(kind, layer, seg.t0 + seg.count * st.duration,
                                          f"of the {name.replace('_', ' ')} baseline became NaN/Inf")
            out[name] = {"W": W, "b": b}
        return {**out.pop("microcircuit"), **out}, {}

    def evaluate(c: dict[str, Any]) -> dict[str, Any]:
        """Per learner and seed (lists over seeds: the rows are the same in memory and after a resume)."""
        metrics = {"microcircuit": test.circuit(c["weights"]), "shallow": test.circuit(c["shallow"]["weights"]),
                   "backprop": test.feedforward(c["backprop"]["W"], c["backprop"]["b"]),
                   "feedback_alignment": test.feedforward(c["feedback_alignment"]["W"], c["feedback_alignment"]["b"],
                                                          w0.B)}
        return {f"{name}_{k}": np.asarray(v).tolist() for name in LEARNERS for k, v in metrics[name].items()}

    def describe(row: dict[str, Any]) -> str:
        lines = []
        for name in LEARNERS:
            parts = "  ".join(f"{k.removeprefix(name + '_')}={np.mean(v):.4g}" for k, v in row.items()
                              if k.startswith(name + "_"))
            lines.append(f"{name:18s} trials={row['patterns']}  {parts}  (means over seeds)")
        return "\n".join(lines)

    spp = round(st.duration / model.simulation.dt)
    final, rows, _ = segmented_run(
        cfg, run_dir, carry0, advance, evaluate, n_patterns=st.n_patterns, work_per_pattern=2 * spp * S,
        key=jnp.stack([jax.random.key(s) for s in seeds]), progress=progress, echo=echo, describe=describe,
    )
    trials = np.array([r["patterns"] for r in rows])
    curves = {k: np.array([r[k] for r in rows]) for k in rows[0] if k.startswith(LEARNERS)}  # (trial points, seeds)
    summary = _summarise(curves, trials, seeds, lrs, rows[-1].get("wall_s", 0.0))
    if run_dir is not None:
        arrays = {"trials": trials, "seeds": np.array(seeds), **curves, "bp_learning_rates": np.array(lrs)}
        for name, wf in (("microcircuit", final["weights"]), ("shallow", final["shallow"]["weights"])):
            arrays.update({f"{name}_W_{i + 1}": wf.W[i] for i in range(N)})
            arrays.update({f"{name}_B_{i + 1}": wf.B[i] for i in range(N - 1)})
        run_dir.save_arrays(RunDir.TRACES, arrays)
        _figures(run_dir, curves, trials, N)
    return summary


def member_summaries(run_dir: Path, summary: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Seed -> the summary of that member of the finished ensemble run in the folder ``run_dir`` (whose
    summary.json is ``summary``): the keys a run of that seed alone has (``headline`` aside), computed by
    this experiment's own summary code from the member's column of the (trial points, seeds) curves in
    traces.npz; ``train_wall_s`` is the whole ensemble's. Its presence marks this experiment as one that
    runs ``Config.n_seeds`` consecutive seeds as one vmapped program
    (:func:`microcircuit.experiments.member_summaries_of`)."""
    with np.load(Path(run_dir) / RunDir.TRACES) as z:
        arrays = {k: z[k] for k in z.files}
    seeds = [int(s) for s in arrays["seeds"]]
    trials = arrays["trials"]
    lrs = tuple(float(x) for x in arrays["bp_learning_rates"])
    shape = (len(trials), len(seeds))
    out = {}
    for i, s in enumerate(seeds):
        curves = {k: v[:, i: i + 1] for k, v in arrays.items() if v.shape == shape and k not in ("trials", "seeds")}
        member = _summarise(curves, trials, [s], lrs, float(summary.get("train_wall_s", 0.0)))
        member.pop("headline", None)
        out[s] = member
    return out


def _in_run(e: DivergenceError, t0: float, what: str) -> DivergenceError:
    """``simulate_ensemble`` counts time from its own start: the same error at the run's simulated time
    (the segment starts at ``t0``), noting ``what`` diverged."""
    head = e.args[0].partition(f" at t = {e.time:.4g} ms")[0]
    detail = head.partition(f"{e.quantity} of layer {e.layer} ")[2]
    out = DivergenceError(e.quantity, e.layer, t0 + e.time, detail, e.last_good)
    out.note = what
    return out


class _Task:
    """Per seed, a random teacher (weights U(−1, 1), docs/model.md §7) and reproducible input streams."""

    def __init__(self, cfg: Config, seeds: list[int]) -> None:
        self.cfg, self.seeds = cfg, seeds
        n = cfg.network.sizes
        ts = cfg.stimulus.teacher_sizes or (n[0], 20, n[-1])
        self.teachers = []
        for s in seeds:
            rng = np.random.default_rng([s, 4])
            self.teachers.append(tuple(rng.uniform(-1, 1, (ts[i + 1], ts[i])) for i in range(len(ts) - 1)))

    def data(self, tag: list[int], count: int) -> tuple[np.ndarray, np.ndarray]:
        """(S, count, n_0) inputs U(low, high) and the teachers' (S, count, n_N) target potentials."""
        st = self.cfg.stimulus
        x = np.stack([np.random.default_rng([s, *tag]).uniform(st.low, st.high, (count, self.cfg.network.sizes[0]))
                      for s in self.seeds])
        u = np.stack([teacher_potential(t, self.cfg, xi) for t, xi in zip(self.teachers, x, strict=True)])
        return x.astype(np.float32), u.astype(np.float32)


class _Evaluator:
    """Held-out tests of every seed at σ = 0, no target (docs/model.md §7)."""

    def __init__(self, model: Model, x: np.ndarray, r: np.ndarray, settle: float) -> None:
        self.model, self.m0, self.settle = model, deterministic(model), settle
        self.x, self.r = x, r
        S, B = x.shape[:2]
        self.state = stack([init_state(model.network, B, model.simulation.dtype)] * S)
        self.stream = Stream(x[:, None], np.zeros((S, 1, B, model.network.sizes[-1]), x.dtype), np.zeros((S, 1), bool))
        self.keys = jax.random.split(jax.random.key(0), S)

    def circuit(self, w: Weights) -> dict[str, np.ndarray]:
        """Per seed: test error of the circuit's output rates, self-prediction mismatches, W/B angles."""
        sol = simulate_ensemble(self.m0, w, self.state, self.stream, duration=self.settle, keys=self.keys,
                                plastic=False)
        s = sol.state
        out = {"test_error": self._error(s.u[-1])}
        d = jax.vmap(lambda w, s: dendrites(self.m0, w, s))(w, s)
        PI, IP, _ = jax.vmap(lambda w: self_predicting_weights(w, self.m0.conductances))(w)
        dist = lambda a, b: jnp.linalg.norm(a - b) / jnp.linalg.norm(b)  # noqa: E731
        for k in range(len(s.u_inter)):
            top_down = jnp.einsum("sbj,sij->sbi", d.r[k + 1], w.B[k])  # B_k r_{k+1}
            out[f"apical_error_{k + 1}"] = np.asarray(jnp.mean(jnp.sum(d.v_apical[k] ** 2, -1), -1))
            out[f"top_down_{k + 1}"] = np.asarray(jnp.mean(jnp.sum(top_down**2, -1), -1))
            out[f"apical_relative_{k + 1}"] = out[f"apical_error_{k + 1}"] / out[f"top_down_{k + 1}"]
            out[f"inter_error_{k + 1}"] = np.asarray(jnp.mean(jnp.sum((s.u[k + 1] - s.u_inter[k]) ** 2, -1), -1))
            out[f"PI_distance_{k + 1}"] = np.asarray(jax.vmap(dist)(w.PI[k], PI[k]))
            out[f"IP_distance_{k + 1}"] = np.asarray(jax.vmap(dist)(w.IP[k], IP[k]))
        return {**out, **_angles(w.W, w.B)}

    def feedforward(self, W: tuple[jax.Array, ...], b: tuple[jax.Array, ...],
                    B: tuple[jax.Array, ...] | None = None) -> dict[str, np.ndarray]:
        """Per seed: test error of a feed-forward learner; with its feedback matrices ``B``, the W/B angles."""
        u = jax.vmap(lambda W, b, x: feedforward(self.model, W, b, x)[-1])(W, b, jnp.asarray(self.x))
        return {"test_error": self._error(u), **_angles(W, B or ())}

    def _error(self, u_out: jax.Array) -> np.ndarray:
        """Mean over test inputs and output neurons of (r_N − r_trgt)², per seed."""
        r = phi(self.model.network.transfer, u_out)
        return np.asarray(jnp.mean((r - self.r) ** 2, axis=(1, 2)))


def _angles(W: tuple[jax.Array, ...], B: tuple[jax.Array, ...]) -> dict[str, np.ndarray]:
    """Per seed (leading axis), the angle between W_{k+1} and B_kᵀ for every B_k given."""
    return {f"angle_{k + 1}": np.asarray(jax.vmap(lambda a, b: angle(a, b.T))(W[k + 1], Bk)) for k, Bk in enumerate(B)}


@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _sgd(model: Model, W: tuple, b: tuple, B: tuple, x: jax.Array, u: jax.Array, lrs: tuple[float, ...],
         feedback_alignment: bool) -> tuple:
    """Every seed (leading axis) at once, one SGD step per trial: W_k += lr_k · backprop's update of
    docs/model.md §5 (:func:`microcircuit.backprop.backprop_updates`) for that trial's input and target,
    or with ``feedback_alignment`` the same update with the error sent down through the fixed B."""

    def member(W: tuple, b: tuple, B: tuple, x: jax.Array, u: jax.Array) -> tuple:
        def trial(c: tuple, xu: tuple) -> tuple:
            W, b = c
            dW, db = backprop_updates(model, Weights(W, b, B, (), (), ()), xu[0][None], xu[1][None],
                                      feedback_alignment=feedback_alignment)
            W = tuple(a + lr * d for a, d, lr in zip(W, dW, lrs, strict=True))
            if model.network.bias:
                b = tuple(a + lr * d for a, d, lr in zip(b, db, lrs, strict=True))
            return (W, b), None

        return jax.lax.scan(trial, (W, b), (x, u))[0]

    return jax.vmap(member)(W, b, B, x, u)


def _summarise(curves: dict[str, np.ndarray], trials: np.ndarray, seeds: list[int], lrs: tuple[float, ...],
               wall: float) -> dict[str, Any]:
    s: dict[str, Any] = {"trials": int(trials[-1]), "seeds": seeds, "bp_learning_rates": list(lrs),
                         "train_wall_s": round(wall, 1)}
    for name in LEARNERS:
        e = curves[f"{name}_test_error"]
        s[f"{name}_test_error_start"] = float(np.mean(e[0]))
        s[f"{name}_test_error_end"] = float(np.mean(e[-1]))
        s[f"{name}_test_error_end_per_seed"] = e[-1].tolist()
    mc, sh = curves["microcircuit_test_error"][-1], curves["shallow_test_error"][-1]
    s["microcircuit_beats_shallow_seeds"] = int(np.sum(mc < sh))
    s["shallow_over_microcircuit"] = float(np.mean(sh) / np.mean(mc))
    for key in ("apical_error_1", "apical_relative_1", "inter_error_1", "PI_distance_1", "IP_distance_1", "angle_1"):
        c = curves[f"microcircuit_{key}"]
        s[f"{key}_start"], s[f"{key}_end"] = float(np.mean(c[0])), float(np.mean(c[-1]))
    s["angle_1_end_per_seed"] = curves["microcircuit_angle_1"][-1].tolist()
    fa = curves["feedback_alignment_angle_1"]
    s["feedback_alignment_angle_1_start"] = float(np.mean(fa[0]))
    s["feedback_alignment_angle_1_end"] = float(np.mean(fa[-1]))

    def ms(key: str) -> str:
        e = curves[key][-1]
        return f"{np.mean(e):.3g} ± {np.std(e):.2g}"

    s["headline"] = [
        f"test error after {s['trials']} trials (mean ± sd over {len(seeds)} seeds): microcircuit "
        f"{ms('microcircuit_test_error')}, shallow {ms('shallow_test_error')}, backprop {ms('backprop_test_error')}, "
        f"feedback alignment {ms('feedback_alignment_test_error')}; "
        f"microcircuit below shallow in {s['microcircuit_beats_shallow_seeds']}/{len(seeds)} seeds "
        f"({s['shallow_over_microcircuit']:.2f}x lower on average)",
        f"self-prediction emerges: uncancelled top-down ‖v_A‖²/‖B r_2‖² {s['apical_relative_1_start']:.3g} -> "
        f"{s['apical_relative_1_end']:.3g}, ‖u_2 − u^I‖² {s['inter_error_1_start']:.3g} -> "
        f"{s['inter_error_1_end']:.3g}, distance of PI, IP from their self-predicting values "
        f"{s['PI_distance_1_start']:.2f}, {s['IP_distance_1_start']:.2f} -> {s['PI_distance_1_end']:.2f}, "
        f"{s['IP_distance_1_end']:.2f}",
        f"feedback alignment: angle(W_2, B_1ᵀ) {s['angle_1_start']:.0f}° -> {s['angle_1_end']:.0f}° "
        f"(per seed {', '.join(f'{a:.0f}°' for a in s['angle_1_end_per_seed'])}; paper: about 45°); "
        f"feed-forward feedback alignment {s['feedback_alignment_angle_1_start']:.0f}° -> "
        f"{s['feedback_alignment_angle_1_end']:.0f}°",
    ]
    return s


def _figures(run_dir: RunDir, curves: dict[str, np.ndarray], trials: np.ndarray, N: int) -> None:
    from ..plotting import figure


    def band(ax: Any, key: str, color: str, label: str, style: str = "-", seeds: bool = False) -> None:
        """Mean over seeds, with the min–max band (or, with ``seeds``, every seed as a thin line)."""
        c = curves[key]
        ax.plot(trials, c.mean(1), style, color=color, label=label, lw=1.6)
        if seeds:
            ax.plot(trials, c, style, color=color, lw=0.6, alpha=0.5)
        else:
            ax.fill_between(trials, c.min(1), c.max(1), color=color, alpha=0.2, lw=0)

    fig = figure(figsize=(14, 3.8))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    band(ax, "microcircuit_test_error", "C0", "microcircuit", seeds=True)
    band(ax, "shallow_test_error", "C1", "shallow learner (W_1 frozen)", seeds=True)
    band(ax, "backprop_test_error", "0.4", "backprop (reference)", "--", seeds=True)
    band(ax, "feedback_alignment_test_error", "C4", "feedback alignment (reference)", "--", seeds=True)
    ax.set_yscale("log")
    ax.set_xlabel("training trials")
    ax.set_ylabel("test error (output rates, σ = 0)")
    ax.set_title("nonlinear regression (thin: each seed)")
    ax.legend(fontsize=8)
    ax = axes[1]
    for k in range(1, N):
        band(ax, f"microcircuit_apical_relative_{k}", "k", f"‖v_A‖² / ‖B r_{k + 1}‖² (uncancelled top-down)")
        band(ax, f"microcircuit_inter_error_{k}", "C3", f"‖u_{k + 1} − u^I_{k}‖²")
        band(ax, f"microcircuit_PI_distance_{k}", "C4", "PI: distance from −B (relative)", ":")
        band(ax, f"microcircuit_IP_distance_{k}", "C5", "IP: distance from its §4 value", ":")
    ax.set_yscale("log")
    ax.set_xlabel("training trials")
    ax.set_ylabel("σ = 0, held-out inputs")
    ax.set_title("the self-predicting state emerges")
    ax.legend(fontsize=8)
    ax = axes[2]
    for k in range(1, N):
        band(ax, f"microcircuit_angle_{k}", "C2", f"∠(W_{k + 1}, B_{k}ᵀ), microcircuit")
        band(ax, f"feedback_alignment_angle_{k}", "C4", f"∠(W_{k + 1}, B_{k}ᵀ), feedback alignment", "--")
    ax.axhline(90, color="0.7", lw=0.5)
    ax.axhline(45, color="0.7", lw=0.5, ls=":")
    ax.set_ylim(0, 100)
    ax.set_xlabel("training trials")
    ax.set_ylabel("angle (degrees)")
    ax.set_title("forward weights align with feedback")
    ax.legend(fontsize=8)
    fig.suptitle("Fig. 2 (thick: mean over seeds; bands: min–max over seeds)", y=1.02)
    fig.tight_layout()
    run_dir.save_figure(fig, "fig2.png")
