"""The link to backprop (docs/model.md §5): the circuit's weight update against backprop's, as the nudging weakens.

Self-predicting networks (PI = −B, IP from W, docs/model.md §4) of every depth from 2 up to that of
``network.sizes`` (depth d keeps the first d − 1 hidden layers and the output) see ``stimulus.batch``
inputs x ~ U(low, high), each with a target u_trgt = u⁻_N(x) + U(−1, 1) per output neuron. For each
nudging strength g_som from 0.8 down to 0.001 the circuit's σ = 0 steady state with the target on is
found in float64 (the fixed point of docs/model.md §2, :mod:`microcircuit.fixed_point`; the largest |du/dt|
left there is reported, and tests check it against ``simulate``). There, per sample and
layer, rule (7)'s instantaneous update δW_k = [φ(u_k) − φ(v̂_B,k)] r_{k−1}ᵀ is compared with backprop's
update of the feed-forward network the circuit computes, seeded with the paper's output error
e_N = D_N (u_trgt − u⁻_N) (:func:`microcircuit.backprop.backprop_updates`): their angle, and the size
ratio ‖δW_k‖ / ‖ΔW_k^BP‖, which §5 predicts to approach λ_N·λ_A^{N−k}·c_k as g_som → 0 (c_k: the
inverse attenuations of the feed-forward layers k..N, :func:`microcircuit.backprop.update_scale`). With
top-down weights B_k = W_{k+1}ᵀ the angle must vanish; with fixed random B (feedback alignment) it need not.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..backprop import angle, backprop_updates, feedforward, update_scale
from ..config import Config, Model, Plasticity
from ..dynamics import State, dendrites, derivatives
from ..fixed_point import steady_state
from ..network import Weights, init_weights, self_predicting
from ..plasticity import increments
from ..runs import RunDir
from .common import restarting_run

__all__ = ["G_SOM", "link", "networks", "run", "unused", "weights_for"]


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this analysis does not read: it compares fixed points, without a simulation or learning."""
    return ("training", "init_from", "n_seeds", "record", "schedule", "plasticity", "stimulus.kind",
            "stimulus.n_patterns", "stimulus.duration", "stimulus.teacher_sizes", "pal")

G_SOM = (0.8, 0.4, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)  # strong to weak nudging
FEEDBACK = ("transpose", "random")  # B_k = W_{k+1}ᵀ, or fixed random B_k
TARGET_SHIFT = 1.0  # u_trgt = u⁻_N + U(−TARGET_SHIFT, TARGET_SHIFT)


def networks(sizes: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The networks analysed: depth 2 .. len(sizes) − 1, each the first hidden layers plus the output."""
    return [(*sizes[: d], sizes[-1]) for d in range(2, len(sizes))]


def weights_for(model: Model, key: jax.Array, feedback: str) -> Weights:
    """Random W (scale ``network.init.W``), B = Wᵀ of the layer above or random (scale ``init.B``), and
    PI, IP at their self-predicting values (docs/model.md §4)."""
    spec = dataclasses.replace(model.network, init=dataclasses.replace(model.network.init, self_predicting=False))
    with jax.enable_x64(model.simulation.dtype == "float64"):
        w = init_weights(spec, model.conductances, key, model.simulation.dtype)
        if feedback == "transpose":
            w = w._replace(B=tuple(w.W[i + 1].T for i in range(len(w.B))))
        return self_predicting(w, model.conductances)


@functools.partial(jax.jit, static_argnums=0)
def _updates(probe: Model, w: Weights, s: State, x: jax.Array, t: jax.Array) -> tuple:
    """Per sample (leading axis): rule (7)'s δW_k at state s, and backprop's update (docs/model.md §5)."""

    def one(si: State, xi: jax.Array, ti: jax.Array) -> tuple[tuple[jax.Array, ...], ...]:
        dW = increments(probe, w, si, dendrites(probe, w, si)).W  # rule (7) at the steady state
        bW, _ = backprop_updates(probe, w, xi, ti)
        return dW, bW

    return jax.vmap(one)(s, x, t)


def link(model: Model, w: Weights, x: np.ndarray, u_trgt: np.ndarray, iterations: int = 2000) -> dict[str, Any]:
    """Rule (7) against backprop at the σ = 0 steady state with the target on, per sample (axis 0) and layer.

    The steady state is the fixed point of docs/model.md §2 (:func:`microcircuit.fixed_point.steady_state`).
    Returns ``angle`` (degrees), ``size`` = ‖δW_k‖, ``bp_size`` = ‖ΔW_k^BP‖, each (samples, N), and
    ``residual``, the largest |du/dt| of the circuit's equations there (0 at a steady state).
    """
    m0 = dataclasses.replace(model, simulation=dataclasses.replace(model.simulation, sigma=0.0))
    # Rule (7) and backprop do not involve g_som: one compiled update function serves the whole sweep.
    probe = Model(model.network, dataclasses.replace(model.conductances, g_som=1.0), Plasticity(eta_W=1.0, tau_w=0.0),
                  m0.simulation)
    with jax.enable_x64(model.simulation.dtype == "float64"):
        s = steady_state(m0, w, x, u_trgt, iterations=iterations)
        du, du_inter = derivatives(m0, s, dendrites(m0, w, s), jnp.asarray(True))  # the ODEs of §2 at s
        residual = max(float(jnp.max(jnp.abs(a))) for a in (*du, *du_inter))
        per_sample = jax.tree_util.tree_map(lambda a: a[:, None], s)  # (n, 1, width): n batches of one
        dW, bW = _updates(probe, w, per_sample, jnp.asarray(x)[:, None], jnp.asarray(u_trgt)[:, None])
        angles = np.stack([np.asarray(jax.vmap(angle)(a, b)) for a, b in zip(dW, bW, strict=True)], -1)
        size = np.stack([np.asarray(jnp.sqrt(jnp.sum(a**2, (1, 2)))) for a in dW], -1)
        bp_size = np.stack([np.asarray(jnp.sqrt(jnp.sum(b**2, (1, 2)))) for b in bW], -1)
    return {"angle": angles, "size": size, "bp_size": bp_size, "residual": residual}


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The analysis (seconds, most of it compilation): no checkpoints; ``--resume`` runs it again from the
    start, and SIGINT/SIGTERM stop it between two sweep points (:func:`common.restarting_run`)."""
    with restarting_run(run_dir, "the backprop-link analysis") as check:
        return _analyse(cfg, run_dir, check, echo)


def _analyse(cfg: Config, run_dir: RunDir | None, check: Callable[[str], None],
             echo: Callable[[str], None] | None) -> dict[str, Any]:
    st = cfg.stimulus
    results: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {"g_som": list(G_SOM), "samples": st.batch, "headline": []}
    rng = np.random.default_rng([cfg.seed, 5])
    total, done = len(networks(cfg.network.sizes)) * len(FEEDBACK) * len(G_SOM), 0
    for sizes in networks(cfg.network.sizes):
        N = len(sizes) - 1
        base = Model(dataclasses.replace(cfg.network, sizes=sizes), cfg.conductances, Plasticity(), cfg.simulation)
        x = rng.uniform(st.low, st.high, (st.batch, sizes[0]))
        shift = rng.uniform(-TARGET_SHIFT, TARGET_SHIFT, (st.batch, sizes[-1]))
        for feedback in FEEDBACK:
            tag = f"depth{N}_{feedback}"
            w = weights_for(base, jax.random.fold_in(jax.random.key(cfg.seed), N), feedback)
            with jax.enable_x64(base.simulation.dtype == "float64"):
                u_trgt = np.asarray(feedforward(base, w.W, w.b, jnp.asarray(x))[-1]) + shift
            rows = []
            for g_som in G_SOM:
                check(f"{done} of {total} sweep points done")
                model = dataclasses.replace(base, conductances=dataclasses.replace(base.conductances, g_som=g_som))
                rows.append(link(model, w, x, u_trgt))
                done += 1
            for key in ("angle", "size", "bp_size"):
                results[f"{tag}_{key}"] = np.stack([r[key] for r in rows])  # (g_som, samples, layer)
            results[f"{tag}_residual"] = np.array([r["residual"] for r in rows])
            if run_dir is not None:
                for g_som, r in zip(G_SOM, rows, strict=True):
                    run_dir.log(depth=N, feedback=feedback, g_som=g_som, angle=r["angle"].mean(0),
                                size=r["size"].mean(0), bp_size=r["bp_size"].mean(0), residual=r["residual"])
            g = [dataclasses.replace(base.conductances, g_som=v) for v in G_SOM]
            predicted = np.array([update_scale(c, N) for c in g])  # ∝ λ_N·λ_A^{N−k}, (g_som, layer)
            results[f"{tag}_predicted_scale"] = predicted
            ratio = results[f"{tag}_size"] / results[f"{tag}_bp_size"] / predicted[:, None, :]
            results[f"{tag}_scale_ratio"] = ratio
            ang = results[f"{tag}_angle"].mean(1)  # mean over samples, (g_som, layer)
            for k in range(N):
                summary[f"{tag}_angle_W{k + 1}_strong"] = float(ang[0, k])
                summary[f"{tag}_angle_W{k + 1}_weak"] = float(ang[-1, k])
                summary[f"{tag}_scale_ratio_W{k + 1}_weak"] = float(ratio[-1, :, k].mean())
            summary[f"{tag}_max_residual"] = float(results[f"{tag}_residual"].max())
            layers = ", ".join(f"W_{k + 1} {ang[0, k]:.3g}° -> {ang[-1, k]:.3g}°" for k in range(N))
            line = f"depth {N}, {'B = Wᵀ' if feedback == 'transpose' else 'random B'}: angle to backprop {layers}"
            line += f" (g_som {G_SOM[0]:g} -> {G_SOM[-1]:g}, mean of {st.batch} samples)"
            if feedback == "transpose":
                line += "; ‖δW_k‖ / (λ_N·λ_A^{N−k}·c_k·‖backprop‖) at the weakest: " + ", ".join(
                    f"{ratio[-1, :, k].mean():.3f}" for k in range(N)
                )
            summary["headline"].append(line)
            if summary[f"{tag}_max_residual"] > 1e-9:
                summary["headline"].append(f"WARNING: depth {N}, {feedback} B: the fixed point did not converge "
                                           f"(largest |du/dt| {summary[f'{tag}_max_residual']:.1e})")
            if echo:
                echo(f"depth {N}, {feedback} B: {len(G_SOM)} nudging strengths, largest |du/dt| at the fixed points "
                     f"{summary[f'{tag}_max_residual']:.1e}")
    check(f"all {total} sweep points done")
    if run_dir is not None:
        run_dir.save_arrays(RunDir.TRACES, {"g_som": np.array(G_SOM), **results})
        _figures(run_dir, results, cfg.network.sizes)
    return summary


def _figures(run_dir: RunDir, res: dict[str, np.ndarray], sizes: tuple[int, ...]) -> None:
    from ..plotting import figure

    nets = networks(sizes)
    g = np.array(G_SOM)
    fig = figure(figsize=(5.2 * len(nets), 7.5))
    axes = fig.subplots(2, len(nets), squeeze=False)
    for c, net in enumerate(nets):
        N = len(net) - 1
        ax = axes[0, c]
        for k in range(N):
            for feedback, style in (("transpose", "o-"), ("random", "s--")):
                a = res[f"depth{N}_{feedback}_angle"][:, :, k]
                label = f"W_{k + 1}, {'B = Wᵀ' if feedback == 'transpose' else 'random B'}"
                alpha = 1 if feedback == "transpose" else 0.6
                ax.plot(g, a.mean(1), style, color=f"C{k}", ms=4, label=label, alpha=alpha)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.axhline(1.0, color="0.7", lw=0.6, ls=":")
        ax.set_xlabel("nudging g_som (strong → weak)")
        ax.set_ylabel("angle to backprop's update (degrees)")
        ax.set_title(f"depth {N} ({'-'.join(map(str, net))})")
        ax.legend(fontsize=7)
        ax = axes[1, c]
        for k in range(N):
            size = res[f"depth{N}_transpose_size"][:, :, k].mean(1)
            bp = res[f"depth{N}_transpose_bp_size"][:, :, k].mean(1)
            pred = res[f"depth{N}_transpose_predicted_scale"][:, k] * bp
            ax.plot(g, size, "o-", color=f"C{k}", ms=4, label=f"‖δW_{k + 1}‖ (rule 7)")
            ax.plot(g, pred, ":", color=f"C{k}", lw=1.5, label=f"λ_N·λ_A^{N - k - 1}·c_{k + 1}·‖ΔW_{k + 1}^BP‖")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("nudging g_som (strong → weak)")
        ax.set_ylabel("update size, B = Wᵀ")
        ax.legend(fontsize=7)
    fig.suptitle("The link to backprop (docs/model.md §5): self-predicting networks at the steady state, σ = 0", y=1.0)
    fig.tight_layout()
    run_dir.save_figure(fig, "backprop_link.png")
