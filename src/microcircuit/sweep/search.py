"""The trials of a sweep: grid and random expansion, and Optuna studies in file-backed storage.

A trial is one configuration (parameter values); it runs once per seed. Grid trials are numbered in the
order of ``itertools.product`` over the case groups (in file order), then the parameters as listed: the
first group varies slowest, the last parameter fastest; random trial ``i`` draws its values from a
generator seeded with ``(search.seed, i)``, so raising ``n_trials`` keeps the earlier trials. Optuna
trials carry the study's trial number; the study lives in a journal file or an SQLite database, so an
interrupted search resumes (finished trials are kept) and several drivers may share one study.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError
from .spec import Case, Param, SweepSpec, _plain

__all__ = ["OptunaSearch", "Trial", "expand", "trial_id"]


def trial_id(number: int) -> str:
    return f"trial-{number:04d}"


@dataclass(frozen=True)
class Trial:
    """One configuration: its id (folder name), number and parameter values (dotted key -> value: those of
    its case alternatives and of ``[params]``); ``cases``: case group -> index of the trial's alternative,
    ``labels``: case group -> that alternative's label (where it has one)."""

    number: int
    params: Mapping[str, Any] = field(default_factory=dict)
    cases: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return trial_id(self.number)


def expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of a grid or random search (an Optuna search proposes its trials one by one)."""
    if spec.search.kind == "grid":
        keys = [p.key for p in spec.params]
        n_groups = len(spec.cases)
        combos = itertools.product(*(g.cases for g in spec.cases), *(p.grid_values() for p in spec.params))
        trials = []
        for i, combo in enumerate(combos):
            cases: tuple[Case, ...] = combo[:n_groups]
            params = {k: v for c in cases for k, v in c.values}
            params.update(zip(keys, combo[n_groups:], strict=True))
            trials.append(Trial(i, params, cases={c.group: c.index for c in cases},
                                labels={c.group: c.label for c in cases if c.label}))
        return trials
    if spec.search.kind == "random":
        trials = []
        for i in range(spec.search.n_trials):
            rng = np.random.default_rng([spec.search.seed, i])
            trials.append(Trial(i, {p.key: p.sample(rng) for p in spec.params}))
        return trials
    raise ValueError(f"expand() is for grid and random searches, not {spec.search.kind!r}")


# --------------------------------------------------------------------------------------------------
# Optuna

_PRIMITIVE = (type(None), bool, int, float, str)


def _encoded(p: Param) -> bool:
    """Optuna's categorical choices must be primitive: other values (lists) travel as JSON text."""
    return any(not isinstance(v, _PRIMITIVE) for v in p.values)


def _distribution(p: Param) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not p.is_range:
        return CategoricalDistribution([json.dumps(_plain(v)) for v in p.values] if _encoded(p) else list(p.values))
    if p.integer:
        step = 1 if p.step is None else max(1, int(p.step))
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=step)  # type: ignore[arg-type]
    return FloatDistribution(p.low, p.high, log=p.log, step=p.step)  # type: ignore[arg-type]


def _decode(p: Param, value: Any) -> Any:
    if not p.is_range and _encoded(p):
        v = json.loads(value)
        return tuple(v) if isinstance(v, list) else v
    return value


def _storage(spec: SweepSpec, folder: Path) -> Any:
    """The study's storage: a journal file (default) or SQLite in the sweep folder, a path, or a URL."""
    import optuna
    from optuna.storages import JournalStorage

    s = spec.search.storage.strip()
    if "://" in s:
        return s
    if s == "journal":
        path = folder / "optuna.journal"
    elif s == "sqlite":
        path = folder / "optuna.db"
    else:
        path = Path(s).expanduser()
        if not path.is_absolute() and spec.source is not None:
            path = spec.source.parent / path
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{path.resolve()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = getattr(optuna.storages.journal, "JournalFileBackend", None)
    if backend is None:  # optuna < 4.0
        backend = optuna.storages.JournalFileStorage
    return JournalStorage(backend(str(path)))


def _sampler(spec: SweepSpec, n_existing: int = 0) -> Any:
    """The sampler, seeded by ``search.seed`` and the number of trials the study already holds: a resumed
    search must not replay the random draws of the session before it."""
    import optuna

    seed = int(np.random.SeedSequence([spec.search.seed, n_existing]).generate_state(1)[0])
    if spec.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


class OptunaSearch:
    """An Optuna study driven by ask and tell from the sweep's driver.

    The driver asks for a trial, runs its seeds through the executor and tells the study the mean of the
    objective over the seeds (or FAIL when a seed failed or lacks the objective). Every trial records the
    sweep folder it belongs to, so when a driver restarts on that folder (which it holds locked, see
    :class:`~microcircuit.sweep.driver.SweepDir`) it adopts the trials its predecessor left RUNNING and
    finishes them (their runs continue from their checkpoints) instead of leaving them dangling.
    """

    def __init__(self, spec: SweepSpec, folder: Path) -> None:
        try:
            import optuna
        except ImportError:
            raise ConfigError("search.kind: 'optuna' needs optuna: pip install 'microcircuit[sweep]'") from None

        optuna.logging.set_verbosity(logging.WARNING)
        self.spec = spec
        self.folder = folder.resolve()
        self.params = {p.key: p for p in spec.params}
        self.distributions = {p.key: _distribution(p) for p in spec.params}
        self.study_name = spec.search.study or spec.name
        storage = _storage(spec, self.folder)
        try:
            self.study = optuna.create_study(
                storage=storage, study_name=self.study_name, direction=spec.objective.direction,
                sampler=_sampler(spec), load_if_exists=True,
            )
        except ValueError as e:
            raise ConfigError(f"search.storage: cannot open study {self.study_name!r}: {e}") from None
        n_existing = len(self.study.get_trials(deepcopy=False))
        if n_existing:
            self.study.sampler = _sampler(spec, n_existing)
        mark = spec.fingerprint_hash()
        saved = self.study.user_attrs.get("microcircuit_sweep")
        if saved is None:
            self.study.set_user_attr("microcircuit_sweep", mark)
        elif saved != mark:
            raise ConfigError(
                f"search.study: the study {self.study_name!r} in {spec.search.storage} was made by a sweep with "
                "another base config, params, objective or seeds; give this sweep another search.study name"
            )
        if self.study.direction.name.lower() != spec.objective.direction:
            raise ConfigError(f"objective.direction: the study {self.study_name!r} is to "
                              f"{self.study.direction.name.lower()}, not {spec.objective.direction}")

    def _states(self, *names: str) -> list[Any]:
        from optuna.trial import TrialState

        return self.study.get_trials(deepcopy=False, states=tuple(getattr(TrialState, n) for n in names))

    def counted(self) -> int:
        """Trials that count towards ``search.n_trials``: finished (complete, failed, pruned) or running."""
        return len(self._states("COMPLETE", "FAIL", "PRUNED", "RUNNING"))

    def completed(self) -> int:
        return len(self._states("COMPLETE"))

    def _trial(self, number: int, params: Mapping[str, Any]) -> Trial:
        return Trial(number, {k: _decode(self.params[k], params[k]) for k in self.params})

    def adopt(self) -> Iterator[Trial]:
        """Trials of this sweep folder left RUNNING by a driver that stopped before telling their result."""
        for t in self._states("RUNNING"):
            if t.user_attrs.get("sweep_dir") == str(self.folder) and set(t.params) == set(self.params):
                yield self._trial(t.number, t.params)

    def ask(self) -> Trial:
        t = self.study.ask(dict(self.distributions))
        t.set_user_attr("sweep_dir", str(self.folder))
        t.set_user_attr("trial_id", trial_id(t.number))
        return self._trial(t.number, t.params)

    def tell(self, number: int, value: float | None) -> None:
        """The trial's objective (mean over seeds), or None for a failed trial."""
        from optuna.trial import TrialState

        if value is None or not np.isfinite(value):
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            self.study.tell(number, float(value), skip_if_finished=True)

    def best(self) -> tuple[int, float] | None:
        try:
            t = self.study.best_trial
        except ValueError:
            return None
        return t.number, float(t.value)  # type: ignore[arg-type]
