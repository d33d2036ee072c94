"""Pieces every time-continuous experiment shares: building the network, a segmented training loop
with held-out evaluation, checkpoints and resume (docs/runs.md), and the self-prediction measurement."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..checkpoint import checkpoint_path, list_checkpoints, load_latest, prune_checkpoints, save_checkpoint
from ..config import Config, ConfigError, Model, Record
from ..dynamics import State, init_state, with_prospective
from ..errors import CheckpointError, DivergenceError, RunInterrupted
from ..network import Weights, init_weights, self_predicting_distance
from ..plasticity import zero_traces
from ..rates import resolve_model
from ..runs import RunDir, StopRequest, graceful_stop
from ..simulate import Solution, Stream, simulate

__all__ = [
    "Segment",
    "build",
    "check_init_from",
    "deterministic",
    "initial_weights",
    "restarting_run",
    "run_segments",
    "segmented_run",
    "self_prediction_errors",
    "train_epochs",
    "weight_distance",
]


def build(cfg: Config) -> tuple[Model, Weights, State]:
    """The model (rates derived from ``training.lr`` where set, :mod:`microcircuit.rates`), its initial weights
    (seeded by ``cfg.seed``) and a resting state of batch size B, in the layout of the model's mode (with ŭ in
    prospective mode and PAL's state with ``pal.enabled``, docs/model.md §8, §12)."""
    model = resolve_model(cfg)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 0)
    w = init_weights(model.network, model.conductances, key, model.simulation.dtype)
    return model, w, with_prospective(model, init_state(model.network, cfg.stimulus.batch, model.simulation.dtype,
                                                        model.simulation.prospective))


def deterministic(model: Model) -> Model:
    """The same model with σ = 0 (testing conditions, docs/model.md §2), PAL's apical noise too (§12), and a
    spiking circuit sending its expected counts (its mean-field limit, §13)."""
    spiking = dataclasses.replace(model.spiking, counts="mean") if model.spiking.enabled else model.spiking
    return dataclasses.replace(model, simulation=dataclasses.replace(model.simulation, sigma=0.0),
                               pal=dataclasses.replace(model.pal, sigma=0.0), spiking=spiking)


def self_prediction_errors(model: Model, w: Weights, x_test: np.ndarray, settle: float) -> dict[str, float]:
    """Mean ‖v_A,k‖² and ‖u_{k+1} − u^I_k‖² per hidden layer at the σ = 0, no-target steady state,
    averaged over the held-out inputs ``x_test`` (n, n_0), after ``settle`` ms."""
    m0 = deterministic(model)
    stream = Stream.of(x_test[None].astype(np.float32))
    steps = round(settle / model.simulation.dt)
    sol = simulate(
        m0, w, init_state(model.network, x_test.shape[0], model.simulation.dtype), stream, duration=settle,
        plastic=False, record=Record(("self_prediction",), stride=steps),
    )
    return {k: float(v[-1]) for k, v in sol.records.items()}


def weight_distance(model: Model, w: Weights) -> dict[str, float]:
    """Relative distance of PI and IP from their self-predicting values (docs/model.md §4), per hidden layer."""
    d = self_predicting_distance(w, model.conductances)
    out = {}
    for i, (pi, ip) in enumerate(zip(d["PI"], d["IP"], strict=True)):
        out[f"PI_distance_{i + 1}"], out[f"IP_distance_{i + 1}"] = pi, ip
    return out


class _StopRequestedError(Exception):
    """Raised from a segment's progress callback to leave it at a chunk boundary on a signal."""


@dataclasses.dataclass(frozen=True)
class Segment:
    """One segment of :func:`segmented_run`: its ``index``, the patterns before it (``start``) and in it
    (``count``), its start time ``t0`` (ms) and its noise key ``fold_in(key, index + 1)`` (one per member
    when the run's key is an array of keys, e.g. one per seed of an ensemble)."""

    index: int
    start: int
    count: int
    t0: float
    key: jax.Array


#: ``advance(segment, carry, on_chunk) -> (carry, records)``: see :func:`segmented_run`.
Advance = Callable[[Segment, dict[str, Any], Callable[[int], None]], tuple[dict[str, Any], dict[str, np.ndarray]]]


def _fold(key: jax.Array, n: int) -> jax.Array:
    fold = lambda k: jax.random.fold_in(k, n)  # noqa: E731
    return jax.vmap(fold)(key) if key.ndim else fold(key)


def _concat(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]} if pieces else {}


def _fmt(row: dict[str, Any]) -> str:
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "wall_s"]
    return "  ".join(parts)


def segmented_run(
    cfg: Config,
    run: RunDir | None,
    carry: dict[str, Any],
    advance: Advance,
    evaluate: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    n_patterns: int,
    work_per_pattern: int,
    key: jax.Array,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
    describe: Callable[[dict[str, Any]], str] = _fmt,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, np.ndarray]]:
    """Train for ``n_patterns`` patterns in segments of ``cfg.schedule.segment``, with checkpoints,
    resume, graceful stop and divergence handling (docs/runs.md). Returns the final carry, the metric
    rows and the concatenated records.

    ``carry`` maps names to the pytrees that fix everything after a segment boundary (weights, filter
    traces, state, a baseline's parameters, ...). ``advance(segment, carry, on_chunk)`` trains one
    :class:`Segment` and returns the new carry and the arrays it recorded (concatenated along axis 0
    over the run; ``{}`` for none); it must be a deterministic function of the segment and the carry,
    and call ``on_chunk(units)`` after every chunk of work, ``work_per_pattern`` units per pattern in
    all (a stop request raises from there). A :class:`DivergenceError` from it may carry a ``note``
    naming what diverged. ``evaluate(carry)`` gives the metrics logged at every boundary as one row
    (``patterns``, ``time_ms``, ``wall_s`` and the metrics), echoed through ``describe``.

    With a run folder: a checkpoint (the carry's trees, the records, the metric rows, the RNG ``key``,
    counters) is written at segment boundaries every ``cfg.schedule.checkpoint_every`` segments and at
    the end, keeping the newest ``cfg.schedule.keep_checkpoints``. When ``run.resume`` is set, the run
    continues from the newest checkpoint (bit for bit: the segment boundary fixes everything that
    follows) and metrics.jsonl is cut back to that point. SIGINT/SIGTERM stop the run at the next chunk
    boundary: the state at the last completed segment boundary is checkpointed (the partial segment is
    dropped and will be recomputed identically) and :class:`RunInterrupted` is raised. On
    :class:`DivergenceError` the last good boundary is checkpointed too, the event is logged, and the
    error (naming that checkpoint) is re-raised.
    """
    if "recorded" in carry:
        raise ValueError("segmented_run: 'recorded' is reserved for the records")
    seg = cfg.schedule.segment
    n_seg = -(-n_patterns // seg)
    duration = cfg.stimulus.duration
    root = key
    rows: list[dict[str, Any]] = []
    pieces: list[dict[str, np.ndarray]] = []
    first, wall0 = 0, 0.0
    saved: tuple[int, Path | None] = (-1, None)  # (segment, path) of the newest checkpoint written or read

    def patterns_after(s: int) -> int:
        return min(s * seg, n_patterns)

    def say(text: str) -> None:
        if echo:
            echo(text)

    if run is not None and run.resume:

        def fits(ck: Any) -> None:
            s, rows = ck.counters.get("segment", -1), ck.meta.get("rows")
            if (
                not isinstance(s, int) or not 0 <= s <= n_seg
                or ck.counters.get("patterns") != patterns_after(s)
                or not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows)
                or (len(rows) != s + 1 and not (s == 0 and not rows))
            ):
                raise CheckpointError(f"checkpoint {ck.path}: its counters do not fit this run ({ck.counters})")

        ck = load_latest(run.checkpoint_dir, cfg, like=carry, check=fits,
                         on_skip=lambda p, why: say(f"warning: skipping checkpoint {p.name}: {why}"))
        path = None if ck is None else ck.path
        if ck is not None:
            first, rows = ck.counters["segment"], ck.meta["rows"]  # type: ignore[assignment]
            carry = {name: ck.trees[name] for name in carry}
            recorded = dict(ck.trees.get("recorded", {}))
            if recorded:
                pieces.append(recorded)
            root = ck.key if ck.key is not None else root
            wall0 = float(ck.counters.get("wall_s", 0.0))
            saved = (first, path)
            say(f"resuming from {path} ({patterns_after(first)} of {n_patterns} patterns done)")
        else:
            say("no checkpoint yet: starting the run from the beginning")
        last = rows[-1]["patterns"] if rows else -1
        run.truncate_metrics(lambda r: "event" in r or r.get("patterns", last + 1) <= last)
        run.log(event="resumed", patterns=patterns_after(first), checkpoint=None if path is None else str(path))

    t_wall = time.perf_counter()

    def wall() -> float:
        return round(wall0 + time.perf_counter() - t_wall, 2)

    def checkpoint(s: int) -> Path | None:
        """The state after s segments (unless that one is already on disk)."""
        nonlocal saved
        if run is None:
            return None
        if saved[0] == s:
            return saved[1]
        path = save_checkpoint(
            checkpoint_path(run.checkpoint_dir, patterns_after(s)), cfg, {**carry, "recorded": _concat(pieces)},
            counters={"segment": s, "patterns": patterns_after(s), "n_patterns": n_patterns,
                      "time_ms": patterns_after(s) * duration, "wall_s": wall()},
            key=root, meta={"rows": rows},
        )
        prune_checkpoints(run.checkpoint_dir, cfg.schedule.keep_checkpoints)
        saved = (s, path)
        return path

    def log(row: dict[str, Any]) -> None:
        rows.append(row)
        if run is not None:
            run.log(**row)
        say(describe(row))

    def interrupted(stop: StopRequest, s: int) -> RunInterrupted:
        path = checkpoint(s)
        p = patterns_after(s)
        assert run is not None and stop.signum is not None
        run.log(event="interrupted", signal=stop.name, patterns=p, time_ms=p * duration,
                checkpoint=None if path is None else str(path))
        return RunInterrupted(
            stop.signum,
            f"interrupted by {stop.name} after {p} of {n_patterns} patterns (t = {p * duration:g} ms); "
            f"checkpoint {path}; continue with: microcircuit run --resume {run.path}",
            path,
        )

    def diverged(e: DivergenceError, s: int, where: str) -> DivergenceError:
        e.note = where
        if run is not None:
            e.checkpoint = checkpoint(s)
            if e.last_good is not None and where.startswith("training"):
                # the last good chunk inside the segment, for inspection: (weights, traces, state[, step])
                w, tr, st, *step = e.last_good
                counters = {"segment": s, "time_ms": e.time}
                if step:
                    counters["step_in_segment"] = step[0]
                save_checkpoint(run.checkpoint_dir / "diverged-last-good.npz", cfg,
                                {"weights": w, "traces": tr, "state": st}, counters=counters)
            run.log(event="diverged", quantity=e.quantity, layer=e.layer, time_ms=e.time, where=where,
                    patterns=patterns_after(s), checkpoint=None if e.checkpoint is None else str(e.checkpoint))
        return e

    bar = None
    if progress:
        from tqdm.auto import tqdm

        remaining = (n_patterns - patterns_after(first)) * work_per_pattern
        bar = tqdm(total=remaining, unit="step", unit_scale=True, leave=False)
    every = cfg.schedule.checkpoint_every
    guard = graceful_stop() if run is not None else contextlib.nullcontext(StopRequest())
    try:
        with guard as stop:
            if not rows:
                try:
                    log({"patterns": 0, "time_ms": 0.0, **evaluate(carry)})
                except DivergenceError as e:
                    raise diverged(e, 0, "in the evaluation of the initial weights") from None
            for s in range(first, n_seg):
                if stop:
                    raise interrupted(stop, s)
                n = min(seg, n_patterns - s * seg)
                t0 = s * seg * duration
                left = n * work_per_pattern

                def on_chunk(units: int) -> None:
                    nonlocal left
                    left -= units
                    if bar is not None:
                        bar.update(units)
                    if stop and left > 0:  # a finished segment is kept
                        raise _StopRequestedError

                try:
                    new, records = advance(Segment(s, s * seg, n, t0, _fold(root, s + 1)), carry, on_chunk)
                except _StopRequestedError:
                    raise interrupted(stop, s) from None
                except DivergenceError as e:
                    what = f"training {e.note}" if e.note else "training"
                    raise diverged(e, s, f"{what}, segment {s}, patterns {s * seg}-{s * seg + n}") from None
                try:
                    metrics = evaluate(new)
                except DivergenceError as e:
                    raise diverged(e, s, f"in the evaluation after {s * seg + n} patterns") from None
                carry = new
                if records:
                    pieces.append(records)
                log({"patterns": s * seg + n, "time_ms": t0 + n * duration, "wall_s": wall(), **metrics})
                if every and (s + 1) % every == 0:
                    checkpoint(s + 1)
            checkpoint(n_seg)
            if stop:
                raise interrupted(stop, n_seg)
    finally:
        if bar is not None:
            bar.close()
    return carry, rows, _concat(pieces)


def run_segments(
    cfg: Config,
    run: RunDir | None,
    model: Model,
    weights: Weights,
    state: State,
    make_stream: Callable[[int, int], Stream],
    evaluate: Callable[[Weights], dict[str, Any]],
    *,
    n_patterns: int,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> tuple[Solution, list[dict[str, Any]], dict[str, np.ndarray]]:
    """Train one circuit for ``n_patterns`` patterns with :func:`simulate`, in segments of
    ``cfg.schedule.segment``, through :func:`segmented_run` (checkpoints, resume, signals, divergence).

    ``make_stream(segment_index, n)`` gives the segment's patterns and must be deterministic; segment s
    uses the noise key ``fold_in(key(seed), s + 1)``; ``cfg.record`` is recorded. After every segment
    ``evaluate(weights)`` is logged to the run's metrics. Returns the final weights, traces and state (as
    a :class:`Solution` without records), the metric rows and the concatenated recorded traces (with
    their times, ``time_ms``). Checkpoints hold the trees ``weights``, ``traces``, ``state`` and
    ``recorded``.
    """
    duration = cfg.stimulus.duration

    def advance(seg: Segment, c: dict[str, Any], on_chunk: Callable[[int], None]) -> tuple[dict[str, Any], dict]:
        sol = simulate(
            model, c["weights"], c["state"], make_stream(seg.index, seg.count), duration=duration, key=seg.key,
            traces=c["traces"], record=cfg.record, t0=seg.t0, progress=on_chunk,
        )
        records = {**sol.records, "time_ms": sol.times} if sol.records else {}
        return {"weights": sol.weights, "traces": sol.traces, "state": sol.state}, records

    carry, rows, recorded = segmented_run(
        cfg, run, {"weights": weights, "traces": zero_traces(weights), "state": state}, advance,
        lambda c: evaluate(c["weights"]), n_patterns=n_patterns,
        work_per_pattern=round(duration / model.simulation.dt), key=jax.random.key(cfg.seed),
        progress=progress, echo=echo,
    )
    return Solution(carry["weights"], carry["traces"], carry["state"], {}, np.zeros(0)), rows, recorded


@contextlib.contextmanager
def restarting_run(run: RunDir | None, what: str) -> Iterator[Callable[[str], None]]:
    """For a runner short enough (seconds) that checkpoints would save nothing worth having: on
    ``--resume`` it starts again (metrics.jsonl is cut back to its events and a ``resumed`` event with
    ``restarted: true`` is logged). Inside the block SIGINT/SIGTERM only set a flag; the runner calls the
    yielded ``check(progress)`` between its steps, which then logs an ``interrupted`` event and raises
    :class:`RunInterrupted` (``progress`` says how far it got). Without a run folder nothing is installed."""
    if run is None:
        yield lambda progress: None
        return
    if run.resume:
        run.truncate_metrics(lambda r: "event" in r)
        run.log(event="resumed", restarted=True, checkpoint=None)
    with graceful_stop() as stop:

        def check(progress: str) -> None:
            if stop:
                assert stop.signum is not None
                run.log(event="interrupted", signal=stop.name, progress=progress, checkpoint=None)
                raise RunInterrupted(
                    stop.signum,
                    f"interrupted by {stop.name} ({progress}); {what} takes seconds and keeps no checkpoints: "
                    f"microcircuit run --resume {run.path} runs it again from the start",
                )

        yield check


def initial_weights(
    cfg: Config,
    run: RunDir | None,
    weights: Weights,
    *,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Weights:
    """The weights an experiment starts from, per ``cfg.init_from``.

    ``""``: ``weights`` (drawn from ``network.init``). ``"preset:NAME"``: run that preset first, with this
    run's seed, network and conductances, into the sub-folder ``init/`` of the run folder (a temporary
    folder without one; on ``--resume`` a finished ``init/`` is reused) and take its final weights. Any
    other value: the path of a run folder, whose newest checkpoint holds the weights.
    """
    import tempfile

    from ..presets import get_preset
    from . import get_experiment

    src = cfg.init_from
    if not src:
        return weights
    with contextlib.ExitStack() as stack:
        if src.startswith("preset:"):
            pre = dataclasses.replace(
                get_preset(src.removeprefix("preset:")),
                seed=cfg.seed, network=cfg.network, conductances=cfg.conductances,
            )
            if run is None:
                sub = RunDir.create(Path(stack.enter_context(tempfile.TemporaryDirectory())))
            else:
                sub = RunDir.create(run.path / "init", resume=run.resume)
            if not sub.is_complete():
                sub.write_config(pre)
                sub.write_environment(pre)
                if echo:
                    echo(f"init_from {src}: running {pre.name!r} ({pre.experiment}) into {sub.path}")
                t = time.perf_counter()
                summary = get_experiment(pre.experiment)(
                    pre, sub, progress=progress, echo=(lambda line: echo(f"  [init] {line}")) if echo else None
                )
                summary["wall_s"] = round(time.perf_counter() - t, 1)
                sub.write_summary(summary)
                for line in summary.get("headline", []) if echo else ():
                    echo(f"  [init] {line}")
        else:
            check_init_from(src, cfg)
            sub = RunDir(src)
        ck = load_latest(sub.checkpoint_dir, like={"weights": weights}, advice="",  # never advise touching them
                         on_skip=lambda p, why: echo(f"warning: init_from: skipping {p.name}: {why}") if echo else None)
        if ck is None:
            raise CheckpointError(f"init_from: the run folder {sub.path} holds no checkpoint to start from")
    return jax.tree_util.tree_map(jax.numpy.asarray, ck.trees["weights"])


def check_init_from(src: str, cfg: Config | None = None) -> None:
    """Refuse an ``init_from`` that cannot give trained weights: an unknown ``preset:NAME``, a path that
    does not exist, is not a run folder, holds no checkpoint, is a run that has not finished (its
    checkpoint would be taken mid-run) or, given the ``cfg`` that starts from it, holds no checkpoint whose
    weights fit ``cfg``'s network; a :class:`ConfigError` naming the key and what to do, raised before the
    new run writes anything. The source run's files are only read."""
    from ..presets import get_preset

    if not src:
        return
    if src.startswith("preset:"):
        try:
            get_preset(src.removeprefix("preset:"))
        except ConfigError as e:
            raise ConfigError(f"init_from: {e}") from None
        return
    path = Path(src)
    if not path.exists():
        raise ConfigError(f"init_from: {src} does not exist (expected 'preset:NAME' or a finished run folder)")
    if not (path / RunDir.CONFIG).is_file():
        raise ConfigError(f"init_from: {src} is not a run folder (no {RunDir.CONFIG})")
    found = list_checkpoints(path / RunDir.CHECKPOINTS)
    if not found:
        raise ConfigError(f"init_from: the run folder {src} holds no checkpoint to start from")
    if not RunDir(path).is_complete():
        raise ConfigError(
            f"init_from: the run {src} has not finished (no {RunDir.SUMMARY}; its newest checkpoint is "
            f"{found[-1][1].name}), so its weights are mid-run; finish it first with "
            f"`microcircuit run --resume {src}`"
        )
    if cfg is not None:
        like = {"weights": jax.eval_shape(lambda: build(cfg)[1])}  # shapes and dtypes only: nothing is drawn
        try:
            load_latest(path / RunDir.CHECKPOINTS, like=like, advice="")
        except CheckpointError as e:
            raise ConfigError(f"init_from: the run {src} cannot start this network (network.sizes = "
                              f"{list(cfg.network.sizes)}, {cfg.simulation.dtype}): {e}") from None


#: The ``training`` keys only the MNIST runner reads (all but ``training.epochs``): unused by the experiments
#: that train by epochs of their own patterns (``le_bars``, ``pal_alignment``, ``pal_teacher``).
MNIST_TRAINING_KEYS = ("training.method", "training.data", "training.batch", "training.n_passes",
                       "training.n_validation", "training.n_train", "training.r_low", "training.r_high",
                       "training.lr_backprop", "training.loss", "training.rule9_state", "training.lr_decay",
                       "training.eval_duration", "training.feedback", "training.lr", "training.probe",
                       "training.settle_images")

def arm_stop_check(stop: StopRequest | None, arm: str) -> Callable[[int], None]:
    """The ``progress`` callback of an arm's simulation: raises :class:`RunInterrupted` once ``stop`` is set
    (SIGINT/SIGTERM), saying that the finished arms stay and ``--resume`` continues with this one."""

    def check(_: int) -> None:
        if stop:
            raise RunInterrupted(stop.signum, f"interrupted by {stop.name} during the {arm!r} arm: the arms already "
                                 "written stay; --resume RUN_DIR continues with this one")

    return check


def train_arms(run_dir: RunDir | None, arms: tuple[str, ...], file_name: Callable[[str], str],
               train: Callable[[str, StopRequest], dict[str, Any]],
               report: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]],
               say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Each arm of an experiment in turn, as one result dict per arm (with ``wall_s`` and ``diverged``):
    an arm a resumed run already finished is read back from its JSON file ``file_name(arm)``; any other is
    trained (``train(arm, stop)``, which stops at SIGINT/SIGTERM), told (``report(arm, result)`` gives a
    line and the metrics of its row in metrics.jsonl) and written to its file."""
    results: dict[str, dict[str, Any]] = {}
    with graceful_stop() as stop:
        for arm in arms:
            path = None if run_dir is None else run_dir.file(file_name(arm))
            if path is not None and run_dir is not None and run_dir.resume and path.exists():
                results[arm] = json.loads(path.read_text())
                say(f"{arm}: done before")
                continue
            res = results[arm] = train(arm, stop)
            line, metrics = report(arm, res)
            say(line)
            if run_dir is not None:
                run_dir.write_json(file_name(arm), res)
                run_dir.log(arm=arm, wall_s=res["wall_s"], diverged=res["diverged"] is not None, **metrics)
    return results


def train_epochs(x: np.ndarray, targets: np.ndarray, order_rng: list[np.random.Generator], epochs: int, segment: int,
                 advance: Callable[[Stream, int, int], None], evaluate: Callable[[int], Any],
                 diverged: Callable[[DivergenceError], None]) -> tuple[list[int], list[Any], str | None, int]:
    """``epochs`` epochs of the P patterns ``x`` (P, n_0) with their ``targets``, in segments of ``segment``
    epochs, for an ensemble with one order generator per member (every epoch a new permutation of each):
    ``advance(stream, k, done)`` trains segment k (1, 2, ...) after ``done`` epochs on the (S, n·P, 1, ·) stream,
    ``evaluate(k)`` measures after it (k = 0 before training). A :class:`DivergenceError` ends the training and
    is told to ``diverged``. Returns the epochs of the evaluations, their results, the divergence (or None) and
    the epochs done."""
    P = x.shape[0]
    curve_epochs, curve = [0], [evaluate(0)]
    done, failed = 0, None
    while done < epochs:
        n = min(segment, epochs - done)
        idx = np.stack([np.concatenate([rng.permutation(P) for _ in range(n)]) for rng in order_rng])  # (S, nP)
        stream = Stream(x[idx][:, :, None, :], targets[idx][:, :, None, :], np.ones(idx.shape, bool))
        try:
            advance(stream, len(curve), done)
        except DivergenceError as e:
            failed = f"epoch {done + 1}..{done + n}: {e}"
            diverged(e)
            break
        done += n
        curve_epochs.append(done)
        curve.append(evaluate(len(curve)))
    return curve_epochs, curve, failed, done
