"""Checkpoint files (microcircuit.checkpoint): round trip, and that every damaged, foreign or mismatched
file gives a CheckpointError naming the file, never garbage and never another exception."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microcircuit import checkpoint as ckpt
from microcircuit.checkpoint import (
    CheckpointError,
    checkpoint_path,
    config_differences,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from microcircuit.config import Config, apply_overrides
from microcircuit.dynamics import State
from microcircuit.network import Weights

CFG = apply_overrides(Config(), ["network.sizes=[5,4,3]", "network.bias=true", "network.init.bias=0.5"])


def _weights(sizes: tuple[int, ...], seed: int = 0) -> Weights:
    """Random float32 weights of the right shapes, built with numpy (no JAX compilation)."""
    rng = np.random.default_rng(seed)
    n, N = sizes, len(sizes) - 1
    f = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    return Weights(
        W=tuple(f(n[i + 1], n[i]) for i in range(N)), b=tuple(f(n[i + 1]) for i in range(N)),
        B=tuple(f(n[i + 1], n[i + 2]) for i in range(N - 1)), PI=tuple(f(n[i + 1], n[i + 2]) for i in range(N - 1)),
        IP=tuple(f(n[i + 2], n[i + 1]) for i in range(N - 1)), c=tuple(f(n[i + 2]) for i in range(N - 1)),
    )


def _contents(seed: int = 0) -> dict:
    w = _weights(CFG.network.sizes, seed)
    tr = jax.tree_util.tree_map(lambda a: a * 0.5, w)
    n = CFG.network.sizes
    s = State(u=(np.ones((2, n[1]), np.float32), np.full((2, n[2]), 2, np.float32)),
              u_inter=(np.zeros((2, n[2]), np.float32),), r_in=np.zeros((2, n[0]), np.float32),
              u_trgt=np.arange(2 * n[2], dtype=np.float32).reshape(2, n[2]))
    rec = {"apical_error_1": np.linspace(0, 1, 7, dtype=np.float32), "time_ms": np.arange(7.0)}
    return {"weights": w, "traces": tr, "state": s, "recorded": rec}


def _save(path: Path, cfg: Config = CFG, **kw) -> Path:
    kw.setdefault("counters", {"segment": 3, "patterns": 6, "time_ms": 30.0})
    kw.setdefault("key", jax.random.key(7))
    kw.setdefault("meta", {"rows": [{"patterns": 0, "x": 1.25}, {"patterns": 2, "x": float("nan")}]})
    return save_checkpoint(path, cfg, _contents(), **kw)


def _equal_trees(a, b) -> None:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = _save(tmp_path_factory.mktemp("ckpt") / "good.npz")
    return path, path.read_bytes()


# --------------------------------------------------------------------------------------------------
# Round trip


def test_round_trip(tmp_path: Path) -> None:
    """Config, weights, traces, state, recorded traces, RNG key, counters and meta come back exactly;
    with ``like`` the pytrees come back in their own structure (Weights/State NamedTuples)."""
    c = _contents()
    path = _save(tmp_path / "a" / "c.npz")  # parent folders are made
    ck = load_checkpoint(path, CFG, like={k: c[k] for k in ("weights", "traces", "state")})
    assert ck.config == CFG and ck.version == ckpt.FORMAT_VERSION and ck.path == path
    for name in ("weights", "traces", "state"):
        assert type(ck.trees[name]) is type(c[name])
        _equal_trees(ck.trees[name], c[name])
    assert set(ck.trees["recorded"]) == {"apical_error_1", "time_ms"}
    _equal_trees(ck.trees["recorded"], c["recorded"])
    assert ck.counters == {"segment": 3, "patterns": 6, "time_ms": 30.0}
    assert isinstance(ck.counters["segment"], int)
    np.testing.assert_array_equal(jax.random.key_data(ck.key), jax.random.key_data(jax.random.key(7)))
    assert jax.random.key_impl(ck.key) == jax.random.key_impl(jax.random.key(7))
    assert ck.meta["rows"][0] == {"patterns": 0, "x": 1.25} and np.isnan(ck.meta["rows"][1]["x"])
    # stable leaf names, as documented
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"t/weights/W/0.npy", "t/weights/IP/0.npy", "t/state/u/1.npy", "t/recorded/time_ms.npy"} <= names
    assert [f.name for f in (tmp_path / "a").iterdir()] == ["c.npz"]  # no temporary file left behind


def test_float64_and_integer_leaves_keep_their_dtype(tmp_path: Path) -> None:
    trees = {"x": {"f64": np.arange(3, dtype=np.float64) / 3, "i": np.arange(4, dtype=np.int64),
                   "b": np.array([True, False]), "scalar": np.float32(2.5)}}
    save_checkpoint(tmp_path / "c.npz", CFG, trees)
    ck = load_checkpoint(tmp_path / "c.npz", like=trees)
    _equal_trees(ck.trees["x"], trees["x"])
    assert ck.key is None and ck.counters == {} and ck.meta == {}
    # numpy scalars and arrays in meta (e.g. metric rows) are stored as JSON numbers and lists
    save_checkpoint(tmp_path / "m.npz", CFG, {}, meta={"rows": [{"x": np.float32(0.5), "v": np.arange(2)}]},
                    counters={"epoch": np.int64(3)})
    ck = load_checkpoint(tmp_path / "m.npz")
    assert ck.meta == {"rows": [{"x": 0.5, "v": [0, 1]}]} and ck.counters == {"epoch": 3}


def test_unstorable_contents_are_refused_when_saving(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype object"):
        save_checkpoint(tmp_path / "c.npz", CFG, {"x": {"o": np.array([{}, 1], dtype=object)}})
    with pytest.raises(ValueError, match="key="):
        save_checkpoint(tmp_path / "c.npz", CFG, {"x": {"k": jax.random.key(0)}})
    with pytest.raises(ValueError, match="counter"):
        save_checkpoint(tmp_path / "c.npz", CFG, {}, counters={"n": float("inf")})
    with pytest.raises(ValueError, match="tree name"):
        save_checkpoint(tmp_path / "c.npz", CFG, {"a/b": {}})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "c.npz", CFG, {}, meta={"x": object()})
    assert not list(tmp_path.iterdir())  # nothing half-written


# --------------------------------------------------------------------------------------------------
# Mismatches and foreign files


def test_config_mismatch_names_the_keys(good: tuple[Path, bytes]) -> None:
    path, _ = good
    other = apply_overrides(CFG, ["conductances.g_som=0.3", "simulation.dt=0.05", "network.sizes=[5,6,3]"])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, other)
    msg = str(e.value)
    assert str(path) in msg and "another configuration" in msg
    for key in ("conductances.g_som", "simulation.dt", "network.sizes"):
        assert key in msg
    # keys that do not change the computation may differ
    harmless = apply_overrides(CFG, ["name=renamed", "schedule.checkpoint_every=7", "schedule.keep_checkpoints=5"])
    assert load_checkpoint(path, harmless).config == CFG
    assert config_differences(CFG, harmless) == ["name", "schedule.checkpoint_every", "schedule.keep_checkpoints"]
    assert config_differences(CFG, harmless, ckpt.NON_COMPUTATIONAL) == []


def test_arrays_that_do_not_fit_the_template(good: tuple[Path, bytes]) -> None:
    """Sizes that differ from the saved ones (e.g. a template built for another network) fail by name."""
    path, _ = good
    with pytest.raises(CheckpointError, match="weights does not fit"):
        load_checkpoint(path, like={"weights": _weights((5, 4, 4, 3))})
    with pytest.raises(CheckpointError, match=r"weights/W/0 has shape \(4, 5\)"):
        load_checkpoint(path, like={"weights": _weights((6, 4, 3))})
    with pytest.raises(CheckpointError, match="holds no 'optimiser'"):
        load_checkpoint(path, like={"optimiser": _weights((5, 4, 3))})


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "plain.npz", a=np.arange(3))  # a valid npz, but not a checkpoint
    np.savez_compressed(tmp_path / "deflated.npz", a=np.arange(3))
    for name in ("empty.npz", "text.npz", "plain.npz", "deflated.npz"):
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(tmp_path / name)
        assert str(tmp_path / name) in str(e.value)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)  # a folder


class _Boom:
    """Unpickling this would flip a flag: proves the loader never unpickles."""

    fired = False

    def __reduce__(self):
        return (_fire, ())


def _fire() -> None:
    _Boom.fired = True


def test_pickled_members_are_never_loaded(tmp_path: Path) -> None:
    """An npz with an object array (which numpy stores as a pickle) is refused without unpickling."""
    path = tmp_path / "evil.npz"
    np.savez(path, **{"t/weights/W/0": np.array([_Boom()], dtype=object)})
    with pytest.raises(CheckpointError, match=r"not allowed|corrupted"):
        load_checkpoint(path)
    assert not _Boom.fired
    assert pickle.dumps  # (pickle is only used above to build the hostile file)


def test_other_format_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 99)
    path = _save(tmp_path / "v99.npz")
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated(good: tuple[Path, bytes], tmp_path: Path, fraction: float) -> None:
    _, data = good
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"cut\.npz"):
        load_checkpoint(path)


def test_consistent_tampering_is_caught_by_the_checksum(good: tuple[Path, bytes], tmp_path: Path) -> None:
    """A member rewritten with a valid zip CRC (so only the SHA-256 can tell) is detected."""
    src, _ = good
    path = tmp_path / "tampered.npz"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "t/weights/W/0.npy":
                buf = io.BytesIO()
                a = np.load(io.BytesIO(data))
                np.save(buf, a + 1)
                data = buf.getvalue()
            zout.writestr(info, data)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


# --------------------------------------------------------------------------------------------------
# Property-based: random damage to a real checkpoint gives CheckpointError or the very same contents


def _check_damaged(path: Path, data: bytes, ref: ckpt.Checkpoint) -> None:
    path.write_bytes(data)
    try:
        ck = load_checkpoint(path, CFG)
    except CheckpointError as e:
        assert str(path) in str(e)
        return
    assert ck.config == ref.config and ck.counters == ref.counters
    assert str(ck.meta) == str(ref.meta)  # (NaN != NaN, so compare the text)
    np.testing.assert_array_equal(jax.random.key_data(ck.key), jax.random.key_data(ref.key))
    assert ck.trees.keys() == ref.trees.keys()
    for name in ref.trees:
        _equal_trees(ck.trees[name], ref.trees[name])


@pytest.fixture(scope="module")
def reference(good: tuple[Path, bytes]) -> ckpt.Checkpoint:
    return load_checkpoint(good[0], CFG)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_bytes(good: tuple[Path, bytes], reference: ckpt.Checkpoint, scratch: Path,
                       data: st.DataObject) -> None:
    _, ref = good
    n = len(ref)
    edits = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), min_size=1, max_size=8))
    buf = bytearray(ref)
    for i, b in edits:
        buf[i] = b
    _check_damaged(scratch / "mutated.npz", bytes(buf), reference)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_cut_inserted_and_random_bytes(good: tuple[Path, bytes], reference: ckpt.Checkpoint, scratch: Path,
                                       data: st.DataObject) -> None:
    _, ref = good
    n = len(ref)
    kind = data.draw(st.sampled_from(["truncate", "insert", "delete", "random", "append"]))
    if kind == "truncate":
        damaged = ref[: data.draw(st.integers(0, n - 1))]
    elif kind == "insert":
        i = data.draw(st.integers(0, n))
        damaged = ref[:i] + data.draw(st.binary(min_size=1, max_size=64)) + ref[i:]
    elif kind == "delete":
        i = data.draw(st.integers(0, n - 1))
        damaged = ref[:i] + ref[i + data.draw(st.integers(1, 64)) :]
    elif kind == "append":
        damaged = ref + data.draw(st.binary(min_size=1, max_size=64))
    else:
        damaged = data.draw(st.binary(max_size=2048))
    _check_damaged(scratch / "damaged.npz", damaged, reference)


# --------------------------------------------------------------------------------------------------
# A folder of checkpoints


def test_checkpoint_folder(tmp_path: Path) -> None:
    assert list_checkpoints(tmp_path / "none") == [] and latest_checkpoint(tmp_path) is None
    for i in (10, 2, 300):
        save_checkpoint(checkpoint_path(tmp_path, i), CFG, {})
    (tmp_path / "diverged-last-good.npz").write_bytes(b"")  # other files are not checkpoints
    (tmp_path / "ckpt-5.npz.tmp").write_bytes(b"")
    assert [i for i, _ in list_checkpoints(tmp_path)] == [2, 10, 300]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 300)
    assert prune_checkpoints(tmp_path, 2) == [checkpoint_path(tmp_path, 2)]
    assert [i for i, _ in list_checkpoints(tmp_path)] == [10, 300]
    assert (tmp_path / "diverged-last-good.npz").exists()
    with pytest.raises(ValueError):
        prune_checkpoints(tmp_path, 0)
