"""Fig. S1: learning the self-predicting state (MODEL.md §4, §7).

A 30-20-10 network with fixed random bottom-up and top-down weights sees random inputs U(0, 1) with no
target and noise σ = 0.1; only IP (rule 8) and PI (rule 9) learn. The apical mismatch ‖v_A‖² and the
interneuron mismatch ‖u_{k+1} − u^I_k‖², measured at the σ = 0 steady state on held-out inputs, fall
towards 0, and IP, PI approach their self-predicting values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import Config
from ..network import self_predicting_weights
from ..runs import RunDir
from ..simulate import Stream
from .common import build, run_segments, self_prediction_errors, weight_distance

__all__ = ["run"]


def random_inputs(cfg: Config, segment: int, n: int) -> Stream:
    """Segment ``segment``'s patterns: inputs U(low, high), no target; reproducible per segment."""
    st = cfg.stimulus
    rng = np.random.default_rng([cfg.seed, 1, segment])
    x = rng.uniform(st.low, st.high, (n, st.batch, cfg.network.sizes[0])).astype(np.float32)
    return Stream.of(x)


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
        summary[f"PI_distance_{k}_end"] = last[f"PI_distance_{k}"]
        summary[f"IP_distance_{k}_end"] = last[f"IP_distance_{k}"]
    summary["headline"] = [
        f"layer {k}: apical mismatch ‖v_A‖² {summary[f'apical_error_{k}_start']:.3g} -> "
        f"{summary[f'apical_error_{k}_end']:.3g} ({summary[f'apical_error_{k}_fall']:.0f}x lower); "
        f"interneuron mismatch ‖u_{k + 1} - u^I_{k}‖² {summary[f'inter_error_{k}_start']:.3g} -> "
        f"{summary[f'inter_error_{k}_end']:.3g} ({summary[f'inter_error_{k}_fall']:.0f}x lower)"
        for k in range(1, N)
    ]
    if run_dir is not None:
        PI_sp, IP_sp, _ = self_predicting_weights(sol.weights, model.conductances)
        arrays = {f"train_{k}": v for k, v in recorded.items()}
        arrays.update({f"eval_{k}": np.array([r[k] for r in rows]) for k in rows[0]})
        for i in range(N - 1):
            arrays[f"PI_{i + 1}"], arrays[f"PI_target_{i + 1}"] = sol.weights.PI[i], PI_sp[i]
            arrays[f"IP_{i + 1}"], arrays[f"IP_target_{i + 1}"] = sol.weights.IP[i], IP_sp[i]
        run_dir.save_arrays(RunDir.TRACES, arrays)
        _figures(run_dir, rows, arrays, N)
    return summary


def _figures(run_dir: RunDir, rows: list[dict[str, Any]], arrays: dict[str, Any], N: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    pats = np.array([r["patterns"] for r in rows])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for k in range(1, N):
        axes[0].semilogy(pats, [r[f"apical_error_{k}"] for r in rows], "o-", ms=3, label=f"‖v_A‖², layer {k}")
        axes[0].semilogy(pats, [r[f"inter_error_{k}"] for r in rows], "s-", ms=3,
                         label=f"‖u_{k + 1} − u^I_{k}‖²")
    axes[0].set_xlabel("patterns (100 ms each)")
    axes[0].set_ylabel("mismatch at σ = 0 (held-out inputs)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("learning the self-predicting state")
    for ax, name, target_name, label in (
        (axes[1], "IP_1", "IP_target_1", "IP"),
        (axes[2], "PI_1", "PI_target_1", "PI"),
    ):
        t, v = np.ravel(arrays[target_name]), np.ravel(arrays[name])
        ax.plot(t, v, ".", ms=3)
        lim = [min(t.min(), v.min()), max(t.max(), v.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel(f"self-predicting {label} (MODEL.md §4)")
        ax.set_ylabel(f"learned {label}")
        ax.set_title(f"{label} at the end")
    fig.tight_layout()
    run_dir.save_figure(fig, "fig_s1.png")
    plt.close(fig)
