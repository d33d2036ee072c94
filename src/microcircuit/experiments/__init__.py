"""One module per experiment; each exposes ``run(cfg, run_dir, *, progress, echo) -> summary`` (``echo``
takes one line; the command line prints a line that begins with ``warning:`` on stderr), and one
that runs ``Config.n_seeds`` consecutive seeds as one vmapped program also
``member_summaries(run_dir, summary) -> {seed: summary}`` (:func:`member_summaries_of`).

Experiments of the user's own (docs/usage.md, "Your own experiment"): ``Config.experiment`` may also name

* an entry point of the group ``microcircuit.experiments`` (:data:`ENTRY_POINT_GROUP`) that an installed
  package declares, e.g. ``my-task = "my_package.task"`` in its ``pyproject.toml``;
* ``"package.module"``, a module with such a ``run`` function, or ``"package.module:function"``, the
  function itself, importable from the environment or from the current folder.

A module may define the same optional hooks as the built-in ones (:func:`experiment_module`).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..config import Config, ConfigError
from ..runs import RunDir

__all__ = ["ENTRY_POINT_GROUP", "EXPERIMENTS", "experiment_module", "experiment_origin", "get_experiment",
           "member_summaries_of"]

# name in Config.experiment -> module under microcircuit.experiments
EXPERIMENTS: dict[str, str] = {
    "self_prediction": "self_prediction",
    "target_propagation": "target_propagation",
    "regression": "regression",
    "backprop_link": "backprop_link",
    "mnist": "mnist",
    "le_bars": "le_bars",
    "pal_alignment": "pal_alignment",
    "pal_teacher": "pal_teacher",
    "pal_yinyang": "pal_yinyang",
    "spiking_bars": "spiking_bars",
}

#: The entry-point group through which an installed package adds experiments (docs/usage.md).
ENTRY_POINT_GROUP = "microcircuit.experiments"

Runner = Callable[..., dict[str, Any]]


#: ``member_summaries(run_dir, summary) -> {seed: that member's summary}`` of a finished ensemble run.
MemberSummaries = Callable[[Path, dict[str, Any]], dict[int, dict[str, Any]]]


def experiment_module(name: str) -> Any:
    """The module of experiment ``name``: a built-in one, an entry point of :data:`ENTRY_POINT_GROUP`, or a
    ``"package.module"`` / ``"package.module:function"`` of the user's own (a bare function is wrapped as a
    module with only ``run``). Unknown names and imports that fail raise :class:`ConfigError` naming the key.
    Besides ``run``, a module may define what :func:`microcircuit.preflight.preflight` checks before a run:
    ``stepped(cfg)`` (the duration keys that must be whole numbers of dt steps), ``unused(cfg)`` (the keys
    it does not read, refused when set), ``check(cfg) -> warnings`` (its own checks: data, shapes,
    ``init_from``) and ``runs_spiking(cfg) -> bool`` (it runs the spiking circuit, docs/model.md §13; else
    the ``spiking`` section is refused when set); and ``member_summaries`` (:func:`member_summaries_of`)."""
    if name in EXPERIMENTS:
        return importlib.import_module(f".{EXPERIMENTS[name]}", __name__)
    entry = _entry_points().get(name)
    if entry is not None:
        try:
            with _current_folder_importable():
                loaded = entry.load()
        except Exception as e:  # the user's package: any error while importing it
            raise ConfigError(f"experiment: the entry point {name!r} = {entry.value!r} of the group "
                              f"{ENTRY_POINT_GROUP} cannot be loaded: {type(e).__name__}: {e}") from None
        return _as_experiment(name, loaded)
    if "." in name or ":" in name or _importable(name):
        return _as_experiment(name, _import(name))
    known = [*EXPERIMENTS, *_entry_points()]
    hint = difflib.get_close_matches(name, known, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ConfigError(f"experiment: unknown experiment {name!r}{extra}; available: {', '.join(known)}, or a module "
                      "of your own ('module' or 'module:function', importable from here; docs/usage.md)")


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {e.name: e for e in metadata.entry_points(group=ENTRY_POINT_GROUP) if e.name not in EXPERIMENTS}


@contextlib.contextmanager
def _current_folder_importable() -> Iterator[None]:
    """The current folder on ``sys.path`` while importing, as ``python -m`` has it (a console script does not)."""
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, here)
    importlib.invalidate_caches()  # a module written since the interpreter started is found
    try:
        yield
    finally:
        if added:
            sys.path.remove(here)


def _importable(name: str) -> bool:
    with _current_folder_importable():
        return name.isidentifier() and importlib.util.find_spec(name) is not None


def _import(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        with _current_folder_importable():
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if module_name == missing or module_name.startswith(missing + "."):  # the module itself, not one it imports
            raise ConfigError(f"experiment: no module {module_name!r} to import for {ref!r}: install the package "
                              "that defines it, or run from the folder that holds it") from None
        raise ConfigError(f"experiment: importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    except Exception as e:  # the user's module: any error while importing it
        raise ConfigError(f"experiment: importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    if not attr:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"experiment: module {module_name!r} has no {attr!r} (from {ref!r})") from None


def _as_experiment(ref: str, obj: Any) -> Any:
    """A module (or any object) with a callable ``run`` as it is; a function as a module with only ``run``."""
    if callable(getattr(obj, "run", None)):
        return obj
    if callable(obj) and not isinstance(obj, type):
        return SimpleNamespace(run=obj, __name__=getattr(obj, "__module__", ref))
    raise ConfigError(f"experiment: {ref!r} is neither a function run(cfg, run_dir, *, progress, echo) nor a "
                      "module that defines one")


def experiment_origin(name: str) -> dict[str, Any] | None:
    """Where the code of a user's experiment comes from, for environment.json: its module, its file and that
    file's SHA-256 (a resumed run whose code changed is flagged), and the versions of the installed
    distributions that hold it (None for a built-in experiment)."""
    if name in EXPERIMENTS:
        return None
    module_name = getattr(experiment_module(name), "__name__", "")
    module = sys.modules.get(module_name)
    top = module_name.partition(".")[0]
    dists = metadata.packages_distributions().get(top, [])
    versions = {}
    for d in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[d] = metadata.version(d)
    file = getattr(module, "__file__", None)
    digest = None
    if file is not None:
        with contextlib.suppress(OSError):
            digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()
    return {"experiment": name, "module": module_name, "file": file, "sha256": digest, "distributions": versions}


def get_experiment(name: str) -> Runner:
    """The ``run`` function of experiment ``name``; unknown names fail with a suggestion."""
    return experiment_module(name).run


def member_summaries_of(name: str) -> MemberSummaries | None:
    """The ``member_summaries`` function of experiment ``name`` if it runs ``Config.n_seeds`` consecutive
    seeds as one vmapped program (each member computing what a run of its seed alone computes); None for
    every other experiment, which ignores ``n_seeds``, and for unknown names."""
    try:
        return getattr(experiment_module(name), "member_summaries", None)
    except ConfigError:
        return None


def run_experiment(cfg: Config, run_dir: RunDir | None, **kw: Any) -> dict[str, Any]:
    return get_experiment(cfg.experiment)(cfg, run_dir, **kw)
