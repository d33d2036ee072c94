"""SWEEP.toml: what a sweep varies, over which seeds, towards which objective, and where it runs.

A grid varies ``[params]`` and, before them, the case groups of ``[cases]``: arrays of alternatives, each
a set of config keys changed together. ``[quick]`` holds the overrides, seeds and name of a short variant
of the same sweep (``--quick``).

Like :mod:`microcircuit.config`, every value is checked when the file is read, before any run starts; a
bad value raises :class:`~microcircuit.config.ConfigError` naming the key (``params.plasticity.eta_PI``,
``cases.net[1].network.sizes``, ``search.n_trials``, ``executor.slurm.time_min``, ...). The schema is
documented in docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import (
    Config,
    ConfigError,
    apply_overrides,
    closest,
    from_dict,
    load_toml,
    merge,
    parse_override,
    read_toml,
    to_dict,
)

__all__ = [
    "Case",
    "CaseGroup",
    "ExecutorSpec",
    "Objective",
    "Param",
    "SearchSpec",
    "SlurmOptions",
    "SweepSpec",
    "load_sweep",
    "parse_sweep",
]

SEARCH_KINDS = ("grid", "random", "optuna")
EXECUTOR_KINDS = ("local", "slurm")
SAMPLERS = ("tpe", "random")
TOP_LEVEL = ("name", "base", "set", "seeds", "params", "cases", "quick", "objective", "search", "executor")
QUICK_KEYS = ("set", "seeds", "name")
MAX_CHECKED_CASES = 2000  # combinations of case alternatives validated one by one when the file is read
NOT_VARIED = ("seed", "n_seeds", "name")  # seeds come from ``seeds``; the name is set per run


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _freeze(v: Any) -> Any:
    """Lists (TOML arrays) as tuples, so that parameter values are hashable."""
    return tuple(_freeze(x) for x in v) if isinstance(v, list | tuple) else v


def _plain(v: Any) -> Any:
    """Tuples as lists, for JSON and TOML."""
    return [_plain(x) for x in v] if isinstance(v, list | tuple) else v


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# --------------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class Param:
    """One config key to vary: explicit ``values``, or a range ``low``..``high`` (``log`` spaced; a grid
    takes ``num`` points of it, random and Optuna searches draw from it, rounded to ``step`` if given).
    ``integer`` follows the config field's type."""

    key: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    num: int = 0
    step: float | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def _value(self, x: float) -> int | float:
        if self.step is not None and self.low is not None:
            x = self.low + round((x - self.low) / self.step) * self.step
            x = min(max(x, self.low), self.high if self.high is not None else x)
        return round(x) if self.integer else float(f"{x:.12g}")

    def grid_values(self) -> tuple[Any, ...]:
        """The values a grid search visits (in order, without repeats)."""
        if not self.is_range:
            return self.values
        import numpy as np

        assert self.low is not None and self.high is not None
        pts = np.geomspace(self.low, self.high, self.num) if self.log else np.linspace(self.low, self.high, self.num)
        return tuple(dict.fromkeys(self._value(float(x)) for x in pts))

    def sample(self, rng: Any) -> Any:
        """One random value (``rng``: a numpy Generator)."""
        if not self.is_range:
            return self.values[int(rng.integers(len(self.values)))]
        assert self.low is not None and self.high is not None
        if self.integer and not self.log and self.step is None:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        x = float(rng.uniform(lo, hi))
        return self._value(math.exp(x) if self.log else x)

    def describe(self) -> Any:
        """The TOML form of this parameter."""
        if not self.is_range:
            return _plain(self.values)
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        if self.num:
            d["num"] = self.num
        if self.step is not None:
            d["step"] = self.step
        return d


@dataclass(frozen=True)
class Case:
    """One alternative of a case group: config keys set together (``values``: dotted key -> value, in file
    order) and an optional ``label`` that names it in tables and progress lines."""

    group: str
    index: int
    values: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def name(self) -> str:
        """The label, or ``GROUP[i]``."""
        return self.label or f"{self.group}[{self.index}]"

    @property
    def where(self) -> str:
        return f"cases.{self.group}[{self.index}]"

    def describe(self) -> dict[str, Any]:
        """The TOML form of this alternative's values (without the label)."""
        return {k: _plain(v) for k, v in self.values}


@dataclass(frozen=True)
class CaseGroup:
    """A ``[[cases.NAME]]`` array: a trial takes exactly one of its alternatives."""

    name: str
    cases: tuple[Case, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key its alternatives set (in order of appearance)."""
        return tuple(dict.fromkeys(k for c in self.cases for k, _ in c.values))


@dataclass(frozen=True)
class Objective:
    """A number in the experiment's summary.json (``apical_error_1_end`` for fig-s1, ``validation_error``
    for mnist, ...), to ``minimize`` or ``maximize``. Across seeds, a trial's value is their mean."""

    key: str = ""
    direction: str = "minimize"

    def __post_init__(self) -> None:
        _check(
            bool(self.key.strip()), "objective.key",
            "missing: name a number in the experiment's summary.json, e.g. 'apical_error_1_end' (fig-s1) or "
            "'validation_error' (mnist)",
        )
        _check(
            self.direction in ("minimize", "maximize"), "objective.direction",
            f"must be 'minimize' or 'maximize', got {self.direction!r}",
        )


@dataclass(frozen=True)
class SearchSpec:
    """``grid`` (every combination of the values), ``random`` (``n_trials`` draws, seeded by ``seed``) or
    ``optuna`` (``n_trials`` trials proposed by ``sampler`` and kept in a file-backed study: ``storage``
    is ``journal`` (a journal file in the sweep folder), ``sqlite`` (an SQLite file there), a file path
    (``.db``/``.sqlite`` for SQLite, else a journal file) or a database URL; ``study`` names the study)."""

    kind: str = "grid"
    n_trials: int = 0
    seed: int = 0
    sampler: str = "tpe"
    storage: str = "journal"
    study: str = ""

    def __post_init__(self) -> None:
        _check(self.kind in SEARCH_KINDS, "search.kind", f"must be one of {', '.join(SEARCH_KINDS)}, got {self.kind!r}")
        if self.kind == "grid":
            _check(self.n_trials == 0, "search.n_trials",
                   "a grid runs every combination of the values; n_trials is for random and optuna searches")
        else:
            _check(self.n_trials >= 1, "search.n_trials", f"must be >= 1 for a {self.kind} search, got {self.n_trials}")
        _check(self.seed >= 0, "search.seed", f"must be >= 0, got {self.seed}")
        _check(self.sampler in SAMPLERS, "search.sampler",
               f"must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        _check(bool(self.storage.strip()), "search.storage", "must not be empty")


@dataclass(frozen=True)
class SlurmOptions:
    """SLURM resources of each trial's job (submitit). ``time_min`` is the job's time limit, ``mem_gb`` 0
    leaves memory to the cluster's default, ``setup`` are shell lines run before the job (e.g. activating
    the environment), ``additional`` any other ``#SBATCH`` option (``{ reservation = "x" }``).
    ``signal_delay_s``: how long before the time limit SLURM signals the job, which is then requeued up to
    ``max_requeue`` times and continues its runs from their checkpoints (0: never requeue).
    ``cluster``: ``slurm``, or submitit's ``local``/``debug`` executors to try the path without a cluster.
    ``poll_s``: how often the driver looks at its jobs."""

    partition: str = ""
    time_min: int = 60
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    mem_gb: float = 0.0
    account: str = ""
    qos: str = ""
    constraint: str = ""
    setup: tuple[str, ...] = ()
    signal_delay_s: int = 90
    max_requeue: int = 3
    cluster: str = "slurm"
    poll_s: float = 5.0
    additional: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        p = "executor.slurm."
        _check(self.time_min >= 1, p + "time_min", f"must be >= 1 (minutes), got {self.time_min}")
        _check(self.cpus_per_task >= 1, p + "cpus_per_task", f"must be >= 1, got {self.cpus_per_task}")
        _check(self.gpus_per_node >= 0, p + "gpus_per_node", f"must be >= 0, got {self.gpus_per_node}")
        _check(self.mem_gb >= 0 and math.isfinite(self.mem_gb), p + "mem_gb",
               f"must be >= 0 (0: the cluster's default), got {self.mem_gb}")
        _check(self.signal_delay_s >= 0, p + "signal_delay_s", f"must be >= 0, got {self.signal_delay_s}")
        _check(self.max_requeue >= 0, p + "max_requeue", f"must be >= 0, got {self.max_requeue}")
        _check(self.cluster in ("slurm", "local", "debug"), p + "cluster",
               f"must be 'slurm', 'local' or 'debug' (submitit's executors), got {self.cluster!r}")
        _check(self.poll_s > 0 and math.isfinite(self.poll_s), p + "poll_s", f"must be > 0, got {self.poll_s}")


@dataclass(frozen=True)
class ExecutorSpec:
    """Where trials run: ``local`` (this machine, ``workers`` processes) or ``slurm`` (one job per task,
    at most ``workers`` at once). ``compilation_cache``: JAX's persistent compilation cache shared by the
    workers (true: ``jax-cache/`` in the sweep folder; false: off; a string: that folder).
    ``vmap_seeds``: run the consecutive seeds of a trial as one vmapped program where the experiment
    supports it (:mod:`microcircuit.sweep.seeds`); false: one run per seed."""

    kind: str = "local"
    workers: int = 1
    compilation_cache: bool | str = True
    vmap_seeds: bool = True
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def __post_init__(self) -> None:
        _check(self.kind in EXECUTOR_KINDS, "executor.kind",
               f"must be one of {', '.join(EXECUTOR_KINDS)}, got {self.kind!r}")
        _check(self.workers >= 1, "executor.workers", f"must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep. ``config`` is the base config with ``set`` applied and ``n_seeds = 1`` (``seed``
    aside, every trial run is this config with its parameter values and one of ``seeds``, or several
    consecutive ones as one vmapped run)."""

    name: str
    base: str
    config: Config
    set: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    params: tuple[Param, ...] = ()
    objective: Objective = field(default_factory=Objective)
    search: SearchSpec = field(default_factory=SearchSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    cases: tuple[CaseGroup, ...] = ()
    quick: bool = False
    source: Path | None = None
    last: tuple[str, ...] = ()

    @property
    def varied_keys(self) -> tuple[str, ...]:
        """The config keys a trial may set: those of the case groups (in file order), then ``[params]``."""
        return tuple(dict.fromkeys([*(k for g in self.cases for k in g.keys), *(p.key for p in self.params)]))

    def shown(self, cases: Mapping[str, int], params: Mapping[str, Any]) -> dict[str, Any]:
        """How a trial is named in progress lines: a labelled alternative by its label (under its group's
        name), everything else by key and value. ``cases``: group -> index of the trial's alternative."""
        out: dict[str, Any] = {}
        hidden: set[str] = set()
        for g in self.cases:
            i = cases.get(g.name)
            if isinstance(i, int) and 0 <= i < len(g.cases) and g.cases[i].label:
                out[g.name] = g.cases[i].label
                hidden.update(k for k, _ in g.cases[i].values)
        out.update({k: v for k, v in params.items() if k not in hidden})
        return out

    def trial_config(self, params: Mapping[str, Any], seed: int, n_seeds: int = 1) -> Config:
        """The config of one run: ``params`` (dotted key -> value) over the base, with ``seed`` (and, for a
        vmapped run of seeds ``seed .. seed + n_seeds − 1``, ``n_seeds``)."""
        cfg = _with(self.config, {**params, "seed": seed, "n_seeds": n_seeds})
        # the [quick] table's set and the command line's --set win over the case groups too
        return apply_overrides(cfg, list(self.last)) if self.last and self.cases else cfg

    def fingerprint(self) -> dict[str, Any]:
        """What fixes the trials of this sweep: a resumed sweep must agree on all of it. ``search.n_trials``,
        the executor and (except for Optuna, whose objective averages them) the seeds may change."""
        from ..checkpoint import NON_COMPUTATIONAL

        base = to_dict(self.config)
        for k in NON_COMPUTATIONAL:
            node = base
            *parents, last = k.split(".")
            for part in parents:
                node = node[part]
            node.pop(last, None)
        base.pop("seed", None)
        fp: dict[str, Any] = {
            "base": base,
            "params": {p.key: p.describe() for p in self.params},
            "search": {"kind": self.search.kind},
        }
        if self.cases:  # the alternatives' values and order fix the trials; labels may change
            fp["cases"] = {g.name: [c.describe() for c in g.cases] for g in self.cases}
            fp["cases_order"] = [g.name for g in self.cases]
            if self.last:
                fp["last"] = list(self.last)
        if self.search.kind == "random":
            fp["search"]["seed"] = self.search.seed
        if self.search.kind == "optuna":
            fp["objective"] = {"key": self.objective.key, "direction": self.objective.direction}
            fp["seeds"] = list(self.seeds)
        return fp

    def fingerprint_hash(self) -> str:
        text = json.dumps(self.fingerprint(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Parsing


def _with(cfg: Config, flat: Mapping[str, Any]) -> Config:
    """``cfg`` with dotted keys set to values."""
    data: dict[str, Any] = {}
    for key, value in flat.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = _plain(value)
    return merge(cfg, data)


def _field_type(parts: list[str], where: str = "params") -> Any:
    """The annotated type of config key ``parts`` (a leaf); unknown keys fail with a suggestion, named
    ``WHERE.KEY``."""
    cls: Any = Config
    for i, part in enumerate(parts):
        names = [f.name for f in fields(cls)]
        key = ".".join(parts[: i + 1])
        if part not in names:
            hint = closest(part, names)
            extra = f" (did you mean '{'.'.join([*parts[:i], hint])}'?)" if hint else ""
            raise ConfigError(f"{where}.{key}: unknown config key{extra}; valid keys here: {', '.join(names)}")
        tp = typing.get_type_hints(cls)[part]
        if i < len(parts) - 1:
            _check(dataclasses.is_dataclass(tp), f"{where}.{key}", "is a value, not a table of config keys")
            cls = tp
    return tp


def _numeric(tp: Any) -> tuple[bool, bool]:
    """(accepts a number, is an integer field) for an annotated config type."""
    if tp is int:
        return True, True
    if tp is float:
        return True, False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(a in (int, float) for a in typing.get_args(tp)), False
    return False, False


RANGE_KEYS = ("values", "low", "high", "log", "num", "step")


def _param(key: str, tp: Any, spec: Any, kind: str, base: Config) -> Param:
    where = f"params.{key}"
    numeric, integer = _numeric(tp)
    if isinstance(spec, list):
        spec = {"values": spec}
    _check(isinstance(spec, Mapping), where,
           f"expected a list of values or a range {{ low = ..., high = ... }}, got {type(spec).__name__} {spec!r}")
    unknown = [k for k in spec if k not in RANGE_KEYS]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], RANGE_KEYS, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{where}.{unknown[0]}: unknown key{extra}; a parameter takes {', '.join(RANGE_KEYS)}")
    if "values" in spec:
        values = spec["values"]
        _check(isinstance(values, list) and len(values) >= 1, where, f"values must be a non-empty list, got {values!r}")
        _check(not (set(spec) - {"values"}), where, "give either values or a range (low, high, ...), not both")
        param = Param(key, values=tuple(dict.fromkeys(_freeze(v) for v in values)))
        for v in param.values:
            _valid(base, key, v)
        return param
    _check("low" in spec and "high" in spec, where,
           "a range needs both low and high (or give a list of values)")
    _check(numeric, where,
           f"a range needs a number field; {key} takes {getattr(tp, '__name__', tp)}: give a list of values")
    low, high = spec["low"], spec["high"]
    for name, v in (("low", low), ("high", high)):
        _check(_number(v), f"{where}.{name}", f"expected a finite number, got {v!r}")
        if integer:
            _check(float(v).is_integer(), f"{where}.{name}", f"{key} is an integer field, got {v!r}")
    _check(low < high, where, f"needs low < high, got low = {low}, high = {high}")
    log = spec.get("log", False)
    _check(isinstance(log, bool), f"{where}.log", f"expected true or false, got {log!r}")
    _check(not log or low > 0, f"{where}.low", f"a log range needs low > 0, got {low}")
    num = spec.get("num", 0)
    _check(isinstance(num, int) and not isinstance(num, bool) and num >= 0, f"{where}.num",
           f"expected a whole number of grid points, got {num!r}")
    step = spec.get("step")
    if step is not None:
        _check(_number(step) and step > 0, f"{where}.step", f"expected a number > 0, got {step!r}")
        _check(not log, f"{where}.step", "cannot be combined with log = true")
    if kind == "grid":
        _check(num >= 1, f"{where}.num",
               "a grid over a range needs num (the number of points), or give a list of values")
    else:
        _check(num == 0, f"{where}.num", f"num (grid points) does not apply to a {kind} search")
    param = Param(key, low=float(low), high=float(high), log=log, num=num,
                  step=None if step is None else float(step), integer=integer)
    if integer:
        param = dataclasses.replace(param, low=int(low), high=int(high))
    for v in (param.low, param.high):
        _valid(base, key, v)
    return param


def _valid(base: Config, key: str, value: Any) -> None:
    try:
        _with(base, {key: value})
    except ConfigError as e:
        raise ConfigError(f"params.{key}: value {_plain(value)!r} is not valid: {e}") from None


def _flatten(table: Mapping[str, Any], prefix: list[str], where: str = "params") -> list[tuple[list[str], Any]]:
    """(config key parts, parameter spec) pairs of a [params] table (or of a case alternative, named
    ``where``), walking Config's own sections so that ``stimulus.low = [...]`` (a field) and
    ``[params.stimulus]`` (a section) are told apart."""
    out = []
    for k, v in table.items():
        parts = [*prefix, *k.split(".")]
        tp = _field_type(parts, where)
        if dataclasses.is_dataclass(tp):
            _check(isinstance(v, Mapping), f"{where}." + ".".join(parts),
                   f"is a section of the config: give its keys, e.g. {where}." + ".".join(parts) + ".KEY = ...")
            out.extend(_flatten(v, parts, where))
        else:
            out.append((parts, v))
    return out


def _seeds(value: Any, key: str = "seeds") -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        _check(1 <= value <= 100_000, key, f"an integer n means seeds 0..n-1 and must be >= 1, got {value}")
        return tuple(range(value))
    _check(isinstance(value, list) and len(value) >= 1, key,
           f"expected a list of seeds or a count, got {type(value).__name__} {value!r}")
    for s in value:
        _check(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32, key,
               f"each seed must be an integer in [0, 2**32), got {s!r}")
    _check(len(set(value)) == len(value), key, f"seeds repeat: {value}")
    return tuple(value)


def _cases(table: Any) -> tuple[CaseGroup, ...]:
    """The case groups of a ``[cases]`` table, in file order: every key known to the config, no key in two
    groups, no alternative twice (values are checked against the config by :func:`_check_cases`)."""
    _check(isinstance(table, Mapping), "cases",
           f"expected a table of case groups ([[cases.NAME]] arrays), got {type(table).__name__} {table!r}")
    groups: list[CaseGroup] = []
    owner: dict[str, str] = {}  # key -> the group that sets it
    for gname, alternatives in table.items():
        where = f"cases.{gname}"
        _check(isinstance(alternatives, list) and len(alternatives) >= 1
               and all(isinstance(a, Mapping) for a in alternatives), where,
               f"expected a non-empty array of tables, one per alternative: [[{where}]] followed by its config keys")
        cases: list[Case] = []
        for i, alternative in enumerate(alternatives):
            at = f"{where}[{i}]"
            alternative = dict(alternative)
            label = alternative.pop("label", "")
            _check(isinstance(label, str), f"{at}.label", f"expected a string, got {type(label).__name__} {label!r}")
            values: list[tuple[str, Any]] = []
            for parts, value in _flatten(alternative, [], at):
                key = ".".join(parts)
                _check(key not in NOT_VARIED, f"{at}.{key}", "cannot be set by a case"
                       + (": list the seeds under seeds = [...]" if key.startswith("seed") else ""))
                _check(key not in dict(values), f"{at}.{key}", "is given twice")
                _check(owner.get(key, gname) == gname, f"{at}.{key}",
                       f"is also set by cases.{owner.get(key)}: a key belongs to one case group (each trial takes "
                       "one alternative of every group, so two groups would set it twice)")
                owner[key] = gname
                values.append((key, _freeze(value)))
            case = Case(gname, i, tuple(values), label.strip())
            for other in cases:
                _check(other.params != case.params, at, f"sets the same values as {other.where}")
                _check(not case.label or other.label != case.label, f"{at}.label",
                       f"{case.label!r} already names {other.where}")
            cases.append(case)
        groups.append(CaseGroup(str(gname), tuple(cases)))
    return tuple(groups)


_KEY_OF_ERROR = re.compile(r"([A-Za-z_][\w.]*)(?:\[\d+\])?:")


def _check_cases(groups: tuple[CaseGroup, ...], base: Config) -> None:
    """Every combination of alternatives (one per group) must be a valid config over ``base``. Up to
    ``MAX_CHECKED_CASES`` combinations are all checked; beyond, every alternative is checked once, with
    the first alternative of each other group. An error names the alternative and key at fault where
    the config's message names a key the alternative sets, else the combination."""
    if not groups:
        return
    if math.prod(len(g.cases) for g in groups) <= MAX_CHECKED_CASES:
        combos: Any = itertools.product(*(g.cases for g in groups))
    else:
        firsts = [g.cases[0] for g in groups]
        combos = [tuple(c if j == i else firsts[j] for j in range(len(groups))) for i, g in enumerate(groups)
                  for c in g.cases]
    for combo in combos:
        flat = {k: v for c in combo for k, v in c.values}
        try:
            _with(base, flat)
        except ConfigError as e:
            msg = str(e)
            m = _KEY_OF_ERROR.match(msg)
            culprit = next((c for c in combo if m is not None and m.group(1) in c.params), None)
            others = [c.where for c in combo if c is not culprit and c.values]
            if culprit is not None:
                assert m is not None
                key = m.group(1)
                with_ = f" (with {', '.join(others)})" if others and _valid_alone(base, culprit) else ""
                raise ConfigError(f"{culprit.where}.{key}: value {_plain(culprit.params[key])!r} is not "
                                  f"valid{with_}: {msg}") from None
            names = " + ".join(c.where for c in combo if c.values) or "cases"
            raise ConfigError(f"{names}: not valid{' together' if len(others) > 1 else ''}: {msg}") from None


def _valid_alone(base: Config, case: Case) -> bool:
    """Whether ``case``'s values over ``base`` alone make a valid config."""
    try:
        _with(base, case.params)
    except ConfigError:
        return False
    return True


def _quick(value: Any) -> dict[str, Any]:
    """The ``[quick]`` table, checked: ``set`` (a list of 'KEY=VALUE' or a table), ``seeds``, ``name``."""
    _check(isinstance(value, Mapping), "quick", f"expected a table, got {type(value).__name__} {value!r}")
    for k in value:
        if k not in QUICK_KEYS:
            hint = difflib.get_close_matches(k, QUICK_KEYS, n=1)
            extra = f" (did you mean 'quick.{hint[0]}'?)" if hint else ""
            raise ConfigError(f"quick.{k}: unknown key{extra}; [quick] takes {', '.join(QUICK_KEYS)}")
    out = dict(value)
    sets = out.get("set", [])
    if isinstance(sets, Mapping):
        sets = [f"{k}={json.dumps(v)}" for k, v in _flat_items(sets)]
    _check(isinstance(sets, list) and all(isinstance(s, str) for s in sets), "quick.set",
           f"expected a list of 'KEY=VALUE' strings or a table, got {sets!r}")
    for s in sets:
        try:
            parse_override(s)
        except ConfigError as e:
            raise ConfigError(f"quick.set: {e}") from None
    out["set"] = list(sets)
    if "seeds" in out:
        out["seeds"] = _seeds(out["seeds"], "quick.seeds")
    name = out.get("name")
    _check(name is None or (isinstance(name, str) and name.strip() != "" and "/" not in name), "quick.name",
           f"expected a non-empty name without '/', got {name!r}")
    return out


def _base_config(base: Any, sets: Any, root: Path) -> tuple[Config, tuple[str, ...]]:
    _check(isinstance(base, str) and base.strip() != "", "base",
           f"expected a preset name or a config file path, got {base!r}")
    if base.endswith(".toml") or (root / base).is_file():
        path = Path(base) if Path(base).is_absolute() else root / base
        try:
            cfg = load_toml(path)
        except ConfigError as e:
            raise ConfigError(f"base: {e}") from None
    else:
        from ..presets import get_preset

        try:
            cfg = get_preset(base)
        except ConfigError as e:
            raise ConfigError(f"base: {e}") from None
    overrides: tuple[str, ...] = ()
    if isinstance(sets, list):
        for s in sets:
            _check(isinstance(s, str), "set", f"expected 'KEY=VALUE' strings, got {s!r}")
        overrides = tuple(sets)
        try:
            cfg = apply_overrides(cfg, list(overrides))
        except ConfigError as e:
            raise ConfigError(f"set: {e}") from None
    elif isinstance(sets, Mapping):
        try:
            cfg = merge(cfg, sets)
        except ConfigError as e:
            raise ConfigError(f"set.{e}") from None
        overrides = tuple(f"{k}={json.dumps(v)}" for k, v in _flat_items(sets))
    else:
        _check(sets is None, "set", f"expected a list of 'KEY=VALUE' or a table, got {type(sets).__name__}")
    return cfg, overrides


def _flat_items(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.extend(_flat_items(v, f"{prefix}{k}."))
        else:
            out.append((prefix + k, v))
    return out


def parse_sweep(data: Mapping[str, Any], *, root: Path = Path("."), name: str = "sweep",
                source: Path | None = None, quick: bool = False, overrides: tuple[str, ...] = ()) -> SweepSpec:
    """Build a :class:`SweepSpec` from the parsed TOML ``data``; relative paths are taken from ``root``.
    ``quick`` applies the ``[quick]`` table (its ``set`` after the file's, its ``seeds`` and its name);
    ``overrides`` (``KEY=VALUE`` config overrides, as from ``--set``) come last."""
    data = dict(data)
    for k in data:
        if k not in TOP_LEVEL:
            hint = difflib.get_close_matches(k, TOP_LEVEL, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{k}: unknown key{extra}; a sweep file takes {', '.join(TOP_LEVEL)}")
    sweep_name = data.get("name", name)
    _check(isinstance(sweep_name, str) and sweep_name.strip() != "" and "/" not in sweep_name, "name",
           f"expected a non-empty name without '/', got {sweep_name!r}")
    _check("base" in data, "base", "missing: name a preset (e.g. 'fig-s1') or a config file")
    quick_table = _quick(data["quick"]) if "quick" in data else None
    if quick and quick_table is None:
        raise ConfigError("--quick: the sweep file has no [quick] table (set, seeds, name; docs/sweeps.md)")
    cfg, sets = _base_config(data["base"], data.get("set"), root)
    extra = [("quick.set", tuple(quick_table["set"]))] if quick and quick_table is not None else []
    for where, more in [*extra, ("--set", tuple(overrides))]:
        try:
            cfg = apply_overrides(cfg, list(more))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        sets += more
    seeds = _seeds(data["seeds"]) if "seeds" in data else tuple(range(cfg.seed, cfg.seed + cfg.n_seeds))
    if quick and quick_table is not None:
        seeds = quick_table.get("seeds", seeds)
        sweep_name = quick_table.get("name") or f"{sweep_name}-quick"
    cfg = dataclasses.replace(cfg, n_seeds=1)  # the sweep sets n_seeds per run (vmapped seeds)

    def section(key: str) -> dict[str, Any]:
        v = data.get(key, {})
        _check(isinstance(v, Mapping), key, f"expected a table, got {type(v).__name__} {v!r}")
        return dict(v)

    search = from_dict(SearchSpec, section("search"), prefix="search.")
    objective = from_dict(Objective, section("objective"), prefix="objective.")
    ex = section("executor")
    slurm = ex.pop("slurm", {})
    _check(isinstance(slurm, Mapping), "executor.slurm", f"expected a table, got {type(slurm).__name__}")
    slurm = dict(slurm)
    additional = slurm.pop("additional", {})
    _check(isinstance(additional, Mapping), "executor.slurm.additional",
           f"expected a table of #SBATCH options, got {type(additional).__name__}")
    for k, v in additional.items():
        _check(isinstance(v, str | int | float | bool), f"executor.slurm.additional.{k}",
               f"expected a string, number or boolean, got {type(v).__name__}")
    executor = from_dict(ExecutorSpec, ex, prefix="executor.")
    slurm_opts = dataclasses.replace(from_dict(SlurmOptions, slurm, prefix="executor.slurm."),
                                     additional=tuple(sorted(additional.items())))
    executor = dataclasses.replace(executor, slurm=slurm_opts)

    params = []
    for parts, spec in _flatten(section("params"), []):
        key = ".".join(parts)
        _check(key not in NOT_VARIED, f"params.{key}",
               "cannot be varied" + (": list the seeds under seeds = [...]" if key.startswith("seed") else ""))
        params.append(_param(key, _field_type(parts), spec, search.kind, cfg))
    keys = [p.key for p in params]
    _check(len(set(keys)) == len(keys), "params", f"a key is given twice: {keys}")
    _check(bool(params) or search.kind == "grid", "params",
           f"a {search.kind} search needs at least one parameter to vary (a grid without any runs the base config)")
    cases = _cases(data["cases"]) if "cases" in data else ()
    _check(not cases or search.kind == "grid", "cases",
           f"a {search.kind} search draws each trial's values from [params] one key at a time; case groups are "
           "fixed combinations of keys, run as a product, so they need search.kind = 'grid'")
    for g in cases:
        for c in g.cases:
            for key, _ in c.values:
                _check(key not in keys, f"params.{key}",
                       f"is also set by {c.where}: give each key either under [params] or in a case group")
    _check_cases(cases, cfg)
    if search.kind == "grid":
        n = math.prod(len(p.grid_values()) for p in params) * math.prod(len(g.cases) for g in cases)
        what = "[cases] x [params]" if cases else "params"
        _check(n * len(seeds) <= 1_000_000, "cases" if cases else "params",
               f"the grid ({what}) has {n} points x {len(seeds)} seeds: too many runs")
    return SweepSpec(name=sweep_name, base=data["base"], config=cfg, set=sets, seeds=seeds, params=tuple(params),
                     objective=objective, search=search, executor=executor, cases=cases, quick=quick,
                     source=source, last=tuple(x for _, more in [*extra, ("--set", tuple(overrides))] for x in more))


SPEC_SECTIONS = ("name", "base", "set", "seeds", "params", "quick", "objective", "search", "executor")


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = (), quick: bool = False) -> SweepSpec:
    """Read SWEEP.toml. ``overrides`` (``KEY=VALUE``, as on the command line) change keys of the sweep file
    when KEY starts with one of its own keys (``search.n_trials=20``, ``executor.workers=4``,
    ``quick.seeds=1``, ...); any other KEY is a config override applied after ``set`` (and after the
    ``[quick]`` table's ``set``) (``stimulus.n_patterns=100``). ``quick`` applies the file's ``[quick]``
    table (a ConfigError if it has none); ``seeds=...`` given here takes precedence over its seeds."""
    path = Path(path)
    data = read_toml(path, "sweep file")
    config_overrides: list[str] = []
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] in SPEC_SECTIONS and not (keys[0] == "name" and len(keys) > 1):
            node = data
            for part in keys[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {text!r}: {part} is not a table")
            node[keys[-1]] = value
            if keys == ["seeds"] and isinstance(data.get("quick"), dict):
                data["quick"].pop("seeds", None)  # the command line's seeds, with --quick too
        else:
            config_overrides.append(text)
    return parse_sweep(data, root=path.parent, name=path.stem, source=path, quick=quick,
                       overrides=tuple(config_overrides))
