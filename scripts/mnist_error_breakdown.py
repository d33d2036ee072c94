"""Where an MNIST run's errors are: validation, test and its two halves, and slices of the training set,
all measured at the run's best weights in the steady-state readout (docs/results.md, "Fig. 3").

The first 5,000 MNIST test images and the last 5,000 come from different NIST collections; the training
slices show how well the network fits the images it learned from.

    python scripts/mnist_error_breakdown.py RUN_FOLDER [RUN_FOLDER ...]
"""

from __future__ import annotations

import argparse

from microcircuit.experiments import mnist as mx
from microcircuit.experiments.common import build
from microcircuit.runs import resume_config


def breakdown(run: str) -> dict[str, float]:
    cfg = resume_config(run)
    model, w0, _ = build(cfg)
    w = mx.load_best_weights(f"{run}/weights_best.npz", w0)
    d = mx.load_split(cfg)
    (xv, yv), (xt, yt), (xr, yr) = d["validation"], d["test"], d["train"]
    slices = {"validation": (xv, yv), "test": (xt, yt), "test 0-5k": (xt[:5000], yt[:5000]),
              "test 5k-10k": (xt[5000:], yt[5000:]), "train 0-5k": (xr[:5000], yr[:5000]),
              "train 25k-30k": (xr[25000:30000], yr[25000:30000]), "train last 5k": (xr[-5000:], yr[-5000:])}
    return {k: round(100 * mx.error_rate(model, w, x, y), 2) for k, (x, y) in slices.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders of `microcircuit run mnist...` (full MNIST)")
    for run in ap.parse_args().runs:
        print(run, "error (%):", breakdown(run))


if __name__ == "__main__":
    main()
