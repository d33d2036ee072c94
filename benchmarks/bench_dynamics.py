"""Steps per second of ``microcircuit.simulate.simulate``, with every kind of plasticity on.

Three cases, all float32 with the soft rectifier, biases, somatic noise (sigma > 0), the tau_w trace
and every matrix plastic (eta_W, eta_IP, eta_PI, eta_B > 0):

    small   30-50-10         batch 1
    large   784-500-500-10   batch 1
    batch   784-500-500-10   batch 100

Each is timed after a warm-up call that compiles it, ``--repeats`` times, and reported as the median
and the min/max of steps per second. The same step in plain float32 NumPy
(``benchmarks/numpy_reference_step.py``) is timed side by side as the baseline, with fewer steps.

For the cases in ``--defer-cases`` (default: large) the same run is also timed with the exact deferred
updates, ``plasticity.defer = K``, for each K in ``--defer`` (default 50,100; K must divide the steps per
pattern, 1,000, or the run's steps when fewer). The schemes' repeats are interleaved (one run of each
in turn), so that a change in the machine's load hits them alike.

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_dynamics.py            # ~2-4 min on 2 cores
    PYTHONPATH=src python benchmarks/bench_dynamics.py --quick    # ~30 s
    PYTHONPATH=src python benchmarks/bench_dynamics.py --quick --cases large --defer 25,50,100

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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
from numpy_reference_step import from_microcircuit

from microcircuit.config import Conductances, Init, Model, NetworkSpec, Plasticity, Simulation, Transfer
from microcircuit.dynamics import init_state
from microcircuit.network import init_weights
from microcircuit.simulate import Stream, resolve_defer, simulate

PATTERN_STEPS = 1000  # 100 ms per pattern at dt = 0.1 ms (docs/model.md §7)


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
    # quick: one 1,000-step pattern; runs of a few hundred steps measure low (per-call host work, e.g. the
    # input checks over 11 MB of weights, is not amortised)
    Case("large", (784, 500, 500, 10), 1, 0.05, 3_000.0, 2_000, 200, 1_000, 50),
    Case("batch", (784, 500, 500, 10), 100, 0.05, None, 300, 30, 30, 10),
)


def make_model(case: Case, defer: int | str = 1) -> Model:
    """All plasticity on, realistic small rates (docs/model.md §7 orders of magnitude), noise and biases on;
    ``defer`` = K > 1 computes the same updates in deferred blocks of K steps (plasticity.defer)."""
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
        defer=defer,
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


def prepare_jax(case: Case, steps: int, chunk_steps: int, seed: int, defer: int = 1):
    """A compiled, warmed-up run of ``simulate`` (the scheme of ``defer``); returns (run, steps, note,
    finite), where run() -> (wall s, process CPU s, finite)."""
    model = make_model(case, defer)
    weights = init_weights(model.network, model.conductances, jax.random.key(seed))
    state = init_state(model.network, case.batch)
    x, target, on, spp = make_stream(case, steps, seed + 1)
    stream = Stream.of(x, target, on)
    key = jax.random.key(seed + 2)
    n = spp * x.shape[0]

    def simulate_once():
        sol = simulate(
            model, weights, state, stream, duration=spp * model.simulation.dt, key=key, chunk_steps=chunk_steps
        )
        jax.block_until_ready((sol.weights, sol.traces, sol.state))
        return sol

    def run() -> tuple[float, float, bool]:
        t0, c0 = time.perf_counter(), time.process_time()
        sol = simulate_once()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return wall, cpu, _arrays_finite((sol.weights, sol.traces, sol.state))

    t0 = time.perf_counter()
    sol = simulate_once()  # warm-up: compiles every chunk shape this call needs
    warm = time.perf_counter() - t0
    finite = _arrays_finite((sol.weights, sol.traces, sol.state))
    active, total = _active(sol.traces)
    note = f"warm-up (compile + 1 run) {warm:.1f} s; {active}/{total} weight arrays plastic (non-zero trace)"
    return run, n, note, finite


def time_jax_schemes(
    case: Case, steps: int, repeats: int, chunk_steps: int, seed: int, defers: tuple[int, ...] = (1,)
) -> dict[int, Result]:
    """Time each scheme (``plasticity.defer`` = K, 1 = step by step), repeats interleaved."""
    prepared = {k: prepare_jax(case, steps, chunk_steps, seed, k) for k in defers}
    results = {k: Result(n, [], [], finite, note) for k, (_, n, note, finite) in prepared.items()}
    for _ in range(repeats):
        for k, (run, n, _, _) in prepared.items():
            wall, cpu, finite = run()
            r = results[k]
            r.rates.append(n / wall)
            r.cpu.append(cpu / wall)
            r.finite = r.finite and finite
    return results


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


def check_deferred(seed: int, defer: int) -> str:
    """plasticity.defer = K and the step-by-step scheme agree in float64 (30-50-10, B = 2, 400 steps, sigma > 0).

    Not checked in float32 against NumPy: with these rates a single step's weight change, dt·eta·Delta,
    is often below the float32 spacing of the weight, so the step-by-step schemes (JAX and NumPy alike)
    round part of the learning away, and the deferred one, which sums K steps before adding, rounds less."""
    case = Case("check", (30, 50, 10), 2, 0.5, None, 400, 400, 400, 400)
    x, target, on, spp = make_stream(case, 400, seed + 1)
    out = []
    with jax.enable_x64(True):
        for k in (1, defer):
            base = make_model(case, k)
            model = Model(base.network, base.conductances, base.plasticity, replace(base.simulation, dtype="float64"))
            weights = init_weights(model.network, model.conductances, jax.random.key(seed), "float64")
            state = init_state(model.network, case.batch, "float64")
            sol = simulate(model, weights, state, Stream.of(x, target, on), duration=spp * model.simulation.dt,
                           key=jax.random.key(seed + 2))
            out.append((weights, sol.weights))
    (w0, step), (_, deferred) = out
    leaves = [[np.asarray(a) for a in jax.tree_util.tree_leaves(t)] for t in (deferred, step, w0)]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves[0], leaves[1], strict=True))
    change = max(float(np.max(np.abs(b - a0))) for b, a0 in zip(leaves[1], leaves[2], strict=True))
    size = max(float(np.max(np.abs(b))) for b in leaves[1])
    return (
        f"max |W_defer={defer} - W_jax| = {diff:.1e} over all {len(leaves[0])} weight arrays (float64, sigma = 0.1, "
        f"400 steps; "
        f"max |W| = {size:.2f}, max |W change| = {change:.1e})"
    )


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
    ap.add_argument(
        "--defer", default="50,100", help="comma list of plasticity.defer values K to time besides the step-by-step "
        "scheme and the default's choice (default 50,100; empty: none)"
    )
    ap.add_argument("--defer-cases", default="large", help="the cases timed with --defer too (default: large)")
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
    try:
        defers = tuple(int(k) for k in args.defer.split(",") if k.strip())
    except ValueError:
        ap.error(f"--defer: expected a comma list of integers, got {args.defer!r}")
    if any(k < 2 for k in defers):
        ap.error("--defer: each K must be >= 2 (K = 1, the step-by-step scheme, is always timed)")
    defer_keys = {k.strip() for k in args.defer_cases.split(",") if k.strip()}

    print("microcircuit dynamics benchmark: steps per second of microcircuit.simulate.simulate")
    for line in header(args):
        print("  " + line)
    if not args.no_check and not args.no_numpy:
        print("  reference check " + check_reference(args.seed))
        for k in defers if defer_keys & set(keys) else ():
            if 400 % k == 0:
                print("  deferred check  " + check_deferred(args.seed, k))
    print(flush=True)

    rows = []
    auto_of: dict[str, int] = {}
    all_finite = True
    for case in (c for c in CASES if c.key in keys):
        js = getattr(args, f"steps_{case.key}") or (case.quick_jax_steps if args.quick else case.jax_steps)
        ns = getattr(args, f"numpy_steps_{case.key}") or (case.quick_numpy_steps if args.quick else case.numpy_steps)
        spp = min(PATTERN_STEPS, js)
        fits = tuple(k for k in defers if spp % k == 0)
        for k in set(defers) - set(fits) if case.key in defer_keys else ():
            print(f"  skipping defer = {k} for {case.label}: it does not divide the {spp} steps per pattern")
        auto = resolve_defer(make_model(case, "auto"), case.batch, spp).plasticity.defer  # the default's choice
        schemes = tuple(dict.fromkeys((1, auto, *(fits if case.key in defer_keys else ()))))
        auto_of[case.key] = auto
        names = ", ".join("step by step" if k == 1 else f"defer = {k}" for k in schemes)
        print(f"  timing {case.label}: JAX {js:,} steps x {args.repeats} ({names}, interleaved) ...", flush=True)
        rjs = time_jax_schemes(case, js, args.repeats, args.chunk_steps, args.seed, schemes)
        rj = rjs[1]
        print(f"    {rj.note}", flush=True)
        rn = None
        if not args.no_numpy:
            print(f"  timing {case.label}: NumPy {ns:,} steps x {args.repeats} ...", flush=True)
            rn = time_numpy(case, ns, args.repeats, args.seed)
        rows.append((case, rjs, rn))
        all_finite = all_finite and all(r.finite for r in rjs.values()) and (rn is None or rn.finite)

    print()
    cols = ("case", "impl", "steps", "median steps/s", "min", "max", "us/step", "CPU%", "JAX/NumPy", "target", "finite")
    table = []
    for case, rjs, rn in rows:
        impls = [(f"jax defer={k}" + (" *" if k == auto_of[case.key] else ""), r) for k, r in rjs.items()]
        impls.append(("numpy", rn))
        for i, (impl, r) in enumerate(impls):
            if r is None:
                continue
            jax_row = impl.startswith("jax")
            ratio = f"{r.median / rn.median:.1f}x" if rn is not None and jax_row else ""
            if case.target is None or not jax_row:
                tgt = "-" if jax_row else ""
            else:
                tgt = f">={fmt_rate(case.target)} {'met' if r.median >= case.target else 'MISSED'}"
            table.append(
                (
                    case.label if i == 0 else "",
                    impl,
                    f"{r.steps:,}",
                    fmt_rate(r.median),
                    fmt_rate(min(r.rates)),
                    fmt_rate(max(r.rates)),
                    f"{1e6 / r.median:,.1f}",
                    f"{100 * statistics.median(r.cpu):.0f}",
                    ratio,
                    tgt,
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
        "cores; 'jax defer=K': plasticity.defer = K (K = 1: step by step; K > 1: exact deferred updates), repeats "
        "interleaved; *: the scheme the default, plasticity.defer = \"auto\", runs for this case."
    )
    print(f"load average at end: {_loadavg()}")
    if not all_finite:
        print("ERROR: a run produced NaN/Inf weights, traces or potentials", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
