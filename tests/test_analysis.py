"""`microcircuit analyze curves` and `analyze errors` on small MNIST run folders made with the quick presets
(embedded subset), and the CLI's listing of presets."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result

from microcircuit.analysis import error_breakdown, learning_curve, plot_learning_curves
from microcircuit.cli import analyze, main
from microcircuit.presets import PRESETS, get_preset
from microcircuit.runs import RunDirError

SMALL = ["--set", "training.epochs=2", "--set", "training.n_train=300", "--set", "network.sizes=[784,30,20,10]",
         "--no-progress"]


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Finished quick runs: the steady-state microcircuit, backprop and the continuous-time dynamics."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for preset in ("mnist", "mnist-backprop", "mnist-dynamics"):
        sizes = [] if preset != "mnist-dynamics" else ["--set", "training.epochs=1"]
        r = cli("run", preset, "--quick", *SMALL, *sizes, "--out", root / preset)
        assert r.exit_code == 0, r.output
        out[preset] = root / preset
    return out


def test_every_run_writes_its_learning_curve(runs: dict[str, Path]) -> None:
    for path in runs.values():
        png = path / "learning_curve.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_of_several_methods_in_one_figure(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "figs" / "curves.png"
    r = cli("analyze", "curves", *runs.values(), "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name, path in runs.items():  # one line per run, labelled with its preset, its test error as summarised
        summary = json.loads((path / "summary.json").read_text())
        line = next(x for x in r.output.splitlines() if x.startswith(f"{name}-quick "))
        assert f"test {100 * summary['test_error']:.2f} %" in line
    # the figure: one validation line per run, linear axes in %, labels from the presets
    curves = [learning_curve(p) for p in runs.values()]
    ax = plot_learning_curves(curves).axes[0]
    assert (ax.get_xscale(), ax.get_yscale(), ax.get_xlabel()) == ("linear", "linear", "epoch")
    assert "%" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [lab.split(" (")[0] for lab in labels] == ["mnist-quick", "mnist-backprop-quick", "mnist-dynamics-quick"]
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    for ln, c in zip(lines, curves, strict=True):
        np.testing.assert_allclose(ln.get_ydata(), 100 * np.array(c.validation))
        np.testing.assert_array_equal(ln.get_xdata(), c.epochs)


def test_curves_take_one_label_per_run(runs: dict[str, Path], tmp_path: Path) -> None:
    """--label names the lines in order (e.g. a run made with --set under the preset it equals); a count that
    does not match the run folders is refused before anything is written."""
    out = tmp_path / "labelled.png"
    paths = list(runs.values())[:2]
    r = cli("analyze", "curves", *paths, "--label", "first", "--label", "second", "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert [x.split()[0] for x in r.output.splitlines()[:2]] == ["first", "second"]
    bad = tmp_path / "bad.png"
    r = cli("analyze", "curves", *paths, "--label", "only-one", "--out", bad, "--no-progress")
    assert r.exit_code == 2 and "--label" in r.output and "1 labels for 2 run folders" in r.output
    assert not bad.exists()


def test_curve_of_a_run_in_progress_and_of_two_runs_of_one_preset(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs["mnist"], copy)
    (copy / "summary.json").unlink()  # not finished yet: the epochs so far, no test error
    c = learning_curve(copy)
    assert c.test_error is None and c.epochs == [1, 2] and c.train_label == "first 10k"
    fig = plot_learning_curves([learning_curve(runs["mnist"]), c])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("mnist-quick [mnist] (test ") and labels[1] == "mnist-quick [copy]"


def test_curves_refuse_what_is_not_an_mnist_run(tmp_path: Path) -> None:
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "config.toml").write_text(cli("show", "fig-s1").output)
    r = cli("analyze", "curves", tmp_path / "s1", "--out", tmp_path / "x.png")
    assert r.exit_code == 2 and "not an MNIST run" in r.output and not (tmp_path / "x.png").exists()
    r = cli("analyze", "curves", tmp_path, "--out", tmp_path / "x.png")
    assert r.exit_code == 2 and "config.toml" in r.output
    with pytest.raises(RunDirError, match="not an MNIST run"):
        error_breakdown(tmp_path / "s1")


def test_error_breakdown_agrees_with_the_run(runs: dict[str, Path]) -> None:
    """The breakdown reads the best weights out as the run did (steady state, or the dynamics): its validation
    and test errors are the run's own."""
    for name in ("mnist", "mnist-dynamics"):
        summary = json.loads((runs[name] / "summary.json").read_text())
        res = error_breakdown(runs[name])
        assert res["validation"].error == pytest.approx(summary["validation_error"], abs=1e-12)
        assert res["test"].error == pytest.approx(summary["test_error"], abs=1e-12)
        assert (res["test"].n, res["test, first half"].n, res["train, first"].n) == (1000, 500, 60)
        halves = (res["test, first half"].error + res["test, second half"].error) / 2
        assert halves == pytest.approx(res["test"].error)
    r = cli("analyze", "errors", runs["mnist"], "--json", "--no-progress")
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert row["test"]["n"] == 1000 and 0.0 <= row["validation"]["error"] <= 1.0


def test_every_analyze_command_has_no_progress() -> None:
    for name, cmd in analyze.commands.items():
        opts = {o for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        assert "--no-progress" in opts, name


def test_presets_lists_quick_variants_and_whole_sentences() -> None:
    r = cli("presets")
    assert r.exit_code == 0
    text = r.output
    for name in PRESETS:
        assert re.search(rf"^{re.escape(name)}\s", text, re.M)
        assert re.search(rf"^{re.escape(get_preset(name, quick=True).name)}\s", text, re.M), name
    # every description is a whole sentence: the rows of one preset, joined, end with a full stop
    starts = "|".join(re.escape(name) for name in PRESETS)  # a block starts at a preset's own name
    blocks = re.split(rf"\n(?=(?:{starts})\s)", text.split("\n", 1)[1].strip())
    assert len(blocks) == len(PRESETS)
    for b in blocks:
        assert b.rstrip().endswith("."), b
