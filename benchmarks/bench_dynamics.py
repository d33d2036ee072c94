"""Steps per second of ``microcircuit.simulate.simulate``, with every kind of plasticity on.

Three cases, all float32 with the soft rectifier, biases, somatic noise (sigma > 0), the tau_w trace
and every matrix plastic (eta_W, eta_IP, eta_PI, eta_B > 0):

    small   30-50-10         batch 1
    large   784-500-500-10   batch 1
    batch   784-500-500-10   batch 100

Each is timed after a warm-up call that compiles it, ``--repeats`` times, and reported as the median
and the min/max of steps per second. The same step in plain float32 NumPy
(``benchmarks/numpy_reference_step.py``) is timed side by side as the baseline, with fewer steps.

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_dynamics.py            # ~2-4 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_dynamics.py --quick    # ~30 s

See docs/benchmarks.md for measured figures.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
from numpy_reference_step import from_microcircuit

from microcircuit.config import Conductances, Init, Model, NetworkSpec, Plasticity, Simulation, Transfer
from microcircuit.dynamics import init_state
from microcircuit.network import init_weights
from microcircuit.simulate import Stream, simulate

PATTERN_STEPS = 1000  # 100 ms per pattern at dt = 0.1 ms (MODEL.md §7)


@dataclass(frozen=True)
class Case:
    key: str
    sizes: tuple[int, ...]
    batch: int
    init_scale: float  # uniform [-s, s] for every matrix kind
    target: float | None  # steps/s asked for by the issue (2 CPU cores), or None
    jax_steps: int
    numpy_steps: int
    quick_jax_steps: int
    quick_numpy_steps: int

    @property
    def label(self) -> str:
        return f"{'-'.join(map(str, self.sizes))}, B={self.batch}"


CASES = (
    Case("small", (30, 50, 10), 1, 0.5, 50_000.0, 50_000, 10_000, 5_000, 1_000),
    Case("large", (784, 500, 500, 10), 1, 0.05, 3_000.0, 2_000, 200, 300, 50),
    Case("batch", (784, 500, 500, 10), 100, 0.05, None, 300, 30, 30, 10),
)


def make_model(case: Case) -> Model:
    """All plasticity on, realistic small rates (MODEL.md §7 orders of magnitude), noise and biases on."""
    depth = len(case.sizes) - 1
    spec = NetworkSpec(
        sizes=case.sizes,
        transfer=Transfer(kind="soft_rectifier"),
        bias=True,
        init=Init(W=case.init_scale, B=case.init_scale, IP=case.init_scale, PI=case.init_scale, bias=0.1),
    )
    plasticity = Plasticity(
        eta_W=tuple([1.1875e-3] * (depth - 1) + [5e-4]),
        eta_IP=1.1875e-3,
        eta_PI=5e-4,
        eta_B=1e-4,
        tau_w=30.0,
    )
    sim = Simulation(dt=0.1, tau_0=3.0, sigma=0.1, noise="sqrt_dt", dtype="float32")
    return Model(spec, Conductances(), plasticity, sim)


def make_stream(case: Case, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Random inputs U(0, 1) and target potentials U(0, 1), a new pair every 100 ms, target always on."""
    spp = min(PATTERN_STEPS, steps)
    n_patterns = max(1, steps // spp)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (n_patterns, case.batch, case.sizes[0])).astype(np.float32)
    target = rng.uniform(0.0, 1.0, (n_patterns, case.batch, case.sizes[-1])).astype(np.float32)
    return x, target, np.ones(n_patterns, bool), spp


def _arrays_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree_util.tree_leaves(tree))


def _active(traces) -> tuple[int, int]:
    """How many of the weight arrays have a non-zero tau_w trace, i.e. are being learned."""
    leaves = jax.tree_util.tree_leaves(traces)
    return sum(bool(np.any(np.asarray(a) != 0)) for a in leaves), len(leaves)


@dataclass
class Result:
    steps: int
    rates: list[float]  # steps/s per repeat
    cpu: list[float]  # process CPU time / wall time per repeat (1.0 = one core busy)
    finite: bool
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def time_jax(case: Case, steps: int, repeats: int, chunk_steps: int, seed: int) -> Result:
    model = make_model(case)
    weights = init_weights(model.network, model.conductances, jax.random.key(seed))
    state = init_state(model.network, case.batch)
    x, target, on, spp = make_stream(case, steps, seed + 1)
    stream = Stream.of(x, target, on)
    key = jax.random.key(seed + 2)
    n = spp * x.shape[0]

    def run():
        sol = simulate(
            model, weights, state, stream, duration=spp * model.simulation.dt, key=key, chunk_steps=chunk_steps
        )
        jax.block_until_ready((sol.weights, sol.traces, sol.state))
        return sol

    t0 = time.perf_counter()
    sol = run()  # warm-up: compiles every chunk shape this call needs
    warm = time.perf_counter() - t0
    finite = _arrays_finite((sol.weights, sol.traces, sol.state))
    active, total = _active(sol.traces)
    rates, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        sol = run()
        wall = time.perf_counter() - t0
        rates.append(n / wall)
        cpu.append((time.process_time() - c0) / wall)
        finite = finite and _arrays_finite((sol.weights, sol.traces, sol.state))
    return Result(
        n,
        rates,
        cpu,
        finite,
        f"warm-up (compile + 1 run) {warm:.1f} s; {active}/{total} weight arrays plastic (non-zero trace)",
    )


def time_numpy(case: Case, steps: int, repeats: int, seed: int) -> Result:
    model = make_model(case)
    weights = init_weights(model.network, model.conductances, jax.random.key(seed))
    state = init_state(model.network, case.batch)
    x, target, on, spp = make_stream(case, steps, seed + 1)
    n = spp * x.shape[0]
    rng = np.random.default_rng(seed + 2)
    warm = from_microcircuit(model, weights, state)
    warm.run(x[:1], target[:1], on[:1], min(spp, 50), rng)  # warm-up (allocator, BLAS threads)
    rates, cpu, finite = [], [], warm.all_finite()
    for _ in range(repeats):
        circuit = from_microcircuit(model, weights, state)
        t0, c0 = time.perf_counter(), time.process_time()
        circuit.run(x, target, on, spp, rng)
        wall = time.perf_counter() - t0
        rates.append(n / wall)
        cpu.append((time.process_time() - c0) / wall)
        finite = finite and circuit.all_finite()
    return Result(n, rates, cpu, finite)


def check_reference(seed: int) -> str:
    """JAX simulate and the NumPy reference agree without noise (30-50-10, B = 2, 400 steps)."""
    case = Case("check", (30, 50, 10), 2, 0.5, None, 400, 400, 400, 400)
    base = make_model(case)
    model = Model(
        base.network, base.conductances, base.plasticity, Simulation(dt=0.1, tau_0=3.0, sigma=0.0, dtype="float32")
    )
    weights = init_weights(model.network, model.conductances, jax.random.key(seed))
    state = init_state(model.network, case.batch)
    x, target, on, spp = make_stream(case, 400, seed + 1)
    sol = simulate(model, weights, state, Stream.of(x, target, on), duration=spp * model.simulation.dt)
    ref = from_microcircuit(model, weights, state)
    ref.run(x, target, on, spp, None)
    worst = 0.0
    for name in ("W", "b", "B", "PI", "IP", "c"):
        for a, b, a0 in zip(getattr(sol.weights, name), ref.weights()[name], getattr(weights, name), strict=True):
            change = float(np.max(np.abs(np.asarray(a) - np.asarray(a0))))
            worst = max(worst, float(np.max(np.abs(np.asarray(a) - b))) / max(change, 1e-30))
    return f"max |W_jax - W_numpy| / max |W change| = {worst:.1e} over all 8 weight arrays (sigma = 0, 400 steps)"


# -- header --------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _openblas_threads() -> str:
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
        path = next(line.split()[-1] for line in maps if "openblas" in line.split()[-1].lower())
        lib = ctypes.CDLL(path)
        for sym in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(lib, sym):
                return str(getattr(lib, sym)())
    except (OSError, StopIteration):
        pass
    return "unknown"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def header(args: argparse.Namespace) -> list[str]:
    dev = jax.devices()[0]
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas_name = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # informational only
        blas_name = "unknown"
    env = {
        k: os.environ.get(k, "(unset)")
        for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"date            {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"python          {platform.python_version()}   numpy {np.__version__}   jax {jax.__version__}"
        f"   jaxlib {jax.lib.__version__ if hasattr(jax.lib, '__version__') else '?'}",
        f"backend         {jax.default_backend()}   device {dev} ({dev.device_kind})",
        f"CPU             {_cpu_model()}   os.cpu_count() = {os.cpu_count()}   usable (affinity) = {affinity}",
        f"XLA threads     XLA_FLAGS = {env['XLA_FLAGS']}  (XLA:CPU intra-op pool defaults to one thread per CPU)",
        f"NumPy threads   BLAS {blas_name}, threads = {_openblas_threads()};  OMP_NUM_THREADS = "
        f"{env['OMP_NUM_THREADS']}, OPENBLAS_NUM_THREADS = {env['OPENBLAS_NUM_THREADS']}, "
        f"MKL_NUM_THREADS = {env['MKL_NUM_THREADS']}",
        "settings        float32, soft rectifier, biases, sigma = 0.1 (sqrt_dt), tau_w = 30 ms, tau_0 = 3 ms, "
        "dt = 0.1 ms, all of W, b, B, PI, IP, c plastic",
        f"                eta_W = 1.1875e-3 (hidden) / 5e-4 (output), eta_IP = 1.1875e-3, eta_PI = 5e-4, "
        f"eta_B = 1e-4 per ms; target on; new pattern every {PATTERN_STEPS} steps",
        f"measurement     warm-up call first, then {args.repeats} repeats; simulate(..., chunk_steps="
        f"{args.chunk_steps}); NumPy = benchmarks/numpy_reference_step.py",
        f"load average    {_loadavg()} (1, 5, 15 min) at start: other processes on the machine slow every figure",
    ]


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats (~30 s)")
    ap.add_argument("--cases", default="small,large,batch", help="comma list of: small, large, batch")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 5; quick 3)")
    for c in CASES:
        ap.add_argument(
            f"--steps-{c.key}",
            type=int,
            default=None,
            help=f"JAX steps per measurement for {c.label} (default {c.jax_steps:,}; quick {c.quick_jax_steps:,})",
        )
        ap.add_argument(
            f"--numpy-steps-{c.key}",
            type=int,
            default=None,
            help=f"NumPy steps per measurement for {c.label} (default {c.numpy_steps:,}; quick "
            f"{c.quick_numpy_steps:,})",
        )
    ap.add_argument("--chunk-steps", type=int, default=20_000, help="simulate(chunk_steps=...) (default 20000)")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy baseline")
    ap.add_argument("--no-check", action="store_true", help="skip the JAX-vs-NumPy agreement check")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    keys = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = set(keys) - {c.key for c in CASES}
    if unknown:
        ap.error(f"unknown case(s) {sorted(unknown)}; choose from small, large, batch")

    print("microcircuit dynamics benchmark: steps per second of microcircuit.simulate.simulate")
    for line in header(args):
        print("  " + line)
    if not args.no_check and not args.no_numpy:
        print("  reference check " + check_reference(args.seed))
    print(flush=True)

    rows = []
    all_finite = True
    for case in (c for c in CASES if c.key in keys):
        js = getattr(args, f"steps_{case.key}") or (case.quick_jax_steps if args.quick else case.jax_steps)
        ns = getattr(args, f"numpy_steps_{case.key}") or (case.quick_numpy_steps if args.quick else case.numpy_steps)
        print(f"  timing {case.label}: JAX {js:,} steps x {args.repeats} ...", flush=True)
        rj = time_jax(case, js, args.repeats, args.chunk_steps, args.seed)
        print(f"    {rj.note}", flush=True)
        rn = None
        if not args.no_numpy:
            print(f"  timing {case.label}: NumPy {ns:,} steps x {args.repeats} ...", flush=True)
            rn = time_numpy(case, ns, args.repeats, args.seed)
        rows.append((case, rj, rn))
        all_finite = all_finite and rj.finite and (rn is None or rn.finite)

    print()
    cols = ("case", "impl", "steps", "median steps/s", "min", "max", "us/step", "CPU%", "JAX/NumPy", "target", "finite")
    table = []
    for case, rj, rn in rows:
        ratio = f"{rj.median / rn.median:.1f}x" if rn is not None else "-"
        if case.target is None:
            tgt = "-"
        else:
            tgt = f">={fmt_rate(case.target)} {'met' if rj.median >= case.target else 'MISSED'}"
        for impl, r in (("jax", rj), ("numpy", rn)):
            if r is None:
                continue
            table.append(
                (
                    case.label if impl == "jax" else "",
                    impl,
                    f"{r.steps:,}",
                    fmt_rate(r.median),
                    fmt_rate(min(r.rates)),
                    fmt_rate(max(r.rates)),
                    f"{1e6 / r.median:,.1f}",
                    f"{100 * statistics.median(r.cpu):.0f}",
                    ratio if impl == "jax" else "",
                    tgt if impl == "jax" else "",
                    "yes" if r.finite else "NO",
                )
            )
    widths = [max(len(cols[i]), *(len(row[i]) for row in table)) for i in range(len(cols))]
    right = {2, 3, 4, 5, 6, 7, 8}

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )

    print(line(cols))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print(line(row))
    print()
    print(
        "steps/s: median over repeats, min and max alongside; us/step = 1e6 / median; CPU% = process CPU time /"
        " wall time (100 = one core busy); JAX/NumPy = ratio of medians; target: the issue's figure for 2 CPU "
        "cores."
    )
    print(f"load average at end: {_loadavg()}")
    if not all_finite:
        print("ERROR: a run produced NaN/Inf weights, traces or potentials", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
