"""Runs that can be trusted (docs/runs.md): run folders, checkpoints and resume (bit for bit in float32 on
CPU), SIGINT/SIGTERM on a real subprocess, divergence, and the CLI's one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microcircuit.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from microcircuit.cli import main
from microcircuit.config import ConfigError
from microcircuit.experiments import self_prediction
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


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures are slow to draw and not what is tested here (subprocesses still draw them)."""
    monkeypatch.setattr(self_prediction, "_figures", lambda *a, **k: None)


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


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-for-bit equal results: final weights, filter traces, state and recorded traces; traces.npz;
    every metric row; the summary (wall-clock times aside)."""
    ca, cb = (load_checkpoint(latest_checkpoint(p / "checkpoints")) for p in (a, b))
    assert ca.counters["patterns"] == cb.counters["patterns"] == N_PATTERNS
    for tree in ("weights", "traces", "state", "recorded"):
        assert ca.trees[tree].keys() == cb.trees[tree].keys()
        for k in ca.trees[tree]:
            np.testing.assert_array_equal(ca.trees[tree][k], cb.trees[tree][k], err_msg=f"{tree}/{k}")
    with np.load(a / "traces.npz") as ta, np.load(b / "traces.npz") as tb:
        assert sorted(ta.files) == sorted(tb.files)
        for k in ta.files:
            np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    ra, rb = rows(a), rows(b)
    assert [r["patterns"] for r in ra] == list(range(0, N_PATTERNS + 1, SEGMENT))  # no duplicated rows
    assert ra == rb
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    sa.pop("wall_s"), sb.pop("wall_s")
    assert sa == sb


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(self_prediction, "_figures", lambda *a, **k: None)
        r = cli("run", *RUN, "--out", out)
    assert r.exit_code == 0, r.output
    return out


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
    assert RunDir.create(tmp_path, overwrite=True) and not list(tmp_path.iterdir())


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

    # a finished run resumed reports that it is complete and changes nothing
    metrics = (out / "metrics.jsonl").read_text()
    r = cli("run", "--resume", out, "--set", "schedule.checkpoint_every=2")  # allowed: no effect on results
    assert r.exit_code == 0 and "already complete" in r.output
    assert (out / "metrics.jsonl").read_text() == metrics


def test_resume_from_scratch_when_killed_before_the_first_checkpoint(reference: Path, tmp_path: Path) -> None:
    """A folder with only config.toml, environment.json and a metrics line cut short by a hard kill:
    --resume starts over, drops the partial line, and gives the same results."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("config.toml", "environment.json"):
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
    r = cli("run", "--resume", out)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert str(newest) in r.stderr and "corrupted" in r.stderr
    # a checkpoint written for another configuration
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


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_kill_a_real_run_and_resume_it(reference: Path, tmp_path: Path, signum: int) -> None:
    """``python -m microcircuit.cli run`` gets SIGINT/SIGTERM once its first checkpoint is on disk:
    it exits 130/143 with one line, leaves a loadable checkpoint and intact files; ``--resume`` then
    completes the run, bit for bit equal to the uninterrupted one."""
    out = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp_path.parent / "jax-cache")}
    cmd = [sys.executable, "-m", "microcircuit.cli"]
    proc = subprocess.Popen([*cmd, "run", *RUN, "--out", str(out)], stdout=subprocess.PIPE,
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
    assert 0 < done[-1] < N_PATTERNS
    ck = load_checkpoint(latest_checkpoint(out / "checkpoints"), resume_config(out))
    assert str(latest_checkpoint(out / "checkpoints")) in stderr
    assert [x["patterns"] for x in rows(out)] == [x["patterns"] for x in ck.meta["rows"]]
    json.loads((out / "environment.json").read_text())
    assert not (out / "summary.json").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    resumed = subprocess.run([*cmd, "run", "--resume", str(out), "--no-progress"], capture_output=True,
                             text=True, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference, out)
