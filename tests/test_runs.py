"""Runs that can be trusted (docs/runs.md): run folders, checkpoints and resume (bit for bit in float32 on
CPU), SIGINT/SIGTERM on a real subprocess, divergence, and the CLI's one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microcircuit.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from microcircuit.cli import main
from microcircuit.config import Config, ConfigError, Model, apply_overrides
from microcircuit.experiments import backprop_link, regression, self_prediction, target_propagation
from microcircuit.presets import PRESETS, fig_s1
from microcircuit.runs import RunDir, RunDirError, resume_config

# A tiny Fig. S1 run: 12 segments of 5 patterns × 500 ms (25 000 steps, so two simulate chunks per
# segment), a checkpoint every 3 segments. Small enough for seconds, long enough to be interrupted.
RUN = [
    "fig-s1",
    "--set", "network.sizes=[5,4,3]",
    "--set", "stimulus.n_patterns=60",
    "--set", "stimulus.duration=500",
    "--set", "schedule.segment=5",
    "--set", "schedule.checkpoint_every=3",
    "--set", "schedule.n_test=3",
    "--set", "schedule.settle=5",
    "--set", "record.stride=1000",
    "--set", "record.quantities=['self_prediction','weight_norms']",
    "--no-progress",
]  # fmt: skip
N_PATTERNS, SEGMENT = 60, 5


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _skip_figures(mp: pytest.MonkeyPatch) -> None:
    for runner in (self_prediction, regression, backprop_link, target_propagation):
        mp.setattr(runner, "_figures", lambda *a, **k: None)


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures are slow to draw and not what is tested here (subprocesses still draw them)."""
    _skip_figures(monkeypatch)


def rows(run: Path) -> list[dict]:
    """Metric rows (not events), without the wall-clock time."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "event" not in r:
            r.pop("wall_s", None)
            out.append(r)
    return out


def events(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "event" in r]


def assert_same_run(a: Path, b: Path, n_patterns: int = N_PATTERNS, segment: int = SEGMENT,
                    trees: tuple[str, ...] = ("weights", "traces", "state", "recorded")) -> None:
    """Bit-for-bit equal results: every tree of the final checkpoint (``trees`` at least: weights,
    filter traces, state, recorded traces, ...) and its RNG key; traces.npz; every metric row; the
    summary (wall-clock times aside)."""
    ca, cb = (load_checkpoint(latest_checkpoint(p / "checkpoints")) for p in (a, b))
    assert ca.counters["patterns"] == cb.counters["patterns"] == n_patterns
    assert set(trees) <= ca.trees.keys() and ca.trees.keys() == cb.trees.keys()
    for tree in ca.trees:
        assert ca.trees[tree].keys() == cb.trees[tree].keys()
        for k in ca.trees[tree]:
            np.testing.assert_array_equal(ca.trees[tree][k], cb.trees[tree][k], err_msg=f"{tree}/{k}")
    np.testing.assert_array_equal(jax.random.key_data(ca.key), jax.random.key_data(cb.key))
    assert [r["patterns"] for r in rows(a)] == list(range(0, n_patterns + 1, segment))  # no duplicated rows
    assert_same_results(a, b)


def assert_same_results(a: Path, b: Path, *, warned: str = "") -> None:
    """Bit-for-bit equal traces.npz, metric rows and summary (wall-clock times aside; with ``warned``, b's
    summary lists one more warning, which contains that text)."""
    with np.load(a / "traces.npz") as ta, np.load(b / "traces.npz") as tb:
        assert sorted(ta.files) == sorted(tb.files)
        for k in ta.files:
            np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    assert rows(a) == rows(b)
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    for wall in ("wall_s", "train_wall_s"):
        sa.pop(wall, None), sb.pop(wall, None)
    if warned:
        *same, extra = sb["warnings"]
        assert warned in extra, sb["warnings"]
        sb["warnings"] = same
    assert sa == sb


def uninterrupted(factory: pytest.TempPathFactory, name: str, args: list[str]) -> Path:
    """A run of ``args`` from start to end, in a new folder."""
    out = factory.mktemp(name) / "run"
    with pytest.MonkeyPatch.context() as mp:
        _skip_figures(mp)
        r = cli("run", *args, "--out", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    return uninterrupted(tmp_path_factory, "reference", RUN)


# --------------------------------------------------------------------------------------------------
# Run folders


def test_run_folder_contents(reference: Path) -> None:
    """config.toml (resolved), metrics.jsonl, traces.npz, summary.json, environment.json with versions,
    platform, JAX backend and devices, seed and project version; checkpoints: the newest two kept."""
    names = {p.name for p in reference.iterdir()}
    assert {"config.toml", "metrics.jsonl", "traces.npz", "summary.json", "environment.json", "checkpoints"} <= names
    cfg = resume_config(reference)
    assert cfg.stimulus.n_patterns == N_PATTERNS and cfg.schedule.checkpoint_every == 3
    env = json.loads((reference / "environment.json").read_text())
    for key in ("microcircuit", "python", "platform", "packages", "jax_backend", "jax_devices", "seed", "started"):
        assert env.get(key) not in (None, "", []), key
    assert env["seed"] == cfg.seed and env["jax_backend"] == "cpu"
    assert {"jax", "jaxlib", "numpy"} <= {k for k, v in env["packages"].items() if v}
    assert [i for i, _ in list_checkpoints(reference / "checkpoints")] == [45, 60]  # keep_checkpoints = 2
    assert oct((reference / "config.toml").stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's 0600
    assert events(reference) == []


def test_non_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    r = cli("run", *RUN, "--out", tmp_path)
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "not empty" in r.stderr and "--resume" in r.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(RunDirError):
        RunDir.create(tmp_path)
    with pytest.raises(RunDirError, match="not a microcircuit run folder"):  # --overwrite spares other folders
        RunDir.create(tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    """A real process: one line on stderr and exit status 2; with --debug, the traceback."""
    (tmp_path / "x").write_text("")
    cmd = [sys.executable, "-m", "microcircuit.cli"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    plain = subprocess.run([*cmd, "run", "--out", str(tmp_path)], capture_output=True, text=True, env=env,
                           timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.startswith("error: run folder") and plain.stderr.count("\n") == 1
    assert "Traceback" not in plain.stderr + plain.stdout
    debug = subprocess.run([*cmd, "--debug", "run", "--out", str(tmp_path)], capture_output=True, text=True,
                           env=env, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "RunDirError" in debug.stderr
    bad = cli("run", "fig-s1", "--set", "conductances.g_BB=1", "--out", tmp_path / "new")
    assert bad.exit_code == 2 and "did you mean" in bad.stderr and bad.stderr.count("\n") == 1
    assert not (tmp_path / "new").exists()  # rejected before anything is written


# --------------------------------------------------------------------------------------------------
# A run folder belongs to its run; one writer per run folder (issue 39)


def test_every_file_a_runner_writes_is_a_run_file() -> None:
    """--overwrite removes only what a run writes (RUN_FILES, RUN_FOLDERS, SUB_RUNS in runs.py): every name
    that an experiment, the CLI, a sweep or an analysis writes into a run folder is among them."""
    from fnmatch import fnmatchcase

    from microcircuit.analysis.traces import default_name
    from microcircuit.runs import RUN_FILES, RUN_FOLDERS, SUB_RUNS
    from microcircuit.sweep.seeds import FAILED

    src = Path(__file__).resolve().parent.parent / "src" / "microcircuit"
    written = {FAILED, default_name(["v_apical_1"]), "settle-dt0.1.json", "settle-dt0.1.png"}
    patterns = [r'save_figure\(\s*\w+,\s*f?"([^"]+)"', r'save_arrays\(\s*f?"([^"]+)"', r'write_json\(\s*f?"([^"]+)"',
                r'\.file\(\s*f?"([^"]+)"', r'def _name\([^)]*\) -> str:\s*return f"([^"]+)"']
    for py in [*sorted((src / "experiments").glob("*.py")), src / "cli.py"]:
        for pattern in patterns:
            written |= {re.sub(r"\{[^}]*\}", "0", m) for m in re.findall(pattern, py.read_text())}
    assert {"fig_s1.png", "fig1.png", "fig2.png", "learning_curve.png", "weights_best.npz",
            "summary-0-epochs.json"} <= written
    missing = sorted(n for n in written if not any(fnmatchcase(n, p) for p in RUN_FILES))
    assert not missing, f"add these to microcircuit.runs.RUN_FILES: {missing}"
    assert set(RUN_FOLDERS) == {RunDir.CHECKPOINTS} and SUB_RUNS == ("init",)
    assert any(fnmatchcase("ckpt-000000000060.npz", p) for p in RUN_FOLDERS["checkpoints"])
    docs = (src.parent.parent / "docs" / "runs.md").read_text(encoding="utf-8")  # says exactly what is removed
    assert not [p for p in [*RUN_FILES, *RUN_FOLDERS["checkpoints"]] if f"`{p}`" not in docs]


def locked(folder: Path) -> bool:
    """Whether some process (this one included, through another RunDir) holds ``folder``'s lock."""
    import fcntl

    with open(folder / RunDir.MARKER) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _stop(exc: BaseException) -> Callable[..., Any]:
    def runner(cfg: Config, run_dir: RunDir, **kw: Any) -> dict[str, Any]:
        assert locked(run_dir.path)
        raise exc

    return runner


@pytest.mark.parametrize(("outcome", "code"), [
    ("complete", 0), ("error", 2), ("divergence", 2), ("signal", 143), ("second signal", 130), ("bug", 1),
])  # fmt: skip
def test_the_run_folder_lock_is_held_while_it_runs_and_released_on_every_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str, code: int) -> None:
    """`microcircuit run` holds its folder's lock from the first write to its exit, and releases it however the
    run ends: finished, an error, a divergence, SIGTERM (checkpointed), a second signal, a bug; so does
    --resume, also of a finished run (nothing to do)."""
    import microcircuit.experiments as experiments
    from microcircuit.errors import DivergenceError, RunInterrupted

    def complete(cfg: Config, run_dir: RunDir, **kw: Any) -> dict[str, Any]:
        assert locked(run_dir.path)
        return {"headline": ["done"]}

    runners = {"complete": complete, "error": _stop(RunDirError("cannot write x: No space left on device")),
               "divergence": _stop(DivergenceError("u", 2, 17.0, "at t = 17 ms")),
               "signal": _stop(RunInterrupted(signal.SIGTERM, "interrupted by SIGTERM")),
               "second signal": _stop(KeyboardInterrupt("second SIGINT")), "bug": _stop(ZeroDivisionError("bug"))}
    monkeypatch.setattr(experiments, "get_experiment", lambda name: runners[outcome])
    out = tmp_path / "run"
    r = cli("run", *RUN, "--out", out)
    assert r.exit_code == code, r.output
    assert not locked(out)
    r = cli("run", "--resume", out)
    assert r.exit_code == code, r.output
    assert not locked(out)
    if outcome == "complete":
        assert "already complete" in r.output


# `microcircuit run GATE ARGS`, without figures, whose run waits after its first metric row until the file GATE
# exists: it holds its folder meanwhile.
WAIT_AFTER_FIRST_ROW = """
import sys, time
from pathlib import Path
from microcircuit import runs
from microcircuit.cli import main
from microcircuit.experiments import self_prediction

log, gate = runs.RunDir.log, Path(sys.argv[1])

def log_and_wait(self, **row):
    log(self, **row)
    while not gate.exists():
        time.sleep(0.05)

runs.RunDir.log = log_and_wait
self_prediction._figures = lambda *a, **k: None
main(sys.argv[2:])
"""

# Holds the lock of the run folder sys.argv[1] as a run does (flock on its marker, which names the holder) until
# it is killed; without importing microcircuit (and JAX), to start at once.
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


def test_a_run_folder_in_use_is_refused_naming_its_holder(tmp_path: Path) -> None:
    """Issue 39: a real `microcircuit run` process holds its folder. While it runs, `run --resume`, `run --out
    --overwrite` and `run --out` on that folder are refused with one line naming it (pid, host, since) and
    change nothing (before, a concurrent --resume interleaved duplicated rows into metrics.jsonl); once it
    has finished, --resume finds the run complete, every metric row once. A holder killed with SIGKILL takes
    its lock with it (the marker still names it): the folder is free again."""
    import socket

    from microcircuit.runs import FolderLock

    out, gate = tmp_path / "run", tmp_path / "go"
    tiny = ("network.sizes=[5,4,3]", "stimulus.n_patterns=4", "stimulus.duration=5", "schedule.segment=2",
            "schedule.n_test=4", "record.stride=10")  # two short segments
    args = ["fig-s1", "--no-progress", *[x for kv in tiny for x in ("--set", kv)]]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp_path.parent / "jax-cache")}
    first = subprocess.Popen([sys.executable, "-c", WAIT_AFTER_FIRST_ROW, str(gate), "run", *args, "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        t = time.monotonic()
        while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().strip()):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() - t < 120, "the run wrote no metric row"
            time.sleep(0.05)
        holder = f"pid {first.pid} on {socket.gethostname()}, since "
        assert locked(out) and holder in str(FolderLock.describe(out / RunDir.MARKER))
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        for second in (["--resume", out], [*args, "--out", out, "--overwrite"], [*args, "--out", out]):
            r = cli("run", *second)
            assert r.exit_code == 2, r.output
            line = r.stderr.strip()
            assert "\n" not in line and line.startswith(f"error: run folder {out} is in use by {holder}"), line
            assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
        gate.touch()
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert not locked(out)
    r = cli("run", "--resume", out)
    assert r.exit_code == 0 and "already complete" in r.output, r.output
    assert [x["patterns"] for x in rows(out)] == [0, 2, 4]

    holding = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holding.stdout is not None and holding.stdout.readline() == "held\n"
        one = cli("run", "--resume", out)
        assert one.exit_code == 2 and f"in use by pid {holding.pid} on" in one.stderr, one.output
    finally:
        holding.kill()  # SIGKILL: no chance to clean up
        holding.communicate()
    assert f"pid {holding.pid} on" in str(FolderLock.describe(out / RunDir.MARKER)) and not locked(out)
    r = cli("run", "--resume", out)
    assert r.exit_code == 0 and "already complete" in r.output, r.output


# --------------------------------------------------------------------------------------------------
# Resume


def test_interrupt_and_resume_bit_for_bit(reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT in the middle of segment 2 (sent to this very process): the run stops at the next chunk
    boundary, checkpoints the boundary after segment 2 (not yet on disk: every 3 segments), exits 130,
    restores the signal handlers; --resume then ends bit for bit equal to the uninterrupted run."""
    original = self_prediction.random_inputs

    def stream(cfg, segment, n):
        if segment == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(cfg, segment, n)

    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(self_prediction, "random_inputs", stream)
    r = cli("run", *RUN, "--out", out)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert r.exit_code == 130, r.output
    assert r.stderr.strip().count("\n") == 0
    assert "interrupted by SIGINT after 10 of 60 patterns" in r.stderr and "--resume" in r.stderr
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [10]
    assert not (out / "summary.json").exists() and not (out / "traces.npz").exists()
    assert [x["patterns"] for x in rows(out)] == [0, 5, 10]
    assert events(out)[-1]["event"] == "interrupted" and events(out)[-1]["patterns"] == 10

    monkeypatch.setattr(self_prediction, "random_inputs", original)
    r = cli("run", "--resume", out)
    assert r.exit_code == 0, r.output
    assert "resuming from" in r.output
    assert_same_run(reference, out)
    assert [e["event"] for e in events(out)] == ["interrupted", "resumed"]
    env = json.loads((out / "environment.json").read_text())
    assert len(env["resumes"]) == 1

    # a finished run resumed reports that it is complete and changes nothing; a --set that a finished run
    # would not read is refused, not ignored
    metrics = (out / "metrics.jsonl").read_text()
    r = cli("run", "--resume", out)
    assert r.exit_code == 0 and "already complete" in r.output
    r = cli("run", "--resume", out, "--set", "schedule.checkpoint_every=2")
    assert r.exit_code == 2 and "would change nothing" in r.stderr
    assert (out / "metrics.jsonl").read_text() == metrics


def test_resume_from_scratch_when_killed_before_the_first_checkpoint(reference: Path, tmp_path: Path) -> None:
    """A folder with only config.toml, environment.json and a metrics line cut short by a hard kill:
    --resume starts over, drops the partial line, and gives the same results."""
    out = tmp_path / "run"
    out.mkdir()
    for name in (RunDir.MARKER, "config.toml", "environment.json"):  # the marker is a run's first write
        shutil.copy(reference / name, out / name)
    first = (reference / "metrics.jsonl").read_text().splitlines()[0]
    (out / "metrics.jsonl").write_text(first + "\n" + first[:25])
    r = cli("run", "--resume", out)
    assert r.exit_code == 0, r.output
    assert "from the beginning" in r.output
    assert_same_run(reference, out)


def test_resume_refusals(reference: Path, tmp_path: Path) -> None:
    """Config changes, conflicting options, missing folders, and broken or foreign checkpoints: one
    clear line each, exit status 2, nothing computed."""
    r = cli("run", "--resume", reference, "--set", "conductances.g_B=2.0", "--set", "seed=3")
    assert r.exit_code == 2 and "conductances.g_B" in r.stderr and "seed" in r.stderr
    for extra in (["fig-s1"], ["--overwrite"], ["--out", str(tmp_path)], ["--quick"]):
        r = cli("run", "--resume", reference, *extra)
        assert r.exit_code == 2 and "cannot be combined" in r.stderr, extra
    r = cli("run", "--resume", tmp_path / "nothing")
    assert r.exit_code == 2 and "no such run folder" in r.stderr
    r = cli("run", "--resume", tmp_path)
    assert r.exit_code == 2 and "not a run folder" in r.stderr

    # an unfinished copy of the reference run whose newest checkpoint is damaged
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "summary.json").unlink()
    newest = latest_checkpoint(out / "checkpoints")
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    # every checkpoint damaged: refused, each file named with its problem
    damaged = shutil.copytree(out, tmp_path / "damaged")
    for _, p in list_checkpoints(damaged / "checkpoints"):
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    r = cli("run", "--resume", damaged)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert all(p.name in r.stderr for _, p in list_checkpoints(damaged / "checkpoints"))
    assert "no usable checkpoint" in r.stderr and "truncated or corrupted" in r.stderr
    # checkpoints written for another configuration
    newest.unlink()
    cfg = (out / "config.toml").read_text()
    (out / "config.toml").write_text(cfg.replace("seed = 0", "seed = 5"))
    r = cli("run", "--resume", out)
    assert r.exit_code == 2 and "another configuration" in r.stderr and "seed" in r.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=0, max_size=3)),
                      min_size=1, max_size=4))
def test_damaged_config_toml_gives_config_error(reference: Path, tmp_path_factory: pytest.TempPathFactory,
                                                 edits: list[tuple[float, bytes]]) -> None:
    """A run folder's config.toml with bytes replaced, cut or inserted: resume_config returns a config
    or raises ConfigError, nothing else."""
    text = bytearray((reference / "config.toml").read_bytes())
    for where, new in edits:
        i = int(where * len(text))
        text[i : i + 1] = new
    d = tmp_path_factory.mktemp("cfg", numbered=True)
    (d / "config.toml").write_bytes(bytes(text))
    try:
        resume_config(d)
    except ConfigError as e:
        assert str(e)


# --------------------------------------------------------------------------------------------------
# Divergence


def test_divergence_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    """Large weights and the unbounded soft rectifier blow up: the CLI prints one line naming the
    quantity, the layer, the simulated time and the last good checkpoint, exits 2; that checkpoint
    loads, the last good in-segment state is kept too, and metrics.jsonl records the event."""
    out = tmp_path / "run"
    r = cli(
        "run", "fig-s1", "--out", out, "--no-progress",
        "--set", "network.sizes=[5,4,3]", "--set", "network.transfer.kind=soft_rectifier",
        "--set", "network.init.W=50", "--set", "network.init.B=50",
        "--set", "stimulus.n_patterns=20", "--set", "stimulus.duration=5", "--set", "schedule.segment=2",
        "--set", "schedule.n_test=3", "--set", "schedule.settle=5", "--set", "record.stride=10",
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in r.output
    assert line.startswith("error: simulation diverged: u") and "of layer" in line and "t = " in line
    ev = events(out)[-1]
    assert ev["event"] == "diverged" and ev["quantity"] in ("u", "u_inter")
    assert f"of layer {ev['layer']}" in line and f"t = {ev['time_ms']:.4g} ms" in line
    path = Path(line.split("last good checkpoint: ")[1])
    assert path == Path(ev["checkpoint"]) and path.exists()
    ck = load_checkpoint(path, resume_config(out))
    assert ck.counters["patterns"] == ev["patterns"] and ev["time_ms"] > ck.counters["time_ms"]
    assert [x["patterns"] for x in ck.meta["rows"]] == [x["patterns"] for x in rows(out)]
    for a in ck.trees["state"].values():
        assert np.all(np.isfinite(a))
    good = load_checkpoint(out / "checkpoints" / "diverged-last-good.npz")
    assert all(np.all(np.isfinite(a)) for a in good.trees["weights"].values())
    assert not (out / "summary.json").exists()


# --------------------------------------------------------------------------------------------------
# A real process, killed


def _wait_for_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 240) -> None:
    t = time.monotonic()
    while not list_checkpoints(folder):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t < timeout, "no checkpoint appeared"
        time.sleep(0.01)


def kill_and_resume(args: list[str], reference: Path, tmp_path: Path, signum: int, n_patterns: int,
                    segment: int) -> None:
    """``python -m microcircuit.cli run ARGS`` gets ``signum`` once its first checkpoint is on disk: it
    exits 130/143 with one line, leaves a loadable checkpoint and intact files; ``--resume`` then
    completes the run, bit for bit equal to ``reference``."""
    out = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp_path.parent / "jax-cache")}
    cmd = [sys.executable, "-m", "microcircuit.cli"]
    proc = subprocess.Popen([*cmd, "run", *args, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for_checkpoint(proc, out / "checkpoints")
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr
    name = signal.Signals(signum).name
    assert stderr.strip().count("\n") == 0 and f"interrupted by {name}" in stderr, stderr
    done = [i for i, _ in list_checkpoints(out / "checkpoints")]
    assert 0 < done[-1] < n_patterns
    ck = load_checkpoint(latest_checkpoint(out / "checkpoints"), resume_config(out))
    assert str(latest_checkpoint(out / "checkpoints")) in stderr
    assert [x["patterns"] for x in rows(out)] == [x["patterns"] for x in ck.meta["rows"]]
    json.loads((out / "environment.json").read_text())
    assert not (out / "summary.json").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    resumed = subprocess.run([*cmd, "run", "--resume", str(out), "--no-progress"], capture_output=True,
                             text=True, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference, out, n_patterns, segment)


@pytest.mark.slow
def test_kill_a_real_run_and_resume_it(reference: Path, tmp_path: Path) -> None:
    """Fig. S1 in a real process, killed with SIGINT (Ctrl-C) and resumed (:func:`kill_and_resume`). SIGTERM
    on a real process: tests/test_safety.py; both signals in process, on every experiment: the tests here."""
    kill_and_resume(RUN, reference, tmp_path, signal.SIGINT, N_PATTERNS, SEGMENT)


# --------------------------------------------------------------------------------------------------
# Fig. 2: a seed ensemble with two baselines, checkpointed together

# 12 segments of 5 trials × 100 ms (5 000 steps per learner and segment), two seeds, a checkpoint every
# 3 segments.
FIG2 = [
    "fig2-fast-quick",
    "--set", "n_seeds=2",
    "--set", "stimulus.n_patterns=60",
    "--set", "schedule.segment=5",
    "--set", "schedule.checkpoint_every=3",
    "--set", "schedule.n_test=5",
    "--no-progress",
]  # fmt: skip
FIG2_TREES = ("weights", "traces", "state", "shallow", "backprop", "feedback_alignment")


@pytest.fixture(scope="module")
def fig2_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted Fig. 2 run."""
    return uninterrupted(tmp_path_factory, "fig2-reference", FIG2)


_TASK_DATA = regression._Task.data


def _signal_in_segment(segment: int, signum: int) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """A stand-in for regression._Task.data that sends ``signum`` to this process when the training
    data of ``segment`` is drawn (before any learner trains on it)."""
    original = _TASK_DATA

    def data(self: regression._Task, tag: list[int], count: int) -> tuple[np.ndarray, np.ndarray]:
        if tag == [1, segment]:
            os.kill(os.getpid(), signum)
        return original(self, tag, count)

    return data


def test_regression_interrupt_twice_and_resume_bit_for_bit(fig2_reference: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT in segment 2, then SIGTERM in segment 7 of the resumed run: each time the run stops at the
    next chunk boundary and checkpoints the last segment boundary (not yet on disk: every 3 segments);
    the second --resume ends bit for bit equal to the uninterrupted run: the microcircuit's and the
    shallow learner's ensemble weights, traces and state, backprop's W and b, the seeds' keys,
    traces.npz, every metric row and the summary."""
    out = tmp_path / "run"
    monkeypatch.setattr(regression._Task, "data", _signal_in_segment(2, signal.SIGINT))
    r = cli("run", *FIG2, "--out", out)
    assert r.exit_code == 130, r.output
    assert r.stderr.strip().count("\n") == 0
    assert "interrupted by SIGINT after 10 of 60 patterns" in r.stderr and "--resume" in r.stderr
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [10]
    ck = load_checkpoint(latest_checkpoint(out / "checkpoints"), resume_config(out))
    assert set(FIG2_TREES) <= ck.trees.keys() and ck.counters["segment"] == 2
    assert ck.trees["weights"]["W/0"].shape[0] == 2 and jax.random.key_data(ck.key).shape[0] == 2  # per seed
    assert not (out / "summary.json").exists() and not (out / "traces.npz").exists()
    assert [x["patterns"] for x in rows(out)] == [0, 5, 10]

    monkeypatch.setattr(regression._Task, "data", _signal_in_segment(7, signal.SIGTERM))
    r = cli("run", "--resume", out)
    assert r.exit_code == 143, r.output
    assert "resuming from" in r.output and "interrupted by SIGTERM after 35 of 60 patterns" in r.stderr
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [30, 35]
    assert [x["patterns"] for x in rows(out)] == list(range(0, 36, 5))

    monkeypatch.undo()
    _skip_figures(monkeypatch)
    r = cli("run", "--resume", out)
    assert r.exit_code == 0, r.output
    assert_same_run(fig2_reference, out, 60, 5, FIG2_TREES)
    assert [e["event"] for e in events(out)] == ["interrupted", "resumed", "interrupted", "resumed"]


def test_regression_resume_refusals(fig2_reference: Path, tmp_path: Path) -> None:
    """An unfinished copy of the Fig. 2 run: checkpoints written for another configuration (3 seeds in
    config.toml, 2 in the checkpoints) are refused with one line naming each file and the problem; a newest
    checkpoint without the baselines is skipped (named, with its problem) for the next older one, from
    which the run ends exactly as the reference; with every checkpoint truncated, resume is refused."""
    out = tmp_path / "run"
    shutil.copytree(fig2_reference, out)
    (out / "summary.json").unlink()
    newest = latest_checkpoint(out / "checkpoints")
    cfg = (out / "config.toml").read_text()
    assert "n_seeds = 2" in cfg
    (out / "config.toml").write_text(cfg.replace("n_seeds = 2", "n_seeds = 3"))
    r = cli("run", "--resume", out)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert str(newest) in r.stderr and "another configuration" in r.stderr and "n_seeds" in r.stderr

    (out / "config.toml").write_text(cfg)
    ck = load_checkpoint(newest)
    save_checkpoint(out / "checkpoints" / "ckpt-000000000065.npz", ck.config,
                    {k: ck.trees[k] for k in ("weights", "traces", "state")}, counters=ck.counters, meta=ck.meta)
    r = cli("run", "--resume", out)
    assert r.exit_code == 0, r.output
    assert "skipping checkpoint ckpt-000000000065.npz" in r.output and "holds no 'shallow'" in r.output
    assert_same_results(fig2_reference, out, warned="skipping checkpoint ckpt-000000000065.npz")

    (out / "summary.json").unlink()
    (out / "checkpoints" / "ckpt-000000000065.npz").unlink()
    for _, p in list_checkpoints(out / "checkpoints"):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    r = cli("run", "--resume", out)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert str(newest) in r.stderr and "truncated or corrupted" in r.stderr
    assert not (out / "summary.json").exists()


def test_regression_divergence_names_the_learner_and_the_run_time(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The shallow learner's third segment (trials 4-6, 400-600 ms) gets noise σ = 1e5 and blows up: one
    line naming the quantity, the layer, the run's simulated time (600 ms, the end of that chunk; not the
    ensemble call's own 200 ms), the learner and the last good checkpoint (patterns 4, written then:
    checkpoint_every = 0); the event is logged and the last good state inside the segment is kept."""
    original = regression.simulate_ensemble
    shallow_segments = []

    def noisy(m: Model, *args: Any, plastic: bool = True, **kw: Any) -> Any:
        if plastic and m.plasticity.eta_W[0] == 0.0:  # the shallow learner (W_1 frozen)
            shallow_segments.append(1)
            if len(shallow_segments) == 3:
                m = dataclasses.replace(m, simulation=dataclasses.replace(m.simulation, sigma=1e5))
        return original(m, *args, plastic=plastic, **kw)

    monkeypatch.setattr(regression, "simulate_ensemble", noisy)
    out = tmp_path / "run"
    r = cli("run", "fig2-quick", "--out", out, "--no-progress", "--set", "stimulus.n_patterns=10",
            "--set", "schedule.segment=2", "--set", "schedule.n_test=3", "--set", "schedule.checkpoint_every=0")
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: simulation diverged: u")
    assert "of ensemble member" in line and "t = 600 ms" in line
    assert "(training the shallow ensemble, segment 2, patterns 4-6)" in line
    ev = events(out)[-1]
    assert ev["event"] == "diverged" and ev["time_ms"] == 600 and ev["patterns"] == 4
    assert f"of layer {ev['layer']}" in line
    path = Path(line.split("last good checkpoint: ")[1])
    assert path == Path(ev["checkpoint"]) == out / "checkpoints" / "ckpt-000000000004.npz"
    ck = load_checkpoint(path, resume_config(out))
    assert ck.counters["patterns"] == 4 and [x["patterns"] for x in ck.meta["rows"]] == [0, 2, 4]
    assert all(np.all(np.isfinite(a)) for t in FIG2_TREES for a in ck.trees[t].values())
    good = load_checkpoint(out / "checkpoints" / "diverged-last-good.npz")
    assert all(np.all(np.isfinite(a)) for a in good.trees["weights"].values())
    assert not (out / "summary.json").exists()


# --------------------------------------------------------------------------------------------------
# The backprop-link analysis: seconds long, no checkpoints, restarted on --resume

BACKPROP_LINK = ["backprop-link", "--set", "network.sizes=[4,3,2]", "--set", "stimulus.batch=2", "--no-progress"]


def test_backprop_link_interrupt_and_resume_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT during the 13th of 20 sweep points: the analysis stops before the next one with one line
    and exit 130, leaving config.toml, environment.json and metrics.jsonl (the finished block's rows and
    an ``interrupted`` event) and no results; --resume runs it again from the start, to the results of
    an uninterrupted run, without duplicated rows; resuming the complete run does nothing."""
    reference = tmp_path / "reference"
    r = cli("run", *BACKPROP_LINK, "--out", reference)
    assert r.exit_code == 0, r.output

    original, calls = backprop_link.link, []

    def link(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 13:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kw)

    monkeypatch.setattr(backprop_link, "link", link)
    out = tmp_path / "run"
    r = cli("run", *BACKPROP_LINK, "--out", out)
    assert r.exit_code == 130, r.output
    assert r.stderr.strip().count("\n") == 0
    assert "interrupted by SIGINT (13 of 20 sweep points done)" in r.stderr and f"--resume {out}" in r.stderr
    assert len(calls) == 13
    assert {p.name for p in out.iterdir()} == {RunDir.MARKER, "config.toml", "environment.json", "metrics.jsonl"}
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m.get("event") for m in metrics] == [None] * 10 + ["interrupted"]

    monkeypatch.setattr(backprop_link, "link", original)
    r = cli("run", "--resume", out)
    assert r.exit_code == 0, r.output
    assert [e["event"] for e in events(out)] == ["interrupted", "resumed"]
    assert len(rows(out)) == 20
    assert_same_results(reference, out)
    r = cli("run", "--resume", out)
    assert r.exit_code == 0 and "already complete" in r.output


# --------------------------------------------------------------------------------------------------
# Fig. 1: init/ (a Fig. S1 run, checkpointed) and then the target phase (seconds, restarted on resume)

# init/: a tiny Fig. S1 of 4 segments of 5 patterns × 100 ms on the 5-4-3 network, a checkpoint after
# every segment; then 1 + 40 patterns × 100 ms of the target phase (41 000 steps: simulate chunks of 20 000,
# 20 000 and 1 000 steps).
FIG1 = ["fig1-quick", "--set", 'init_from="preset:tiny-s1"', "--set", "network.sizes=[5,4,3]",
        "--set", "stimulus.n_patterns=40", "--no-progress"]
FIG1_INIT_PATTERNS, FIG1_INIT_SEGMENT = 20, 5


def _tiny_s1(quick: bool) -> Config:
    """The preset ``tiny-s1`` that FIG1 runs into init/."""
    return apply_overrides(fig_s1(quick), ["stimulus.n_patterns=20", "schedule.segment=5", "schedule.n_test=3",
                                           "schedule.settle=5"])


@pytest.fixture(scope="module")
def fig1_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted Fig. 1 run (init/ included)."""
    out = tmp_path_factory.mktemp("fig1-reference") / "run"
    with pytest.MonkeyPatch.context() as mp:
        _skip_figures(mp)
        mp.setitem(PRESETS, "tiny-s1", _tiny_s1)
        r = cli("run", *FIG1, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_fig1_interrupt_in_init_and_in_the_target_phase_then_resume(fig1_reference: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM in segment 2 of init/: the Fig. S1 sub-run stops at the end of that segment (its only
    chunk), checkpoints it as usual (patterns 15) and the run exits 143 with
    one line whose resume hint names the Fig. 1 folder (not init/). SIGINT in the target phase of the
    resumed run: it stops after the simulation's first chunk (20 000 of 41 000 steps) with one line and
    exit 130, signal handlers restored, init/ complete, and no results or metric rows of the phase in the
    folder. The last --resume reuses init/ as it is and runs the phase again: traces.npz, metric rows and
    summary bit for bit equal to the uninterrupted run's, and init/ equal to its init/."""
    monkeypatch.setitem(PRESETS, "tiny-s1", _tiny_s1)
    out = tmp_path / "run"
    original_inputs = self_prediction.random_inputs

    def inputs(cfg: Any, segment: int, n: int) -> Any:
        if segment == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_inputs(cfg, segment, n)

    monkeypatch.setattr(self_prediction, "random_inputs", inputs)
    r = cli("run", *FIG1, "--out", out)
    assert r.exit_code == 143, r.output
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("init/: interrupted by SIGTERM after 15 of 20 patterns")  # a one-chunk segment ends
    assert r.stderr.strip().endswith(f"--resume {out}") and f"--resume {out / 'init'}" not in r.stderr
    assert [i for i, _ in list_checkpoints(out / "init" / "checkpoints")] == [10, 15]
    assert not (out / "init" / "summary.json").exists() and not (out / "summary.json").exists()
    assert [e["event"] for e in events(out)] == ["interrupted"]

    monkeypatch.setattr(self_prediction, "random_inputs", original_inputs)
    original_simulate, reports = target_propagation.simulate, []

    def simulate(*args: Any, **kw: Any) -> Any:
        if kw.get("record") is not None:  # the target phase: SIGINT during its first chunk report
            report = kw["progress"]

            def progress(steps: int) -> None:
                reports.append(steps)
                if len(reports) == 1:
                    os.kill(os.getpid(), signal.SIGINT)
                report(steps)

            kw["progress"] = progress
        return original_simulate(*args, **kw)

    monkeypatch.setattr(target_propagation, "simulate", simulate)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    r = cli("run", "--resume", out, "--no-progress")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert r.exit_code == 130, r.output
    assert "resuming from" in r.output  # init/ continued from its checkpoint
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("interrupted by SIGINT (20000 of 41000 steps of the target phase done; init/ is "
                               "complete and kept)") and r.stderr.strip().endswith(f"--resume {out} runs it again "
                                                                                   "from the start")
    assert reports == [20000]
    assert {p.name for p in out.iterdir()} == {RunDir.MARKER, "config.toml", "environment.json", "metrics.jsonl",
                                               "init"}
    assert rows(out) == [] and [e["event"] for e in events(out)] == ["interrupted", "resumed", "interrupted"]
    init_summary = (out / "init" / "summary.json").read_bytes()

    monkeypatch.setattr(target_propagation, "simulate", original_simulate)
    r = cli("run", "--resume", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert (out / "init" / "summary.json").read_bytes() == init_summary  # init/ was not run again
    assert_same_results(fig1_reference, out)
    assert_same_run(fig1_reference / "init", out / "init", FIG1_INIT_PATTERNS, FIG1_INIT_SEGMENT)
    assert [e["event"] for e in events(out)] == ["interrupted", "resumed", "interrupted", "resumed"]
    r = cli("run", "--resume", out, "--no-progress")
    assert r.exit_code == 0 and "already complete" in r.output
