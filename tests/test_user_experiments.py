"""Experiments of the user's own: ``experiment = "module"``, ``"module:function"`` or an entry point of the
group ``microcircuit.experiments``, run by ``microcircuit run`` with run folders, hooks, warnings, resume
and sweeps like the built-in ones (docs/usage.md, "Your own experiment")."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from microcircuit.cli import main
from microcircuit.config import ConfigError, load_toml
from microcircuit.experiments import experiment_module, get_experiment, member_summaries_of

# A tiny experiment: it counts its calls in the run folder, so a test sees that it ran (and how often).
MODULE = '''
CALLS = []


def unused(cfg):
    return ("training",)


def check(cfg):
    return ["checked by the user's module"] if cfg.seed == 7 else []


def run(cfg, run_dir, *, progress=False, echo=None):
    CALLS.append(cfg.seed)
    if echo:
        echo("hello from the user's experiment")
        echo("warning: said by the user's experiment")
    if run_dir is not None:
        run_dir.log(step=1, value=cfg.seed * 2)
    return {"value": cfg.seed * 2, "headline": [f"value {cfg.seed * 2}"]}


def other(cfg, run_dir, *, progress=False, echo=None):
    return {"value": -1}
'''


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of the user's own in the current folder (a fresh name per test: modules are cached)."""
    name = f"my_exp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    return name


def _toml(path: Path, experiment: str, **keys: object) -> Path:
    path.write_text(f'experiment = "{experiment}"\nname = "mine"\n'
                    + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return path


def _one_line_error(r: Result, *words: str) -> None:
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: "), line
    for w in words:
        assert w in line, (w, line)


def test_a_module_runs_like_a_builtin_experiment(user_module: str, tmp_path: Path) -> None:
    """The run folder, summary, environment (with where the code came from), the module's warnings printed
    once and recorded, --resume, and the module's own hooks."""
    r = cli("run", _toml(tmp_path / "my.toml", user_module, seed=3), "--out", "run", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "hello from the user's experiment" in r.stdout and "value 6" in r.stdout
    assert r.stderr.count("said by the user's experiment") == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["value"] == 6 and summary["warnings"] == ["said by the user's experiment"]
    assert load_toml(tmp_path / "run" / "config.toml").experiment == user_module
    source = json.loads((tmp_path / "run" / "environment.json").read_text())["experiment_source"]
    assert source["module"] == user_module and Path(source["file"]) == tmp_path / f"{user_module}.py"
    assert len(source["sha256"]) == 64

    # resumed after its code changed: it runs, and the change is a recorded warning
    (tmp_path / "run" / "summary.json").unlink()
    with open(tmp_path / f"{user_module}.py", "a") as f:
        f.write("# edited\n")
    r = cli("run", "--resume", "run", "--no-progress")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert any("experiment_source differs" in w for w in summary["warnings"]), summary["warnings"]
    assert "said by the user's experiment" in summary["warnings"]

    # its hooks: a key it does not read is refused (before a folder is made); its check warns
    _one_line_error(cli("run", tmp_path / "my.toml", "--set", "training.epochs=3", "--out", "refused"),
                    "training.epochs", "not used", user_module)
    assert not (tmp_path / "refused").exists()
    r = cli("run", tmp_path / "my.toml", "--set", "seed=7", "--out", "checked", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "checked by the user's module" in json.loads((tmp_path / "checked" / "summary.json").read_text())[
        "warnings"]


def test_module_colon_function(user_module: str, tmp_path: Path) -> None:
    r = cli("run", _toml(tmp_path / "my.toml", f"{user_module}:other"), "--out", "run", "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["value"] == -1
    assert get_experiment(f"{user_module}:other").__name__ == "other"
    assert member_summaries_of(f"{user_module}:other") is None and member_summaries_of("no_such_thing") is None


def test_a_sweep_trial_runs_a_user_experiment(user_module: str, tmp_path: Path) -> None:
    from microcircuit.sweep.worker import execute

    summary, skipped = execute(load_toml(_toml(tmp_path / "my.toml", user_module, seed=2)), tmp_path / "trial")
    assert not skipped and summary["value"] == 4 and summary["warnings"] == ["said by the user's experiment"]
    assert "experiment_source" in json.loads((tmp_path / "trial" / "environment.json").read_text())


@pytest.mark.parametrize(("experiment", "words"), [
    ("no_such_module_xyz.task", ["no module 'no_such_module_xyz.task'", "install"]),
    ("{m}:nothing", ["has no 'nothing'"]),
    ("{m}:CALLS", ["neither a function", "run(cfg, run_dir"]),
    ("json", ["'json' is neither a function"]),
    ("broken_{m}", ["importing", "ZeroDivisionError"]),
    ("mnst", ["unknown experiment 'mnst'", "did you mean 'mnist'"]),
])  # fmt: skip
def test_a_module_that_cannot_be_used_is_one_line(user_module: str, tmp_path: Path, experiment: str,
                                                  words: list[str]) -> None:
    (tmp_path / f"broken_{user_module}.py").write_text("x = 1 / 0\n")
    experiment = experiment.format(m=user_module)
    _one_line_error(cli("run", _toml(tmp_path / "my.toml", experiment), "--out", "run"), "experiment", *words)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError):
        experiment_module(experiment)


def test_an_entry_point_names_an_experiment(user_module: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution that declares ``[project.entry-points."microcircuit.experiments"]``."""
    site = tmp_path / "site"
    info = site / "my_dist-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-dist\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [microcircuit.experiments]
        my-task = {user_module}
        my-other = {user_module}:other
        mnist = {user_module}:other
        """))
    monkeypatch.syspath_prepend(str(site))
    assert experiment_module("my-task").__name__ == user_module
    assert get_experiment("my-other").__name__ == "other"
    assert experiment_module("mnist").__name__ == "microcircuit.experiments.mnist"  # a built-in is not shadowed
    r = cli("run", _toml(tmp_path / "my.toml", "my-task", seed=5), "--out", "run", "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["value"] == 10
    _one_line_error(cli("run", _toml(tmp_path / "bad.toml", "my-tsak"), "--out", "bad"), "did you mean 'my-task'")
