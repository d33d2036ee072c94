"""`microcircuit analyze traces` and :mod:`microcircuit.analysis.traces`: the recorded arrays of a run folder
(a short fig-s1 run) or of a `simulate` result, listed with their meaning and plotted against time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from click.testing import CliRunner, Result

from microcircuit.analysis.traces import describe, load_traces, meaning, plot, select
from microcircuit.cli import main
from microcircuit.config import Record
from microcircuit.experiments.common import build
from microcircuit.presets import get_preset
from microcircuit.runs import RunDirError
from microcircuit.simulate import Stream, simulate

PNG = b"\x89PNG\r\n\x1a\n"


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def s1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished fig-s1 run of 250 patterns (one segment): train_/eval_ series, matrices, settled states."""
    out = tmp_path_factory.mktemp("traces") / "fig-s1"
    r = cli("run", "fig-s1", "--quick", "--set", "stimulus.n_patterns=250", "--no-progress", "--out", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def solution():
    """A 10 ms simulate() of the fig-s1 net with u, v_apical, weight norms and the self-prediction errors."""
    model, w, s = build(get_preset("fig-s1", quick=True))
    x = np.random.default_rng(0).uniform(0, 1, (2, s.u[0].shape[0], 30)).astype(np.float32)
    rec = Record(("u", "v_apical", "weight_norms", "self_prediction"), stride=10)
    return simulate(model, w, s, Stream.of(x), duration=5.0, key=jax.random.key(0), record=rec)


def test_the_listing_names_every_array_with_shape_dtype_and_meaning(s1: Path) -> None:
    r = cli("analyze", "traces", s1)
    assert r.exit_code == 0, r.output
    with np.load(s1 / "traces.npz") as z:
        arrays = {k: z[k] for k in z.files}
    lines = r.output.splitlines()
    assert lines[0] == f"{s1 / 'traces.npz'} (self_prediction run, {len(arrays)} arrays)"
    assert lines[1].split() == ["NAME", "SHAPE", "DTYPE", "AXES", "MEANING"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == list(arrays)  # every array, in the order written
    for name, a in arrays.items():
        shape = "×".join(map(str, a.shape))
        assert rows[name].split()[1:3] == [shape, str(a.dtype)], rows[name]
        assert meaning(name, "self_prediction"), name  # every array of the run has a meaning
    assert "apical mismatch ‖v_A,1‖²" in rows["train_apical_error_1"] and "time" in rows["train_apical_error_1"]
    assert "self-predicting value PI*_1" in rows["PI_target_1"] and "post, pre" in rows["PI_target_1"]


def test_series_are_plotted_against_their_own_time(s1: Path) -> None:
    infos = {i.name: i for i in describe(s1)}
    assert infos["train_apical_error_1"].axis == "train_time_ms"
    assert infos["eval_PI_distance_1"].axis == "eval_time_ms"
    assert infos["PI_1"].axis is None and infos["PI_1"].dims == ("post", "pre")
    r = cli("analyze", "traces", s1, "train_apical_error_1", "eval_*_distance_1", "PI_1")
    assert r.exit_code == 0, r.output
    out = s1 / "traces_train_apical_error_1+eval_PI_distance_1+eval_IP_distance_1+1-more.png"
    assert r.output.strip() == f"wrote {out}" and out.read_bytes()[:8] == PNG
    fig = plot(s1, ["train_apical_error_1", "PI_1"])
    line = fig.axes[0].get_lines()[0]
    with np.load(s1 / "traces.npz") as z:
        np.testing.assert_array_equal(line.get_xdata(), z["train_time_ms"])
        np.testing.assert_array_equal(line.get_ydata(), z["train_apical_error_1"])
        np.testing.assert_array_equal(fig.axes[1].get_images()[0].get_array(), z["PI_1"])
    assert fig.axes[0].get_xlabel() == "time (ms)"
    pdf = s1 / "figs" / "s1.pdf"  # --out: any format matplotlib writes, by its suffix; folders are made
    r = cli("analyze", "traces", s1, "train_inter_error_1", "--out", pdf)
    assert r.exit_code == 0 and pdf.read_bytes()[:4] == b"%PDF"


def test_a_simulate_result_is_described_and_plotted_the_same_way(solution) -> None:
    infos = {i.name: i for i in describe(solution)}
    assert set(infos) == {"time_ms", *solution.records}
    u2 = infos["u_2"]
    assert u2.shape == solution.records["u_2"].shape and u2.dims == ("time", "sample", "neuron")
    assert u2.axis == "time_ms" and u2.meaning == "somatic potentials u_2 of layer 2"
    assert infos["norm_W_1"].axis == "time_ms" and infos["norm_W_1"].meaning == "Frobenius norm ‖W_1‖"
    assert infos["inter_error_1"].meaning.startswith("interneuron mismatch ‖u_2 − u^I_1‖²")
    fig = plot(solution, ["u_2"], sample=0)
    lines = fig.axes[0].get_lines()
    assert len(lines) == solution.records["u_2"].shape[-1]
    np.testing.assert_array_equal(lines[0].get_xdata(), solution.times)
    np.testing.assert_array_equal(lines[3].get_ydata(), solution.records["u_2"][:, 0, 3])
    with pytest.raises(RunDirError, match="sample 7 is out of range"):
        plot(solution, ["u_2"], sample=7)
    empty = simulate(*build(get_preset("fig-s1", quick=True)), Stream.of(np.zeros((1, 1, 30), np.float32)),
                     duration=1.0, key=jax.random.key(0))
    with pytest.raises(RunDirError, match="recorded nothing"):
        load_traces(empty)


def test_names_are_checked_and_members_picked(tmp_path: Path) -> None:
    """A regression-like traces.npz: (trial points, seeds) curves; --member picks one seed's column."""
    run = tmp_path / "reg"
    run.mkdir()
    (run / "config.toml").write_text('experiment = "regression"\n')
    trials, curve = np.array([0, 10, 20]), np.array([[1.0, 2.0], [0.5, 1.5], [0.2, 1.0]])
    np.savez(run / "traces.npz", trials=trials, seeds=np.array([3, 4]), microcircuit_test_error=curve,
             t=np.float64(1.0))
    info = {i.name: i for i in describe(run)}["microcircuit_test_error"]
    assert (info.axis, info.dims) == ("trials", ("trial point", "seed"))
    assert "microcircuit learner's test error" in info.meaning
    fig = plot(run, ["microcircuit_test_error"], member=1)
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), curve[:, 1])
    assert len(plot(run, ["microcircuit_test_error"]).axes[0].get_lines()) == 2
    assert select(run, ["micro*", "trials", "microcircuit_test_error"]) == ["microcircuit_test_error", "trials"]
    r = cli("analyze", "traces", run, "microcircuit_test_eror")
    assert r.exit_code == 2 and "no array 'microcircuit_test_eror' (did you mean microcircuit_test_error" in r.output
    r = cli("analyze", "traces", run, "microcircuit_test_error", "--member", 2)
    assert r.exit_code == 2 and "member 2 is out of range; it has 2 seeds" in r.output
    assert cli("analyze", "traces", run, "microcircuit_test_error").exit_code == 0
    assert cli("analyze", "traces", run, "microcircuit_test_error", "--member", 1).exit_code == 0
    assert (run / "traces_microcircuit_test_error.png").is_file()  # one member's plot does not replace the whole
    assert (run / "traces_microcircuit_test_error-member-1.png").is_file()
    r = cli("analyze", "traces", run, "t")
    assert r.exit_code == 2 and "t is a single number (1.0)" in r.output


def test_a_listing_into_a_closed_pipe_stops_quietly(s1: Path) -> None:
    """`microcircuit analyze traces RUN | head -1`: the reader has gone before the listing is written."""
    p = subprocess.Popen([sys.executable, "-m", "microcircuit.cli", "analyze", "traces", str(s1)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    p.stdout.close()
    with p.stderr:
        err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == ""


def test_runs_without_traces_say_why(s1: Path, tmp_path: Path) -> None:
    bars = tmp_path / "bars"
    bars.mkdir()
    (bars / "config.toml").write_text('experiment = "le_bars"\n')
    r = cli("analyze", "traces", bars)
    assert r.exit_code == 2 and "a 'le_bars' run writes no traces.npz" in r.output
    unfinished = tmp_path / "unfinished"
    shutil.copytree(s1, unfinished)
    (unfinished / "traces.npz").unlink()
    (unfinished / "summary.json").unlink()
    r = cli("analyze", "traces", unfinished)
    assert r.exit_code == 2 and "no traces.npz yet" in r.output and "has not finished" in r.output
