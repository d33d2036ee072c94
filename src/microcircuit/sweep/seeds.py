"""How the seeds of a trial run: one vmapped program for consecutive seeds where the experiment supports
it, one run per seed otherwise, and how their run folders are laid out in the trial folder.

An experiment that honours ``Config.n_seeds`` simulates seeds ``seed .. seed + n_seeds − 1`` as one
``jax.vmap``-ed ensemble (:mod:`microcircuit.ensemble`); its module says so by exposing
``member_summaries`` (:func:`microcircuit.experiments.member_summaries_of`). Today that is ``regression``
(Fig. 2): member ``i`` takes everything (student and teacher weights, data, noise) from seed ``seed + i``
alone, so it computes what a run of that seed alone computes. A sweep hands it each maximal run of consecutive seeds
of a trial (``[0, 1, 2, 7]`` gives ``0..2`` vmapped and ``7`` alone) as one run folder::

    trials/trial-NNNN/seed-S/          one seed (config: seed = S, n_seeds = 1)
    trials/trial-NNNN/seeds-A-B/       seeds A..B as one vmapped program (seed = A, n_seeds = B − A + 1)

The summary.json of an ensemble folder is the experiment's (means over its seeds) plus ``members``: one
summary per seed, keyed by the seed, with the same keys a run of that seed alone has. They are computed
by the experiment's own summary code from that member's slice of the run's per-seed curves, so they are
the member's values, not copies of the mean.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import RunDir

__all__ = [
    "SeedRun",
    "folder_name",
    "folder_seeds",
    "group_seeds",
    "member_summaries",
    "read_summary",
    "split_members",
    "trial_runs",
    "vmaps_seeds",
]

MEMBERS = "members"  # the key of the per-seed summaries in an ensemble's summary.json
FAILED = "failed.json"  # written into a run folder whose run raised an error
_NAME = re.compile(r"^seed-(\d+)$|^seeds-(\d+)-(\d+)$")


def vmaps_seeds(experiment: str) -> bool:
    """Whether ``experiment`` runs ``n_seeds`` consecutive seeds as one vmapped program: whether its module
    splits such a run into per-seed summaries (:func:`microcircuit.experiments.member_summaries_of`)."""
    from ..experiments import member_summaries_of

    return member_summaries_of(experiment) is not None


def group_seeds(seeds: Iterable[int], vmap: bool) -> list[tuple[int, ...]]:
    """The runs of ``seeds``: with ``vmap``, each maximal run of consecutive seeds (sorted) together;
    otherwise one run per seed (in the given order)."""
    seeds = list(seeds)
    if not vmap:
        return [(s,) for s in seeds]
    groups: list[list[int]] = []
    for s in sorted(set(seeds)):
        if groups and s == groups[-1][-1] + 1:
            groups[-1].append(s)
        else:
            groups.append([s])
    return [tuple(g) for g in groups]


def folder_name(seeds: tuple[int, ...]) -> str:
    """``seed-S`` for one seed, ``seeds-A-B`` for the consecutive seeds A..B of one vmapped run."""
    if len(seeds) == 1:
        return f"seed-{seeds[0]}"
    if list(seeds) != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError(f"a vmapped run takes consecutive seeds, got {seeds}")
    return f"seeds-{seeds[0]}-{seeds[-1]}"


def folder_seeds(name: str) -> tuple[int, ...] | None:
    """The seeds of a run folder named by :func:`folder_name` (None for any other name)."""
    m = _NAME.match(name)
    if m is None:
        return None
    if m.group(1) is not None:
        return (int(m.group(1)),)
    a, b = int(m.group(2)), int(m.group(3))
    return tuple(range(a, b + 1)) if b > a else None


@dataclass(frozen=True)
class SeedRun:
    """Where one seed of a trial stands: its run folder (``seeds``: all seeds of that folder, several for
    a vmapped run) and ``status`` ``complete`` (summary.json written), ``failed`` (failed.json) or
    ``partial`` (started, not finished)."""

    seed: int
    path: Path
    seeds: tuple[int, ...]
    status: str


_RANK = {"complete": 0, "failed": 1, "partial": 2}


def trial_runs(trial_dir: Path) -> dict[int, SeedRun]:
    """Every seed that has a run folder in ``trial_dir``. A seed found in several folders (e.g. a run
    that failed alone and was retried in an ensemble) is taken from a complete one first, then a failed
    one, then a partial one; among equals, the single-seed folder."""
    out: dict[int, SeedRun] = {}
    if not trial_dir.is_dir():
        return out
    found = []
    for d in trial_dir.iterdir():
        seeds = folder_seeds(d.name)
        if seeds is None or not d.is_dir():
            continue
        status = ("complete" if (d / RunDir.SUMMARY).is_file() else "failed" if (d / FAILED).is_file()
                  else "partial")
        found.append((len(seeds), seeds[0], d, seeds, status))
    for _, _, d, seeds, status in sorted(found):
        for s in seeds:
            old = out.get(s)
            if old is None or _RANK[status] < _RANK[old.status]:
                out[s] = SeedRun(s, d, seeds, status)
    return out


def member_summaries(experiment: str, path: Path, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-seed summaries (keyed by the seed, as text: JSON keys) of the finished ensemble run in ``path``,
    from the experiment's own ``member_summaries`` (a ValueError for an experiment that does not vmap seeds)."""
    from ..experiments import member_summaries_of

    split = member_summaries_of(experiment)
    if split is None:
        raise ValueError(f"experiment {experiment!r} does not run its seeds as one vmapped ensemble")
    return {str(s): m for s, m in split(path, summary).items()}


def split_members(summary: dict[str, Any], seeds: tuple[int, ...], path: Path | None = None,
                  experiment: str | None = None) -> dict[int, dict[str, Any]]:
    """Seed -> that seed's summary. A single-seed run's summary is its own; an ensemble's comes from its
    ``members`` (computed from the run folder ``path`` if summary.json lacks them)."""
    if len(seeds) == 1:
        return {seeds[0]: summary}
    members = summary.get(MEMBERS)
    if not isinstance(members, dict) and path is not None and experiment is not None:
        members = member_summaries(experiment, path, summary)
    if not isinstance(members, dict) or any(str(s) not in members for s in seeds):
        raise ValueError(f"summary.json of the vmapped run of seeds {seeds[0]}..{seeds[-1]} has no per-seed results")
    return {s: members[str(s)] for s in seeds}


def read_summary(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / RunDir.SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
