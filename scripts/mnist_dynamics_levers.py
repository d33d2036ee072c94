"""One lever of issue 6: train ``mnist-dynamics`` with a presentation time T and a learning lag on the first
10,000 training images for one epoch, and print the validation error measured by the dynamics.

The learning rates are the preset's × (24 − 8 ms) / (T − lag): the preset's change per mini-batch over
the new learning window (``24 8`` is the preset itself). Further ``--set``-style overrides follow. Full
MNIST is read from ``--data`` (default: the cache that ``microcircuit data fetch-mnist`` fills).
Examples (docs/results.md, "Levers"):

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
from microcircuit.presets import DYN_LAG, DYN_T, get_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("T", type=float, help="presentation time per mini-batch (ms)")
    ap.add_argument("lag", type=float, help="learning lag after each switch (ms)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    ap.add_argument("--data", default="mnist", help="training.data (default: the fetch-mnist cache)")
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-check", type=int, default=2_000, help="the error is measured on the first N validation images")
    args = ap.parse_args()
    preset = get_preset("mnist-dynamics")
    k = (DYN_T - DYN_LAG) / (args.T - args.lag)  # the preset's change per mini-batch over the new window
    cfg = merge(preset, {
        "stimulus": {"duration": args.T},
        "plasticity": {"learning_lag": args.lag, "eta_W": [e * k for e in preset.plasticity.eta_W],
                       "eta_IP": [e * k for e in preset.plasticity.eta_IP]},
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
