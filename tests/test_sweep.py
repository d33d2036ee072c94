"""Sweeps: SWEEP.toml validation, the local executor end to end, resume after an interruption, an Optuna
search resumed from its journal file, submitit's local executor, and a real single-node SLURM when the
machine has one to start (Debian: slurm-wlm and munge; skipped otherwise)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from microcircuit.cli import main
from microcircuit.config import ConfigError
from microcircuit.errors import RunInterrupted
from microcircuit.experiments import EXPERIMENTS, member_summaries_of, regression
from microcircuit.sweep import load_sweep, run_sweep
from microcircuit.sweep.search import expand
from microcircuit.sweep.seeds import folder_name, folder_seeds, group_seeds, vmaps_seeds

TINY = [
    "network.sizes=[5,4,3]",
    "stimulus.n_patterns=4",
    "stimulus.duration=5",
    "schedule.segment=2",
    "schedule.n_test=4",
    "record.stride=10",
]


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One persistent compilation cache for every sweep of this file: the tiny model compiles once."""
    return tmp_path_factory.mktemp("jax-cache")


# Fig. 2 (regression, the experiment that vmaps its seeds), tiny: a 5-4-3 student and teacher, 4 trials.
TINY_REGRESSION = [
    "network.sizes=[5,4,3]",
    "stimulus.teacher_sizes=[5,4,3]",
    "stimulus.n_patterns=4",
    "stimulus.duration=5",
    "schedule.segment=2",
    "schedule.n_test=3",
    "schedule.settle=5",
]


def write_sweep(path: Path, cache: Path | None = None, *, params: str = "stimulus.low = [0.0, 0.2]",
                seeds: str = "[0, 1]", search: str = 'kind = "grid"', executor: str = "workers = 1",
                extra: str = "", base: str = "fig-s1", sets: list[str] = TINY,
                objective: str = "apical_error_1_end") -> Path:
    text = f"""
name = "tiny"
base = "{base}"
set = {json.dumps(sets)}
{f"seeds = {seeds}" if seeds else ""}
{extra}
[params]
{params}
[objective]
key = "{objective}"
[search]
{search}
[executor]
compilation_cache = {json.dumps(str(cache)) if cache else "false"}
{executor}
"""
    path.write_text(text)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def summaries(folder: Path) -> dict[str, float]:
    """run folder (relative; seed-S or a vmapped seeds-A-B) -> mtime of its summary.json"""
    return {str(p.parent.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.glob("trials/*/seed*-*/summary.json")}


def write_regression_sweep(path: Path, cache: Path | None, **kw: str) -> Path:
    return write_sweep(path, cache, base="fig2-fast-quick", sets=TINY_REGRESSION,
                       objective="microcircuit_test_error_end",
                       **{"params": '"plasticity.eta_PI" = [0.01, 0.05]', **kw})


def run_folders(trial: Path) -> list[str]:
    return sorted(p.name for p in trial.iterdir() if p.is_dir())


# --------------------------------------------------------------------------------------------------
# The sweep file


BAD = [
    ("params", "plasticity.eta_PX = [0.1, 0.2]",
     r"params\.plasticity\.eta_PX: unknown config key \(did you mean 'plasticity\.eta_PI'\?\)"),
    ("params", "stimulus.low = 0.1", r"params\.stimulus\.low: expected a list of values or a range"),
    ("params", "stimulus.low = { low = 0.0, high = 0.5 }",
     r"params\.stimulus\.low\.num: a grid over a range needs num"),
    ("params", "stimulus.low = { low = 0.0, hihg = 0.5 }",
     r"params\.stimulus\.low\.hihg: unknown key \(did you mean 'high'\?\)"),
    ("params", "conductances.g_B = [1.0, -1.0]",
     r"params\.conductances\.g_B: value -1\.0 is not valid: conductances\.g_B: must be > 0"),
    ("params", "network.sizes = { low = 1, high = 4, num = 2 }",
     r"params\.network\.sizes: a range needs a number field"),
    ("params", "seed = [1, 2]", r"params\.seed: cannot be varied: list the seeds under seeds"),
    ("params", "stimulus = [1, 2]", r"params\.stimulus: is a section of the config"),
    ("params", "schedule.segment = { low = 1.5, high = 4, num = 2 }",
     r"params\.schedule\.segment\.low: schedule\.segment is an integer field"),
    ("search", 'kind = "optuna"', r"search\.n_trials: must be >= 1 for a optuna search"),
    ("search", 'kind = "grid"\nn_trials = 4', r"search\.n_trials: a grid runs every combination"),
    ("search", 'kind = "bayes"', r"search\.kind: must be one of grid, random, optuna"),
    ("search", 'kind = "random"\nn_trials = 2\nsampler = "cma"', r"search\.sampler: must be one of tpe, random"),
    ("executor", 'kind = "cloud"', r"executor\.kind: must be one of local, slurm"),
    ("executor", "workers = 0", r"executor\.workers: must be >= 1"),
    ("executor", "wokers = 2", r"executor\.wokers: unknown key \(did you mean 'executor\.workers'\?\)"),
    ("executor", "vmap_seeds = 2", r"executor\.vmap_seeds: expected true or false, got int 2"),
    ("executor", 'kind = "slurm"\n[executor.slurm]\ntime_min = 0', r"executor\.slurm\.time_min: must be >= 1"),
    ("executor", 'kind = "slurm"\n[executor.slurm]\nclustr = "local"', r"executor\.slurm\.clustr: unknown key"),
    ("seeds", "[0, 0]", r"seeds: seeds repeat"),
    ("seeds", '"three"', r"seeds: expected a list of seeds or a count"),
    ("extra", "objectve = 3", r"objectve: unknown key \(did you mean 'objective'\?\)"),
]


@pytest.mark.parametrize(("section", "text", "message"), BAD)
def test_sweep_file_errors_name_the_key(tmp_path: Path, section: str, text: str, message: str) -> None:
    path = write_sweep(tmp_path / "s.toml", **{section: text})
    with pytest.raises(ConfigError, match=message):
        load_sweep(path)


def test_sweep_file_base_set_and_objective_errors(tmp_path: Path) -> None:
    good = write_sweep(tmp_path / "s.toml").read_text()
    for old, new, message in [
        ('base = "fig-s1"', 'base = "fig-s2"', r"base: unknown preset 'fig-s2' \(did you mean 'fig-s1'\?\)"),
        ('base = "fig-s1"', 'base = "missing.toml"', r"base: config file .*missing\.toml does not exist"),
        ('"record.stride=10"', '"record.strid=10"', r"set: record\.strid: unknown key"),
        ('key = "apical_error_1_end"', 'direction = "down"', r"objective\.key: missing"),
        ('key = "apical_error_1_end"', 'key = "x"\ndirection = "down"', r"objective\.direction: must be 'minimize' or"),
    ]:
        (tmp_path / "bad.toml").write_text(good.replace(old, new))
        with pytest.raises(ConfigError, match=message):
            load_sweep(tmp_path / "bad.toml")
    (tmp_path / "bad.toml").write_text("base = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_sweep(tmp_path / "bad.toml")


def test_cli_reports_a_bad_sweep_file_in_one_line(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "s.toml", params="plasticity.eta_PX = [0.1]")
    result = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: params.plasticity.eta_PX: unknown config key"), result.output
    assert not (tmp_path / "out").exists()


def test_grid_random_and_overrides(tmp_path: Path) -> None:
    path = write_sweep(
        tmp_path / "s.toml", seeds="3",
        params='stimulus.low = { low = 0.01, high = 0.1, num = 3, log = true }\n'
               '"network.sizes" = [[5, 4, 3], [5, 6, 3]]\nschedule.segment = { low = 1, high = 3, num = 3 }',
    )
    spec = load_sweep(path)
    assert spec.seeds == (0, 1, 2)
    trials = expand(spec)
    assert len(trials) == 3 * 2 * 3
    assert [t.params["stimulus.low"] for t in trials[::6]] == [0.01, 0.0316227766017, 0.1]
    assert {t.params["schedule.segment"] for t in trials} == {1, 2, 3}
    cfg = spec.trial_config(trials[-1].params, 2)
    assert (cfg.seed, cfg.network.sizes, cfg.schedule.segment, cfg.stimulus.low) == (2, (5, 6, 3), 3, 0.1)
    assert cfg.stimulus.duration == 5.0  # from set

    # A random search is reproducible and keeps its first trials when n_trials grows.
    rand = write_sweep(tmp_path / "r.toml", search='kind = "random"\nn_trials = 4\nseed = 7',
                       params='stimulus.low = { low = 0.0, high = 0.5 }\nschedule.segment = { low = 1, high = 9 }')
    a = expand(load_sweep(rand))
    b = expand(load_sweep(rand, ["search.n_trials=6"]))
    assert [t.params for t in a] == [t.params for t in b[:4]] and len(b) == 6
    assert all(0 <= t.params["stimulus.low"] <= 0.5 and isinstance(t.params["schedule.segment"], int) for t in b)

    with pytest.raises(ConfigError, match="params: a random search needs at least one parameter"):
        load_sweep(write_sweep(tmp_path / "n.toml", params="", search='kind = "random"\nn_trials = 2'))

    # --set: keys of the sweep file change the sweep, any other key every run's config.
    spec = load_sweep(path, ["executor.workers=3", "stimulus.n_patterns=7", "name=other"])
    assert (spec.executor.workers, spec.config.stimulus.n_patterns, spec.name) == (3, 7, "other")
    with pytest.raises(ConfigError, match=r"stimulus\.n_patern"):
        load_sweep(path, ["stimulus.n_patern=7"])

    # set as a table, seeds as a count, default name from the file.
    (tmp_path / "t.toml").write_text('base = "fig-s1"\nseeds = 2\n[set]\nstimulus.n_patterns = 9\n'
                                     '[objective]\nkey = "apical_error_1_end"\n')
    spec = load_sweep(tmp_path / "t.toml")
    assert (spec.name, spec.seeds, spec.config.stimulus.n_patterns, len(expand(spec))) == ("t", (0, 1), 9, 1)


def test_example_sweep_files_are_valid() -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    assert {p.name for p in examples.glob("*.toml")} >= {"sweep-fig-s1.toml", "sweep-mnist.toml"}
    for path in examples.glob("*.toml"):  # every value of every parameter and case is validated as a config
        spec = load_sweep(path)
        assert spec.params or spec.cases, path
    spec = load_sweep(examples / "sweep-fig-s1.toml")
    assert len(expand(spec)) == 3 and spec.seeds == (0, 1, 2) and spec.executor.workers == 2
    # the MNIST search: on the validation split only, never the test set
    mnist = load_sweep(examples / "sweep-mnist.toml")
    assert mnist.objective.key == "validation_error" and mnist.search.kind == "optuna"
    assert mnist.config.experiment == "mnist" and mnist.config.training.n_validation == 5000
    quick = load_sweep(examples / "sweep-mnist.toml", ['base="mnist-quick"', "training.n_train=0"])
    assert quick.config.training.data == "mnist-subset" and quick.config.training.n_train == 0


def test_seeds_vmap_in_consecutive_groups_only_where_the_experiment_can(tmp_path: Path) -> None:
    assert group_seeds([3, 7, 11], vmap=True) == [(3,), (7,), (11,)]  # a vmapped run takes seed .. seed + n - 1
    assert group_seeds([2, 0, 1, 7], vmap=True) == [(0, 1, 2), (7,)]
    assert group_seeds([2, 0, 1], vmap=False) == [(2,), (0,), (1,)]
    assert (folder_name((4,)), folder_name((0, 1, 2))) == ("seed-4", "seeds-0-2")
    assert folder_seeds("seeds-0-2") == (0, 1, 2) and folder_seeds("seed-4") == (4,)
    assert folder_seeds("seeds-3-3") is None and folder_seeds("seed-x") is None
    with pytest.raises(ValueError, match="consecutive"):
        folder_name((0, 2))
    # Only regression runs n_seeds as one vmapped ensemble; every other experiment ignores n_seeds.
    assert [e for e in EXPERIMENTS if vmaps_seeds(e)] == ["regression"]
    # ... as its module says: it alone splits an ensemble run folder into per-seed summaries.
    assert member_summaries_of("regression") is regression.member_summaries
    assert member_summaries_of("mnist") is None and not vmaps_seeds("no_such_experiment")

    # The sweep owns n_seeds: the base's seeds (seed .. seed + n_seeds - 1) are the default seeds, and each
    # run gets n_seeds = 1, or the size of its vmapped group.
    spec = load_sweep(write_regression_sweep(tmp_path / "s.toml", None, seeds=""))
    assert spec.seeds == (0, 1) and spec.config.n_seeds == 1 and spec.executor.vmap_seeds is True
    cfg = spec.trial_config({}, 5, 3)
    assert (cfg.seed, cfg.n_seeds) == (5, 3)
    assert load_sweep(tmp_path / "s.toml", ["executor.vmap_seeds=false"]).executor.vmap_seeds is False


# --------------------------------------------------------------------------------------------------
# Case groups and [quick]

CASES = """
[[cases.net]]
label = "small"
"network.sizes" = [5, 4, 3]
[[cases.net]]
network.sizes = [5, 6, 3]
"stimulus.high" = 1.5
[[cases.stim]]
label = "low"
stimulus.low = 0.1
[[cases.stim]]
label = "mid"
stimulus.low = 0.3
"""


def write_cases(path: Path, cases: str = CASES, params: str = "schedule.segment = [1, 2]", **kw: str) -> Path:
    return write_sweep(path, extra=cases, params=params, **kw)


def test_cases_run_as_a_product_before_the_params_grid(tmp_path: Path) -> None:
    spec = load_sweep(write_cases(tmp_path / "s.toml"))
    assert [g.name for g in spec.cases] == ["net", "stim"]
    assert spec.varied_keys == ("network.sizes", "stimulus.high", "stimulus.low", "schedule.segment")
    trials = expand(spec)
    assert len(trials) == 2 * 2 * 2
    # the first group varies slowest, the [params] grid fastest
    assert [(t.cases["net"], t.cases["stim"], t.params["schedule.segment"]) for t in trials] == [
        (0, 0, 1), (0, 0, 2), (0, 1, 1), (0, 1, 2), (1, 0, 1), (1, 0, 2), (1, 1, 1), (1, 1, 2)]
    assert trials[0].params == {"network.sizes": (5, 4, 3), "stimulus.low": 0.1, "schedule.segment": 1}
    assert trials[5].params == {"network.sizes": (5, 6, 3), "stimulus.high": 1.5, "stimulus.low": 0.1,
                                "schedule.segment": 2}
    assert trials[0].labels == {"net": "small", "stim": "low"} and trials[5].labels == {"stim": "low"}
    cfg = spec.trial_config(trials[5].params, 1)
    assert (cfg.network.sizes, cfg.stimulus.high, cfg.stimulus.low, cfg.schedule.segment, cfg.seed) == \
        ((5, 6, 3), 1.5, 0.1, 2, 1)
    # progress lines name a labelled alternative by its label, an unlabelled one by its values
    assert spec.shown(trials[0].cases, trials[0].params) == {"net": "small", "stim": "low", "schedule.segment": 1}
    assert spec.shown(trials[6].cases, trials[6].params) == {"stim": "mid", "network.sizes": (5, 6, 3),
                                                             "stimulus.high": 1.5, "schedule.segment": 1}
    # nested tables ([cases.net.network]-style keys) and quoted dotted keys are the same key
    same = load_sweep(write_cases(tmp_path / "t.toml", CASES.replace('"network.sizes" = [5, 4, 3]',
                                                                     "network = { sizes = [5, 4, 3] }")))
    assert [t.params for t in expand(same)] == [t.params for t in trials]
    # a grid of cases alone (no [params]) runs one trial per combination
    assert len(expand(load_sweep(write_cases(tmp_path / "u.toml", params="")))) == 4


def test_cases_are_recorded_in_trial_json_and_tables(tmp_path: Path) -> None:
    from microcircuit.sweep import SweepDir, collect

    spec = load_sweep(write_cases(tmp_path / "s.toml"))
    folder = SweepDir.open(tmp_path / "out", spec, resume=False)
    try:
        for t in expand(spec):
            folder.write_trial(t)
    finally:
        folder.release()
    info = json.loads((tmp_path / "out" / "trials" / "trial-0005" / "trial.json").read_text())
    assert info == {"trial": "trial-0005", "cases": {"net": 1, "stim": 0}, "labels": {"stim": "low"},
                    "params": {"network.sizes": [5, 6, 3], "stimulus.high": 1.5, "stimulus.low": 0.1,
                               "schedule.segment": 2}}
    c = collect(spec, tmp_path / "out", plot=False)
    trials = read_csv(c.trials_csv)
    assert list(trials[0])[:7] == ["trial", "cases.net", "cases.stim", "network.sizes", "stimulus.high",
                                   "stimulus.low", "schedule.segment"]
    assert [(t["cases.net"], t["cases.stim"], t["stimulus.high"]) for t in trials[3:6]] == [
        ("small", "mid", ""), ("net[1]", "low", "1.5"), ("net[1]", "low", "1.5")]
    runs = read_csv(c.results_csv)
    assert len(runs) == 16 and runs[0]["cases.net"] == "small" and runs[0]["status"] == "missing"


CASE_ERRORS = [
    ('[[cases.net]]\n"network.sizez" = [5, 4, 3]', "",
     r"cases\.net\[0\]\.network\.sizez: unknown config key \(did you mean 'network\.sizes'\?\)"),
    ('[[cases.net]]\n"network.sizes" = [5, 4, 3]\n[[cases.net]]\n"conductances.g_B" = -1.0', "",
     r"cases\.net\[1\]\.conductances\.g_B: value -1\.0 is not valid: conductances\.g_B: must be > 0"),
    ('[[cases.net]]\n"network.sizes" = [5, 4, 4, 3]\n[[cases.rate]]\n"plasticity.eta_IP" = [0.001]', "",
     r"cases\.rate\[0\]\.plasticity\.eta_IP: value \[0\.001\] is not valid \(with cases\.net\[0\]\): "
     r"plasticity\.eta_IP: needs 2 value"),
    ('[[cases.stim]]\nstimulus.low = 0.1', "stimulus.low = [0.0, 0.2]",
     r"params\.stimulus\.low: is also set by cases\.stim\[0\]: give each key either under \[params\] or"),
    ('[[cases.a]]\nstimulus.low = 0.1\n[[cases.b]]\nstimulus.low = 0.2', "",
     r"cases\.b\[0\]\.stimulus\.low: is also set by cases\.a: a key belongs to one case group"),
    ("[cases]\nnet = 3", "", r"cases\.net: expected a non-empty array of tables"),
    ('[[cases.net]]\nseed = 3', "", r"cases\.net\[0\]\.seed: cannot be set by a case: list the seeds"),
    ('[[cases.net]]\nlabel = 3', "", r"cases\.net\[0\]\.label: expected a string"),
    ('[[cases.s]]\nstimulus.low = 0.1\n[[cases.s]]\nstimulus.low = 0.1', "",
     r"cases\.s\[1\]: sets the same values as cases\.s\[0\]"),
    ('[[cases.s]]\nlabel = "x"\nstimulus.low = 0.1\n[[cases.s]]\nlabel = "x"', "",
     r"cases\.s\[1\]\.label: 'x' already names cases\.s\[0\]"),
]


@pytest.mark.parametrize(("cases", "params", "message"), CASE_ERRORS)
def test_case_errors_name_the_group_alternative_and_key(tmp_path: Path, cases: str, params: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(write_cases(tmp_path / "s.toml", cases, params=params))


@pytest.mark.parametrize("kind", ["random", "optuna"])
def test_cases_need_a_grid(tmp_path: Path, kind: str) -> None:
    path = write_cases(tmp_path / "s.toml", search=f'kind = "{kind}"\nn_trials = 2')
    with pytest.raises(ConfigError, match=rf"cases: a {kind} search draws each trial's values from \[params\] one "
                                          r"key at a time; .* need search\.kind = 'grid'"):
        load_sweep(path)


def test_resuming_needs_the_same_cases(tmp_path: Path) -> None:
    from microcircuit.sweep import SweepDir

    out = tmp_path / "out"
    SweepDir.open(out, load_sweep(write_cases(tmp_path / "s.toml")), resume=False).release()

    def resume(text: str) -> None:
        SweepDir.open(out, load_sweep(write_cases(tmp_path / "r.toml", text)), resume=True).release()

    resume(CASES.replace('label = "low"', 'label = "lower"'))  # labels may change: the trials are the same
    for text, where in [
        (CASES.replace("stimulus.low = 0.3", "stimulus.low = 0.4"), "cases.stim"),
        (CASES.split("[[cases.stim]]", 1)[0], "cases.stim"),  # a group less
        ("[[cases.stim]]" + CASES.split("[[cases.stim]]", 1)[1] + CASES.split("[[cases.stim]]", 1)[0],
         "cases_order"),  # the same groups in another order number the trials differently
    ]:
        with pytest.raises(ConfigError, match=rf"differs from the one the folder was started with in .*{where}"):
            resume(text)
    # a sweep without cases fingerprints as before
    assert "cases" not in load_sweep(write_sweep(tmp_path / "plain.toml")).fingerprint()


def test_a_sweep_started_before_a_setting_existed_resumes_while_it_keeps_its_default(tmp_path: Path) -> None:
    """A later version adds config keys: a sweep folder whose stored fingerprint lacks one resumes when the
    new key is at its default (the behaviour the sweep ran with) and is refused, naming it, when it is not."""
    from microcircuit.sweep import SweepDir

    out = tmp_path / "out"
    SweepDir.open(out, load_sweep(write_sweep(tmp_path / "s.toml")), resume=False).release()
    state = json.loads((out / "sweep.json").read_text())
    state["fingerprint"]["base"]["simulation"].pop("prospective")  # as written before the key existed
    (out / "sweep.json").write_text(json.dumps(state))
    SweepDir.open(out, load_sweep(write_sweep(tmp_path / "s.toml")), resume=True).release()
    state = json.loads((out / "sweep.json").read_text())
    state["fingerprint"]["base"]["simulation"].pop("prospective")
    (out / "sweep.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match=r"started with in simulation\.prospective;"):
        SweepDir.open(out, load_sweep(write_sweep(tmp_path / "s.toml"), ["simulation.prospective=true"]),
                      resume=True).release()


def test_the_case_example_of_the_docs_loads(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "sweeps.md").read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M) if "[[cases." in b]
    (tmp_path / "scaling.toml").write_text(example)
    spec = load_sweep(tmp_path / "scaling.toml")
    trials = expand(spec)
    assert len(trials) == 8 and spec.seeds == (0, 1, 2)
    assert [spec.shown(t.cases, t.params) for t in trials[:3]] == [
        {"net": "L1", "arm": "backprop", "training.batch": 10}, {"net": "L1", "arm": "backprop", "training.batch": 20},
        {"net": "L1", "arm": "circuit, transported B", "training.batch": 10}]
    quick = load_sweep(tmp_path / "scaling.toml", quick=True)
    assert (quick.name, quick.seeds, quick.config.training.epochs) == ("scaling-quick", (0,), 1)


QUICK = '[quick]\nset = ["stimulus.n_patterns=2"]\nseeds = 1\n'


def test_quick_applies_its_set_seeds_and_name(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "s.toml", extra=QUICK)
    full = load_sweep(path)
    assert (full.name, full.seeds, full.config.stimulus.n_patterns, full.quick) == ("tiny", (0, 1), 4, False)
    quick = load_sweep(path, quick=True)
    assert (quick.name, quick.seeds, quick.config.stimulus.n_patterns, quick.quick) == ("tiny-quick", (0,), 2, True)
    assert quick.set[-1] == "stimulus.n_patterns=2"
    # --set comes after [quick]'s set; keys of [quick] can be overridden like any key of the file
    over = load_sweep(path, ["stimulus.n_patterns=3", "quick.name=smoke", "quick.seeds=[5, 6]"], quick=True)
    assert (over.name, over.seeds, over.config.stimulus.n_patterns) == ("smoke", (5, 6), 3)
    assert load_sweep(path, ["seeds=3"], quick=True).seeds == (0, 1, 2)  # the command line's seeds come first
    with pytest.raises(ConfigError, match=r"^--quick: the sweep file has no \[quick\] table"):
        load_sweep(write_sweep(tmp_path / "plain.toml"), quick=True)
    # [quick] is checked whenever the file is read, its config keys only when it is applied
    with pytest.raises(ConfigError, match=r"quick\.seds: unknown key \(did you mean 'quick\.seeds'\?\)"):
        load_sweep(write_sweep(tmp_path / "b.toml", extra="[quick]\nseds = 1\n"))
    bad = write_sweep(tmp_path / "c.toml", extra='[quick]\nset = ["stimulus.n_patern=2"]\n')
    assert load_sweep(bad).name == "tiny"
    with pytest.raises(ConfigError, match=r"quick\.set: stimulus\.n_patern: unknown key"):
        load_sweep(bad, quick=True)


def test_cli_quick_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path / "s.toml", extra=QUICK)
    # the default folder follows the quick name
    r = CliRunner().invoke(main, ["sweep", str(path), "--quick", "--collect"])
    assert r.exit_code == 2 and r.output.strip() == f"error: {Path('sweeps') / 'tiny-quick'} holds no sweep (no " \
                                                    "sweep.json)", r.output
    plain = write_sweep(tmp_path / "p.toml")
    r = CliRunner().invoke(main, ["sweep", str(plain), "--quick"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert r.output.startswith("error: --quick: the sweep file has no [quick] table"), r.output


# --------------------------------------------------------------------------------------------------
# Running sweeps


@pytest.mark.slow
def _locked(file: Path) -> bool:
    """Whether some process (this one included, through another open file) holds the lock on ``file``."""
    import fcntl

    with open(file) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_a_sweep_folder_in_use_is_refused_naming_its_holder(tmp_path: Path) -> None:
    """Issue 39: one driver per sweep folder. While one holds it, a second `sweep` (with --resume or without)
    is refused with one line naming the holder (pid, host, since), before anything is written; released, the
    folder resumes."""
    from microcircuit.runs import FolderInUseError
    from microcircuit.sweep import SweepDir

    path, out = write_sweep(tmp_path / "s.toml"), tmp_path / "out"
    spec = load_sweep(path)
    first = SweepDir.open(out, spec, resume=False)
    try:
        holder = f"sweep folder {out} is in use by another `microcircuit sweep` (pid {os.getpid()} on " \
                 f"{socket.gethostname()}, since "
        state = (out / "sweep.json").read_bytes()
        for resume in (True, False):
            with pytest.raises(FolderInUseError, match=re.escape(holder)):
                SweepDir.open(out, spec, resume=resume)
        for extra in (["--resume"], []):
            r = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), *extra])
            line = r.stderr.strip()
            assert r.exit_code == 2 and "\n" not in line and line.startswith(f"error: {holder}"), r.output
        assert (out / "sweep.json").read_bytes() == state and not (out / "trials").exists()
    finally:
        first.release()
    assert not _locked(out / SweepDir.LOCK)
    SweepDir.open(out, spec, resume=True).release()


# Holds the lock of the run folder sys.argv[1] as a run does (flock on its marker, naming the holder) until killed.
HOLD = """
import fcntl, json, os, socket, sys, time
f = open(os.path.join(sys.argv[1], ".microcircuit-run"), "a+")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
f.seek(0)
f.truncate()
f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
f.flush()
print("held", flush=True)
time.sleep(600)
"""


def test_a_sweeps_runs_hold_their_run_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 39: a sweep's run holds its own run folder's lock while it runs (besides the driver's lock on the
    sweep folder: no deadlock) and releases it at its end; a run folder another process holds (a `microcircuit
    run --resume` of it, say) is not touched: the run fails naming the holder, without a failed.json."""
    import microcircuit.experiments as experiments
    from microcircuit.presets import get_preset
    from microcircuit.runs import RunDir
    from microcircuit.sweep import SweepDir
    from microcircuit.sweep.worker import RunSpec, Task, run_task

    def runner(cfg: Any, run_dir: Any, **kw: Any) -> dict[str, float]:
        assert _locked(run_dir.path / RunDir.MARKER) and _locked(out / SweepDir.LOCK)
        return {"apical_error_1_end": 0.5}

    monkeypatch.setattr(experiments, "get_experiment", lambda name: runner)
    out = tmp_path / "out"
    folder = SweepDir.open(out, load_sweep(write_sweep(tmp_path / "s.toml")), resume=False)
    try:
        cfg = get_preset("fig-s1", quick=True)
        free, busy = folder.run_dir("trial-0000", 0), folder.run_dir("trial-0001", 0)
        RunDir.create(busy).close()  # an unfinished run folder
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(busy)], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            before = sorted(p.name for p in busy.iterdir())
            (ok,) = run_task(Task("trial-0000", (RunSpec((0,), str(free), cfg),)))
            (refused,) = run_task(Task("trial-0001", (RunSpec((0,), str(busy), cfg),)))
        finally:
            holder.kill()
            holder.communicate()
    finally:
        folder.release()
    assert ok["status"] == "complete" and ok["summary"]["apical_error_1_end"] == 0.5
    assert not _locked(free / RunDir.MARKER)
    assert refused["status"] == "failed" and f"is in use by pid {holder.pid} on " in refused["error"]
    assert sorted(p.name for p in busy.iterdir()) == before  # no failed.json, nothing else


def test_local_executor_two_workers_end_to_end(tmp_path: Path, jax_cache: Path) -> None:
    path = write_sweep(tmp_path / "s.toml", jax_cache, executor="workers = 2")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 of 4 run(s) complete" in result.output
    workers = set(re.findall(r" on (\S+:\d+)\)", result.output))
    assert len(workers) == 2, result.output  # both worker processes ran a trial

    runs = read_csv(out / "results.csv")
    assert len(runs) == 4 and all(r["status"] == "complete" for r in runs)
    assert {(r["trial"], r["seed"], r["stimulus.low"]) for r in runs} == {
        ("trial-0000", "0", "0.0"), ("trial-0000", "1", "0.0"), ("trial-0001", "0", "0.2"), ("trial-0001", "1", "0.2")}
    trials = read_csv(out / "trials.csv")
    assert len(trials) == 2
    for t in trials:
        values = [float(r["objective"]) for r in runs if r["trial"] == t["trial"]]
        assert float(t["mean"]) == pytest.approx(sum(values) / 2)
        assert float(t["std"]) == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
        assert t["n"] == "2"
    assert (out / "summary.png").stat().st_size > 1000
    # Every run is an ordinary run folder: its config has the trial's value and seed.
    run = out / "trials" / "trial-0001" / "seed-1"
    for name in ("config.toml", "environment.json", "metrics.jsonl", "summary.json", "traces.npz"):
        assert (run / name).is_file(), name
    cfg = (run / "config.toml").read_text()
    assert "seed = 1" in cfg and "low = 0.2" in cfg
    assert json.loads((out / "trials" / "trial-0001" / "trial.json").read_text())["params"] == {"stimulus.low": 0.2}

    # The same folder again: refused without --resume; with it, nothing is repeated.
    again = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out)])
    assert again.exit_code == 2 and "pass --resume" in again.output
    before = summaries(out)
    again = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert "4 run(s) already done; 0 to run" in again.output
    assert summaries(out) == before
    # A resumed sweep must keep its params and base config.
    changed = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--resume", "--set", "stimulus.high=2"])
    assert changed.exit_code == 2
    assert "differs from the one the folder was started with in stimulus.high" in changed.output


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_repeating_finished_runs(tmp_path: Path, jax_cache: Path) -> None:
    path = write_sweep(tmp_path / "s.toml", jax_cache, seeds="[0]", params="stimulus.low = [0.0, 0.1, 0.2]",
                       executor="workers = 1")
    spec = load_sweep(path)
    out = tmp_path / "out"
    seen: list[dict] = []

    def interrupt_after_first(outcome: dict) -> None:
        seen.append(outcome)
        if len(seen) == 1:
            raise KeyboardInterrupt  # as if Ctrl-C arrived once the first run was done

    with pytest.raises(RunInterrupted, match="--resume"):
        run_sweep(spec, out, on_result=interrupt_after_first, grace_s=60)
    done = summaries(out)
    assert "trials/trial-0000/seed-0" in done
    assert len(done) < 3  # the other trials were stopped (or never started)
    assert (out / "results.csv").is_file()  # what was finished is already in the table

    # Resume on another executor (submitit's local one: the SLURM code path without a cluster).
    pytest.importorskip("submitit")
    ran: list[dict] = []
    resumed = load_sweep(path, ['executor.kind="slurm"', 'executor.slurm.cluster="local"', "executor.slurm.poll_s=0.2"])
    report = run_sweep(resumed, out, resume=True, on_result=ran.append)
    assert report.skipped == len(done)
    assert len([o for o in ran if o["status"] == "complete" and not o.get("skipped")]) == 3 - len(done)
    assert list((out / "slurm").glob("*_result.pkl"))  # it went through submitit
    after = summaries(out)
    assert len(after) == 3
    assert {k: after[k] for k in done} == done  # finished runs were not run again
    assert all(r["status"] == "complete" for r in read_csv(out / "results.csv"))

    # The objective is checked against the finished runs before a resumed sweep runs anything.
    wrong = load_sweep(path, ["objective.key=apical_eror_1_end"])
    with pytest.raises(ConfigError, match=r"objective.key: 'apical_eror_1_end' is not a number in the summary.*"
                                          r"apical_error_1_end"):
        run_sweep(wrong, out, resume=True)


@pytest.mark.slow
def test_optuna_search_in_a_journal_file_resumes(tmp_path: Path, jax_cache: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from microcircuit.sweep.search import OptunaSearch

    path = write_sweep(tmp_path / "s.toml", jax_cache, seeds="[0]", params="stimulus.low = { low = 0.0, high = 0.5 }",
                       search='kind = "optuna"\nn_trials = 3\nsampler = "random"\nstorage = "journal"')
    out = tmp_path / "out"
    report = run_sweep(load_sweep(path), out)
    assert report.ran == 3 and (out / "optuna.journal").is_file()
    first = summaries(out)
    assert len(first) == 3

    # A driver killed while a trial ran leaves it RUNNING in the study: the next driver adopts it.
    spec5 = load_sweep(path, ["search.n_trials=5"])
    stale = OptunaSearch(spec5, out).ask()
    report = run_sweep(spec5, out, resume=True)
    assert report.ran == 2
    after = summaries(out)
    assert {k: after[k] for k in first} == first  # the three finished trials were not repeated
    assert f"trials/{stale.id}/seed-0" in after

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))
    study = optuna.load_study(study_name="tiny", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 5
    lows = [t.params["stimulus.low"] for t in study.trials]
    assert len(set(lows)) == 5  # the resumed sampler did not replay the first session's draws
    trials = read_csv(out / "trials.csv")
    assert [t["optuna_number"] for t in trials] == ["0", "1", "2", "3", "4"]
    best = min(trials, key=lambda t: float(t["mean"]))
    assert float(best["mean"]) == pytest.approx(study.best_value)
    # Another sweep (different params) cannot take over this study.
    other = write_sweep(tmp_path / "o.toml", seeds="[0]", params="stimulus.low = { low = 0.0, high = 0.4 }",
                        search=f'kind = "optuna"\nn_trials = 3\nstorage = "{out / "optuna.journal"}"')
    with pytest.raises(ConfigError, match=r"search\.study: the study 'tiny'"):
        run_sweep(load_sweep(other), tmp_path / "out2")


NOT_COMPARED = ("wall_s", "train_wall_s")  # wall times: the whole vmapped program's


@pytest.mark.slow
def test_vmapped_seeds_run_as_one_program_and_match_single_seed_runs(tmp_path: Path, jax_cache: Path) -> None:
    from microcircuit.config import load_toml

    path = write_regression_sweep(tmp_path / "s.toml", jax_cache)
    out = tmp_path / "vmapped"
    ran: list[dict] = []
    report = run_sweep(load_sweep(path), out, on_result=ran.append)
    assert report.ran == 4 and report.failed == 0
    runs = read_csv(out / "results.csv")
    assert len(runs) == 4 and all(r["status"] == "complete" for r in runs)
    for trial in ("trial-0000", "trial-0001"):
        # One vmapped program per trial: one run folder holding both seeds, one worker, one path.
        d = out / "trials" / trial
        assert run_folders(d) == ["seeds-0-1"]
        cfg = load_toml(d / "seeds-0-1" / "config.toml")
        assert (cfg.seed, cfg.n_seeds, cfg.experiment) == (0, 2, "regression")
        outs = [o for o in ran if o["trial"] == trial]
        assert sorted(o["seed"] for o in outs) == [0, 1]
        assert len({(o["path"], o["worker"], o["wall_s"]) for o in outs}) == 1 and outs[0]["vmapped"] == [0, 1]
        # One row per seed, with that seed's own (finite, distinct) values: the experiment's per-seed numbers.
        rows = sorted((r for r in runs if r["trial"] == trial), key=lambda r: int(r["seed"]))
        assert [r["run_dir"] for r in rows] == [f"trials/{trial}/seeds-0-1"] * 2
        values = [float(r["objective"]) for r in rows]
        assert all(math.isfinite(v) for v in values) and values[0] != values[1]
        whole = json.loads((d / "seeds-0-1" / "summary.json").read_text())
        assert values == whole["microcircuit_test_error_end_per_seed"]
        # The per-seed summaries are the experiment's own (regression.member_summaries of the run folder).
        members = regression.member_summaries(d / "seeds-0-1", whole)
        assert {str(s): {**m, "wall_s": whole["wall_s"]} for s, m in members.items()} == whole["members"]
        for key in ("apical_error_1_end", "angle_1_end", "shallow_test_error_end"):
            per_seed = [float(r[key]) for r in rows]
            assert per_seed[0] != per_seed[1]
            assert sum(per_seed) / 2 == pytest.approx(whole[key], rel=1e-6)  # the ensemble's mean over seeds
        t = next(t for t in read_csv(out / "trials.csv") if t["trial"] == trial)
        assert (t["n"], float(t["mean"])) == ("2", pytest.approx(sum(values) / 2))

    # The same sweep with vmapping off: one run per seed, and every per-seed number as in the vmapped run
    # (to float32 rounding: the trained weights are equal, batched evaluation rounds differently).
    single = tmp_path / "single"
    report = run_sweep(load_sweep(path, ["executor.vmap_seeds=false"]), single)
    assert report.ran == 4
    assert run_folders(single / "trials" / "trial-0001") == ["seed-0", "seed-1"]
    assert load_toml(single / "trials" / "trial-0001" / "seed-1" / "config.toml").n_seeds == 1
    alone = {(r["trial"], r["seed"]): r for r in read_csv(single / "results.csv")}
    compared = 0
    for r in runs:
        s = alone[(r["trial"], r["seed"])]
        assert s["status"] == "complete" and set(s) == set(r)
        for k, v in r.items():
            try:
                a, b = float(v), float(s[k])
            except ValueError:
                continue
            if k not in NOT_COMPARED and k != "seed":
                assert a == pytest.approx(b, rel=1e-5, abs=1e-9), (r["trial"], r["seed"], k)
                compared += 1
    assert compared > 4 * 20


@pytest.mark.slow
def test_interrupted_vmapped_trial_resumes_without_repeating_finished_work(tmp_path: Path, jax_cache: Path) -> None:
    path = write_regression_sweep(tmp_path / "s.toml", jax_cache)
    out = tmp_path / "out"
    seen: list[dict] = []

    def interrupt_after_first_run(outcome: dict) -> None:
        seen.append(outcome)
        if len(seen) == 2:  # both seeds of the first vmapped run are in
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match="--resume"):
        run_sweep(load_sweep(path), out, on_result=interrupt_after_first_run, grace_s=60)
    done = summaries(out)
    assert "trials/trial-0000/seeds-0-1" in done and len(done) == 1
    assert [r["status"] for r in read_csv(out / "results.csv") if r["trial"] == "trial-0000"] == ["complete"] * 2

    # Resume with a third seed: seeds 0 and 1 of trial-0000 are done (in their vmapped run), so only seed 2
    # runs there, alone; trial-0001 runs all three seeds, vmapped.
    ran: list[dict] = []
    report = run_sweep(load_sweep(path, ["seeds=[0, 1, 2]"]), out, resume=True, on_result=ran.append)
    assert report.skipped == 2 and report.ran == 4
    after = summaries(out)
    assert after["trials/trial-0000/seeds-0-1"] == done["trials/trial-0000/seeds-0-1"]  # not run again
    assert sorted((o["trial"], o["seed"]) for o in ran) == [("trial-0000", 2)] + [("trial-0001", s) for s in range(3)]
    assert run_folders(out / "trials" / "trial-0000") == ["seed-2", "seeds-0-1"]
    complete = [k for k in after if k.startswith("trials/trial-0001/")]
    covered = sorted(s for k in complete for s in folder_seeds(Path(k).name) or ())
    assert covered == [0, 1, 2] and any("seeds-" in k for k in complete)  # each seed once, vmapped
    runs = read_csv(out / "results.csv")
    assert len(runs) == 6 and all(r["status"] == "complete" for r in runs)

    # A vmapped run that failed fails all its seeds; --resume leaves them, --retry-failed reruns them.
    failed = out / "trials" / "trial-0000" / "seeds-0-1"
    (failed / "summary.json").unlink()
    (failed / "failed.json").write_text(json.dumps({"error": "DivergenceError: of ensemble member 1"}))
    report = run_sweep(load_sweep(path, ["seeds=[0, 1, 2]"]), out, resume=True)
    assert report.ran == 0 and report.skipped == 4
    rows = {r["seed"]: r for r in read_csv(out / "results.csv") if r["trial"] == "trial-0000"}
    assert [rows[s]["status"] for s in "012"] == ["failed", "failed", "complete"]
    assert "member 1" in rows["1"]["error"] and rows["1"]["run_dir"] == "trials/trial-0000/seeds-0-1"
    ran.clear()
    report = run_sweep(load_sweep(path, ["seeds=[0, 1, 2]"]), out, resume=True, retry_failed=True,
                       on_result=ran.append)
    assert sorted((o["trial"], o["seed"], o.get("vmapped")) for o in ran) == [
        ("trial-0000", 0, [0, 1]), ("trial-0000", 1, [0, 1])]
    final = summaries(out)
    assert {k: v for k, v in final.items() if k != "trials/trial-0000/seeds-0-1"} == {
        k: v for k, v in after.items() if k != "trials/trial-0000/seeds-0-1"}
    assert all(r["status"] == "complete" for r in read_csv(out / "results.csv"))


@pytest.mark.slow
def test_optuna_trial_objective_is_the_mean_of_vmapped_seeds(tmp_path: Path, jax_cache: Path) -> None:
    pytest.importorskip("optuna")
    from microcircuit.sweep.search import OptunaSearch

    path = write_regression_sweep(tmp_path / "s.toml", jax_cache, params='"plasticity.eta_PI" = [0.01, 0.05]',
                                  search='kind = "optuna"\nn_trials = 2\nsampler = "random"')
    out = tmp_path / "out"
    run_sweep(load_sweep(path), out)
    search = OptunaSearch(load_sweep(path), out)
    values = {t.number: t.value for t in search.study.trials}
    runs = read_csv(out / "results.csv")
    for n in (0, 1):
        assert run_folders(out / "trials" / f"trial-{n:04d}") == ["seeds-0-1"]
        per_seed = [float(r["objective"]) for r in runs if r["trial"] == f"trial-{n:04d}"]
        assert len(per_seed) == 2 and values[n] == pytest.approx(sum(per_seed) / 2)

    # A trial left RUNNING whose vmapped run had finished: the next driver tells its mean without rerunning.
    spec3 = load_sweep(path, ["search.n_trials=3"])
    stale = OptunaSearch(spec3, out).ask()
    shutil.copytree(out / "trials" / "trial-0000" / "seeds-0-1", out / "trials" / stale.id / "seeds-0-1")
    before = summaries(out)
    report = run_sweep(spec3, out, resume=True)
    assert report.ran == 0 and report.skipped == 2 and summaries(out) == before
    study = OptunaSearch(spec3, out).study
    assert study.trials[stale.number].value == pytest.approx(values[0])


# --------------------------------------------------------------------------------------------------
# A real SLURM: controller and one node on this machine (skipped where they cannot be started)

SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "munged", "munge", "unmunge")


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d, name)).exists()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munge_works() -> bool:
    try:
        cred = subprocess.run([_which("munge"), "-n"], capture_output=True, timeout=10, check=True).stdout
        subprocess.run([_which("unmunge")], input=cred, capture_output=True, timeout=10, check=True)
    except (subprocess.SubprocessError, OSError, TypeError):
        return False
    return True


def _stop(pids: list[int]) -> None:
    """SIGTERM the daemons we started (by pid), SIGKILL what is still there after 10 s."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)


def _start_munged(pids: list[int], cleanup: list[Path]) -> None:
    """A munged of our own, as the munge user, with its log and pid file in a fresh folder."""
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    mdir = Path(tempfile.mkdtemp(prefix="mc-munge-"))
    cleanup.append(mdir)
    shutil.chown(mdir, "munge", "munge")
    args = [_which("munged"), "--log-file", str(mdir / "munged.log"), "--pid-file", str(mdir / "munged.pid")]
    runuser = shutil.which("runuser")
    errors = []
    for cmd in ([runuser, "-u", "munge", "--", *args] if runuser else None, [*args, "--force"]):
        if cmd is None:
            continue
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        errors.append(r.stderr.strip())
        if _munge_works():
            break
    if (mdir / "munged.pid").is_file():
        pids.append(int((mdir / "munged.pid").read_text().split()[0]))
    if not _munge_works():
        pytest.skip(f"munged could not be started: {' / '.join(errors)[:300]}")


def _slurm_conf(d: Path) -> Path:
    host = socket.gethostname().split(".")[0]
    mem = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 1024)
    for sub in ("state", "spool", "log"):
        (d / sub).mkdir()
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=mctest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={max(mem - 512, 256)} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """slurmctld and slurmd (and munged, if none works) on localhost with a private config and ports;
    the daemons started here are stopped afterwards. Yields the environment (SLURM_CONF) to use."""
    missing = [b for b in SLURM_BINARIES if _which(b) is None]
    if missing:
        pytest.skip(f"no SLURM here ({', '.join(missing)} not found; Debian: apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    pytest.importorskip("submitit")
    d = tmp_path_factory.mktemp("slurm")
    pids: list[int] = []
    cleanup: list[Path] = []
    try:
        if not _munge_works():
            _start_munged(pids, cleanup)
        conf = _slurm_conf(d)
        env = {**os.environ, "SLURM_CONF": str(conf)}

        def logs() -> str:
            return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-8:])
                             for p in sorted((d / "log").glob("*.log")))

        for daemon in ("slurmctld", "slurmd"):
            r = subprocess.run([_which(daemon), "-f", str(conf)], env=env, capture_output=True, text=True,
                               timeout=30, check=False)
            pid = d / f"{daemon}.pid"
            for _ in range(50):
                if pid.is_file() and pid.read_text().strip():
                    pids.insert(0, int(pid.read_text().split()[0]))  # stopped before munged
                    break
                time.sleep(0.1)
            if r.returncode != 0:
                pytest.skip(f"{daemon} did not start (exit {r.returncode}): {r.stderr.strip()[:300]}\n{logs()}")
        deadline, state = time.time() + 60, ""
        while time.time() < deadline:
            r = subprocess.run([_which("sinfo"), "-h", "-o", "%T"], env=env, capture_output=True, text=True,
                               timeout=10, check=False)
            state = r.stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            pytest.skip(f"the SLURM node did not become idle within 60 s (state {state!r})\n{logs()}")
        yield env
    finally:
        _stop(pids)
        for p in cleanup:
            shutil.rmtree(p, ignore_errors=True)


@pytest.mark.slow
def test_real_slurm_single_node(tmp_path: Path, jax_cache: Path, slurm_cluster: dict[str, str]) -> None:
    path = write_sweep(
        tmp_path / "s.toml", jax_cache, seeds="[0]",
        executor='kind = "slurm"\nworkers = 2\n[executor.slurm]\npartition = "debug"\ntime_min = 5\npoll_s = 0.5',
    )
    out = tmp_path / "out"
    try:
        r = subprocess.run([sys.executable, "-m", "microcircuit.cli", "sweep", str(path), "--out", str(out)],
                           env=slurm_cluster, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired as e:
        subprocess.run(["scancel", "--name=mc-tiny"], env=slurm_cluster, capture_output=True, timeout=30, check=False)
        pytest.fail(f"the SLURM sweep did not finish in 300 s:\n{e.stdout}\n{e.stderr}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 of 2 run(s) complete" in r.stdout
    assert all(row["status"] == "complete" for row in read_csv(out / "results.csv"))
    scripts = list((out / "slurm").glob("*_submission.sh"))
    assert scripts and "#SBATCH --array=0-1%2" in scripts[0].read_text()  # one job array, 2 at a time
    assert "#SBATCH --partition=debug" in scripts[0].read_text()
