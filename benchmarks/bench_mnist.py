"""Time per MNIST training image: continuous time (B = 1 and the preset's B), prospective continuous time,
steady state, backprop.

All of them train the 784-500-500-10 network of the MNIST presets on the embedded MNIST subset (the time
per image does not depend on which images), float32, after a warm-up call that compiles each:

    dynamics B=1     mnist-dynamics with training.batch = 1 (the paper's online learning)
    dynamics B=10    mnist-dynamics as it is (24 ms per mini-batch, dt = 0.5 ms, exponential integrator)
    dyn. B=10, held  the same with plasticity.update_every = 48: the weights held over each presentation
                     and the summed increments applied at its end, as one matrix product (a lever of issue 6)
    prospective B=10 mnist-dynamics-le (prospective dynamics, docs/model.md §8: 4 ms per mini-batch)
    steady state     mnist (docs/model.md §6, one up/down pass per mini-batch of 10)
    backprop         mnist-backprop (SGD, mini-batch 10)

``--scaling`` times instead the nets of the depth study (docs/scaling.md, preset ``scaling``) at 2 and 5 hidden
layers of 256: the circuit with random and with transported feedback, backprop, feedback alignment and direct
feedback alignment, each as a ratio to backprop on the same net.

``--levers`` adds the continuous-time levers of issue 6 (docs/results.md, "Presentation time, learning lag and
step"), each a change to ``mnist-dynamics``: presentation time T and learning lag, dt (exponential integrator), the
Euler integrator at dt = 0.1 ms, updates held over 4 steps, and mini-batch 32.

Each is timed ``--repeats`` times over a fixed number of images; the median is reported with min/max,
as ms per image, as seconds per 55,000-image epoch, and as a ratio to the backprop baseline measured in
the same run; the prospective preset also as a speed-up over `mnist-dynamics` measured in the same run.

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_mnist.py            # ~2-3 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_mnist.py --quick    # ~1 min
    PYTHONPATH=src python benchmarks/bench_mnist.py --levers   # ~5 min: the levers' cost too
    PYTHONPATH=src python benchmarks/bench_mnist.py --scaling  # ~2 min: the depth study's methods
    PYTHONPATH=src python benchmarks/bench_mnist.py --batches 100,1000   # larger mini-batches (GPU)

See docs/benchmarks.md for measured figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from microcircuit.config import Config, apply_overrides
from microcircuit.experiments import mnist as mnist_exp
from microcircuit.experiments.common import build
from microcircuit.methods import get_method
from microcircuit.presets import get_preset
from microcircuit.transfer import phi_inv

EPOCH = 55_000


def _data(cfg: Config) -> tuple[jax.Array, jax.Array]:
    data = mnist_exp.load_split(cfg)
    x, y = data["train"]
    tr = cfg.training
    rates = np.where(np.eye(10, dtype=bool)[y], tr.r_high, tr.r_low).astype(np.float32)
    return jnp.asarray(x, jnp.float32), jnp.asarray(phi_inv(cfg.network.transfer, rates), jnp.float32)


def _timer(cfg: Config, n_images: int):
    """A function that trains on ``n_images`` images (whole mini-batches) and blocks until done."""
    model, w0, _ = build(cfg)
    x, u_trgt = _data(cfg)
    B = cfg.training.batch
    nb = n_images // B
    idx = jnp.asarray(np.arange(nb * B).reshape(nb, B) % x.shape[0], jnp.int32)
    method = get_method(cfg.training.method)
    w_start, carry = method.init(cfg, model, w0)
    lr = method.base_lr(cfg)

    def go() -> None:
        w, c = method.train(cfg, model, w_start, carry, x, u_trgt, idx, lr, jax.random.key(0))
        jax.block_until_ready((w, c))

    return go, nb * B


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--levers", action="store_true", help="also time the continuous-time levers of issue 6")
    ap.add_argument("--scaling", action="store_true", help="time the depth study's methods at 2 and 5 hidden layers")
    ap.add_argument("--batches", default="", metavar="N,N,...",
                    help="also time mnist-dynamics at these mini-batch sizes (e.g. 100,1000 on a GPU)")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    subset = ["training.data=mnist-subset", "training.n_validation=200"]
    cases = [  # name, preset, overrides, images timed (full / quick)
        ("dynamics B=1", "mnist-dynamics", ["training.batch=1"], (200, 50)),
        ("dynamics B=10", "mnist-dynamics", [], (1000, 300)),
        ("dyn. B=10, held", "mnist-dynamics", ["plasticity.update_every=48"], (1000, 300)),
        ("prospective B=10", "mnist-dynamics-le", [], (2000, 600)),
        ("steady state B=10", "mnist", [], (1800, 1800)),
        ("backprop B=10", "mnist-backprop", [], (1800, 1800)),
    ]
    if args.levers:
        dyn = "mnist-dynamics"
        cases[4:4] = [  # before the steady state, so that the dynamics rows stay together
            ("T 6, lag 1", dyn, ["stimulus.duration=6", "plasticity.learning_lag=1"], (1000, 300)),
            ("T 12, lag 4", dyn, ["stimulus.duration=12", "plasticity.learning_lag=4"], (1000, 300)),
            ("T 16, lag 6", dyn, ["stimulus.duration=16", "plasticity.learning_lag=6"], (1000, 300)),
            ("T 32, lag 8", dyn, ["stimulus.duration=32"], (1000, 300)),
            ("dt 1.0", dyn, ["simulation.dt=1.0"], (1000, 300)),
            ("Euler, dt 0.1", dyn, ["simulation.integrator=euler", "simulation.dt=0.1"], (300, 100)),
            ("update_every 4", dyn, ["plasticity.update_every=4"], (1000, 300)),
            ("batch 32", dyn, ["training.batch=32"], (1024, 320)),
        ]
    if args.scaling:
        cases = []
        for L in (2, 5):
            net = [f"network.sizes=[784,{'256,' * L}10]"]
            for label, arm in (("backprop", "training.method=backprop"),
                               ("circuit, random B", "training.method=microcircuit"),
                               ("circuit, transp. B", "training.feedback=transported"),
                               ("feedback alignm.", "training.method=feedback_alignment"),
                               ("direct FA", "training.method=direct_feedback_alignment")):
                cases.append((f"{label} L={L}", "scaling", [*net, arm], (20000, 3000)))
    for i, b in enumerate(int(v) for v in args.batches.split(",") if v.strip()):
        if b < 1:
            ap.error(f"--batches: mini-batch sizes must be >= 1, got {b}")
        n_img = (max(1000, 2 * b) if not args.quick else max(300, b)) // b * b
        cases.insert(4 + i, (f"dynamics B={b}", "mnist-dynamics", [f"training.batch={b}"], (n_img, n_img)))
    print(f"  CPU      {platform.processor() or platform.machine()}, os.cpu_count() = {os.cpu_count()}, "
          f"JAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind})")
    print(f"  load     {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min) at start")
    rows = []
    for name, preset, sets, n in cases:
        cfg = apply_overrides(get_preset(preset), subset + sets)
        go, n_img = _timer(cfg, n[1] if args.quick else n[0])
        t0 = time.perf_counter()
        go()  # compile + one run
        warm = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            go()
            times.append(time.perf_counter() - t0)
        per = [t / n_img for t in times]
        rows.append((name, cfg, n_img, statistics.median(per), min(per), max(per)))
        print(f"  timed    {name}: {n_img} images x {repeats} (warm-up {warm:.1f} s)")
    print()
    head = ("case", "steps/image", "ms/image", "min", "max", "s/epoch", "vs backprop")
    print(f"{head[0]:<24}  {head[1]:>11}  {head[2]:>9}  {head[3]:>7}  {head[4]:>7}  {head[5]:>8}  {head[6]:>11}")
    print("-" * 88)
    for name, cfg, _, med, lo, hi in rows:
        depth = f" L={len(cfg.network.sizes) - 2}" if args.scaling else ""  # backprop of the same net
        bp = next(r[3] for r in rows if r[0].startswith("backprop") and r[0].endswith(depth))
        steps = (round(cfg.stimulus.duration / cfg.simulation.dt) / cfg.training.batch
                 if cfg.training.method == "dynamics" else float("nan"))
        st = "-" if steps != steps else f"{steps:.1f}" if steps >= 1 else f"{steps:.3f}"
        print(f"{name:<24}  {st:>11}  {1e3 * med:9.3f}  {1e3 * lo:7.3f}  {1e3 * hi:7.3f}  {EPOCH * med:8.1f}  "
              f"{med / bp:10.2f}x")
    print()
    if not args.scaling:
        dyn = next(r[3] for r in rows if r[0] == "dynamics B=10")
        le = next(r[3] for r in rows if r[0] == "prospective B=10")
        print(f"prospective (mnist-dynamics-le) is {dyn / le:.2f}x faster per image than mnist-dynamics (same run)")
    print("ms/image: median over repeats (min, max alongside); s/epoch = 55,000 x median; steps/image: Euler "
          "steps per image (a step advances the whole mini-batch).")
    print(f"  load     {' '.join(f'{v:.2f}' for v in os.getloadavg())} at end")


if __name__ == "__main__":
    main()
