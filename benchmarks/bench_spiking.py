"""Steps per second of the spiking circuit next to its rate twin, in the same run.

The spiking circuit (docs/model.md §13) adds to every step one Poisson count per unit of every population
(input, pyramids, interneurons, teachers, nudging) and the synaptic traces. Each case times the same network,
stream and plasticity twice, spiking and with ``spiking.enabled = false``, in turn (one repeat of each,
interleaved), after one warm-up call each that compiles it. Cases:

    bars   9-30-3, the ``spiking-bars`` preset: 5 seeds as one vmapped ensemble, 3,000 neurons per unit
    mnist  784-500-500-10, ``mnist-dynamics-le`` (prospective, dt 0.5 ms, mini-batches of 10) with 100 neurons
           per unit, no synaptic filter; also the seconds per MNIST epoch this rate implies (50,000 images,
           8 steps per mini-batch of 10)

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_spiking.py              # ~2 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_spiking.py --quick      # ~40 s

Columns: the median steps per second over the repeats (min-max), for the ensemble counted per ensemble step,
and spiking / rate, the ratio of the medians.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform

import jax
from side_by_side import interleaved, runner

from microcircuit.config import Config, apply_overrides
from microcircuit.presets import get_preset

MNIST_SPIKING = ["spiking.enabled=true", "spiking.n=100", "spiking.tau_syn=0.0", "simulation.E_exc=8.0",
                 "simulation.E_inh=-8.0"]


def _configs(case: str) -> tuple[Config, int, int]:
    """The case's spiking config, its ensemble size (0: one circuit) and batch."""
    if case == "bars":
        return get_preset("spiking-bars"), 5, 1
    return apply_overrides(get_preset("mnist-dynamics-le"), MNIST_SPIKING), 0, 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="bars,mnist")
    ap.add_argument("--steps", type=int, default=4_000, help="steps per timed call (a whole number of patterns)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1,600 steps, 3 repeats")
    args = ap.parse_args()
    steps, repeats = (1_600, 3) if args.quick else (args.steps, args.repeats)
    print(f"# bench_spiking {datetime.datetime.now().isoformat(timespec='seconds')}  jax {jax.__version__} "
          f"{jax.default_backend()}  {platform.machine()} {os.cpu_count()} CPUs  load {os.getloadavg()[0]:.2f}  "
          f"{steps} steps x {repeats} repeats")
    print(f"{'case':6s} {'network':15s} {'members':>7s} {'batch':>5s} {'spiking steps/s':>22s} {'rate steps/s':>22s} "
          f"{'ratio':>6s}  s/epoch (spiking, rate)")
    for case in args.cases.split(","):
        cfg, members, batch = _configs(case)
        twin = apply_overrides(cfg, ["spiking.enabled=false"])
        target = (0.1, 1.0) if case == "bars" else (-2.0, 1.4)
        calls = {"spiking": runner(cfg, members, steps, batch, target),
                 "rate": runner(twin, members, steps, batch, target)}
        med, cell = interleaved(calls, steps, repeats)
        sizes = "-".join(map(str, cfg.network.sizes))
        epoch = ""
        if case == "mnist":
            per_epoch = 50_000 // batch * round(cfg.stimulus.duration / cfg.simulation.dt)
            epoch = f"  {per_epoch / med['spiking']:.0f}, {per_epoch / med['rate']:.0f}"
        print(f"{case:6s} {sizes:15s} {members or 1:7d} {batch:5d} {cell['spiking']:>22s} {cell['rate']:>22s} "
              f"{med['spiking'] / med['rate']:6.2f}{epoch}")


if __name__ == "__main__":
    main()
