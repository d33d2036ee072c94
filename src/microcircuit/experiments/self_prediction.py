"""Fig. S1: learning the self-predicting state (docs/model.md §4, §7).

A 30-20-10 network with fixed random bottom-up and top-down weights sees random inputs U(0, 1) with no
target and noise σ = 0.1; only IP (rule 8) and PI (rule 9) learn. The apical mismatch ‖v_A‖² and the
interneuron mismatch ‖u_{k+1} − u^I_k‖², measured at the σ = 0 steady state on held-out inputs, fall
towards 0, and IP, PI approach their self-predicting values.

Most of the fall happens in the first few hundred patterns: it removes the component of the lateral
weights' error along the mean of the presynaptic rates (the logistic rates all sit near 0.5), which
carries most of the initial mismatch. The input-driven directions, with small rate variances, converge
on a time scale of ~10^5 patterns with the paper's η^IP, η^PI; so IP and PI stay far from their
self-predicting values as matrices (their relative distances are reported and plotted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import Config, Model
from ..dynamics import State, init_state
from ..network import Weights, self_predicting_weights
from ..runs import RunDir
from ..simulate import Stream, simulate
from .common import build, deterministic, run_segments, self_prediction_errors, weight_distance

__all__ = ["run", "runs_spiking", "stepped", "unused"]


def runs_spiking(cfg: Config) -> bool:
    """The experiment runs the spiking circuit too (``spiking``, docs/model.md §13)."""
    return True


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps."""
    return ("stimulus.duration", "schedule.settle", "plasticity.learning_lag", "record.stride")


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read: its inputs are always U(low, high) without a target."""
    return ("training", "init_from", "n_seeds", "stimulus.kind", "stimulus.teacher_sizes")


def random_inputs(cfg: Config, segment: int, n: int) -> Stream:
    """Segment ``segment``'s patterns: inputs U(low, high), no target; reproducible per segment."""
    st = cfg.stimulus
    rng = np.random.default_rng([cfg.seed, 1, segment])
    x = rng.uniform(st.low, st.high, (n, st.batch, cfg.network.sizes[0])).astype(np.float32)
    return Stream.of(x)


def _settled(model: Model, w: Weights, x: np.ndarray, settle: float) -> State:
    """The σ = 0, no-target state after ``settle`` ms on inputs x (n, n_0), all of them at once."""
    m0 = deterministic(model)
    s0 = init_state(model.network, x.shape[0], model.simulation.dtype)
    return simulate(m0, w, s0, Stream.of(x[None].astype(np.float32)), duration=settle, plastic=False).state


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    model, w0, state = build(cfg)
    st = cfg.stimulus
    x_test = np.random.default_rng([cfg.seed, 2]).uniform(st.low, st.high, (cfg.schedule.n_test, cfg.network.sizes[0]))

    def evaluate(w: Any) -> dict[str, Any]:
        return self_prediction_errors(model, w, x_test, cfg.schedule.settle) | weight_distance(model, w)

    sol, rows, recorded = run_segments(
        cfg, run_dir, model, w0, state, lambda s, n: random_inputs(cfg, s, n), evaluate,
        n_patterns=st.n_patterns, progress=progress, echo=echo,
    )
    first, last = rows[0], rows[-1]
    N = cfg.network.depth
    summary: dict[str, Any] = {"patterns": last["patterns"], "simulated_s": last["time_ms"] / 1000}
    for k in range(1, N):
        for name in ("apical_error", "inter_error"):
            key = f"{name}_{k}"
            summary[f"{key}_start"] = first[key]
            summary[f"{key}_end"] = last[key]
            summary[f"{key}_fall"] = first[key] / max(last[key], 1e-30)
        summary[f"apical_norm_{k}_fall"] = summary[f"apical_error_{k}_fall"] ** 0.5  # of ‖v_A‖ (rms)
        summary[f"PI_distance_{k}_start"] = first[f"PI_distance_{k}"]
        summary[f"IP_distance_{k}_start"] = first[f"IP_distance_{k}"]
        summary[f"PI_distance_{k}_end"] = last[f"PI_distance_{k}"]
        summary[f"IP_distance_{k}_end"] = last[f"IP_distance_{k}"]
    summary["headline"] = [
        f"layer {k}: apical mismatch ‖v_A‖² {summary[f'apical_error_{k}_start']:.3g} -> "
        f"{summary[f'apical_error_{k}_end']:.3g} ({summary[f'apical_error_{k}_fall']:.0f}x lower); "
        f"interneuron mismatch ‖u_{k + 1} - u^I_{k}‖² {summary[f'inter_error_{k}_start']:.3g} -> "
        f"{summary[f'inter_error_{k}_end']:.3g} ({summary[f'inter_error_{k}_fall']:.0f}x lower); relative distance "
        f"of PI, IP from their self-predicting values {summary[f'PI_distance_{k}_start']:.2f}, "
        f"{summary[f'IP_distance_{k}_start']:.2f} -> {summary[f'PI_distance_{k}_end']:.2f}, "
        f"{summary[f'IP_distance_{k}_end']:.2f}"
        for k in range(1, N)
    ]
    if run_dir is not None:
        PI_sp, IP_sp, _ = self_predicting_weights(sol.weights, model.conductances)
        arrays = {f"train_{k}": v for k, v in recorded.items()}
        arrays.update({f"eval_{k}": np.array([r[k] for r in rows]) for k in rows[0]})
        for i in range(N - 1):
            arrays[f"PI_{i + 1}"], arrays[f"PI_target_{i + 1}"] = sol.weights.PI[i], PI_sp[i]
            arrays[f"IP_{i + 1}"], arrays[f"IP_target_{i + 1}"] = sol.weights.IP[i], IP_sp[i]
        for when, w in (("start", w0), ("end", sol.weights)):  # the interneurons' prediction, held-out inputs
            s = _settled(model, w, x_test, cfg.schedule.settle)
            for i in range(N - 1):
                arrays[f"u_{i + 2}_{when}"], arrays[f"u_inter_{i + 1}_{when}"] = s.u[i + 1], s.u_inter[i]
        run_dir.save_arrays(RunDir.TRACES, arrays)
        _figures(run_dir, rows, arrays, N, st.duration)
    return summary


def _figures(run_dir: RunDir, rows: list[dict[str, Any]], arrays: dict[str, Any], N: int, duration: float) -> None:
    from ..plotting import figure

    pats = np.array([r["patterns"] for r in rows])
    fig = figure(figsize=(17, 3.8))
    axes = fig.subplots(1, 4)
    ax = axes[0]
    t = np.asarray(arrays.get("train_time_ms", []))
    for k in range(1, N):
        if f"train_apical_error_{k}" in arrays:  # every pattern's end, σ = 0.1 (one training input)
            p = t / duration
            ax.loglog(p, np.sqrt(arrays[f"train_apical_error_{k}"]), color="C0", lw=0.4, alpha=0.5)
            ax.loglog(p, arrays[f"train_inter_error_{k}"], color="C1", lw=0.4, alpha=0.5)
        ax.loglog(np.maximum(pats, 1), [np.sqrt(r[f"apical_error_{k}"]) for r in rows], "o-", color="C0", ms=4,
                  label=f"‖v_A‖, layer {k}")
        ax.loglog(np.maximum(pats, 1), [r[f"inter_error_{k}"] for r in rows], "s-", color="C1", ms=4,
                  label=f"‖u_{k + 1} − u^I_{k}‖²")
    ax.set_xlabel("patterns (100 ms each); 0 plotted at 1")
    ax.set_ylabel("markers: σ = 0, held-out (rms); lines: training")
    ax.legend(fontsize=8)
    ax.set_title("learning the self-predicting state")
    for ax, name, target_name, label in (
        (axes[1], "IP_1", "IP_target_1", "IP"),
        (axes[2], "PI_1", "PI_target_1", "PI"),
    ):
        t, v = np.ravel(arrays[target_name]), np.ravel(arrays[name])
        ax.plot(t, v, ".", ms=3)
        lim = [min(t.min(), v.min()), max(t.max(), v.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel(f"self-predicting {label} (docs/model.md §4)")
        ax.set_ylabel(f"learned {label}")
        ax.set_title(f"{label} at the end (relative distance {rows[-1][f'{label}_distance_1']:.2f})")
    ax = axes[3]
    if "u_2_end" in arrays:
        for when, color in (("start", "0.6"), ("end", "C2")):
            ax.plot(np.ravel(arrays[f"u_2_{when}"]), np.ravel(arrays[f"u_inter_1_{when}"]), ".", ms=2, color=color,
                    label=f"{when}")
        u = np.ravel(arrays["u_2_end"])
        ax.plot([u.min(), u.max()], [u.min(), u.max()], "k--", lw=0.8)
        ax.set_xlabel("u_2 (held-out inputs, σ = 0)")
        ax.set_ylabel("interneuron u^I_1")
        ax.set_title("the interneurons' prediction")
        ax.legend(fontsize=8, markerscale=4)
    fig.tight_layout()
    run_dir.save_figure(fig, "fig_s1.png")
