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
        small = SMALL if preset != "mnist-dynamics" else [a.replace("training.epochs=2", "training.epochs=1")
                                                              for a in SMALL]
        r = cli("run", preset, "--quick", *small, "--out", root / preset)
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


# --------------------------------------------------------------------------------------------------
# Bad input to every `analyze` command: one line on stderr naming the problem, exit status 2, no traceback


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folders that are not (usable) runs: an MNIST run folder as written, with damaged copies of it, a fig-s1
    and a le-bars folder, an empty folder, a damaged traces.npz, a file in the way of an output folder, and a
    readable traces.npz (``reg``)."""
    root = tmp_path_factory.mktemp("bad")
    good = root / "mnist"
    good.mkdir()
    (good / "config.toml").write_text(cli("show", "mnist", "--quick").output)
    (good / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "validation_error": 0.5, "train_error_10k": 0.5})
                                        + "\n")
    (good / "summary.json").write_text(json.dumps({"test_error": 0.5, "best_epoch": 1}))
    (good / "weights_best.npz").write_bytes(b"PK\x03\x04 cut short")
    for name, file, text in [("summary", "summary.json", "{\"test_error\": 0."),
                             ("metrics", "metrics.jsonl", "{\"epoch\": 1,\n{\"epoch\": 2}\n"),
                             ("rows", "metrics.jsonl", "{\"epoch\": 1}\n"),
                             ("config", "config.toml", "[[network\n")]:
        shutil.copytree(good, root / name)
        (root / name / file).write_text(text)
    shutil.copytree(good, root / "unfinished")
    (root / "unfinished" / "weights_best.npz").unlink()
    for name, preset in (("s1", "fig-s1"), ("bars", "le-bars")):
        (root / name).mkdir()
        (root / name / "config.toml").write_text(cli("show", preset, "--quick").output)
    (root / "s1" / "traces.npz").write_bytes(b"PK\x03\x04 cut short")
    (root / "empty").mkdir()
    (root / "afile").write_text("not a folder")
    (root / "reg").mkdir()
    np.savez(root / "reg" / "traces.npz", time_ms=np.arange(3.0), c=np.ones(3))
    return root


BAD_INPUTS = {
    # an image format matplotlib does not write: refused before anything is read
    "curves-unknown-format": (["curves", "{mnist}", "--out", "{tmp}/x.xyz"], "'.xyz' is not an image format"),
    "curves-no-suffix": (["curves", "{mnist}", "--out", "{tmp}/curves"], "no suffix to say the image format"),
    "traces-unknown-format": (["traces", "{s1}", "u_2", "--out", "{tmp}/x.xyz"], "'.xyz' is not an image format"),
    # folders that are missing, not runs, runs of another experiment, unfinished
    "curves-missing": (["curves", "{root}/nope", "--out", "{tmp}/x.png"], "no such run folder"),
    "curves-file": (["curves", "{root}/afile", "--out", "{tmp}/x.png"], "is a file, not a run folder"),
    "curves-not-a-run": (["curves", "{root}/empty", "--out", "{tmp}/x.png"], "not a run folder (it has no config"),
    "curves-fig-s1": (["curves", "{s1}", "--out", "{tmp}/x.png"], "not an MNIST run"),
    "errors-missing": (["errors", "{root}/nope", "--no-progress"], "no such run folder"),
    "errors-fig-s1": (["errors", "{s1}", "--no-progress"], "not an MNIST run"),
    "errors-unfinished": (["errors", "{root}/unfinished", "--no-progress"], "no weights_best.npz"),
    "settle-missing": (["settle", "{root}/nope"], "no such run folder"),
    "settle-not-a-run": (["settle", "{root}/empty"], "not a run folder"),
    "scaling-missing": (["scaling", "{root}/nope"], "no such folder"),
    "scaling-not-a-sweep": (["scaling", "{root}/empty"], "is not a sweep folder"),
    "traces-missing": (["traces", "{root}/nope"], "no such run folder or .npz file"),
    "traces-not-a-run": (["traces", "{root}/empty"], "not a run folder"),
    "traces-le-bars": (["traces", "{root}/bars"], "a 'le_bars' run writes no traces.npz"),
    "traces-member-without-names": (["traces", "{root}/bars", "--member", "0"], "--member applies to plots"),
    "curves-labels": (["curves", "{mnist}", "{mnist}", "--label", "a", "--out", "{tmp}/x.png"],
                      "--label: got 1 labels for 2 run folders"),
    "backprop-bad-set": (["backprop", "--set", "network.sizez=[1]", "--no-progress"], "network.sizez"),
    # damaged files
    "curves-summary-not-json": (["curves", "{root}/summary", "--out", "{tmp}/x.png"], "is not valid JSON"),
    "curves-metrics-damaged": (["curves", "{root}/metrics", "--out", "{tmp}/x.png"], "metrics.jsonl, line 1"),
    "curves-metrics-rows": (["curves", "{root}/rows", "--out", "{tmp}/x.png"], "'validation_error'"),
    "curves-config-damaged": (["curves", "{root}/config", "--out", "{tmp}/x.png"], "is not valid TOML"),
    "errors-weights-damaged": (["errors", "{mnist}", "--no-progress"], "cannot be read as a .npz of weights"),
    "settle-weights-damaged": (["settle", "{mnist}", "--n-images", "1"], "cannot be read as a .npz of weights"),
    "settle-window": (["settle", "{mnist}", "--window", "200"], "the window (200 ms) must be positive and shorter"),
    "traces-damaged": (["traces", "{s1}"], "cannot be read as a .npz of arrays"),
    # outputs that cannot be written
    "curves-out-under-a-file": (["curves", "{mnist2}", "--out", "{root}/afile/x.png"], "cannot write"),
    "curves-out-a-folder": (["curves", "{mnist2}", "--out", "{root}/empty.png/"], "cannot write"),
    "settle-out-a-file": (["settle", "{mnist}", "--out", "{root}/afile"], "it is a file, not a folder"),
    "scaling-out-a-file": (["scaling", "{root}/empty", "--out", "{root}/afile"], "it is a file, not a folder"),
    "traces-out-under-a-file": (["traces", "{root}/reg", "c", "--out", "{root}/afile/x.png"], "cannot write"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_analyze_command_fails_in_one_line_on_bad_input(case: str, bad: Path, tmp_path: Path) -> None:
    args, message = BAD_INPUTS[case]
    mnist2 = bad / "mnist2"  # a readable MNIST run (its weights are not needed by `curves`)
    if not mnist2.exists():
        shutil.copytree(bad / "mnist", mnist2)
        (bad / "empty.png").mkdir()
    where = {"root": bad, "mnist": bad / "mnist", "mnist2": mnist2, "s1": bad / "s1", "tmp": tmp_path}
    r = CliRunner().invoke(main, ["analyze", *(a.format(**where) for a in args)])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.output and "internal error" not in r.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_image_formats_are_those_matplotlib_writes(tmp_path: Path) -> None:
    from microcircuit.analysis.output import image_format, image_formats, save_image
    from microcircuit.config import ConfigError
    from microcircuit.plotting import figure

    assert {"png", "pdf", "svg"} <= set(image_formats())
    assert image_format("a/b.PNG") == "png" and image_format("x.svg") == "svg"
    with pytest.raises(ConfigError, match=r"end the file name in one of .*\.png"):
        image_format("x.xyz")
    fig = figure()
    fig.subplots().plot([0, 1])
    assert save_image(fig, tmp_path / "a" / "f.svg").read_text().lstrip().startswith("<?xml")


def test_data_replaces_the_runs_data_set(bad: Path) -> None:
    """--data (``data=``) points a finished run at its data set elsewhere; it is not a change of the run's
    config that a resumed run would refuse."""
    from microcircuit.analysis.run_folder import mnist_run

    path, cfg = mnist_run(bad / "mnist", data=str(bad / "elsewhere" / "mnist.npz"))
    assert path == bad / "mnist" and cfg.training.data == str(bad / "elsewhere" / "mnist.npz")
    r = CliRunner().invoke(main, ["analyze", "errors", str(bad / "mnist"), "--data", str(bad / "nope"),
                                  "--no-progress"])
    assert r.exit_code == 2 and "resume" not in r.stderr and "weights" in r.stderr  # got as far as the weights
