"""Seeds and hyper-parameter sweeps: ``microcircuit sweep SWEEP.toml`` (docs/sweeps.md).

A sweep file names a base preset or config, the keys to vary (grid, random, or an Optuna search towards
an objective from the experiment's summary; a grid may also run case groups, fixed combinations of keys),
the seeds and the executor (``local`` worker processes or
``slurm`` jobs through submitit). Every run is an ordinary run folder; results are collected into CSV
tables and a summary plot, and an interrupted sweep resumes without repeating finished runs.
"""

from __future__ import annotations

from .collect import Collected, collect
from .driver import SweepDir, SweepReport, report_lines, run_sweep
from .spec import (
    Case,
    CaseGroup,
    ExecutorSpec,
    Objective,
    Param,
    SearchSpec,
    SlurmOptions,
    SweepSpec,
    load_sweep,
    parse_sweep,
)

__all__ = [
    "Case",
    "CaseGroup",
    "Collected",
    "ExecutorSpec",
    "Objective",
    "Param",
    "SearchSpec",
    "SlurmOptions",
    "SweepDir",
    "SweepReport",
    "SweepSpec",
    "collect",
    "load_sweep",
    "parse_sweep",
    "report_lines",
    "run_sweep",
]
