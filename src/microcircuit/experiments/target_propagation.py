"""Fig. 1: a new target propagates through a self-predicting network (docs/model.md §4, §5, §7).

The 30-20-10 network starts from the end state of Fig. S1 (``init_from``, by default the ``fig-s1``
preset run first with the same seed and network), so its interneurons cancel the top-down input. It is
shown one input pattern x ~ U(0, 1). For the first ``stimulus.duration`` ms there is no target; then a
new target comes on at the output: the output's own prediction for x shifted by U(−1, 1) per neuron.
All four rules learn (η_1 = 0.0011875, η_2 = 0.0005, η^IP = 0.0011875, η^PI = 0.0005) with noise
σ = 0.1, for ``stimulus.n_patterns`` × ``stimulus.duration`` ms. The mismatch between the nudged output
and the interneurons' prediction of it appears as an apical potential v_A = B r_2 + PI r^I in the
hidden layer (rules 8, 9 keep v_A ≈ 0 while there is no target); it drives rule (7), the output
learns the target, and v_A vanishes again.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ..config import Config, Model, Record
from ..dynamics import State
from ..errors import RunInterrupted
from ..network import Weights
from ..runs import RunDir
from ..simulate import Stream, simulate
from .common import build, check_init_from, deterministic, initial_weights, restarting_run

__all__ = ["check", "run", "stepped", "unused"]


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps."""
    return ("stimulus.duration", "schedule.settle", "plasticity.learning_lag", "record.stride")


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read: one input, its own target, fixed recorded quantities."""
    return ("training", "n_seeds", "stimulus.kind", "stimulus.teacher_sizes", "record.quantities")


def check(cfg: Config) -> list[str]:
    """``init_from`` must name a preset or a finished run folder whose weights fit this network."""
    check_init_from(cfg.init_from, cfg)
    return []

TARGET_SHIFT = 2.0  # u_trgt = prediction + U(−TARGET_SHIFT, TARGET_SHIFT) per output neuron
WINDOW = 300.0  # ms shown per trace panel
BIN = 50.0  # ms per point of the time-course panel


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The ``init_from`` run first (into ``init/``: checkpointed, resumed and stopped as that experiment
    is), then the target phase. That phase takes seconds (docs/runs.md), so it keeps no checkpoints: on
    ``--resume`` a finished ``init/`` is reused and the phase runs again from its start, to the same
    results; SIGINT/SIGTERM stop it at the next chunk boundary of the simulation
    (:func:`common.restarting_run`), leaving no results behind."""
    with restarting_run(run_dir, "the Fig. 1 target phase") as check:
        model, w_init, state = build(cfg)
        try:
            w0 = initial_weights(cfg, run_dir, w_init, progress=progress, echo=echo)  # on --resume, init/ continues
        except RunInterrupted as e:
            raise _init_interrupted(e, run_dir) from None
        return _target_phase(cfg, run_dir, model, w0, state, check, progress)


def _init_interrupted(e: RunInterrupted, run_dir: RunDir | None) -> RunInterrupted:
    """The init/ run stopped on a signal (and checkpointed): the same stop, logged in this run's
    metrics.jsonl, with the command that continues this run (not init/ alone)."""
    if run_dir is None:
        return e
    sub = run_dir.path / "init"
    run_dir.log(event="interrupted", signal=signal.Signals(e.signum).name, progress="in init/",
                checkpoint=None if e.checkpoint is None else str(e.checkpoint))
    message = e.message.replace(f"--resume {sub}", f"--resume {run_dir.path}")
    return RunInterrupted(e.signum, f"init/: {message}", e.checkpoint)


def _target_phase(cfg: Config, run_dir: RunDir | None, model: Model, w0: Weights, state: State,
                  check: Callable[[str], None], progress: bool) -> dict[str, Any]:
    st, dt = cfg.stimulus, model.simulation.dt
    n = cfg.network.sizes
    N = cfg.network.depth
    rng = np.random.default_rng([cfg.seed, 3])
    x = rng.uniform(st.low, st.high, (1, n[0])).astype(np.float32)

    # The output's prediction for x: the σ = 0 steady state without target (docs/model.md §2, §4).
    settle = deterministic(model)
    pred = simulate(settle, w0, state, Stream.of(x[None]), duration=cfg.schedule.settle, plastic=False)
    u_pred = np.asarray(pred.state.u[-1])
    target = (u_pred + rng.uniform(-TARGET_SHIFT, TARGET_SHIFT, u_pred.shape)).astype(np.float32)

    # Pattern 0: input alone; patterns 1..n_patterns: input and target, all rules on.
    P = 1 + st.n_patterns
    on = np.arange(P) >= 1
    stream = Stream.of(np.repeat(x[None], P, 0), np.repeat(target[None], P, 0), on)
    record = Record(("u", "u_inter", "v_apical", "rates", "u_trgt"), stride=cfg.record.stride)
    total, done = P * round(st.duration / dt), 0
    kept = "; init/ is complete and kept" if run_dir is not None and cfg.init_from.startswith("preset:") else ""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="step", unit_scale=True, leave=False)

    def on_chunk(steps: int) -> None:  # after every chunk of the simulation: a signal stops here
        nonlocal done
        done += steps
        if bar is not None:
            bar.update(steps)
        if done < total:
            check(f"{done} of {total} steps of the target phase done{kept}")

    check(f"before the target phase{kept}")
    try:
        sol = simulate(model, w0, state, stream, duration=st.duration, record=record,
                       key=jax.random.fold_in(jax.random.key(cfg.seed), 1), progress=on_chunk)
    finally:
        if bar is not None:
            bar.close()

    # Traces (batch of one); apical split into its top-down part B r_2 and interneuron part PI r^I.
    rec = {k: np.asarray(v)[:, 0] for k, v in sol.records.items()}
    t = sol.times
    t_on = st.duration  # the target comes on here
    traces: dict[str, np.ndarray] = {"time_ms": t, "t_on_ms": np.float64(t_on), "target": target[0]}
    for k in range(1, N):
        B = np.asarray(w0.B[k - 1])  # fixed (η_B = 0)
        traces[f"v_apical_{k}"] = rec[f"v_apical_{k}"]
        traces[f"top_down_{k}"] = rec[f"r_{k + 1}"] @ B.T  # B_k r_{k+1}
        traces[f"lateral_{k}"] = rec[f"v_apical_{k}"] - traces[f"top_down_{k}"]  # PI_k r^I_k
    traces["u_out"] = rec[f"u_{N}"]
    traces["u_trgt"] = rec["u_trgt"]
    apical = sum(np.sum(traces[f"v_apical_{k}"] ** 2, -1) for k in range(1, N))  # Σ_k ‖v_A,k‖²
    out_err = np.sum((traces["u_out"] - target[0]) ** 2, -1)  # ‖u_trgt − u_N‖²
    traces["apical_error"], traces["output_error"] = apical, out_err

    def sq_mean(names: list[str], lo: float, hi: float, ref: np.ndarray | float = 0.0) -> float:
        """‖⟨a⟩ − ref‖² summed over ``names``, with ⟨·⟩ the average over lo < t ≤ hi: the systematic
        part of a potential, without the σ = 0.1 noise that the average removes."""
        m = (t > lo) & (t <= hi)
        return float(sum(np.sum((traces[a][m].mean(0) - ref) ** 2) for a in names))

    t_end = t[-1]
    ap = [f"v_apical_{k}" for k in range(1, N)]
    summary: dict[str, Any] = {
        "learning_s": st.n_patterns * st.duration / 1000,
        "apical_error_before": sq_mean(ap, t_on - 80, t_on),
        "apical_error_onset": sq_mean(ap, t_on + 20, t_on + 100),
        "apical_error_end": sq_mean(ap, t_end - 80, t_end),
        "output_error_onset": sq_mean(["u_out"], t_on + 20, t_on + 100, target[0]),
        "output_error_end": sq_mean(["u_out"], t_end - 80, t_end, target[0]),
    }
    summary["apical_rise"] = summary["apical_error_onset"] / max(summary["apical_error_before"], 1e-30)
    summary["apical_fall"] = summary["apical_error_onset"] / max(summary["apical_error_end"], 1e-30)
    # What was learned: the σ = 0 prediction for x without the target.
    after = simulate(settle, sol.weights, state, Stream.of(x[None]), duration=cfg.schedule.settle, plastic=False)
    summary["prediction_error_before"] = float(np.sum((u_pred - target) ** 2))
    summary["prediction_error_after"] = float(np.sum((np.asarray(after.state.u[-1]) - target) ** 2))
    s = summary
    summary["headline"] = [
        f"apical error Σ‖⟨v_A⟩‖² (80 ms means): {s['apical_error_before']:.3g} before the target, "
        f"{s['apical_error_onset']:.3g} once it is on ({s['apical_rise']:.0f}x up), {s['apical_error_end']:.3g} "
        f"after {s['learning_s']:g} s of learning ({s['apical_fall']:.0f}x down)",
        f"output error ‖u_trgt − ⟨u_{N}⟩‖²: {s['output_error_onset']:.3g} (nudged, onset) -> "
        f"{s['output_error_end']:.3g}; without the target (σ = 0) the output's prediction moved from "
        f"{s['prediction_error_before']:.3g} to {s['prediction_error_after']:.3g} away from it",
    ]
    check(f"after the target phase, before writing its results{kept}")
    if run_dir is not None:
        run_dir.log(**{k: v for k, v in summary.items() if k != "headline"})
        run_dir.save_arrays(RunDir.TRACES, traces)
        _figures(run_dir, traces, N)
    return summary


def _figures(run_dir: RunDir, tr: dict[str, np.ndarray], N: int) -> None:
    from ..plotting import figure

    t, t_on = tr["time_ms"], float(tr["t_on_ms"])
    t_end = t[-1]
    j = int(np.argmax(np.abs(tr["target"] - tr["u_out"][np.searchsorted(t, t_on) - 1])))  # largest new error
    onset = (t > t_on + 20) & (t <= t_on + 100)
    i = int(np.argmax(np.mean(np.abs(tr["v_apical_1"][onset]), 0)))  # the hidden neuron with the largest error
    windows = [
        ("target switched on", t_on - 100, t_on + WINDOW - 100),
        ("during learning", t_on + 400, t_on + 400 + WINDOW),
        ("after learning", t_end - WINDOW, t_end),
    ]
    fig = figure(figsize=(13, 9.5))
    grid = fig.add_gridspec(4, 3, height_ratios=[1, 1, 1, 0.9], hspace=0.5, wspace=0.25)
    rows = [
        ([("u_out", j, "C0", 1.0, f"output u_{N},{j}"), ("u_trgt", j, "k--", 1.0, "target u_trgt")], "output"),
        ([("v_apical_1", i, "k", 1.0, f"apical v_A,{i}")], f"hidden neuron {i}, apical"),
        ([("top_down_1", i, "C2", 0.8, "top-down B r_2"), ("minus_lateral_1", i, "C3", 0.8, "−interneuron PI r^I")],
         "its two parts"),
    ]
    tr = {**tr, "minus_lateral_1": -tr["lateral_1"]}
    for c, (title, lo, hi) in enumerate(windows):
        m = (t >= lo) & (t <= hi)
        for r, (lines, ylabel) in enumerate(rows):
            ax = fig.add_subplot(grid[r, c])
            for name, unit, style, lw, label in lines:
                ax.plot(t[m] / 1000, tr[name][m, unit], style, lw=lw, label=label)
            if r == 1:
                ax.axhline(0, color="0.7", lw=0.5)
            if lo < t_on < hi:
                ax.axvline(t_on / 1000, color="0.6", lw=0.8)
            if r == 0:
                ax.set_title(title)
            if r == 2:
                ax.set_xlabel("time (s)")
            if c == 0:
                ax.set_ylabel(ylabel)
                ax.legend(fontsize=7, loc="best")
    ax = fig.add_subplot(grid[3, :])
    b = round(BIN / (t[1] - t[0]))  # bins of BIN ms: the systematic part, without the noise
    nb = len(t) // b
    tb = t[: nb * b].reshape(nb, b).mean(1)
    apical = sum(np.sum(tr[f"v_apical_{k}"][: nb * b].reshape(nb, b, -1).mean(1) ** 2, -1) for k in range(1, N))
    out = np.sum((tr["u_out"][: nb * b].reshape(nb, b, -1).mean(1) - tr["target"]) ** 2, -1)
    ax.semilogy(tb / 1000, apical, ".-", ms=2, lw=0.6, color="k",
                label=f"Σ‖⟨v_A⟩‖², hidden apical error ({BIN:g} ms means)")
    ax.semilogy(tb / 1000, out, ".-", ms=2, lw=0.6, color="C0", label=f"‖u_trgt − ⟨u_{N}⟩‖², output error")
    ax.axvline(t_on / 1000, color="0.6", lw=0.8)
    ax.set_xlabel("time (s); the target is on from the grey line")
    ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("Fig. 1: a new target at the output shows up as an apical error in the hidden layer", y=0.95)
    run_dir.save_figure(fig, "fig1.png")
