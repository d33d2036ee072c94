"""`microcircuit analyze scaling`: the tables and figures of a depth/width/data-set study, from a sweep
folder laid out as the sweep driver lays it out (fake runs with known numbers), and from a real tiny sweep."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner

from microcircuit.analysis import ScalingReport, analyze_scaling
from microcircuit.analysis.scaling import ARMS, arm_label, data_label
from microcircuit.cli import main
from microcircuit.config import merge, to_dict
from microcircuit.presets import get_preset
from microcircuit.runs import RunDirError
from microcircuit.sweep import load_sweep, run_sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def write_run(sweep: Path, trial: int, seed: int, *, sizes: list[int], method: str = "backprop",
              feedback: str | None = None, data: str = "mnist", summary: dict[str, Any] | None = None,
              failed: bool = False, extra: dict[str, Any] | None = None) -> Path:
    """A run folder where the sweep driver puts it: trials/trial-NNNN/seed-S/ with config.toml and
    summary.json (or failed.json). Keys a Config may not know yet (training.feedback, new methods, ``extra``)
    go into the TOML as written."""
    run = sweep / "trials" / f"trial-{trial:04d}" / f"seed-{seed}"
    run.mkdir(parents=True)
    cfg = to_dict(merge(get_preset("mnist"), {"seed": seed, "network": {"sizes": sizes},
                                              "plasticity": {"eta_W": 0.01, "eta_IP": 0.001}}))
    cfg["training"].update({"method": method, "data": data})
    if feedback is not None:
        cfg["training"]["feedback"] = feedback
    for section, values in (extra or {}).items():
        cfg[section].update(values)
    (run / "config.toml").write_text(tomli_w.dumps(cfg))
    if failed:
        (run / "failed.json").write_text(json.dumps({"error": "DivergenceError: u left the bound"}))
    elif summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    (sweep / "sweep.json").write_text("{}\n")
    return run


def summary(test: float, *, val: float = 0.02, train: float | None = 0.01, best: int = 10, sec: float = 2.0,
            settle: float | None = None, angles: list[float] | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"test_error": test, "validation_error": val, "best_epoch": best, "seconds_per_epoch": sec}
    if train is not None:
        s["train_error"] = train
    if settle is not None:
        s["settle_fraction"] = settle
    if angles is not None:
        s["angle_best"] = angles
        s["norm_ratio_best"] = [1.0] * len(angles)
    return s


L1, L2, L3 = [784, 256, 10], [784, 256, 256, 10], [784, 256, 256, 256, 10]


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """MNIST at depths 1-3 (width 256) for four arms, widths 64/256 at depth 2, and Fashion-MNIST at depth 1."""
    sweep = tmp_path / "sweep"
    t = 0
    for sizes in (L1, L2, L3):
        depth = len(sizes) - 2
        arms = [("backprop", None, None), ("feedback_alignment", None, 40.0), ("microcircuit", "random", 30.0),
                ("microcircuit", "transported", 5.0)]
        for method, feedback, angle in arms:
            for seed in range(3):
                test = 0.02 + 0.001 * depth + 0.001 * seed + (0.01 if method == "feedback_alignment" else 0.0)
                angles = None if angle is None else [angle + 10 * k + seed for k in range(depth + 1)]
                settle = 0.99 - 0.01 * seed if method == "microcircuit" else None
                write_run(sweep, t, seed, sizes=sizes, method=method, feedback=feedback,
                          summary=summary(test, settle=settle, angles=angles, train=None if seed == 2 else 0.01))
            t += 1
    for seed in range(2):  # the width series at depth 2: 64 (and 256 above), backprop only
        write_run(sweep, t, seed, sizes=[784, 64, 64, 10], summary=summary(0.03 + 0.002 * seed))
    t += 1
    write_run(sweep, t, 0, sizes=L1, data="/data/fashion-mnist/", summary=summary(0.12))
    write_run(sweep, t, 1, sizes=L1, data="/data/fashion-mnist/", failed=True)
    t += 1
    write_run(sweep, t, 0, sizes=L1, method="direct_feedback_alignment", data="fashion-mnist",
              summary=summary(0.15, angles=[70.0, 80.0]))
    write_run(sweep, t, 1, sizes=L1, method="direct_feedback_alignment", data="fashion-mnist")  # still running
    return sweep


def test_labels_of_arms_and_data_sets() -> None:
    assert [arm_label(m) for m in ("backprop", "feedback_alignment", "direct_feedback_alignment")] == list(ARMS[:3])
    assert arm_label("microcircuit") == "circuit, random B"
    assert arm_label("microcircuit", "transported") == "circuit, transported B"
    assert arm_label("dynamics", "random") == "circuit (continuous time), random B"
    assert [data_label(d) for d in ("mnist", "fashion-mnist", "cifar-10", "mnist-subset")] == \
        ["mnist", "fashion-mnist", "cifar-10", "mnist-subset"]
    assert data_label("/data/fmnist/") == "fmnist" and data_label("~/x/mnist.npz") == "mnist.npz"


def test_scaling_tables_and_figures(study: Path) -> None:
    report = analyze_scaling(study)
    assert isinstance(report, ScalingReport)
    out = study / "scaling"
    assert report.csv == out / "scaling.csv" and report.markdown_path == out / "scaling.md"
    rows = read_csv(out / "scaling.csv")
    # grouped by data set, sorted by depth, width and the fixed arm order
    keys = [(r["data"], r["depth"], r["width"], r["arm"]) for r in rows]
    assert keys[:6] == [("mnist", "1", "256", "backprop"), ("mnist", "1", "256", "feedback alignment"),
                        ("mnist", "1", "256", "circuit, random B"), ("mnist", "1", "256", "circuit, transported B"),
                        ("mnist", "2", "64", "backprop"), ("mnist", "2", "256", "backprop")]
    assert keys[-2:] == [("fashion-mnist", "1", "256", "backprop"),
                         ("fashion-mnist", "1", "256", "direct feedback alignment")]
    assert len(rows) == 3 * 4 + 1 + 2

    bp2 = next(r for r in rows if r["sizes"] == "784-256-256-10" and r["arm"] == "backprop")
    tests = [100 * (0.022 + 0.001 * s) for s in range(3)]
    assert (bp2["n"], bp2["failed"], bp2["trials"], bp2["width"]) == ("3", "0", "1", "256")
    assert float(bp2["test_error_mean_pct"]) == pytest.approx(statistics.mean(tests))
    assert float(bp2["test_error_sd_pct"]) == pytest.approx(statistics.stdev(tests)) == pytest.approx(0.1)
    assert float(bp2["validation_error_mean_pct"]) == pytest.approx(2.0) and float(bp2["validation_error_sd_pct"]) == 0
    assert float(bp2["train_error_mean_pct"]) == pytest.approx(1.0)  # seed 2 has none: the mean of the others
    assert float(bp2["best_epoch_mean"]) == 10 and float(bp2["seconds_per_epoch_mean"]) == 2
    assert bp2["settle_fraction_mean_pct"] == "" and bp2["angle_mean"] == ""

    circ = next(r for r in rows if r["sizes"] == "784-256-256-10" and r["arm"] == "circuit, random B")
    assert float(circ["settle_fraction_mean_pct"]) == pytest.approx(98.0)
    assert float(circ["settle_fraction_min_pct"]) == pytest.approx(97.0)
    assert json.loads(circ["angle_mean"]) == pytest.approx([31.0, 41.0, 51.0])
    assert json.loads(circ["norm_ratio_mean"]) == [1.0, 1.0, 1.0]

    fashion = [r for r in rows if r["data"] == "fashion-mnist"]
    assert (fashion[0]["n"], fashion[0]["failed"], fashion[0]["test_error_sd_pct"]) == ("1", "1", "")  # a path's name
    assert fashion[1]["n"] == "1"  # the run still in progress is not counted

    runs = read_csv(out / "scaling_runs.csv")
    assert len(runs) == 3 * 4 * 3 + 2 + 2 + 2
    assert {r["status"] for r in runs} == {"complete", "failed", "partial"}
    one = next(r for r in runs if r["run_dir"] == "trials/trial-0010/seed-1")  # depth 3, the third arm
    assert (one["arm"], one["method"], one["feedback"], one["depth"], one["sizes"]) == (
        "circuit, random B", "microcircuit", "random", "3", "784-256-256-256-10")
    assert float(one["test_error_pct"]) == pytest.approx(2.4)
    assert json.loads(one["angle_best"]) == [31.0, 41.0, 51.0, 61.0]

    text = (out / "scaling.md").read_text()
    assert text == report.markdown
    assert text.index("## mnist\n") < text.index("## fashion-mnist\n")
    assert "| 2 | 256 | backprop | 3 | 2.30 ± 0.10 | 2.00 ± 0.00 | 1.00 ± 0.00 | 10.0 | – | 2 | – |" in text
    assert ("| 2 | 256 | circuit, random B | 3 | 2.30 ± 0.10 | 2.00 ± 0.00 | 1.00 ± 0.00 | 10.0 | 98.0 (min 97.0) "
            "| 2 | 31.0, 41.0, 51.0 |") in text
    assert "| 1 | 256 | backprop | 1 (+1 failed) | 12.00 |" in text

    assert [p.name for p in report.figures] == ["error_vs_depth.png", "error_vs_width.png", "angle_heatmap.png"]
    for p in report.figures:
        assert p.parent == out and p.stat().st_size > 5000
    assert report.notes == []


def test_command_prints_the_table_and_skips_figures_without_data(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    r = CliRunner().invoke(main, ["analyze", "scaling", str(study), "--out", str(out), "--depth-width", "64",
                                  "--width-depth", "1"])
    assert r.exit_code == 0, r.output
    assert "| 2 | 64 | backprop | 2 | 3.10 ± 0.14 |" in r.output
    assert "note: error_vs_width.png skipped: no data set has nets of two widths or more at depth 1" in r.output
    assert "note: angle_heatmap.png skipped" in r.output
    assert f"wrote {out / 'scaling.csv'}" in r.output and f"wrote {out / 'error_vs_depth.png'}" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["error_vs_depth.png", "scaling.csv", "scaling.md",
                                                     "scaling_runs.csv"]
    assert not (study / "scaling").exists()


def test_runs_of_unknown_keys_and_pooled_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    # A config with a key this version does not know is read as written; two trials of one group are pooled.
    write_run(sweep, 0, 0, sizes=L1, summary=summary(0.02), extra={"training": {"a_future_key": 1}})
    write_run(sweep, 1, 0, sizes=L1, summary=summary(0.04))
    (sweep / "trials" / "trial-0002" / "seed-0").mkdir(parents=True)  # no config: left out, with a note
    report = analyze_scaling(sweep)
    (g,) = report.groups
    assert (g["n"], g["trials"], g["test_error_mean_pct"]) == (2, 2, pytest.approx(3.0))
    assert any("pools the runs of 2 trials" in n for n in report.notes)
    assert any("trial-0002/seed-0: left out" in n for n in report.notes)


def test_errors_for_what_is_not_a_finished_sweep(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="is not a sweep folder"):
        analyze_scaling(tmp_path)
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(RunDirError, match="no finished run with a test_error"):
        analyze_scaling(tmp_path)
    write_run(tmp_path, 0, 0, sizes=L1, failed=True)
    write_run(tmp_path, 0, 1, sizes=L1, summary={"apical_error_1_end": 0.1})  # not an MNIST-like run
    r = CliRunner().invoke(main, ["analyze", "scaling", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [f"error: {tmp_path}: no finished run with a test_error in its "
                                             "summary.json under trials/ yet"]


@pytest.mark.slow
def test_a_real_tiny_sweep_with_cases(tmp_path: Path) -> None:
    """Two nets x one arm from [[cases]], one epoch on 100 images: the analysis reads the driver's folder."""
    path = tmp_path / "s.toml"
    path.write_text("""
name = "tiny-scaling"
base = "mnist-quick"
set = ["training.n_train=100", "training.epochs=1", "training.n_validation=50", "plasticity.eta_W=0.01",
       "plasticity.eta_IP=0.001"]
seeds = 1
[[cases.net]]
label = "L1"
"network.sizes" = [784, 20, 10]
[[cases.net]]
label = "L2"
"network.sizes" = [784, 20, 20, 10]
[[cases.arm]]
label = "backprop"
training.method = "backprop"
[objective]
key = "validation_error"
[executor]
compilation_cache = false
""")
    report = run_sweep(load_sweep(path), tmp_path / "out")
    assert [t["cases.net"] for t in report.collected.trials] == ["L1", "L2"]
    scaling = analyze_scaling(tmp_path / "out", depth_width=20)
    assert [(g["data"], g["depth"], g["width"], g["arm"], g["n"]) for g in scaling.groups] == [
        ("mnist-subset", 1, 20, "backprop", 1), ("mnist-subset", 2, 20, "backprop", 1)]
    assert 0 <= scaling.groups[0]["test_error_mean_pct"] <= 100
    assert [p.name for p in scaling.figures] == ["error_vs_depth.png"]


@pytest.mark.slow
def test_the_quick_study_runs_the_whole_grid_and_is_analysed(tmp_path: Path) -> None:
    """`microcircuit sweep examples/scaling.toml --quick` runs every net × arm of the depth study (one seed, the
    embedded subset, which the [quick] table puts in place of every net's data set) and `analyze scaling`
    tables them: five arms per net, the circuits with the feedback they were given (the per-layer
    diagnostics are tested in tests/test_mnist.py)."""
    example = Path(__file__).resolve().parents[1] / "examples" / "scaling.toml"
    out = tmp_path / "quick"
    r = CliRunner().invoke(main, ["sweep", str(example), "--quick", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    spec = load_sweep(example, quick=True)
    n_nets, n_arms = (len(g.cases) for g in spec.cases)
    assert (n_nets, n_arms) == (12, 5)
    report = analyze_scaling(out)
    assert len(report.runs) == n_nets * n_arms
    assert all(r["status"] == "complete" for r in report.runs)
    # every net on the embedded MNIST subset: the Fashion-MNIST nets pool with the MNIST nets of the same
    # sizes, 9 distinct nets x 5 arms
    assert {r["data"] for r in report.runs} == {"mnist-subset"}
    assert len(report.groups) == 9 * n_arms
    assert {r["arm"] for r in report.runs} == set(ARMS[:5])
    for run in report.runs:
        s = json.loads((out / run["run_dir"] / "summary.json").read_text())
        want = {"circuit, random B": "random", "circuit, transported B": "transported"}.get(run["arm"])
        assert s["feedback"] == want and s["method"] == run["method"]
        assert len(s["validation_curve"]) == 1 and 0.0 <= s["test_error"] <= 1.0
    assert report.markdown.count("circuit, transported B") >= 9
