"""One lever of issue 6: train ``mnist-dynamics`` with a presentation time T and a learning lag on the first
10,000 training images for one epoch, and print the validation error measured by the dynamics.

The learning rates are the steady-state preset's × 100 ms / (T − lag), as in the preset. Further
``--set``-style overrides follow. Full MNIST is read from ``--data`` (default: the cache that
``microcircuit data fetch-mnist`` fills). Examples (docs/results.md, "Levers"):

    python scripts/mnist_dynamics_levers.py 24 8                                  # the chosen setting
    python scripts/mnist_dynamics_levers.py 24 8 simulation.dt=1.0                # a larger dt
    python scripts/mnist_dynamics_levers.py 24 8 plasticity.update_every=4        # held updates
"""

from __future__ import annotations

import argparse
import json
import time

from microcircuit.config import apply_overrides, merge
from microcircuit.experiments import mnist
from microcircuit.presets import get_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("T", type=float, help="presentation time per mini-batch (ms)")
    ap.add_argument("lag", type=float, help="learning lag after each switch (ms)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    ap.add_argument("--data", default="mnist", help="training.data (default: the fetch-mnist cache)")
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-check", type=int, default=2_000, help="the error is measured on the first N validation images")
    args = ap.parse_args()
    base = get_preset("mnist")
    k = 100.0 / (args.T - args.lag)
    cfg = merge(get_preset("mnist-dynamics"), {
        "stimulus": {"duration": args.T},
        "plasticity": {"learning_lag": args.lag, "eta_W": [e * k for e in base.plasticity.eta_W],
                       "eta_IP": [e * k for e in base.plasticity.eta_IP]},
        "training": {"data": args.data, "epochs": 1, "n_train": args.n_train},
    })
    cfg = apply_overrides(cfg, args.overrides)
    full = mnist.dynamic_error_rate

    def first_images(model, w, x, y, duration, batch=1000):  # the error on the first n_check images only
        return full(model, w, x[: args.n_check], y[: args.n_check], duration, batch)

    mnist.dynamic_error_rate = first_images  # used by run() for the validation and training errors
    t0 = time.perf_counter()
    out = mnist.run(cfg, None)
    print(json.dumps({"T": args.T, "lag": args.lag, "overrides": args.overrides, "n_check": args.n_check,
                      "validation_error": out["validation_error"], "validation_curve": out["validation_curve"],
                      "train_s": out["seconds_per_epoch"],
                      "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
