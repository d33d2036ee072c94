"""Diagnostics of issue 6 (docs/results.md, "MNIST in continuous time"), all at the weights of an
``mnist-dynamics`` run folder (``--weights FILE``: a checkpoint or weights file, ``initial``: the run's
initial weights; default: its best weights), in float64.

``update RUN``: one mini-batch's weight change through the dynamics vs the steady-state mode with the same
rates over the same learning window, linearised (``lr_scale`` 1e-3). Prints the cosine and norm ratio per
matrix for the run's T / lag and for T = 60 ms / lag 30 ms, against the steady state with ``--passes``
up/down passes (1 = the paper's scheme, 30 ≈ converged).

``saturation RUN``: one presentation's change at the run's rates (× ``--lr-scale``) projected on the
linearised change; below 1, the error the rules read shrinks while the weights learn within it.

``mismatch RUN``: how self-predicting the weights are: the apical potentials at the exact fixed point
without a target (the interneurons' miss) against the part that a target adds (the error rule (7) reads).

``layers RUN``: per layer, the rms of W_k and how saturated the rates are (fraction of rates below 0.02 or
above 0.98, and the standard deviation of the somatic potential) in the feed-forward readout of the 5,000
validation images. Works on any MNIST run folder (steady-state runs too, for comparison).

``tracking RUN``: how far each IP_k (and its bias c_k) is from the self-predicting value that W_{k+1}
prescribes (docs/model.md §4), relative to that value.

``drift RUN``: the mean over 200 mini-batches of rule (7)'s increments for each W_k, at the one-pass and
the converged (30 passes) steady state, with and without a target. Without a target the increments are the
interneurons' miss alone; where their mean is as large as the mean with a target, the miss, not the
error, sets where W_k drifts. Also prints the drift's projection on W_k (> 0: W_k grows).

``readout RUN``: validation and test error of the weights read out by the dynamics after each of
``--durations`` ms from rest (the run's own ``training.eval_duration`` is what training reports) and by the
steady-state forward pass (the fixed point without a target), in the run's own dtype.

``steady``: the ``mnist`` preset on the first 10,000 training images for 3 epochs (decay 0.8), its
validation error on the first 2,000 validation images (the images the levers script checks).

``settle RUN``: how fast the circuit settles. Ten training images with their targets are presented for
100 ms (plasticity off) after ten others, and the relative distance of every layer's potentials from the
exact fixed point is printed against time. ``--scale-B s`` multiplies B and PI by s, which keeps the
self-predicting state and the network function but scales the top-down loop.

    python scripts/mnist_dynamics_diagnosis.py update /tmp/mnist_dyn --passes 30 --data PATH/mnist.npz
    python scripts/mnist_dynamics_diagnosis.py saturation RUN [--weights initial] --data PATH/mnist.npz
    python scripts/mnist_dynamics_diagnosis.py mismatch RUN --data PATH/mnist.npz
    python scripts/mnist_dynamics_diagnosis.py layers RUN --data PATH/mnist.npz
    python scripts/mnist_dynamics_diagnosis.py tracking RUN --data PATH/mnist.npz
    python scripts/mnist_dynamics_diagnosis.py drift RUN --data PATH/mnist.npz
    python scripts/mnist_dynamics_diagnosis.py readout RUN [--durations 20,40,100] --data PATH/mnist.npz
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
from microcircuit.network import Weights, self_predicting
from microcircuit.presets import get_preset
from microcircuit.runs import resume_config
from microcircuit.simulate import Stream, simulate
from microcircuit.steady_state import increments_at, train_step
from microcircuit.steady_state import settle as sweep
from microcircuit.transfer import phi, phi_inv

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


def _batches(cfg, model, seed: int, n: int = 10):
    """n training images with their targets, and n others shown before them (as in training)."""
    x, y = mx.load_split(cfg)["train"]
    ut = phi_inv(model.network.transfer, np.where(np.eye(10, dtype=bool)[y], 0.8, 0.1))
    idx = np.random.default_rng(seed).choice(len(x), 2 * n, replace=False)
    return x[idx[:n]] * 1.0, ut[idx[:n]], x[idx[n:]] * 1.0, ut[idx[n:]]


def _presentation(model, w, batch, T: float, lr_scale: float) -> Weights:
    """The weights after one presentation of ``batch`` for T ms, after the previous mini-batch's."""
    xb, tb, x_prev, t_prev = batch
    on = np.ones(1, bool)
    pre = simulate(model, w, init_state(model.network, 10, "float64"), Stream.of(x_prev[None], t_prev[None], on),
                   duration=T, plastic=False)
    return simulate(model, w, pre.state, Stream.of(xb[None], tb[None], on), duration=T, lr_scale=lr_scale).weights


def _setup(run: str, weights: str | None, data: str):
    jax.config.update("jax_enable_x64", True)
    cfg = apply_overrides(resume_config(run), ["simulation.dtype=float64", f"training.data={data}"])
    model, w0, _ = build(cfg)
    w = w0 if weights == "initial" else load_weights(weights or f"{run}/weights_best.npz", w0)
    return cfg, model, w


def update(run: str, weights: str | None, passes: int, data: str) -> None:
    """One mini-batch's linearised change through the dynamics against the steady-state mode with the same
    rates over the same learning window (ratio 1: the same change per mini-batch)."""
    cfg, model, w = _setup(run, weights, data)
    batch = _batches(cfg, model, 0)
    xb, tb = batch[:2]
    window = cfg.stimulus.duration - cfg.plasticity.learning_lag
    change = lambda w1: jax.tree_util.tree_map(lambda a, b: (np.asarray(a) - np.asarray(b)) / LR, w1, w)  # noqa: E731
    ref = change(train_step(model, w, jnp.asarray(xb), jnp.asarray(tb), LR, duration=window, n_passes=passes))
    for T, lag in ((cfg.stimulus.duration, cfg.plasticity.learning_lag), (60.0, 30.0)):
        k = window / (T - lag)  # the same change per mini-batch over the longer window
        p = dc.replace(model.plasticity, learning_lag=lag, eta_W=tuple(e * k for e in model.plasticity.eta_W),
                       eta_IP=tuple(e * k for e in model.plasticity.eta_IP))
        d = change(_presentation(dc.replace(model, plasticity=p), w, batch, T, LR))
        out = []
        for name in ("W", "IP"):
            for i, (a, b) in enumerate(zip(getattr(d, name), getattr(ref, name), strict=True)):
                cos = np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b))
                out.append(f"{name}{i + 1}: cos {cos:.3f} ratio {np.linalg.norm(a) / np.linalg.norm(b):.3f}")
        print(f"T {T:g} lag {lag:g} vs {passes} pass(es): " + " | ".join(out))


def saturation(run: str, weights: str | None, lr_scale: float, data: str) -> None:
    """The change of one presentation at the run's rates × lr_scale, projected on the linearised change
    (lr_scale 1e-4): below 1, the error the rules read shrinks as the weights learn within the presentation."""
    cfg, model, w = _setup(run, weights, data)
    T = cfg.stimulus.duration
    for seed in range(3):
        batch = _batches(cfg, model, seed)
        real, lin = (jax.tree_util.tree_map(lambda a, b, s=s: (np.asarray(a) - np.asarray(b)) / s,
                                            _presentation(model, w, batch, T, s), w) for s in (lr_scale, 1e-4))
        out = [f"{name}{i + 1} {np.sum(a * b) / np.sum(b * b):.3f}" for name in ("W", "IP")
               for i, (a, b) in enumerate(zip(getattr(real, name), getattr(lin, name), strict=True))]
        print(f"batch {seed}: change at lr_scale {lr_scale:g} / linearised change: " + "  ".join(out))


def mismatch(run: str, weights: str | None, data: str) -> None:
    """How self-predicting the weights are: at the exact fixed point of 500 training images, the apical
    potential without a target (the interneurons' miss, ideally 0) against the part a target adds (the error
    that rule (7) should read)."""
    cfg, model, w = _setup(run, weights, data)
    x, y = mx.load_split(cfg)["train"]
    ut = phi_inv(model.network.transfer, np.where(np.eye(10, dtype=bool)[y], 0.8, 0.1))
    idx = np.random.default_rng(0).choice(len(x), 500, replace=False)
    xb, tb = jnp.asarray(x[idx] * 1.0), jnp.asarray(ut[idx])
    free, nudged = (dendrites(model, w, steady_state(model, w, xb, t, iterations=3000)).v_apical for t in (None, tb))
    for k, (f, n) in enumerate(zip(free, nudged, strict=True)):
        f, e = np.asarray(f), np.asarray(n) - np.asarray(f)
        print(f"layer {k + 1}: rms v_A without target {np.sqrt(np.mean(f ** 2)):.2e}, rms of the target's part "
              f"{np.sqrt(np.mean(e ** 2)):.2e}, ratio {np.sqrt(np.mean(f ** 2) / np.mean(e ** 2)):.2f}, "
              f"cosine {np.sum(f * e) / (np.linalg.norm(f) * np.linalg.norm(e)):.2f}")


def layers(run: str, weights: str | None, data: str) -> None:
    """How large each W_k is and how saturated its layer's rates are, in the feed-forward readout (one
    forward sweep without a target, docs/model.md §6) of the validation images."""
    cfg, model, w = _setup(run, weights, data)
    x = jnp.asarray(mx.load_split(cfg)["validation"][0] * 1.0)
    u = sweep(model, w, x).u
    out = []
    for k, (W, uk) in enumerate(zip(w.W, u, strict=True)):
        uk = np.asarray(uk)
        r = np.asarray(phi(model.network.transfer, uk))
        out.append(f"layer {k + 1}: rms W {np.sqrt(np.mean(np.asarray(W) ** 2)):.3f}, saturated rates "
                   f"{np.mean((r < 0.02) | (r > 0.98)):.2f}, sd of u {uk.std():.2f}")
    print(f"{run}: " + " | ".join(out))


def _rel(a: jax.Array, b: jax.Array) -> float:
    """‖a − b‖ / ‖b‖, or ‖a‖ where b is 0 (biases at the start)."""
    d, n = np.linalg.norm(np.asarray(a) - np.asarray(b)), np.linalg.norm(np.asarray(b))
    return d / n if n > 0 else d


def tracking(run: str, weights: str | None, data: str) -> None:
    """How far IP_k and c_k are from the self-predicting values that W_{k+1}, b_{k+1} prescribe (§4)."""
    _, model, w = _setup(run, weights, data)
    sp = self_predicting(w, model.conductances)
    print(f"{run}: " + " | ".join(f"IP{k + 1} {_rel(w.IP[k], sp.IP[k]):.3f}, c{k + 1} {_rel(w.c[k], sp.c[k]):.3f}"
                                   for k in range(len(w.IP))) + "  (relative distance from self-predicting)")


def drift(run: str, weights: str | None, data: str, n_batches: int = 200) -> None:
    """The mean increment of rule (7) over many mini-batches, with and without a target (the miss alone)."""
    cfg, model, w = _setup(run, weights, data)
    x, y = mx.load_split(cfg)["train"]
    ut = phi_inv(model.network.transfer, np.where(np.eye(10, dtype=bool)[y], 0.8, 0.1))
    for passes in (1, 30):
        step = jax.jit(lambda xb, tb, p=passes: increments_at(model, w, xb, sweep(model, w, xb, tb, p)).W)
        free = jax.jit(lambda xb, p=passes: increments_at(model, w, xb, sweep(model, w, xb, None, p)).W)
        rng = np.random.default_rng(0)
        with_t, without, norms = None, None, []
        for _ in range(n_batches):
            idx = rng.choice(len(x), 10, replace=False)
            xb = jnp.asarray(x[idx] * 1.0)
            a, b = step(xb, jnp.asarray(ut[idx])), free(xb)
            with_t = a if with_t is None else [p + q for p, q in zip(with_t, a, strict=True)]
            without = b if without is None else [p + q for p, q in zip(without, b, strict=True)]
            norms.append([float(jnp.linalg.norm(d)) for d in a])
        for k, (mt, mf, W) in enumerate(zip(with_t, without, w.W, strict=True)):
            mt, mf, W = np.asarray(mt) / n_batches, np.asarray(mf) / n_batches, np.asarray(W)
            per = np.mean([n[k] for n in norms])
            print(f"passes {passes:2d} W{k + 1}: |mean| / mean |increment|: with target "
                  f"{np.linalg.norm(mt) / per:.3f}, without {np.linalg.norm(mf) / per:.3f}; cosine between the "
                  f"two means {np.sum(mt * mf) / (np.linalg.norm(mt) * np.linalg.norm(mf) + 1e-300):+.2f}; "
                  f"<mean, W>/|W|^2 with target {np.sum(mt * W) / np.sum(W * W):+.1e}, "
                  f"without {np.sum(mf * W) / np.sum(W * W):+.1e}")


def settle(run: str, weights: str | None, scale_B: float, data: str) -> None:
    cfg, model, w = _setup(run, weights, data)
    w = w._replace(B=tuple(scale_B * a for a in w.B), PI=tuple(scale_B * a for a in w.PI))
    xb, tb, x_prev, t_prev = _batches(cfg, model, 1)
    on, dt = np.ones(1, bool), model.simulation.dt
    pre = simulate(model, w, init_state(model.network, 10, "float64"), Stream.of(x_prev[None], t_prev[None], on),
                   duration=cfg.stimulus.duration, plastic=False)  # the previous mini-batch, as in training
    sol = simulate(model, w, pre.state, Stream.of(xb[None], tb[None], on), duration=100.0, plastic=False,
                   record=Record(quantities=("u", "u_inter", "v_apical"), stride=1))
    fp = steady_state(model, w, xb, tb, iterations=4000)
    fp_apical = dendrites(model, w, fp).v_apical  # at the fixed point, v_A,k carries layer k's error
    print(f"relative distance from the fixed point (B, PI x {scale_B:g}); columns u_1..u_N, "
          "u^I_1..u^I_N-1, v_A,1..v_A,N-1")
    for t in (4, 8, 12, 16, 24, 40, 60, 100):
        i = round(t / dt) - 1
        cols = [_rel(sol.records[f"u_{k + 1}"][i], fp.u[k]) for k in range(len(fp.u))]
        cols += [_rel(sol.records[f"u_inter_{k + 1}"][i], fp.u_inter[k]) for k in range(len(fp.u_inter))]
        cols += [_rel(sol.records[f"v_apical_{k + 1}"][i], fp_apical[k]) for k in range(len(fp_apical))]
        print(f"t = {t:5.1f} ms  " + "  ".join(f"{c:.1e}" for c in cols))


def readout(run: str, weights: str | None, durations: str, data: str) -> None:
    """Validation and test error by the dynamics after each duration, and by the steady-state forward pass."""
    cfg = apply_overrides(resume_config(run), [f"training.data={data}"])
    model, w0, _ = build(cfg)
    w = w0 if weights == "initial" else load_weights(weights or f"{run}/weights_best.npz", w0)
    w = jax.tree_util.tree_map(lambda a: jnp.asarray(a, cfg.simulation.dtype), w)
    split = mx.load_split(cfg)
    readers = [(f"dynamics {t:g} ms", lambda x, y, t=t: mx.dynamic_error_rate(model, w, x, y, t))
               for t in map(float, durations.split(","))]
    readers.append(("steady-state forward pass", lambda x, y: mx.error_rate(model, w, x, y)))
    for name, err in readers:
        val, test = (100 * err(*split[k]) for k in ("validation", "test"))
        print(f"{name:<26}  validation {val:5.2f} %  test {test:5.2f} %", flush=True)


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
    ap.add_argument("what", choices=["update", "steady", "settle", "saturation", "mismatch", "layers", "tracking",
                                     "drift", "readout"])
    ap.add_argument("run", nargs="?", help="an mnist-dynamics run folder (all but steady)")
    ap.add_argument("--passes", type=int, default=1, help="update: up/down passes of the steady-state reference")
    ap.add_argument("--weights", default=None,
                    help="a checkpoint or weights file, or 'initial' (default: the run's best weights)")
    ap.add_argument("--scale-B", type=float, default=1.0, help="settle: multiply B and PI by this")
    ap.add_argument("--lr-scale", type=float, default=1.0, help="saturation: the schedule's factor on the rates")
    ap.add_argument("--durations", default="20,40,100", help="readout: ms of dynamics per image, comma-separated")
    ap.add_argument("--data", default="mnist")
    a = ap.parse_args()
    if a.what != "steady" and not a.run:
        ap.error(f"{a.what} needs a run folder")
    if a.what == "update":
        update(a.run, a.weights, a.passes, a.data)
    elif a.what == "settle":
        settle(a.run, a.weights, a.scale_B, a.data)
    elif a.what == "saturation":
        saturation(a.run, a.weights, a.lr_scale, a.data)
    elif a.what == "mismatch":
        mismatch(a.run, a.weights, a.data)
    elif a.what == "layers":
        layers(a.run, a.weights, a.data)
    elif a.what == "tracking":
        tracking(a.run, a.weights, a.data)
    elif a.what == "drift":
        drift(a.run, a.weights, a.data)
    elif a.what == "readout":
        readout(a.run, a.weights, a.durations, a.data)
    else:
        steady(a.data)


if __name__ == "__main__":
    main()
