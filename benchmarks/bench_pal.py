"""Steps per second of the PAL mode next to the plain prospective mode, in the same run.

PAL (docs/model.md §12) adds to every step of the prospective circuit (§8) an Ornstein–Uhlenbeck noise
draw per hidden neuron, the high-pass filter of the rates and the B rule. Each case times the same
network, stream and plasticity twice: prospective rates with PAL on (σ, τ_ξ, τ_HP, η_B, α of the case's
preset) and with PAL off (``pal.enabled = false``, the same prospective step otherwise). The two are
timed in turn (one repeat of each, interleaved), after one warm-up call each that compiles it, so that a
change in the machine's load hits both alike. Cases:

    alignment  5-20-10-20-5, 10 seeds as one vmapped ensemble (the ``pal-alignment`` preset: W, IP
               frozen, PI and B plastic)
    teacher    1-1-1, 5 seeds as one ensemble (``pal-teacher``: W, IP, PI plastic with the τ_w trace)
    mnist      784-100-10, one circuit, batch 1 (PAL's MNIST network; everything plastic, τ_w trace)

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_pal.py              # ~1-2 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_pal.py --quick      # ~30 s

Columns: the median steps per second over the repeats (min-max), for the ensemble cases counted per
ensemble step (every member advances one step), and PAL / plain, the ratio of the medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform

import jax
from side_by_side import interleaved, runner

from microcircuit.config import Config, Plasticity, apply_overrides
from microcircuit.presets import get_preset


def _configs(case: str) -> tuple[Config, int]:
    """The case's config with PAL on, and its ensemble size (0: a single circuit)."""
    if case == "alignment":
        return get_preset("pal-alignment"), 10
    if case == "teacher":
        return get_preset("pal-teacher"), 5
    # PAL's MNIST network and rates (Max et al. 2024), on the prospective circuit of the alignment preset
    base = get_preset("pal-alignment")
    cfg = dataclasses.replace(
        base, network=dataclasses.replace(base.network, sizes=(784, 100, 10)),
        plasticity=Plasticity(eta_W=(1.0, 0.005), eta_IP=0.02, eta_PI=0.02, eta_B=0.0, tau_w=100.0),
        pal=dataclasses.replace(base.pal, sigma=0.01, eta_B=0.2, alpha=1e-6))
    return cfg, 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="alignment,teacher,mnist")
    ap.add_argument("--steps", type=int, default=20_000, help="steps per timed call (a whole number of patterns)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="5,000 steps, 3 repeats")
    args = ap.parse_args()
    steps, repeats = (5_000, 3) if args.quick else (args.steps, args.repeats)
    print(f"# bench_pal {datetime.datetime.now().isoformat(timespec='seconds')}  jax {jax.__version__} "
          f"{jax.default_backend()}  {platform.machine()} {os.cpu_count()} CPUs  load {os.getloadavg()[0]:.2f}  "
          f"{steps} steps x {repeats} repeats")
    print(f"{'case':10s} {'network':14s} {'members':>7s} {'PAL steps/s':>24s} {'plain steps/s':>24s} {'PAL/plain':>9s}")
    for case in args.cases.split(","):
        pal_cfg, members = _configs(case)
        plain_cfg = apply_overrides(pal_cfg, ["pal.enabled=false", "pal.eta_B=0"])
        calls = {"pal": runner(pal_cfg, members, steps), "plain": runner(plain_cfg, members, steps)}
        med, cell = interleaved(calls, steps, repeats)
        sizes = "-".join(map(str, pal_cfg.network.sizes))
        print(f"{case:10s} {sizes:14s} {members or 1:7d} {cell['pal']:>24s} {cell['plain']:>24s} "
              f"{med['pal'] / med['plain']:9.2f}")


if __name__ == "__main__":
    main()
