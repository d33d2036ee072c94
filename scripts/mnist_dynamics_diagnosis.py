"""Two diagnostics of issue 6 (docs/results.md, "Why the dynamics learn more slowly per epoch").

``update RUN``: one mini-batch's weight change through the dynamics vs the steady-state mode, in float64
and linearised (``lr_scale`` 1e-3), at the best weights of an ``mnist-dynamics`` run folder. Prints the
cosine and norm ratio per matrix for T = 24 ms / lag 8 ms and T = 60 ms / lag 30 ms, against the
steady state with ``--passes`` up/down passes (1 = the paper's scheme, 30 ≈ converged).

``steady``: the ``mnist`` preset on the first 10,000 training images for 3 epochs (decay 0.8), its
validation error on the first 2,000 validation images (the images the levers script checks).

``settle RUN``: how fast the circuit settles. Ten training images with their targets are presented for
100 ms (plasticity off, float64) after ten others, and the relative distance of every layer's potentials
from the exact fixed point is printed against time. ``--weights FILE`` picks a checkpoint or weights file
(default: the run's best weights; ``initial`` = the run's initial weights); ``--scale-B s`` multiplies B
and PI by s, which keeps the self-predicting state and the network function but scales the top-down loop.

    python scripts/mnist_dynamics_diagnosis.py update /tmp/mnist_dyn --passes 30 --data PATH/mnist.npz
    python scripts/mnist_dynamics_diagnosis.py steady --data PATH/mnist.npz
    python scripts/mnist_dynamics_diagnosis.py settle RUN --weights RUN/checkpoints/ckpt-000000000009.npz \
        [--scale-B 0.33] --data PATH/mnist.npz
"""

from __future__ import annotations

import argparse
import dataclasses as dc

import jax
import jax.numpy as jnp
import numpy as np

from microcircuit.config import Record, apply_overrides
from microcircuit.dynamics import dendrites, init_state
from microcircuit.experiments import mnist as mx
from microcircuit.experiments.common import build
from microcircuit.fixed_point import steady_state
from microcircuit.network import Weights
from microcircuit.presets import get_preset
from microcircuit.runs import resume_config
from microcircuit.simulate import Stream, simulate
from microcircuit.steady_state import train_step
from microcircuit.transfer import phi_inv

LR = 1e-3


def load_weights(path: str, w0: Weights) -> Weights:
    """Float64 weights from a ``weights_best.npz`` or a run checkpoint (``t/weights/W/0``...)."""
    z = np.load(path)
    if "W_1" in z.files:
        w = mx.load_best_weights(path, w0)
    else:
        w = Weights(*(tuple(jnp.asarray(z[f"t/weights/{n}/{i}"]) for i in range(len(arrays)))
                      for n, arrays in zip(Weights._fields, w0, strict=True)))
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), w)


def update(run: str, passes: int, data: str) -> None:
    jax.config.update("jax_enable_x64", True)
    cfg = apply_overrides(resume_config(run), ["simulation.dtype=float64", f"training.data={data}"])
    model, w0, _ = build(cfg)
    w = load_weights(f"{run}/weights_best.npz", w0)
    ss_model, _, _ = build(apply_overrides(get_preset("mnist"), ["simulation.dtype=float64"]))
    x, y = mx.load_split(cfg)["train"]
    ut = phi_inv(model.network.transfer, np.where(np.eye(10, dtype=bool)[y], 0.8, 0.1))
    idx = np.random.default_rng(0).choice(len(x), 20, replace=False)
    xb, tb, x_prev, t_prev = x[idx[:10]] * 1.0, ut[idx[:10]], x[idx[10:]] * 1.0, ut[idx[10:]]
    change = lambda w1: jax.tree_util.tree_map(lambda a, b: (np.asarray(a) - np.asarray(b)) / LR, w1, w)  # noqa: E731
    ref = change(train_step(ss_model, w, jnp.asarray(xb), jnp.asarray(tb), LR, duration=100.0, n_passes=passes))
    for T, lag in ((24.0, 8.0), (60.0, 30.0)):
        k = 100.0 / (T - lag) / 6.25  # the preset's rates are the steady state's × 100 / 16
        p = dc.replace(model.plasticity, learning_lag=lag, eta_W=tuple(e * k for e in model.plasticity.eta_W),
                       eta_IP=tuple(e * k for e in model.plasticity.eta_IP))
        m = dc.replace(model, plasticity=p)
        on = np.ones(1, bool)
        pre = simulate(m, w, init_state(m.network, 10, "float64"), Stream.of(x_prev[None], t_prev[None], on),
                       duration=T, plastic=False)  # the previous mini-batch, as in training
        d = change(simulate(m, w, pre.state, Stream.of(xb[None], tb[None], on), duration=T, lr_scale=LR).weights)
        out = []
        for name in ("W", "IP"):
            for i, (a, b) in enumerate(zip(getattr(d, name), getattr(ref, name), strict=True)):
                cos = np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b))
                out.append(f"{name}{i + 1}: cos {cos:.3f} ratio {np.linalg.norm(a) / np.linalg.norm(b):.3f}")
        print(f"T {T:g} lag {lag:g} vs {passes} pass(es): " + " | ".join(out))


def settle(run: str, weights: str | None, scale_B: float, data: str) -> None:
    jax.config.update("jax_enable_x64", True)
    cfg = apply_overrides(resume_config(run), ["simulation.dtype=float64", f"training.data={data}"])
    model, w0, _ = build(cfg)
    w = w0 if weights == "initial" else load_weights(weights or f"{run}/weights_best.npz", w0)
    w = w._replace(B=tuple(scale_B * a for a in w.B), PI=tuple(scale_B * a for a in w.PI))
    x, y = mx.load_split(cfg)["train"]
    ut = phi_inv(model.network.transfer, np.where(np.eye(10, dtype=bool)[y], 0.8, 0.1))
    idx = np.random.default_rng(1).choice(len(x), 20, replace=False)
    xb, tb, x_prev, t_prev = x[idx[:10]] * 1.0, ut[idx[:10]], x[idx[10:]] * 1.0, ut[idx[10:]]
    on, dt = np.ones(1, bool), model.simulation.dt
    pre = simulate(model, w, init_state(model.network, 10, "float64"), Stream.of(x_prev[None], t_prev[None], on),
                   duration=cfg.stimulus.duration, plastic=False)  # the previous mini-batch, as in training
    sol = simulate(model, w, pre.state, Stream.of(xb[None], tb[None], on), duration=100.0, plastic=False,
                   record=Record(quantities=("u", "u_inter", "v_apical"), stride=1))
    fp = steady_state(model, w, xb, tb, iterations=4000)
    fp_apical = dendrites(model, w, fp).v_apical  # at the fixed point, v_A,k carries layer k's error
    rel = lambda a, b: np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))  # noqa: E731
    print(f"relative distance from the fixed point (B, PI x {scale_B:g}); columns u_1..u_N, "
          "u^I_1..u^I_N-1, v_A,1..v_A,N-1")
    for t in (4, 8, 12, 16, 24, 40, 60, 100):
        i = round(t / dt) - 1
        cols = [rel(sol.records[f"u_{k + 1}"][i], fp.u[k]) for k in range(len(fp.u))]
        cols += [rel(sol.records[f"u_inter_{k + 1}"][i], fp.u_inter[k]) for k in range(len(fp.u_inter))]
        cols += [rel(sol.records[f"v_apical_{k + 1}"][i], fp_apical[k]) for k in range(len(fp_apical))]
        print(f"t = {t:5.1f} ms  " + "  ".join(f"{c:.1e}" for c in cols))


def steady(data: str) -> None:
    full, vals = mx.error_rate, []

    def first(model, w, x, y, batch=1000):
        e = full(model, w, x[:2000], y[:2000], batch)
        if x.shape[0] == 5000:
            vals.append(e)
        return e

    mx.error_rate = first
    cfg = apply_overrides(get_preset("mnist"), [f"training.data={data}", "training.n_train=10000",
                                                "training.epochs=3", "training.lr_decay=0.8"])
    mx.run(cfg, None)
    print("steady state, first 2,000 validation images, per epoch:", vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["update", "steady", "settle"])
    ap.add_argument("run", nargs="?", help="an mnist-dynamics run folder (update, settle)")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--weights", default=None, help="settle: a checkpoint or weights file, or 'initial'")
    ap.add_argument("--scale-B", type=float, default=1.0, help="settle: multiply B and PI by this")
    ap.add_argument("--data", default="mnist")
    a = ap.parse_args()
    if a.what in ("update", "settle") and not a.run:
        ap.error(f"{a.what} needs a run folder")
    if a.what == "update":
        update(a.run, a.passes, a.data)
    elif a.what == "settle":
        settle(a.run, a.weights, a.scale_B, a.data)
    else:
        steady(a.data)


if __name__ == "__main__":
    main()
