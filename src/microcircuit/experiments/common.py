"""Pieces every time-continuous experiment shares: building the network, a segmented training loop
with held-out evaluation, and the self-prediction measurement."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ..config import Config, Model, Record
from ..dynamics import State, init_state
from ..network import Weights, init_weights, self_predicting_weights
from ..runs import RunDir
from ..simulate import Solution, Stream, simulate

__all__ = ["build", "deterministic", "run_segments", "self_prediction_errors", "weight_distance"]


def build(cfg: Config) -> tuple[Model, Weights, State]:
    """The model, its initial weights (seeded by ``cfg.seed``) and a resting state of batch size B."""
    model = cfg.model
    key = jax.random.fold_in(jax.random.key(cfg.seed), 0)
    w = init_weights(model.network, model.conductances, key, model.simulation.dtype)
    return model, w, init_state(model.network, cfg.stimulus.batch, model.simulation.dtype)


def deterministic(model: Model) -> Model:
    """The same model with σ = 0 (testing conditions, MODEL.md §2)."""
    return dataclasses.replace(model, simulation=dataclasses.replace(model.simulation, sigma=0.0))


def self_prediction_errors(model: Model, w: Weights, x_test: np.ndarray, settle: float) -> dict[str, float]:
    """Mean ‖v_A,k‖² and ‖u_{k+1} − u^I_k‖² per hidden layer at the σ = 0, no-target steady state,
    averaged over the held-out inputs ``x_test`` (n, n_0), after ``settle`` ms."""
    m0 = deterministic(model)
    stream = Stream.of(x_test[None].astype(np.float32))
    steps = round(settle / model.simulation.dt)
    sol = simulate(
        m0, w, init_state(model.network, x_test.shape[0], model.simulation.dtype), stream, duration=settle,
        plastic=False, record=Record(("self_prediction",), stride=steps),
    )
    return {k: float(v[-1]) for k, v in sol.records.items()}


def weight_distance(model: Model, w: Weights) -> dict[str, float]:
    """Relative distance of PI and IP from their self-predicting values (MODEL.md §4), per hidden layer."""
    PI, IP, _ = self_predicting_weights(w, model.conductances)
    out = {}
    for i in range(len(PI)):
        out[f"PI_distance_{i + 1}"] = float(np.linalg.norm(w.PI[i] - PI[i]) / np.linalg.norm(PI[i]))
        out[f"IP_distance_{i + 1}"] = float(np.linalg.norm(w.IP[i] - IP[i]) / np.linalg.norm(IP[i]))
    return out


def run_segments(
    cfg: Config,
    run: RunDir | None,
    model: Model,
    weights: Weights,
    state: State,
    make_stream: Callable[[int, int], Stream],
    evaluate: Callable[[Weights], dict[str, Any]],
    *,
    n_patterns: int,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> tuple[Solution, list[dict[str, Any]], dict[str, np.ndarray]]:
    """Train for ``n_patterns`` patterns in segments of ``cfg.schedule.segment``.

    ``make_stream(segment_index, n)`` gives the segment's patterns; segment s uses the noise key
    ``fold_in(key(seed), s + 1)``. After every segment ``evaluate(weights)`` is logged to the run's
    metrics. Returns the last solution, the metric rows and the concatenated recorded traces.
    """
    seg = cfg.schedule.segment
    n_seg = -(-n_patterns // seg)
    duration = cfg.stimulus.duration
    steps_per_pattern = round(duration / model.simulation.dt)
    rows = [{"patterns": 0, "time_ms": 0.0, **evaluate(weights)}]
    if run is not None:
        run.log(**rows[0])
    if echo:
        echo(_fmt(rows[0]))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_patterns * steps_per_pattern, unit="step", unit_scale=True, leave=False)
    traces = None
    pieces: list[dict[str, np.ndarray]] = []
    times: list[np.ndarray] = []
    sol = None
    root = jax.random.key(cfg.seed)
    t_wall = time.perf_counter()
    try:
        for s in range(n_seg):
            n = min(seg, n_patterns - s * seg)
            t0 = s * seg * duration
            sol = simulate(
                model, weights, state, make_stream(s, n), duration=duration,
                key=jax.random.fold_in(root, s + 1), traces=traces, record=cfg.record, t0=t0,
                progress=bar.update if bar is not None else False,
            )
            weights, state, traces = sol.weights, sol.state, sol.traces
            if sol.records:
                pieces.append(sol.records)
                times.append(sol.times)
            row = {
                "patterns": s * seg + n,
                "time_ms": t0 + n * duration,
                "wall_s": round(time.perf_counter() - t_wall, 2),
                **evaluate(weights),
            }
            rows.append(row)
            if run is not None:
                run.log(**row)
            if echo:
                echo(_fmt(row))
    finally:
        if bar is not None:
            bar.close()
    recorded = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]} if pieces else {}
    if times:
        recorded["time_ms"] = np.concatenate(times)
    assert sol is not None
    return sol, rows, recorded


def _fmt(row: dict[str, Any]) -> str:
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "wall_s"]
    return "  ".join(parts)
