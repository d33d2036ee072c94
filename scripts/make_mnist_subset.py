#!/usr/bin/env python
"""Generate the MNIST subset embedded in the package (src/microcircuit/data/mnist_subset.npz).

Usage::

    python scripts/make_mnist_subset.py /path/to/mnist.npz        # Keras-layout full MNIST
    python scripts/make_mnist_subset.py /path/to/idx-directory     # or the four IDX files

The source is read and validated with ``microcircuit.data.load_mnist`` and must match the published
full-MNIST content hashes. The subset holds the first ``--n-train`` (2,000) training and the first
``--n-test`` (1,000) test images, uint8, in the original order. The npz is written with fixed zip
timestamps, so regenerating it from the same data gives a byte-identical file.

MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges) is licensed CC BY-SA 3.0; the subset is a
derivative under the same licence (see src/microcircuit/data/LICENSE-MNIST.txt).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "microcircuit" / "data" / "mnist_subset.npz"
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def _data_module():
    """Import microcircuit.data, from the source tree if the package is not installed."""
    try:
        return importlib.import_module("microcircuit.data")
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
        return importlib.import_module("microcircuit.data")


def write_reproducible_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a deflate-compressed npz with fixed member timestamps and order (byte-reproducible)."""
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="full MNIST: Keras mnist.npz or a directory of IDX files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output npz (default: {DEFAULT_OUT})")
    parser.add_argument("--n-train", type=int, default=2000, help="first N training images (default 2000)")
    parser.add_argument("--n-test", type=int, default=1000, help="first N test images (default 1000)")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the check against the published full-MNIST hashes"
    )
    args = parser.parse_args(argv)

    data = _data_module()
    try:
        mnist = data.load_mnist(args.source)
        if not args.no_verify:
            data.verify_hashes(mnist, source=args.source)
    except data.DataError as exc:
        parser.error(str(exc))
    if not (0 < args.n_train <= len(mnist.y_train) and 0 < args.n_test <= len(mnist.y_test)):
        parser.error(f"--n-train/--n-test must be in 1..{len(mnist.y_train)} / 1..{len(mnist.y_test)}")

    subset = {
        "x_train": mnist.x_train[: args.n_train],
        "y_train": mnist.y_train[: args.n_train],
        "x_test": mnist.x_test[: args.n_test],
        "y_test": mnist.y_test[: args.n_test],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_reproducible_npz(args.out, subset)

    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.3f} MB; sha256 of file "
        f"{hashlib.sha256(args.out.read_bytes()).hexdigest()})"
    )
    for key, value in subset.items():
        print(f"  {key:8s} {value.shape!s:16s} {value.dtype}  sha256 {data.array_sha256(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
