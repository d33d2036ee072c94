"""Nothing lost, nothing silent (docs/runs.md): run folders that --overwrite may replace, checks before
anything is written, settings that would be ignored, learning that silently does nothing, dt close to the
Euler bound, checkpoint fallback, signals honoured at the next chunk, a full disk, and the property that
every command ends in a clean run or one line of error — never a traceback. Faults a user meets on the
command line are provoked in real subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microcircuit as mc
from microcircuit.checkpoint import list_checkpoints
from microcircuit.cli import main
from microcircuit.config import ConfigError
from microcircuit.experiments import mnist, self_prediction
from microcircuit.preflight import dt_warnings, preflight, unused_settings
from microcircuit.presets import get_preset, preset_names
from microcircuit.runs import RunDir, RunDirError

ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
TINY_S1 = ["--set", "stimulus.n_patterns=20", "--set", "schedule.segment=10", "--set", "schedule.n_test=5",
           "--no-progress"]  # fmt: skip
TINY_MNIST = ["--set", "training.epochs=2", "--set", "training.n_train=200", "--set", "training.n_validation=100",
              "--no-progress"]  # fmt: skip


def sets(base: list[str], *texts: str) -> list[str]:
    """The --set list ``base`` with ``texts`` added, each replacing the same key there (a key is given once)."""
    keys = {t.split("=", 1)[0] for t in texts}
    out: list[str] = []
    args = iter(base)
    for a in args:
        if a == "--set":
            value = next(args)
            if value.split("=", 1)[0] not in keys:
                out += [a, value]
        else:
            out.append(a)
    return out + [x for t in texts for x in ("--set", t)]


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def proc(*args: str | Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``microcircuit ARGS`` in a real process."""
    return subprocess.run([sys.executable, "-m", "microcircuit.cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout, **kw)


def one_line_error(r: subprocess.CompletedProcess | Result, *words: str) -> str:
    """The run failed with exit status 2 and one line on stderr that names ``words``; no traceback."""
    code = r.returncode if isinstance(r, subprocess.CompletedProcess) else r.exit_code
    out = r.stdout + r.stderr
    assert code == 2, out
    assert "Traceback" not in out
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: "), line
    for w in words:
        assert w in line, (w, line)
    return line


def events(run: Path, kind: str | None = None) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "event" in r and (kind is None or r["event"] == kind)]


# --------------------------------------------------------------------------------------------------
# --overwrite never deletes a user's files


def test_overwrite_refuses_a_folder_that_is_not_a_run_folder(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("thesis")
    r = proc("run", "--out", precious, "--overwrite", *TINY_S1)
    one_line_error(r, str(precious), "not a microcircuit run folder")
    assert [p.name for p in precious.iterdir()] == ["thesis.txt"]
    assert (precious / "thesis.txt").read_text() == "thesis"


def test_overwrite_replaces_a_run_folder_only_after_every_check(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", "--out", run, *TINY_S1).exit_code == 0
    assert (run / RunDir.MARKER).is_file()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    # a data-path typo: refused before the folder is touched
    r = cli("run", "mnist", "--quick", "--out", run, "--overwrite", "--set", "training.data=/no/such/mnist.npz")
    one_line_error(r, "/no/such/mnist.npz")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # a valid run replaces it
    r = cli("run", "mnist", "--quick", "--out", run, "--overwrite", *TINY_MNIST)
    assert r.exit_code == 0, r.output
    assert json.loads((run / "summary.json").read_text())["method"] == "microcircuit"
    if (run / "traces.npz").exists():
        with np.load(run / "traces.npz") as traces:
            assert "self_prediction" not in traces.files


def test_rundir_create_refuses_to_overwrite_unmarked_folders(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a microcircuit run folder"):
        RunDir.create(tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    marked = RunDir.create(tmp_path / "run")
    marked.write_config(get_preset("fig-s1"))
    (marked.path / "old.txt").write_text("not written by the run")
    (marked.path / "sub").mkdir()
    again = RunDir.create(marked.path, overwrite=True)  # removes what the run wrote, keeps the rest (issue 39)
    assert sorted(p.name for p in again.path.iterdir()) == [RunDir.MARKER, "old.txt", "sub"]
    assert again.kept == ["old.txt", "sub/"]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def test_overwrite_keeps_what_the_user_added_and_removes_what_the_run_wrote(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 39: a run folder belongs to its run. --overwrite removes the files a run writes (those of another
    experiment's earlier run too: MNIST's weights, a figure, an extended summary, a sub-run, a leftover
    temporary file) and keeps every file the user added, naming them in one line on stderr."""
    monkeypatch.setattr(self_prediction, "_figures", lambda *a, **k: None)  # slow to draw, not tested here
    run = tmp_path / "run"
    assert cli("run", "--out", run, *sets(TINY_S1, "stimulus.n_patterns=30")).exit_code == 0
    assert [i for i, _ in list_checkpoints(run / "checkpoints")] == [20, 30]
    (run / "notes.txt").write_text("my notes")
    (run / "analysis").mkdir()
    (run / "analysis" / "plot.py").write_text("print('mine')")
    (run / "checkpoints" / "README").write_text("mine too")
    (run / "checkpoints" / "fa").mkdir()
    (run / "checkpoints" / "fa" / "why.txt").write_text("mine as well")
    stale = ["learning_curve.png", "weights_best.npz", "summary-3-epochs.json", ".traces.npz.k2j4.tmp", "failed.json",
             "settle-dt0.1.json", "checkpoints/diverged-last-good.npz", "init/.microcircuit-run", "init/config.toml",
             "init/checkpoints/ckpt-000000000005.npz", "pal_yinyang_pal.json",
             "checkpoints/pal/ckpt-000000000010.npz", "checkpoints/fa/ckpt-000000000010.npz"]  # fmt: skip
    for name in stale:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("an earlier run's")
    r = cli("run", "--out", run, "--overwrite", *TINY_S1)
    assert r.exit_code == 0, r.output
    assert r.stderr.strip() == f"--overwrite kept what microcircuit did not write in {run}: analysis/, " \
                               "checkpoints/README, checkpoints/fa/why.txt, notes.txt"
    assert (run / "notes.txt").read_text() == "my notes" and (run / "analysis" / "plot.py").is_file()
    assert (run / "checkpoints" / "README").read_text() == "mine too"
    assert not [name for name in stale if (run / name).exists()] and not (run / "init").exists()
    assert not (run / "checkpoints" / "pal").exists()  # an arm's checkpoint folder goes once empty
    assert [i for i, _ in list_checkpoints(run / "checkpoints")] == [10, 20]  # the new run's only
    assert json.loads((run / "summary.json").read_text())["patterns"] == 20


def test_resume_refuses_a_folder_that_microcircuit_did_not_make(tmp_path: Path) -> None:
    """Issue 39: --resume never adopts a folder without the run-folder marker (one holding a config.toml
    written by hand, say): one line, exit status 2, nothing in it changes, and --overwrite still refuses it."""
    from microcircuit.config import to_toml

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.toml").write_text(to_toml(get_preset("fig-s1", quick=True)))
    (mine / "notes.txt").write_text("mine")
    before = snapshot(mine)
    one_line_error(cli("run", "--resume", mine, "--no-progress"), f"cannot resume {mine}",
                   "not a run folder made by microcircuit", RunDir.MARKER)
    assert snapshot(mine) == before
    with pytest.raises(RunDirError, match="not a run folder made by microcircuit"):
        RunDir.create(mine, resume=True)
    one_line_error(cli("run", "--out", mine, "--overwrite", *TINY_S1), "not a microcircuit run folder")
    assert snapshot(mine) == before


# --------------------------------------------------------------------------------------------------
# Every check before the run folder is written


@pytest.mark.parametrize(("args", "words"), [
    (["mnist", "--quick", "--set", "network.sizes=[100,500,500,10]"], ["network.sizes", "100", "784 pixels"]),
    (["mnist", "--quick", "--set", "network.sizes=[784,500,500,5]"], ["network.sizes", "5", "10 classes"]),
    (["mnist", "--quick", "--set", "training.batch=100000"], ["training.batch", "no mini-batch fits"]),
    (["mnist", "--quick", "--set", "training.n_train=5"], ["training.batch = 10", "training.n_train = 5"]),
    (["fig-s1", "--set", "simulation.dt=0.8"], ["schedule.settle", "whole number", "simulation.dt"]),
    (["fig-s1", "--set", "simulation.integrator=exponential", "--set", "simulation.dt=200"],
     ["stimulus.duration", "whole number"]),
    (["mnist-dynamics", "--quick", "--set", "training.eval_duration=20.25"], ["training.eval_duration"]),
    (["fig-s1", "--set", "plasticity.defer=7"], ["plasticity.defer = 7", "must divide"]),
    (["fig-s1", "--set", "stimulus.kind=teacher"], ["stimulus.kind", "not used", "self_prediction"]),
    (["fig-s1", "--set", "init_from=/nonexistent"], ["init_from", "not used"]),
    (["mnist", "--quick", "--set", "init_from=/nonexistent"], ["init_from", "not used"]),
    (["mnist", "--quick", "--set", "simulation.dt=0.5"], ["simulation.dt", "not used"]),
    (["fig-s1", "--set", "simulation.update_order=synchronous"], ["simulation.update_order", "not used"]),
    (["mnist-backprop", "--quick", "--set", "plasticity.eta_W=0.1"], ["plasticity.eta_W", "not used"]),
    (["fig1", "--quick", "--set", "init_from=/nonexistent"], ["init_from", "/nonexistent", "does not exist"]),
    (["fig1", "--quick", "--set", "init_from=preset:fig-s9"], ["init_from", "fig-s9"]),
])  # fmt: skip
def test_bad_settings_are_refused_before_anything_is_written(tmp_path: Path, args: list[str],
                                                             words: list[str]) -> None:
    """In a real process: one line naming the key, exit status 2, and no run folder."""
    out = tmp_path / "run"
    one_line_error(proc("run", *args, "--out", out, "--no-progress"), *words)
    assert not out.exists()


def test_init_from_an_unfinished_or_unfitting_run_is_refused(tmp_path: Path) -> None:
    """Refused before the new run folder exists; the source run is only read, and the message never
    advises removing its checkpoints."""
    s1 = tmp_path / "s1"
    assert cli("run", "fig-s1", "--out", s1, *TINY_S1, "--set", "network.sizes=[30,20,10]").exit_code == 0
    summary = (s1 / "summary.json").read_bytes()
    (s1 / "summary.json").unlink()  # as if it had been stopped half-way
    r = cli("run", "fig1", "--quick", "--set", f"init_from={s1}", "--out", tmp_path / "f1", "--no-progress")
    one_line_error(r, "init_from", "has not finished", "--resume")
    assert not (tmp_path / "f1").exists()

    (s1 / "summary.json").write_bytes(summary)
    before = {p.name: p.read_bytes() for p in (s1 / "checkpoints").iterdir()}
    r = cli("run", "fig1", "--quick", "--set", f"init_from={s1}", "--set", "network.sizes=[5,4,3]",
            "--out", tmp_path / "f1", "--no-progress")
    line = one_line_error(r, "init_from", "cannot start this network", "[5, 4, 3]", "expected (4, 5)")
    assert "remove" not in line
    assert not (tmp_path / "f1").exists()
    assert {p.name: p.read_bytes() for p in (s1 / "checkpoints").iterdir()} == before


def test_every_preset_passes_its_own_checks_and_reads_every_key_it_sets() -> None:
    """No preset trips the checks; a preset written out as a full config file is not flagged either."""
    from microcircuit.checkpoint import config_differences

    for name in preset_names():
        cfg = get_preset(name, quick=True)
        assert preflight(cfg) == [], name
        assert unused_settings(cfg, config_differences(get_preset(name), get_preset(name))) == []


def test_unused_settings_follow_the_method() -> None:
    cfg = get_preset("mnist", quick=True)
    assert unused_settings(cfg, ["simulation.dt", "training.lr_backprop", "plasticity.eta_W"]) == [
        "simulation.dt", "training.lr_backprop"]
    dyn = get_preset("mnist-dynamics", quick=True)
    assert unused_settings(dyn, ["simulation.dt", "training.eval_duration", "training.n_passes"]) == [
        "training.n_passes"]
    assert unused_settings(cfg, ["training.loss"]) == ["training.loss"]  # only backprop has an output loss
    assert unused_settings(get_preset("mnist-backprop", quick=True), ["training.loss", "plasticity.eta_W"]) == [
        "plasticity.eta_W"]
    # rule (9)'s state is a choice of the steady-state microcircuit only
    assert unused_settings(cfg, ["training.rule9_state"]) == []
    for other in ("mnist-backprop", "mnist-dynamics"):
        assert unused_settings(get_preset(other, quick=True), ["training.rule9_state"]) == ["training.rule9_state"]
    assert "stimulus.kind" in self_prediction.unused(get_preset("fig-s1"))
    assert "training" in self_prediction.unused(get_preset("fig-s1"))
    # PAL lives in the continuous-time simulator: the regression-type experiments and the MNIST runner's
    # continuous time read it, the steady-state and feed-forward methods do not
    for name in ("mnist", "mnist-backprop", "le-bars", "backprop-link"):
        assert unused_settings(get_preset(name, quick=True), ["pal.enabled", "pal.eta_B"]) == [
            "pal.enabled", "pal.eta_B"], name
    for name in ("fig2-fast", "mnist-dynamics", "mnist-dynamics-le"):
        assert unused_settings(get_preset(name, quick=True), ["pal.enabled"]) == [], name
    # the steady state integrates nothing: prospective potentials matter only to a settle check after training
    assert unused_settings(cfg, ["simulation.prospective"]) == ["simulation.prospective"]
    assert unused_settings(get_preset("mnist-backprop", quick=True), ["simulation.prospective"]) == [
        "simulation.prospective"]
    settled = mc.apply_overrides(get_preset("scaling", quick=True), ["training.settle_images=10"])
    assert unused_settings(settled, ["simulation.prospective"]) == []
    assert unused_settings(get_preset("mnist-dynamics", quick=True), ["simulation.prospective"]) == []


# --------------------------------------------------------------------------------------------------
# dt close to the Euler bound


def test_dt_near_the_euler_bound_warns_with_dt_and_the_bound(tmp_path: Path) -> None:
    cfg = mc.apply_overrides(get_preset("fig-s1", quick=True), ["simulation.dt=1.0"])
    (warning,) = dt_warnings(cfg)
    bound = 2 / (0.1 + 1.0 + 0.8)
    assert "simulation.dt = 1 ms" in warning and f"{bound:.3g} ms" in warning
    assert dt_warnings(get_preset("fig-s1")) == [] and dt_warnings(get_preset("mnist-dynamics")) == []
    assert dt_warnings(mc.apply_overrides(cfg, ["simulation.integrator=exponential"])) == []
    out = tmp_path / "run"
    r = cli("run", "--out", out, "--set", "simulation.dt=1.0", *TINY_S1)
    assert r.exit_code == 0, r.output
    assert r.stderr.count(warning) == 1  # printed once, when found
    assert json.loads((out / "summary.json").read_text())["warnings"] == [warning]
    assert [e["message"] for e in events(out, "warning")] == [warning]
    # --resume: printed once again (this start's check), logged again, recorded once
    (out / "summary.json").unlink()  # as if stopped after its last checkpoint
    r = cli("run", "--resume", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert r.stderr.count(warning) == 1
    assert json.loads((out / "summary.json").read_text())["warnings"] == [warning]
    # a sweep's trial records it the same way
    from microcircuit.sweep.worker import execute

    summary, skipped = execute(cfg, tmp_path / "trial")
    assert not skipped and summary["warnings"] == [warning]
    assert json.loads((tmp_path / "trial" / "summary.json").read_text())["warnings"] == [warning]


# --------------------------------------------------------------------------------------------------
# Learning that stops or never starts


def test_huge_rates_are_reported_not_silent(tmp_path: Path) -> None:
    out = tmp_path / "steady"
    r = cli("run", "mnist", "--quick", "--out", out, *TINY_MNIST, "--set", "plasticity.eta_W=100")
    assert r.exit_code == 0, r.output
    kinds = {e["kind"] for e in events(out, "warning")}
    assert {"chance", "growth", "ip"} <= kinds
    summary = json.loads((out / "summary.json").read_text())
    assert any("grew" in w for w in summary["warnings"]) and any("chance" in w for w in summary["warnings"])
    assert all(r.stderr.count(w) == 1 for w in summary["warnings"]), r.stderr  # each printed once
    out = tmp_path / "backprop"
    r = cli("run", "mnist-backprop", "--quick", "--out", out, *TINY_MNIST, "--set", "training.lr_backprop=10000")
    assert r.exit_code == 0, r.output
    assert "growth" in {e["kind"] for e in events(out, "warning")}


def test_progress_bars_only_on_a_terminal(tmp_path: Path) -> None:
    """Without --progress/--no-progress, a bar is drawn when stderr is a terminal and not into a pipe."""
    import fcntl
    import pty
    import struct
    import termios

    args = ("run", "mnist", "--quick", *TINY_MNIST[:-1])
    piped = proc(*args, "--out", tmp_path / "piped")
    assert piped.returncode == 0, piped.stderr
    assert "batch/s" not in piped.stderr and "\r" not in piped.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal of 100 columns
    seen = b""
    try:
        p = subprocess.Popen([sys.executable, "-m", "microcircuit.cli", *args, "--out", str(tmp_path / "tty")],
                             stdout=subprocess.DEVNULL, stderr=follower, env=ENV)
        os.close(follower)
        with contextlib.suppress(OSError):  # read while it runs (a full terminal would block it); EIO at its end
            while chunk := os.read(leader, 65536):
                seen += chunk
        assert p.wait(timeout=300) == 0, seen.decode(errors="replace")
    finally:
        os.close(leader)
    assert b"batch" in seen and b"epoch 1/2" in seen  # the epoch's bar


def test_a_healthy_run_has_no_warnings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli("run", "mnist", "--quick", "--out", out, "--set", "training.epochs=2", "--no-progress").exit_code == 0
    assert events(out, "warning") == [] and json.loads((out / "summary.json").read_text())["warnings"] == []


def test_no_mini_batch_is_an_error_in_the_runner_too() -> None:
    cfg = mc.apply_overrides(get_preset("mnist", quick=True), ["training.n_train=5"])
    with pytest.raises(ConfigError, match="no mini-batch fits"):
        mnist.run(cfg, None)


def test_steady_state_nan_names_the_matrix_and_the_rate_to_lower(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = cli("run", "mnist-backprop", "--quick", "--out", out, *TINY_MNIST, "--set", "training.lr_backprop=1e38")
    line = one_line_error(r, "training diverged", "became NaN/Inf", "lower training.lr_backprop")
    assert "layer 0" not in line and "None" not in line and "conductances" not in line
    assert "no checkpoint" not in line or "epoch 1" in line


# --------------------------------------------------------------------------------------------------
# Resume falls back to the newest valid checkpoint


def test_resume_skips_a_corrupt_newest_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = cli("run", "--out", run, "--set", "stimulus.n_patterns=40", "--set", "schedule.segment=10",
            "--set", "schedule.n_test=5", "--set", "schedule.keep_checkpoints=2", "--no-progress")
    assert r.exit_code == 0, r.output
    final = json.loads((run / "summary.json").read_text())
    (run / "summary.json").unlink()  # as if killed before the end
    (older, _), (_newest, path) = list_checkpoints(run / "checkpoints")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    r = proc("run", "--resume", run, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"skipping checkpoint {path.name}" in r.stdout + r.stderr
    assert f"ckpt-{older:012d}.npz" in r.stdout
    resumed = [e for e in events(run, "resumed")]
    assert resumed[-1]["patterns"] == older
    again = json.loads((run / "summary.json").read_text())
    assert again["headline"] == final["headline"]  # recomputed from the older checkpoint, same result


def test_mnist_resume_logs_its_event_and_falls_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", "mnist", "--quick", "--out", run, *sets(TINY_MNIST, "training.epochs=3")).exit_code == 0
    (run / "summary.json").unlink()
    path = list_checkpoints(run / "checkpoints")[-1][1]
    path.write_bytes(path.read_bytes()[:100])  # truncated
    r = cli("run", "--resume", run, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "skipping checkpoint ckpt-000000000003.npz" in r.output
    (ev,) = events(run, "resumed")
    assert ev["epoch"] == 2 and ev["checkpoint"].endswith("ckpt-000000000002.npz")


def test_resume_with_no_usable_checkpoint_names_every_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", "mnist", "--quick", "--out", run, *TINY_MNIST).exit_code == 0
    (run / "summary.json").unlink()
    for _, p in list_checkpoints(run / "checkpoints"):
        p.write_bytes(b"not a checkpoint")
    one_line_error(cli("run", "--resume", run, "--no-progress"), "no usable checkpoint", "ckpt-000000000001",
                   "ckpt-000000000002")


# --------------------------------------------------------------------------------------------------
# Signals in step with the computation; wall time over every start


def _wait_for(p: subprocess.Popen, path: Path, text: str, timeout: float = 240) -> None:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if path.exists() and text in path.read_text():
            return
        assert p.poll() is None, "the run ended before the signal"
        time.sleep(0.05)
    raise AssertionError(f"{text!r} did not appear in {path}")


def test_sigterm_during_an_epoch_names_the_epoch_saved(tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "out.txt"
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "microcircuit.cli", "run", "mnist", "--quick", "--out", str(run),
                              "--set", "training.epochs=400", "--no-progress"], stdout=f, stderr=subprocess.PIPE,
                             text=True, env=ENV)
        _wait_for(p, log, "epoch   2 ")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    done = max(r["epoch"] for r in rows if "event" not in r)
    (ev,) = events(run, "interrupted")
    assert ev["epoch"] == done and ev["checkpoint"].endswith(f"ckpt-{done:012d}.npz")
    assert f"during epoch {done + 1}" in err and f"checkpoint of epoch {done}:" in err
    assert done < 20  # honoured within a chunk, not after the whole run


def test_sigterm_during_start_up_is_not_silent(tmp_path: Path) -> None:
    """A signal after the run folder is written but before the first epoch (loading data, compiling)."""
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "microcircuit.cli", "run", "mnist", "--quick", "--out", str(run),
                          "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    _wait_for(p, run / "config.toml", "")  # the handler is in place once the run folder exists
    p.send_signal(signal.SIGTERM)
    _out, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert p.returncode == 143 and "interrupted by SIGTERM" in err and "Traceback" not in err
    assert events(run, "interrupted")


def test_wall_time_counts_every_start(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", "mnist", "--quick", "--out", run, *TINY_MNIST).exit_code == 0
    first = json.loads((run / "summary.json").read_text())["wall_s"]
    (run / "summary.json").unlink()
    assert cli("run", "--resume", run, "--no-progress").exit_code == 0
    total = json.loads((run / "summary.json").read_text())["wall_s"]
    assert total > first and total == json.loads((run / "environment.json").read_text())["wall_s"]


# --------------------------------------------------------------------------------------------------
# A full disk: one line naming the path, what was written is kept


@contextlib.contextmanager
def small_disk(tmp_path: Path, kib: int) -> Iterator[tuple[Path, dict]]:
    """A folder on a tmpfs of ``kib`` KiB where the machine allows mounting one; else the same folder
    with the process's file size limited (RLIMIT_FSIZE, SIGXFSZ ignored), which fails writes with EFBIG."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
                             capture_output=True).returncode == 0
    try:
        if mounted:
            yield where, {}
        else:
            def limit() -> None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))

            yield where, {"preexec_fn": limit}
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], capture_output=True)


def test_full_disk_is_one_line_and_keeps_what_was_written(tmp_path: Path) -> None:
    with small_disk(tmp_path, 40) as (disk, kw):
        run = disk / "run"
        r = proc("run", "--out", run, "--set", "stimulus.n_patterns=500", "--set", "schedule.segment=100",
                 "--no-progress", **kw)
        line = one_line_error(r, "cannot write", str(run))
        assert any(s in line for s in ("No space left", "too large"))
        assert (run / "config.toml").read_text().startswith("name")  # complete, not cut short
        for ck in (run / "checkpoints").glob("ckpt-*.npz"):
            mc.checkpoint.load_checkpoint(ck)  # every checkpoint on disk is whole
        assert not list(run.rglob("*.tmp"))


def test_save_failure_is_a_run_dir_error_that_keeps_the_old_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunDir.create(tmp_path / "run")
    run.write_json("a.json", {"x": 1})

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", full)
    with pytest.raises(RunDirError, match=r"cannot write .*a\.json: No space left on device"):
        run.write_json("a.json", {"x": 2})
    assert json.loads((run.path / "a.json").read_text()) == {"x": 1}
    assert not list(run.path.glob("*.tmp"))


# --------------------------------------------------------------------------------------------------
# Smaller faults


def test_random_bytes_as_npz_name_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "mnist.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(3000))
    line = one_line_error(cli("run", "mnist", "--quick", "--set", f"training.data={junk}", "--out",
                              tmp_path / "r"), str(junk), "not an .npz")
    assert "pickle" not in line


def test_missing_mnist_gives_command_line_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROCIRCUIT_DATA", str(tmp_path / "empty"))
    line = one_line_error(cli("run", "mnist", "--out", tmp_path / "r"), "microcircuit data fetch-mnist",
                          "--set training.data=PATH")
    assert "load_mnist_subset()" not in line and "path=" not in line


def test_analyze_takes_no_progress(tmp_path: Path) -> None:
    r = cli("analyze", "backprop", "--help")
    assert "--no-progress" in r.output


def test_python_api_keys_and_complex_inputs() -> None:
    cfg = get_preset("fig-s1", quick=True)
    m = cfg.model
    w = mc.init_weights(m.network, m.conductances, jax.random.key(0))
    s = mc.init_state(m.network, 1)
    x = np.random.default_rng(0).random((2, 1, 30))
    a = mc.simulate(m, w, s, mc.Stream.of(x), duration=1.0, key=7)  # an int seed is a key
    b = mc.simulate(m, w, s, mc.Stream.of(x), duration=1.0, key=jax.random.key(7))
    np.testing.assert_array_equal(a.state.u[0], b.state.u[0])
    with pytest.raises(mc.InputError, match="key"):
        mc.simulate(m, w, s, mc.Stream.of(x), duration=1.0, key="7")
    with pytest.raises(mc.InputError, match=r"stream\.x.*complex"):
        mc.simulate(m, w, s, mc.Stream.of(x.astype(complex)), duration=1.0, key=7)
    with pytest.raises(mc.InputError, match=r"weights.*complex"):
        mc.simulate(m, w._replace(W=(w.W[0].astype(complex), *w.W[1:])), s, mc.Stream.of(x), duration=1.0, key=7)


# --------------------------------------------------------------------------------------------------
# Whatever the config: a clean run or one line, never a traceback

_NUMBERS = st.one_of(st.floats(-5, 200, allow_nan=False), st.integers(-3, 300), st.just(0), st.just(1e9),
                     st.sampled_from(["x", "[]", "true", "nan", "inf", "-1e400"]))
_KEYS = {
    "fig-s1": ["simulation.dt", "stimulus.duration", "schedule.settle", "schedule.segment", "stimulus.batch",
               "record.stride", "plasticity.eta_IP", "plasticity.tau_w", "plasticity.defer", "conductances.g_A",
               "network.init.W", "simulation.sigma", "simulation.tau_0", "stimulus.kind", "training.epochs",
               "init_from", "network.sizes", "seed", "record.quantities", "simulation.integrator", "nonsense"],
    "mnist": ["training.batch", "training.n_train", "training.epochs", "training.r_low", "training.r_high",
              "plasticity.eta_W", "plasticity.eta_IP", "stimulus.duration", "network.sizes", "training.lr_decay",
              "training.n_validation", "simulation.dt", "training.method", "training.n_passes", "network.bias",
              "training.data", "conductances.g_som", "seed", "schedule.keep_checkpoints"],
}
_SPECIAL = {
    "simulation.dt": st.sampled_from(["0.05", "0.1", "0.3", "0.8", "1.0", "2", "-1", "0", "'x'", "5e-324"]),
    "network.sizes": st.sampled_from(["[784,20,10]", "[5,4,3]", "[784,10]", "[784,0,10]", "[0]", "[784,30,20,10]",
                                      "[784,20,12]", "30"]),
    "training.method": st.sampled_from(["microcircuit", "backprop", "dynamics", "spiking"]),
    "simulation.integrator": st.sampled_from(["euler", "exponential", "rk4"]),
    "stimulus.kind": st.sampled_from(["teacher", "random_uniform", "bars"]),
    "record.quantities": st.sampled_from(["['u']", "['self_prediction','rates']", "['nothing']"]),
    "training.data": st.sampled_from(["mnist-subset", "nowhere.npz", "mnist-subsets"]),
    "init_from": st.sampled_from(["", "/nonexistent", "preset:fig-s1", "preset:"]),
    "plasticity.defer": st.sampled_from(["1", "auto", "5", "0", "'x'"]),
}
_SMALL = {"fig-s1": ["--set", "stimulus.n_patterns=4", "--set", "schedule.n_test=3", "--set", "network.sizes=[6,5,4]"],
          "mnist": ["--set", "training.n_train=100", "--set", "training.n_validation=50", "--set", "training.epochs=1",
                    "--set", "network.sizes=[784,20,10]"]}  # fmt: skip


@st.composite
def _command(draw: st.DrawFn) -> list[str]:
    preset = draw(st.sampled_from(sorted(_KEYS)))
    args = ["run", preset, "--quick", *_SMALL[preset], "--no-progress"]
    for key in draw(st.lists(st.sampled_from(_KEYS[preset]), max_size=3, unique=True)):
        value = draw(_SPECIAL.get(key, _NUMBERS))
        args += ["--set", f"{key}={value}"]
    return args


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=_command())
def test_any_config_ends_in_a_run_or_one_line(tmp_path_factory: pytest.TempPathFactory, command: list[str]) -> None:
    """Drawn whole commands, valid and invalid: exit 0 with a summary, or exit 2 with one line on stderr;
    never a traceback or an internal error (exit 1)."""
    out = tmp_path_factory.mktemp("run", numbered=True) / "r"
    if any("training.epochs=" in a and a.split("=")[1].lstrip("-").isdigit() and int(a.split("=")[1]) > 3
           for a in command):
        command = [a if "training.epochs=" not in a else "training.epochs=1" for a in command]
    r = cli(*command, "--out", out)
    assert r.exit_code in (0, 2), (command, r.output, r.exception)
    assert "Traceback" not in r.output
    if r.exit_code == 0:
        assert (out / "summary.json").is_file()
    else:
        line = r.stderr.strip()
        assert line.startswith("error: ") and "\n" not in line, (command, line)


def test_the_preflight_module_is_reachable_as_documented() -> None:
    """docs/runs.md names microcircuit.preflight.preflight and microcircuit.preflight.EULER_ACCURACY: the
    package attribute is the module, not a function that shadows it."""
    import microcircuit
    import microcircuit.preflight as module

    assert module is microcircuit.preflight and module.preflight is preflight
    assert microcircuit.preflight.EULER_ACCURACY == 1.0


def test_no_setting_is_silently_ignored_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 39.3: a key given twice with --set is refused; --set on --resume of a finished run that would change
    nothing is refused (only more training.epochs extends a finished run), and nothing in the folder changes; a
    config file without preset or experiment is refused with what to do; `show --defaults` prints every key and,
    with experiment set, loads back."""
    monkeypatch.setattr(self_prediction, "_figures", lambda *a, **k: None)
    r = cli("run", "fig-s1", "--quick", "--set", "seed=1", "--set", "seed=2", "--out", tmp_path / "twice")
    one_line_error(r, "--set seed is given twice")
    assert not (tmp_path / "twice").exists()

    run = tmp_path / "run"
    assert cli("run", "fig-s1", "--quick", *TINY_S1, "--out", run).exit_code == 0
    def files() -> dict[str, bytes | None]:  # the marker records each holder of the lock: not compared
        return {k: v for k, v in snapshot(run).items() if k != ".microcircuit-run"}

    before = files()
    r = cli("run", "--resume", run, "--set", "schedule.keep_checkpoints=5")  # a key --resume may change
    one_line_error(r, "the run is complete", "would change nothing", "training.epochs")
    assert files() == before
    r = cli("run", "--resume", run, "--set", "seed=1", "--set", "seed=1")
    one_line_error(r, "--set seed is given twice")

    (tmp_path / "scratch.toml").write_text("[network]\nsizes = [5, 4, 3]\n")
    one_line_error(cli("run", tmp_path / "scratch.toml", "--out", tmp_path / "s"), "neither preset", "experiment",
                   "show --defaults")
    assert not (tmp_path / "s").exists()

    r = cli("show", "--defaults")
    assert r.exit_code == 0 and "# experiment = " in r.output and "[pal]" in r.output and "[training]" in r.output
    (tmp_path / "full.toml").write_text(r.output.replace('# experiment = "..."', 'experiment = "regression"  #'))
    assert mc.load_toml(tmp_path / "full.toml") == mc.Config(experiment="regression")
    one_line_error(cli("show", "fig-s1", "--defaults"), "--defaults")
