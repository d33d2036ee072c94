"""Configuration: frozen, validated dataclasses; TOML files and ``--set`` overrides map onto them.

Every field is checked when the object is built, so a bad value fails before any JAX tracing, with a
:class:`ConfigError` naming the key (``conductances.g_B``, ``network.sizes``, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "Conductances",
    "Config",
    "ConfigError",
    "Init",
    "Model",
    "NetworkSpec",
    "Pal",
    "Plasticity",
    "Record",
    "Schedule",
    "Simulation",
    "Spiking",
    "Stimulus",
    "Training",
    "Transfer",
    "apply_overrides",
    "closest",
    "from_dict",
    "load_toml",
    "parse_override",
    "to_dict",
    "to_toml",
]

RECORDABLE = (
    "u",  # somatic potentials u_k
    "u_inter",  # interneuron potentials u^I_k
    "v_basal",  # basal potentials v_B,k
    "v_apical",  # apical potentials v_A,k
    "rates",  # r_k = phi(u_k)
    "u_trgt",  # low-passed target potential
    "weight_norms",  # Frobenius norms of every matrix
    "self_prediction",  # mean_b ||v_A,k||^2 and mean_b ||u_{k+1} - u^I_k||^2
    "u_prospective",  # prospective potentials ŭ_k and ŭ^I_k (simulation.prospective only)
    "alignment",  # angles ∠(W_{k+1}ᵀ, B_k) and ∠(B_k, φ'_k W_{k+1}ᵀ φ'_{k+1}) per hidden layer (docs/model.md §12)
    "pal_noise",  # the apical Ornstein–Uhlenbeck noise ξ_k of PAL (pal.enabled only, docs/model.md §12)
    "spikes",  # spike counts of the last step per unit, pyramids and interneurons (spiking.enabled only, §13)
    "synapses",  # the synaptic traces every population sends (spiking.enabled only, docs/model.md §13)
)


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    _check(ok, key, f"must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")


# --------------------------------------------------------------------------------------------------
# Sections


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice a mistyped ``word`` most likely meant: the same word in another case (``eta_pi`` →
    ``eta_PI``), else the closest by :func:`difflib.get_close_matches`, compared case-insensitively."""
    choices = list(choices)
    by_lower = {c.lower(): c for c in choices}
    hit = difflib.get_close_matches(word.lower(), list(by_lower), n=1)
    return by_lower[hit[0]] if hit else None


@dataclass(frozen=True)
class Conductances:
    """Leak, dendritic and nudging conductances (docs/model.md §2, units 1/ms)."""

    g_lk: float = 0.1
    g_B: float = 1.0
    g_A: float = 0.8
    g_D: float = 1.0
    g_som: float = 0.8

    def __post_init__(self) -> None:
        _positive("conductances.g_lk", self.g_lk, allow_zero=True)
        for name in ("g_B", "g_A", "g_D", "g_som"):
            _positive(f"conductances.{name}", getattr(self, name))

    # Mixing factors of docs/model.md §5.
    @property
    def lambda_A(self) -> float:
        """λ_A = g_A / (g_lk + g_B + g_A)."""
        return self.g_A / (self.g_lk + self.g_B + self.g_A)

    @property
    def lambda_N(self) -> float:
        """λ_N = g_som / (g_lk + g_B + g_som)."""
        return self.g_som / (self.g_lk + self.g_B + self.g_som)

    @property
    def lambda_I(self) -> float:
        """λ_I = g_som / (g_lk + g_D + g_som)."""
        return self.g_som / (self.g_lk + self.g_D + self.g_som)

    # Attenuation factors of the dendritic predictions (docs/model.md §3, rules 7-8).
    @property
    def basal_hidden(self) -> float:
        """g_B / (g_lk + g_B + g_A): v̂_B,k = this · v_B,k for hidden layers (rule 7)."""
        return self.g_B / (self.g_lk + self.g_B + self.g_A)

    @property
    def basal_output(self) -> float:
        """g_B / (g_lk + g_B): v̂_B,N = this · v_B,N (rule 7)."""
        return self.g_B / (self.g_lk + self.g_B)

    @property
    def dendrite_inter(self) -> float:
        """g_D / (g_lk + g_D): v̂^I_k = this · v^I_k (rule 8)."""
        return self.g_D / (self.g_lk + self.g_D)


@dataclass(frozen=True)
class Transfer:
    """Transfer function φ (docs/model.md §2): ``soft_rectifier`` γ·log(1+exp(β(u−θ))) or ``logistic``."""

    kind: str = "soft_rectifier"
    gamma: float = 0.1
    beta: float = 1.0
    theta: float = 3.0

    def __post_init__(self) -> None:
        _check(
            self.kind in ("soft_rectifier", "logistic"),
            "network.transfer.kind",
            f"must be 'soft_rectifier' or 'logistic', got {self.kind!r}",
        )
        _positive("network.transfer.gamma", self.gamma)
        _positive("network.transfer.beta", self.beta)
        _check(math.isfinite(self.theta), "network.transfer.theta", f"must be finite, got {self.theta!r}")


@dataclass(frozen=True)
class Init:
    """Initial weights: uniform in [−scale, scale] per matrix kind, optionally made self-predicting (§4).

    ``W`` takes one scale for all bottom-up matrices or one per matrix (W_1..W_N); ``B``, ``IP`` and
    ``PI`` one for all or one per hidden layer (checked against ``network.sizes``). The biases b_k of W_k
    start uniform in [``bias_mean`` − ``bias``, ``bias_mean`` + ``bias``]; ``bias_mean`` (one for all layers
    or one per W_k, any sign) sets where the rates start. ``B_transposed``: B_k starts as the transposed
    bottom-up weights it feeds back along, W_{k+1}ᵀ · (B's scale / W_{k+1}'s scale), instead of random
    (symmetric feedback at the start, docs/model.md §11)."""

    W: float | tuple[float, ...] = 1.0
    B: float | tuple[float, ...] = 1.0
    IP: float | tuple[float, ...] = 1.0
    PI: float | tuple[float, ...] = 1.0
    bias: float = 0.0
    bias_mean: float | tuple[float, ...] = 0.0
    self_predicting: bool = False
    B_transposed: bool = False

    def __post_init__(self) -> None:
        for name in ("W", "B", "IP", "PI", "bias"):
            value = getattr(self, name)
            for v in value if isinstance(value, tuple) else (value,):
                _positive(f"network.init.{name}", v, allow_zero=True)
        for v in self.bias_mean if isinstance(self.bias_mean, tuple) else (self.bias_mean,):
            _check(math.isfinite(v), "network.init.bias_mean", f"must be finite, got {v!r}")

    def scales(self, depth: int) -> dict[str, tuple[float, ...]]:
        """Per-matrix scales: ``W`` has ``depth`` entries, ``B``, ``IP``, ``PI`` ``depth − 1``."""
        out = {"W": _rates(self.W, depth, "network.init.W")}
        for name in ("B", "IP", "PI"):
            out[name] = _rates(getattr(self, name), depth - 1, f"network.init.{name}")
        if self.B_transposed:
            for k, s in enumerate(out["W"][1:], start=2):
                _check(s > 0, "network.init.B_transposed",
                       f"B_{k - 1} starts as W_{k}ᵀ, but network.init.W gives W_{k} the scale 0")
        return out

    def bias_means(self, depth: int) -> tuple[float, ...]:
        """The initial mean of each b_k (``depth`` entries, any sign)."""
        return _rates(self.bias_mean, depth, "network.init.bias_mean", signed=True)


@dataclass(frozen=True)
class NetworkSpec:
    """Layer sizes (input first, output last), transfer function, biases and initialisation."""

    sizes: tuple[int, ...] = (30, 20, 10)
    transfer: Transfer = field(default_factory=Transfer)
    bias: bool = False
    init: Init = field(default_factory=Init)

    def __post_init__(self) -> None:
        _check(len(self.sizes) >= 3, "network.sizes", f"needs at least 3 layers (N >= 2), got {self.sizes!r}")
        for i, n in enumerate(self.sizes):
            _check(
                isinstance(n, int) and not isinstance(n, bool) and n > 0,
                "network.sizes",
                f"layer {i} must have a positive integer size, got {n!r}",
            )
        self.init.scales(self.depth)  # one scale per matrix, or one for all
        self.init.bias_means(self.depth)

    @property
    def depth(self) -> int:
        """N: the number of layers above the input."""
        return len(self.sizes) - 1


def _rates(value: float | tuple[float, ...], n: int, key: str, *, signed: bool = False) -> tuple[float, ...]:
    """A per-matrix entry (learning rate, initial scale or bias): one float for every layer, or one per
    layer; >= 0 unless ``signed``, always finite."""
    vals = (value,) * n if isinstance(value, int | float) else tuple(value)
    _check(len(vals) == n, key, f"needs {n} value(s) (one per matrix), got {len(vals)}: {value!r}")
    for v in vals:
        if signed:
            _check(math.isfinite(float(v)), key, f"must be finite, got {v!r}")
        else:
            _positive(key, float(v), allow_zero=True)
    return tuple(float(v) for v in vals)


@dataclass(frozen=True)
class Plasticity:
    """Learning rates per matrix (per ms, η = 0 freezes), the τ_w trace and the learning lag (§3).

    ``update_every`` = K > 1 sums the increments of K steps and applies them at once, as one matrix
    product per array (the weights are held for K steps: an approximation, exact for K = 1).

    ``defer`` = K > 1 changes only how the same step-by-step updates are computed, not what they are:
    the matrices' rank-B increments of K steps are kept as factors and applied once per K steps, while
    the dynamics see the exact weights of every step (``microcircuit.deferred``). Same trajectory up to
    float rounding, with less memory traffic: faster for batch 1 and large layers (K ≈ 50 for
    784-500-500-10), slower for small networks or large batches (docs/benchmarks.md). K = 1 updates every
    step. Steps per pattern and ``record.stride`` must be multiples of K. ``"auto"`` (the default) lets
    :func:`microcircuit.simulate.resolve_defer` choose per run: K ≈ 50 where it pays (batch ≤ 2, at
    least 200,000 plastic matrix weights, a divisor of the steps per pattern and of ``record.stride``),
    else 1.

    ``eta_W`` has one entry per bottom-up matrix W_1..W_N (or one float for all); ``eta_IP``, ``eta_PI``
    and ``eta_B`` one per hidden layer. Biases learn with the rate of their matrix.
    """

    eta_W: float | tuple[float, ...] = 0.0
    eta_IP: float | tuple[float, ...] = 0.0
    eta_PI: float | tuple[float, ...] = 0.0
    eta_B: float | tuple[float, ...] = 0.0
    tau_w: float = 30.0
    learning_lag: float = 0.0
    update_every: int = 1
    defer: int | str = "auto"

    def __post_init__(self) -> None:
        _positive("plasticity.tau_w", self.tau_w, allow_zero=True)
        _check(
            self.defer == "auto"
            or (isinstance(self.defer, int) and not isinstance(self.defer, bool) and self.defer >= 1),
            "plasticity.defer",
            f"must be an integer >= 1 or \"auto\", got {self.defer!r}",
        )
        _check(
            isinstance(self.update_every, int) and not isinstance(self.update_every, bool) and self.update_every >= 1,
            "plasticity.update_every",
            f"must be an integer >= 1, got {self.update_every!r}",
        )
        _check(
            self.update_every == 1 or self.tau_w == 0,
            "plasticity.update_every",
            f"= {self.update_every} needs plasticity.tau_w = 0 (the increments of several steps are summed and "
            f"applied at once), got tau_w = {self.tau_w}",
        )
        _check(
            self.defer in (1, "auto") or self.update_every == 1,
            "plasticity.defer",
            f"= {self.defer} cannot be combined with plasticity.update_every = {self.update_every} (defer is the "
            "exact step-by-step update computed in blocks; update_every holds the weights): set one of them to 1",
        )
        _positive("plasticity.learning_lag", self.learning_lag, allow_zero=True)
        for name in ("eta_W", "eta_IP", "eta_PI", "eta_B"):
            v = getattr(self, name)
            vals = (v,) if isinstance(v, int | float) else v
            for x in vals:
                _check(
                    isinstance(x, int | float) and not isinstance(x, bool),
                    f"plasticity.{name}",
                    f"must be numbers, got {x!r}",
                )
                _positive(f"plasticity.{name}", float(x), allow_zero=True)

    def resolved(self, depth: int) -> Plasticity:
        """The same rates expanded to one tuple entry per matrix, checked against the depth."""
        return dataclasses.replace(
            self,
            eta_W=_rates(self.eta_W, depth, "plasticity.eta_W"),
            eta_IP=_rates(self.eta_IP, depth - 1, "plasticity.eta_IP"),
            eta_PI=_rates(self.eta_PI, depth - 1, "plasticity.eta_PI"),
            eta_B=_rates(self.eta_B, depth - 1, "plasticity.eta_B"),
        )


@dataclass(frozen=True)
class Pal:
    """PAL, learned backprojections by noise-driven alignment (docs/model.md §12). Off unless ``enabled``.

    With ``enabled``, every hidden pyramidal neuron carries its own Ornstein–Uhlenbeck noise ξ on its apical
    potential (standard deviation about σ/√2, correlation time ``tau_xi`` ms), the rates of each layer above a
    hidden layer are high-pass filtered (``tau_hp`` ms), and B_k learns by dB_k/dt = η_B (ξ_k r̃_{k+1}ᵀ − α B_k)
    with η_B = ``eta_B`` (per ms, one for all hidden layers or one per hidden layer; 0 freezes B_k) and the
    weight decay ``alpha``. This rule replaces rule (10): ``plasticity.eta_B`` must then be 0. The rule is applied
    unfiltered (no τ_w trace). Rule (9) reads the apical potential without ξ."""

    enabled: bool = False
    sigma: float = 0.05
    tau_xi: float = 0.1
    tau_hp: float = 0.1
    eta_B: float | tuple[float, ...] = 0.0
    alpha: float = 1e-5

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), "pal.enabled", f"must be true or false, got {self.enabled!r}")
        _positive("pal.sigma", self.sigma, allow_zero=True)
        _positive("pal.tau_xi", self.tau_xi)
        _positive("pal.tau_hp", self.tau_hp)
        _positive("pal.alpha", self.alpha, allow_zero=True)
        vals = (self.eta_B,) if isinstance(self.eta_B, int | float) else self.eta_B
        for x in vals:
            _check(isinstance(x, int | float) and not isinstance(x, bool), "pal.eta_B", f"must be numbers, got {x!r}")
            _positive("pal.eta_B", float(x), allow_zero=True)

    def resolved(self, depth: int) -> Pal:
        """The same settings with ``eta_B`` expanded to one entry per hidden layer, checked against the depth."""
        return dataclasses.replace(self, eta_B=_rates(self.eta_B, depth - 1, "pal.eta_B"))


SPIKE_POST = ("spikes", "spikes_h", "rate")
SPIKE_COUNTS = ("poisson", "mean")
SPIKE_NUDGING = ("spikes", "voltage")


@dataclass(frozen=True)
class Spiking:
    """The spiking circuit (docs/model.md §13). Off unless ``enabled``.

    Every unit of the rate model (pyramid, interneuron, input pixel) becomes a population of ``n`` neurons,
    each firing as a Poisson process at ``r_max`` · φ (φ capped at 1; the input at ``r_max`` · x, x in [0, 1]);
    a step draws one spike count per unit (``counts = "poisson"``; ``"mean"`` sends the expected count, the
    deterministic limit n·r_max → ∞). Every dendrite receives the presynaptic spike trains through a synaptic
    trace normalised to the rate model's units (its mean is φ): ``tau_syn`` ms is the kernel's time constant,
    0 for the spikes of the step alone. With ``nudging = "spikes"`` the teaching signal of the output and the
    interneurons' nudging are spike trains too, of an excitatory and an inhibitory population whose rates
    encode the target potential between E_inh and E_exc; ``"voltage"`` copies the potential (the rate model's
    nudging, as an ablation). ``post``: the postsynaptic factor of rules (7), (8) and (10): ``"spikes"``
    [S − φ(v̂)] with S the unit's spike train in rate units, ``"spikes_h"`` the same times h(v̂) = (ln φ)'(v̂)
    (Urbanczik & Senn), ``"rate"`` the mean field [φ(u) − φ(v̂)]."""

    enabled: bool = False
    n: int = 100
    r_max: float = 200.0
    tau_syn: float = 0.0
    counts: str = "poisson"
    post: str = "spikes"
    nudging: str = "spikes"

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), "spiking.enabled", f"must be true or false, got {self.enabled!r}")
        _check(isinstance(self.n, int) and not isinstance(self.n, bool) and self.n >= 1, "spiking.n",
               f"must be an integer >= 1 (neurons per unit), got {self.n!r}")
        _positive("spiking.r_max", self.r_max)
        _positive("spiking.tau_syn", self.tau_syn, allow_zero=True)
        for key, value, allowed in (("counts", self.counts, SPIKE_COUNTS), ("post", self.post, SPIKE_POST),
                                    ("nudging", self.nudging, SPIKE_NUDGING)):
            _check(value in allowed, f"spiking.{key}",
                   f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")


@dataclass(frozen=True)
class Simulation:
    """Integration: step and integrator, input filter, noise, nudging form, precision, divergence bound (§2).

    ``integrator``: ``euler`` (forward Euler–Maruyama, the paper's) or ``exponential`` (exponential Euler:
    each soma, filter and weight trace relaxes exactly towards its value for dendritic input held over the
    step, so it is exact for the linear somatic ODE and stable at any dt; docs/model.md §2).

    ``prospective``: Latent Equilibrium (docs/model.md §8): every neuron sends φ(ŭ) with the prospective
    potential ŭ = u + τ·du/dt, τ = 1/g_tot of its compartment, and rules (7)–(10) read ŭ where they read u.

    ``update_order`` (prospective mode; the original mode reads every rate from the state at t, which is
    the synchronous order): ``sweep`` (one bottom-up sweep per step: a layer's basal dendrite receives this
    step's rates of the layer below) or ``synchronous`` (every dendrite receives the rates of the previous
    step, as in the Latent Equilibrium authors' code: one step of delay per layer; §8).
    """

    dt: float = 0.1
    integrator: str = "euler"
    tau_0: float = 3.0
    sigma: float = 0.1
    noise: str = "sqrt_dt"
    nudging: str = "current"
    E_exc: float = 14.0 / 3.0
    E_inh: float = -1.0 / 3.0
    dtype: str = "float32"
    divergence_bound: float = 1e4
    prospective: bool = False
    update_order: str = "sweep"

    def __post_init__(self) -> None:
        _check(
            self.update_order in ("sweep", "synchronous"),
            "simulation.update_order",
            f"must be 'sweep' or 'synchronous', got {self.update_order!r}",
        )

        _check(
            isinstance(self.prospective, bool),
            "simulation.prospective",
            f"must be true or false, got {self.prospective!r}",
        )
        _positive("simulation.dt", self.dt)
        _positive("simulation.tau_0", self.tau_0, allow_zero=True)
        _positive("simulation.sigma", self.sigma, allow_zero=True)
        _positive("simulation.divergence_bound", self.divergence_bound)
        _check(
            self.noise in ("sqrt_dt", "dt"),
            "simulation.noise",
            f"must be 'sqrt_dt' (Euler-Maruyama) or 'dt', got {self.noise!r}",
        )
        _check(
            self.nudging in ("current", "conductance"),
            "simulation.nudging",
            f"must be 'current' or 'conductance', got {self.nudging!r}",
        )
        _check(
            self.E_exc > self.E_inh, "simulation.E_exc", f"must exceed E_inh, got {self.E_exc} <= {self.E_inh}"
        )
        _check(
            self.dtype in ("float32", "float64"),
            "simulation.dtype",
            f"must be 'float32' or 'float64', got {self.dtype!r}",
        )
        _check(
            self.integrator in ("euler", "exponential"),
            "simulation.integrator",
            f"must be 'euler' or 'exponential', got {self.integrator!r}",
        )
        _check(
            self.tau_0 == 0 or self.integrator == "exponential" or self.dt < 2 * self.tau_0,
            "simulation.dt",
            f"dt = {self.dt} ms is beyond the Euler stability bound 2·tau_0 = {2 * self.tau_0} ms",
        )


@dataclass(frozen=True)
class Stimulus:
    """The pattern stream of a generic run: random inputs, optionally with teacher-network targets.

    ``kind``: ``random_uniform`` (inputs U(low, high), no target) or ``teacher`` (inputs U(low, high),
    targets from a random teacher network of sizes ``teacher_sizes``, docs/model.md §7).
    ``durations``: the presentation times (ms) of an experiment that sweeps them (``le_bars``); empty otherwise.
    """

    kind: str = "random_uniform"
    n_patterns: int = 100
    duration: float = 100.0
    batch: int = 1
    low: float = 0.0
    high: float = 1.0
    teacher_sizes: tuple[int, ...] = ()
    durations: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check(
            self.kind in ("random_uniform", "teacher"),
            "stimulus.kind",
            f"must be 'random_uniform' or 'teacher', got {self.kind!r}",
        )
        _check(self.n_patterns >= 1, "stimulus.n_patterns", f"must be >= 1, got {self.n_patterns}")
        _positive("stimulus.duration", self.duration)
        _check(self.batch >= 1, "stimulus.batch", f"must be >= 1, got {self.batch}")
        for d in self.durations:
            _positive("stimulus.durations", d)
        _check(math.isfinite(self.low) and math.isfinite(self.high), "stimulus.low", "low and high must be finite")
        _check(self.high > self.low, "stimulus.high", f"must exceed stimulus.low, got {self.high} <= {self.low}")


@dataclass(frozen=True)
class Record:
    """What to record and how often: ``quantities`` from RECORDABLE, one snapshot every ``stride`` steps."""

    quantities: tuple[str, ...] = ("self_prediction",)
    stride: int = 100

    def __post_init__(self) -> None:
        _check(self.stride >= 1, "record.stride", f"must be >= 1, got {self.stride}")
        for q in self.quantities:
            if q not in RECORDABLE:
                hint = closest(q, RECORDABLE)
                extra = f" (did you mean {hint!r}?)" if hint else ""
                raise ConfigError(f"record.quantities: unknown quantity {q!r}{extra}; choose from {RECORDABLE}")


@dataclass(frozen=True)
class Schedule:
    """How a long run is cut into segments: every ``segment`` patterns the runner evaluates on
    ``n_test`` held-out inputs (σ = 0, no plasticity, ``settle`` ms), logs metrics and may checkpoint.

    ``checkpoint_every``: write a checkpoint every that many segments (0: only at the end, on SIGINT/
    SIGTERM and on divergence); ``keep_checkpoints``: how many of the newest to keep (docs/runs.md).
    Neither changes the computation, so both may differ when a run is resumed."""

    segment: int = 500
    n_test: int = 50
    settle: float = 30.0
    checkpoint_every: int = 1
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        _check(self.segment >= 1, "schedule.segment", f"must be >= 1, got {self.segment}")
        _check(self.n_test >= 1, "schedule.n_test", f"must be >= 1, got {self.n_test}")
        _positive("schedule.settle", self.settle)
        _check(self.checkpoint_every >= 0, "schedule.checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")
        _check(self.keep_checkpoints >= 1, "schedule.keep_checkpoints", f"must be >= 1, got {self.keep_checkpoints}")


# The output losses of the backprop baseline (training.loss; microcircuit.backprop.output_error)
BACKPROP_LOSSES = ("circuit", "cross_entropy", "rate_mse")
# training.method: the circuit (steady state or continuous time) and the feed-forward baselines of docs/model.md §5
TRAINING_METHODS = ("microcircuit", "backprop", "feedback_alignment", "direct_feedback_alignment", "dynamics")
# training.feedback: the circuit's top-down weights, fixed as drawn or transported from W_{k+1}ᵀ
FEEDBACK_KINDS = ("random", "transported")
# The states rule (9) can read in the steady-state mode (training.rule9_state; microcircuit.steady_state)
RULE9_STATES = ("nudged", "free")


@dataclass(frozen=True)
class Training:
    """Mini-batch training in the steady-state mode (docs/model.md §6) and its baselines.

    ``method``: ``microcircuit`` (rules 7–10 at the swept steady state; matrices with η = 0 frozen, so
    the shallow learner and frozen-W_2 variants are rate settings), ``backprop`` (SGD on the
    feed-forward network of §5 with learning rate ``lr_backprop`` on the output loss ``loss``) or
    ``dynamics`` (the continuous-time dynamics of §2–§3, each mini-batch shown for ``stimulus.duration``
    ms; errors read from the dynamics after ``eval_duration`` ms from rest). ``data``: ``mnist-subset`` (embedded),
    ``mnist`` (the cache filled by ``microcircuit data fetch-mnist``) or a path to MNIST files.
    ``n_train`` > 0 trains on the first n_train training images only (for searches).
    ``loss`` (``backprop`` only): the error backprop starts from, ``circuit`` (the circuit's own
    e_N = D_N (u_trgt − u_N), docs/model.md §5), ``cross_entropy`` (softmax cross-entropy of the output
    potentials u_N, the label the target's arg max) or ``rate_mse`` (½‖φ(u_trgt) − φ(u_N)‖²).
    ``rule9_state`` (``microcircuit`` only): the state whose apical potential rule (9) drives to rest,
    ``nudged`` (the swept state with the target, like every other rule) or ``free`` (the same sweep without
    the target's nudge, docs/model.md §6 "What rule (9) reads").
    Learning rates are per ms and applied over ``stimulus.duration`` per mini-batch (§7).

    ``feedback_alignment`` and ``direct_feedback_alignment`` train the same feed-forward network as
    ``backprop``, with the output error sent down through the fixed B_k (from layer k+1 to layer k) or
    through fixed random matrices D_k straight from the output to every hidden layer (docs/model.md §5).
    ``feedback`` (``microcircuit`` only): ``random`` keeps the top-down B_k fixed as drawn (the paper's
    model); ``transported`` sets B_k = W_{k+1}ᵀ and PI_k = −B_k after every update (weight transport: the
    circuit's own approximation of backprop without the feedback-alignment effect).
    ``lr`` > 0: one learning rate for every layer and method (docs/model.md §5, "One rate for every depth"):
    the feed-forward methods step by ``lr`` times their update, the circuits' per-layer rates η_k and η^IP_k
    are derived from it so that every layer's expected update is ``lr`` times the gradient (the rates in
    ``plasticity.eta_W`` and ``plasticity.eta_IP``, and ``lr_backprop``, are then not read).
    ``probe`` > 0: per epoch, on the first ``probe`` training images, log each layer's update against
    backprop's gradient at the same weights (angle, norm ratio) and, for the circuit, the apical residue
    without a target (docs/runs.md). ``settle_images`` > 0: after training, run the best circuit as a
    circuit (real dynamics, no target, σ = 0, 100 ms) on that many test images and report the fraction
    that settles.
    """

    method: str = "microcircuit"
    data: str = "mnist-subset"
    epochs: int = 1
    batch: int = 10
    n_passes: int = 1
    n_validation: int = 5000
    n_train: int = 0
    r_low: float = 0.1
    r_high: float = 0.8
    lr_backprop: float = 0.01
    loss: str = "circuit"
    rule9_state: str = "nudged"
    lr_decay: float = 1.0
    eval_duration: float = 20.0
    feedback: str = "random"
    lr: float = 0.0
    probe: int = 0
    settle_images: int = 0

    def __post_init__(self) -> None:
        _check(
            self.method in TRAINING_METHODS,
            "training.method",
            f"must be one of {', '.join(repr(x) for x in TRAINING_METHODS)}, got {self.method!r}",
        )
        _check(self.feedback in FEEDBACK_KINDS, "training.feedback",
               f"must be one of {', '.join(repr(x) for x in FEEDBACK_KINDS)}, got {self.feedback!r}")
        _check(self.feedback == "random" or self.method == "microcircuit", "training.feedback",
               f"'{self.feedback}' is implemented for training.method = 'microcircuit' (the steady-state mode), "
               f"not {self.method!r}")
        _positive("training.lr", self.lr, allow_zero=True)
        _check(self.probe >= 0, "training.probe", f"must be >= 0 (0 = off), got {self.probe}")
        _check(self.settle_images >= 0, "training.settle_images", f"must be >= 0 (0 = off), got {self.settle_images}")
        _positive("training.eval_duration", self.eval_duration)
        _check(self.epochs >= 1, "training.epochs", f"must be >= 1, got {self.epochs}")
        _check(self.batch >= 1, "training.batch", f"must be >= 1, got {self.batch}")
        _check(self.n_passes >= 1, "training.n_passes", f"must be >= 1, got {self.n_passes}")
        _check(self.n_validation >= 1, "training.n_validation", f"must be >= 1, got {self.n_validation}")
        _check(self.n_train >= 0, "training.n_train", f"must be >= 0 (0 = all), got {self.n_train}")
        _check(
            0 < self.r_low < self.r_high < 1,
            "training.r_low",
            f"need 0 < r_low < r_high < 1 (logistic targets), got {self.r_low}, {self.r_high}",
        )
        _positive("training.lr_backprop", self.lr_backprop, allow_zero=True)
        _check(self.loss in BACKPROP_LOSSES, "training.loss",
               f"must be one of {', '.join(repr(x) for x in BACKPROP_LOSSES)}, got {self.loss!r}")
        _check(self.rule9_state in RULE9_STATES, "training.rule9_state",
               f"must be one of {', '.join(repr(x) for x in RULE9_STATES)}, got {self.rule9_state!r}")
        _check(0 < self.lr_decay <= 1, "training.lr_decay", f"must be in (0, 1], got {self.lr_decay}")


@dataclass(frozen=True)
class Model:
    """Everything the pure step function needs; hashable, so it is a static argument under ``jit``."""

    network: NetworkSpec = field(default_factory=NetworkSpec)
    conductances: Conductances = field(default_factory=Conductances)
    plasticity: Plasticity = field(default_factory=Plasticity)
    simulation: Simulation = field(default_factory=Simulation)
    pal: Pal = field(default_factory=Pal)
    spiking: Spiking = field(default_factory=Spiking)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plasticity", self.plasticity.resolved(self.network.depth))
        object.__setattr__(self, "pal", self.pal.resolved(self.network.depth))
        c, dt = self.conductances, self.simulation.dt
        fastest = max(
            c.g_lk + c.g_B + c.g_A,  # hidden soma
            c.g_lk + c.g_B + c.g_som,  # output soma with target
            c.g_lk + c.g_D + c.g_som,  # interneuron
        )
        euler = self.simulation.integrator == "euler"  # the exponential integrator has no such bound
        _check(
            not euler or dt * fastest < 2.0,
            "simulation.dt",
            f"dt = {dt} ms is beyond the Euler stability bound 2/g_total = {2 / fastest:.4g} ms",
        )
        tau_w = self.plasticity.tau_w
        _check(
            tau_w == 0 or not euler or dt < 2 * tau_w,
            "simulation.dt",
            f"dt = {dt} ms is beyond the stability bound 2·tau_w = {2 * tau_w} ms of the weight trace",
        )
        defer = self.plasticity.defer
        _check(
            not self.simulation.prospective or defer in (1, "auto"),
            "plasticity.defer",
            f"= {defer} is not implemented with simulation.prospective = true: set plasticity.defer = 1 (or \"auto\", "
            "which is 1 in prospective mode)",
        )
        self._check_pal()
        self._check_spiking()

    def _check_spiking(self) -> None:
        """The spiking circuit (docs/model.md §13) against the other sections."""
        sp, p, sim = self.spiking, self.plasticity, self.simulation
        if not sp.enabled:
            return
        _check(not self.pal.enabled, "pal.enabled", "PAL is not implemented for the spiking circuit "
               "(spiking.enabled = true): set one of them to false")
        _check(p.update_every == 1, "plasticity.update_every",
               f"= {p.update_every} is not implemented with spiking.enabled = true: set it to 1")
        _check(p.defer in (1, "auto"), "plasticity.defer",
               f"= {p.defer} is not implemented with spiking.enabled = true: set plasticity.defer = 1 (or \"auto\", "
               "which is 1 for the spiking circuit)")
        _check(not sim.prospective or sim.update_order == "sweep", "simulation.update_order",
               "= 'synchronous' is not implemented with spiking.enabled = true: use 'sweep'")
        p_max = sp.r_max * sim.dt / 1000.0
        _check(p_max <= 1.0, "spiking.r_max",
               f"= {sp.r_max:g} Hz fires more than once per neuron and step of dt = {sim.dt:g} ms "
               f"(r_max·dt = {p_max:g}): lower r_max or dt")
        if sim.integrator == "euler" and sp.tau_syn > 0:
            _check(sim.dt < 2 * sp.tau_syn, "simulation.dt",
                   f"dt = {sim.dt} ms is beyond the stability bound 2·spiking.tau_syn = {2 * sp.tau_syn} ms")

    def _check_pal(self) -> None:
        """PAL (docs/model.md §12) against the other sections: no contradictory or unsupported combination."""
        pal, p, sim = self.pal, self.plasticity, self.simulation
        if not pal.enabled:
            _check(not any(pal.eta_B), "pal.eta_B",
                   f"= {pal.eta_B} is set but pal.enabled = false: set pal.enabled = true, or pal.eta_B = 0")
            return
        _check(not any(p.eta_B), "plasticity.eta_B",
               f"= {p.eta_B} (rule 10) cannot be combined with pal.enabled = true: PAL's rule replaces rule (10) for "
               "B; set plasticity.eta_B = 0 and give B's rate in pal.eta_B")
        _check(p.update_every == 1, "plasticity.update_every",
               f"= {p.update_every} is not implemented with pal.enabled = true: set it to 1")
        _check(p.defer in (1, "auto"), "plasticity.defer",
               f"= {p.defer} is not implemented with pal.enabled = true: set plasticity.defer = 1 (or \"auto\", "
               "which is 1 with PAL)")
        if sim.integrator == "euler":
            for name in ("tau_xi", "tau_hp"):
                tau = getattr(pal, name)
                _check(sim.dt < 2 * tau, "simulation.dt",
                       f"dt = {sim.dt} ms is beyond the stability bound 2·pal.{name} = {2 * tau} ms of the PAL filter")


@dataclass(frozen=True)
class Config:
    """A whole run: the model, the stimulus, what to record, the seed, and which experiment runs it.

    ``n_seeds``: independent repetitions with seeds ``seed .. seed + n_seeds − 1`` (experiments that
    support it run them together as one vmapped ensemble). ``init_from``: where an experiment that starts
    from a trained state takes its weights: ``""`` (``network.init``), ``"preset:NAME"`` (run that preset
    first, with this run's seed, network and conductances) or the path of a run folder (its newest
    checkpoint).
    """

    name: str = "custom"
    experiment: str = "simulate"
    seed: int = 0
    n_seeds: int = 1
    init_from: str = ""
    network: NetworkSpec = field(default_factory=NetworkSpec)
    conductances: Conductances = field(default_factory=Conductances)
    plasticity: Plasticity = field(default_factory=Plasticity)
    simulation: Simulation = field(default_factory=Simulation)
    stimulus: Stimulus = field(default_factory=Stimulus)
    record: Record = field(default_factory=Record)
    schedule: Schedule = field(default_factory=Schedule)
    training: Training = field(default_factory=Training)
    pal: Pal = field(default_factory=Pal)
    spiking: Spiking = field(default_factory=Spiking)

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _check(self.n_seeds >= 1, "n_seeds", f"must be >= 1, got {self.n_seeds}")
        _check(
            self.init_from.removeprefix("preset:").strip() != "" or self.init_from == "",
            "init_from",
            f"expected '', 'preset:NAME' or a run folder, got {self.init_from!r}",
        )
        _check(self.seed < 2**32, "seed", f"must be < 2**32, got {self.seed}")
        self.model  # noqa: B018 - cross-field checks (rates per layer, dt stability)
        _check(
            "u_prospective" not in self.record.quantities or self.simulation.prospective,
            "record.quantities",
            "'u_prospective' needs simulation.prospective = true",
        )
        _check(
            "pal_noise" not in self.record.quantities or self.pal.enabled,
            "record.quantities",
            "'pal_noise' needs pal.enabled = true",
        )
        for q in ("spikes", "synapses"):
            _check(q not in self.record.quantities or self.spiking.enabled, "record.quantities",
                   f"{q!r} needs spiking.enabled = true")
        if self.stimulus.kind == "teacher" and self.stimulus.teacher_sizes:
            ts = self.stimulus.teacher_sizes
            _check(
                ts[0] == self.network.sizes[0] and ts[-1] == self.network.sizes[-1],
                "stimulus.teacher_sizes",
                f"must share input and output sizes with network.sizes {self.network.sizes}, got {ts}",
            )

    @property
    def model(self) -> Model:
        return Model(self.network, self.conductances, self.plasticity, self.simulation, self.pal, self.spiking)


# --------------------------------------------------------------------------------------------------
# dict / TOML mapping

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Convert a TOML value to the annotated type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _coerce(arg, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in typing.get_args(tp))}, "
                          f"got {type(value).__name__} {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item, _) = typing.get_args(tp)
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}: number too large: {str(value)[:20]}...") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")  # pragma: no cover - programming error


def from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping; unknown keys are rejected with a suggestion."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            hint = closest(key, names)
            extra = f" (did you mean '{prefix}{hint}'?)" if hint else ""
            raise ConfigError(f"{prefix}{key}: unknown key{extra}; valid keys: {', '.join(names)}")
        kwargs[key] = _coerce(hints[key], value, prefix + key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - all fields have defaults
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from e


def to_dict(obj: Any) -> dict[str, Any]:
    """Nested plain dict (tuples as lists) of a config dataclass, ready for TOML or JSON."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v

    return conv(obj)


def to_toml(cfg: Config) -> str:
    """The config as TOML text; ``load_toml`` of it gives back an equal config."""
    import tomli_w

    return tomli_w.dumps(to_dict(cfg))


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or invalid file is a ConfigError naming it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text: {e}") from None
    except OSError as e:
        raise ConfigError(f"{what} {path} cannot be read: {e}") from None


def load_toml(path: str | Path) -> Config:
    """Read a TOML config file. A ``preset = "NAME"`` key starts from that preset."""
    data = read_toml(path)
    base = data.pop("preset", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"preset: expected a preset name (a string), got {type(base).__name__} {base!r}")
    if base is not None:
        from .presets import get_preset

        return merge(get_preset(base), data)
    cfg = from_dict(Config, data)  # unknown keys first: they name the problem more exactly
    if "experiment" not in data:
        raise ConfigError(
            f"{path}: neither preset = \"NAME\" nor experiment is set: start the file from a preset (`microcircuit "
            "presets` lists them, `microcircuit show PRESET` prints one in full to edit) or give experiment and the "
            "keys it needs (`microcircuit show --defaults` lists every key with its default)")
    return cfg


def merge(cfg: Config, data: Mapping[str, Any]) -> Config:
    """Overlay a nested mapping onto an existing config."""
    base = to_dict(cfg)

    def deep(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
        for k, v in src.items():
            if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
                deep(dst[k], v)
            else:
                dst[k] = v

    deep(base, data)
    return from_dict(Config, base)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=VALUE``; VALUE is read as a TOML value, or taken as a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. conductances.g_som=0.1")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``--set key=value`` overrides; unknown keys fail with a suggestion."""
    data: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        node[path[-1]] = value
    return merge(cfg, data)
