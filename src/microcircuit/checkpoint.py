"""Checkpoints: everything a run needs to continue bit for bit, in a safe format (.npz, never pickle).

A checkpoint is one ``.npz`` file (an uncompressed zip of ``.npy`` members), written atomically through
:func:`microcircuit.runs.atomic_write` (temporary file, fsync, rename). It holds

- the resolved config, as TOML text (member ``__config__``, uint8);
- any number of named pytrees (weights, filter traces, state, recorded traces, optimiser state, ...),
  flattened to one array per leaf under a stable name: ``t/<tree>/<path>``, e.g. ``t/weights/W/0``
  (NamedTuple fields by name, tuple/list items by index, dict entries by key);
- the RNG key (``jax.random.key_data``, member ``__key__``) and its implementation name;
- integer/float counters (segment, pattern index, step, epoch, ...) and a JSON-able ``meta`` mapping
  (e.g. the metric rows logged so far), in a JSON header (``__header__``) with a format version;
- a SHA-256 of all the other members (names, dtypes, shapes and bytes; ``__sha256__``).

Loading never unpickles: object dtypes are refused, every ``.npy`` header is checked against the size
of its member before anything is allocated, the zip CRCs and the SHA-256 are verified. Whatever is
wrong with a file (missing, truncated, bit flips, another format version, another config, arrays that
do not fit the expected pytrees) gives a :class:`~microcircuit.errors.CheckpointError` naming the file
and the problem.

API
---
``save_checkpoint(path, cfg, trees, *, counters=None, key=None, meta=None) -> Path``
    Write a checkpoint. ``trees``: ``{name: pytree}`` whose leaves are arrays (jax or numpy) of bool,
    int, uint, float or complex dtype; pass PRNG keys through ``key=``, not inside a tree.

``load_checkpoint(path, cfg=None, *, like=None, ignore=NON_COMPUTATIONAL) -> Checkpoint``
    Read and verify a checkpoint. With ``cfg``, refuse one whose config differs from ``cfg`` in any key
    other than those in ``ignore`` (names or dotted prefixes), naming the differing keys. With
    ``like={name: template}``, rebuild those trees in the template's structure (leaf shapes and dtype
    kinds must match; the arrays come back as numpy arrays of the saved dtype); other trees come back
    as flat ``{leaf name: array}`` dicts.

``config_differences(a, b, ignore=()) -> list[str]``
    The dotted keys in which two configs differ.

``checkpoint_path(directory, index)``, ``list_checkpoints(directory)``, ``latest_checkpoint(directory)``,
``load_latest(directory, cfg, like=..., on_skip=...)``, ``prune_checkpoints(directory, keep)``
    A folder of checkpoints named ``ckpt-<index>.npz`` (index: any increasing counter, e.g. patterns
    or epochs). ``latest_checkpoint`` is the one with the highest index (or None); ``load_latest``
    loads the newest one that verifies, skipping (and reporting) damaged newer ones.

Example (a trainer that checkpoints every epoch)::

    from microcircuit.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, \
        prune_checkpoints, save_checkpoint

    path = latest_checkpoint(run.checkpoint_dir) if run.resume else None
    if path is not None:
        ck = load_checkpoint(path, cfg, like={"weights": w0})
        w, epoch, rows = ck.trees["weights"], int(ck.counters["epoch"]), ck.meta["rows"]
    ...
    save_checkpoint(checkpoint_path(run.checkpoint_dir, seen), cfg, {"weights": w},
                    counters={"epoch": epoch + 1, "seen": seen}, key=key, meta={"rows": rows})
    prune_checkpoints(run.checkpoint_dir, keep=cfg.schedule.keep_checkpoints)
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .config import Config, ConfigError, from_dict, to_dict, to_toml
from .errors import CheckpointError
from .runs import _jsonable, atomic_write

__all__ = [
    "FORMAT_VERSION",
    "NON_COMPUTATIONAL",
    "Checkpoint",
    "CheckpointError",
    "checkpoint_path",
    "config_differences",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest",
    "prune_checkpoints",
    "save_checkpoint",
]

FORMAT_VERSION = 1
MAGIC = "microcircuit-checkpoint"

#: Config keys (names or dotted prefixes) that do not change the computation: a checkpoint may be
#: loaded against a config that differs only in these. ``training.epochs`` only says where the epoch
#: loop of the MNIST runner stops (epoch k is the same whatever the total), so a resumed run may be
#: extended or cut short at an epoch already checkpointed.
NON_COMPUTATIONAL: tuple[str, ...] = (
    "name", "schedule.checkpoint_every", "schedule.keep_checkpoints", "training.epochs",
)

_HEADER, _CONFIG, _KEY, _SHA = "__header__", "__config__", "__key__", "__sha256__"
_TREE = "t/"
_DTYPE_KINDS = "biufc"
_MAX_MEMBERS = 1_000_000
_NAME_RE = re.compile(r"^ckpt-(\d+)\.npz$")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded, verified checkpoint."""

    path: Path
    version: int
    config: Config
    trees: dict[str, Any]
    counters: dict[str, int | float] = field(default_factory=dict)
    key: jax.Array | None = None
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Flattening pytrees to named arrays


def _part(k: Any) -> str:
    for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey / FlattenedIndexKey, SequenceKey
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)  # pragma: no cover - other key kinds


def _leaf_names(tree: Any) -> tuple[list[str], list[Any], Any]:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = ["/".join(_part(k) for k in path) for path, _ in flat]
    return names, [leaf for _, leaf in flat], treedef


def _as_array(name: str, leaf: Any) -> np.ndarray:
    if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        raise ValueError(f"checkpoint leaf {name}: pass PRNG keys through key=, not inside a tree")
    a = np.asarray(leaf)
    if a.dtype.hasobject or a.dtype.kind not in _DTYPE_KINDS:
        raise ValueError(f"checkpoint leaf {name}: dtype {a.dtype} cannot be stored (numbers and bools only)")
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray would make 0-d arrays 1-d)


def _text(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), np.uint8).copy()


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == _SHA:
            continue
        a = arrays[name]
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes(order="C"))
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Saving


def _check_counters(counters: Mapping[str, Any]) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    for k, v in counters.items():
        if isinstance(v, np.integer | np.floating):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"checkpoint counter {k!r}: must be a finite int or float, got {v!r}")
        out[str(k)] = v
    return out


def save_checkpoint(
    path: str | Path,
    cfg: Config,
    trees: Mapping[str, Any],
    *,
    counters: Mapping[str, int | float] | None = None,
    key: jax.Array | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to ``path`` (parent folders are created); returns the path.

    Raises ``ValueError`` for contents that cannot be stored (object arrays, non-finite counters,
    ``meta`` that is not JSON-able, tree names containing ``/``).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for tree_name, tree in trees.items():
        if not tree_name or "/" in tree_name:
            raise ValueError(f"checkpoint tree name {tree_name!r}: must be non-empty without '/'")
        names, leaves, _ = _leaf_names(tree)
        for name, leaf in zip(names, leaves, strict=True):
            full = f"{_TREE}{tree_name}/{name}"
            if full in arrays:
                raise ValueError(f"checkpoint leaf {full}: two leaves map to the same name")
            arrays[full] = _as_array(full, leaf)
    key_impl = None
    if key is not None:
        arrays[_KEY] = np.asarray(jax.random.key_data(key))
        key_impl = str(jax.random.key_impl(key))
    header = {
        "magic": MAGIC,
        "version": FORMAT_VERSION,
        "trees": sorted(trees),
        "counters": _check_counters(counters or {}),
        "key_impl": key_impl,
        "meta": _jsonable(dict(meta or {})),  # numpy/jax scalars and arrays become numbers and lists
    }
    try:
        arrays[_HEADER] = _text(json.dumps(header))
    except TypeError as e:
        raise ValueError(f"checkpoint meta must be JSON-able: {e}") from None
    arrays[_CONFIG] = _text(to_toml(cfg))
    arrays[_SHA] = _text(_digest(arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# --------------------------------------------------------------------------------------------------
# Loading


def _parse_npy(data: bytes) -> np.ndarray:
    """One ``.npy`` member, without pickle, with its size checked before anything is allocated."""
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject or dtype.kind not in _DTYPE_KINDS:
        raise ValueError(f"dtype {dtype} is not allowed")
    count = math.prod(shape)
    offset = f.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise ValueError(f"header says {count} × {dtype.itemsize} bytes, member holds {len(data) - offset}")
    a = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    a = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
    return np.array(a)  # an owned, writable copy


def _read_members(path: Path) -> dict[str, np.ndarray]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read: {e}") from None
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise CheckpointError(f"checkpoint {path} is corrupted: {len(infos)} members")
            for info in infos:
                name = info.filename
                if not name.endswith(".npy") or name[:-4] in out:
                    raise CheckpointError(f"checkpoint {path} is corrupted: unexpected member {name!r}")
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                    raise CheckpointError(f"checkpoint {path} is corrupted: member {name!r} has a bad size "
                                          "or compression")
                out[name[:-4]] = _parse_npy(zf.read(info))
    except CheckpointError:
        raise
    except Exception as e:  # zipfile/npy parsing of damaged bytes raises many kinds; all mean the same
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted ({type(e).__name__}: {e})"
        ) from None
    return out


def _json_text(path: Path, a: np.ndarray | None, what: str) -> str:
    if a is None or a.dtype != np.uint8 or a.ndim != 1:
        raise CheckpointError(f"checkpoint {path} has no valid {what}")
    try:
        return a.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"checkpoint {path}: {what} is not UTF-8 text") from None


def config_differences(a: Config, b: Config, ignore: Iterable[str] = ()) -> list[str]:
    """Dotted keys in which ``a`` and ``b`` differ, except those equal to or under an ``ignore`` entry."""

    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, Mapping):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = v
        return out

    fa, fb = flat(to_dict(a)), flat(to_dict(b))
    ignore = tuple(ignore)
    skip = lambda k: any(k == p or k.startswith(p + ".") for p in ignore)  # noqa: E731
    return sorted(k for k in fa.keys() | fb.keys() if not skip(k) and fa.get(k, None) != fb.get(k, None))


def _describe_differences(saved: Config, cfg: Config, keys: list[str]) -> str:
    def value(c: Config, key: str) -> Any:
        node: Any = to_dict(c)
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node

    shown = [f"{k} (checkpoint {value(saved, k)!r}, config {value(cfg, k)!r})" for k in keys[:6]]
    more = f" and {len(keys) - 6} more" if len(keys) > 6 else ""
    return ", ".join(shown) + more


def _restore(path: Path, tree_name: str, template: Any, flat: dict[str, np.ndarray]) -> Any:
    names, leaves, treedef = _leaf_names(template)
    missing = [n for n in names if n not in flat]
    extra = sorted(set(flat) - set(names))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {path}: {tree_name} does not fit this network"
            + (f"; missing {', '.join(missing[:5])}" if missing else "")
            + (f"; unexpected {', '.join(extra[:5])}" if extra else "")
        )
    out = []
    for name, leaf in zip(names, leaves, strict=True):
        a = flat[name]
        want = np.dtype(getattr(leaf, "dtype", np.asarray(leaf).dtype))
        if tuple(a.shape) != tuple(np.shape(leaf)) or a.dtype.kind != want.kind:
            raise CheckpointError(
                f"checkpoint {path}: {tree_name}/{name} has shape {tuple(a.shape)} and dtype {a.dtype}, "
                f"expected {tuple(np.shape(leaf))} and {want}"
            )
        out.append(a)
    return jax.tree_util.tree_unflatten(treedef, out)


def load_checkpoint(
    path: str | Path,
    cfg: Config | None = None,
    *,
    like: Mapping[str, Any] | None = None,
    ignore: Iterable[str] = NON_COMPUTATIONAL,
) -> Checkpoint:
    """Read and verify ``path``; see the module docstring. Raises :class:`CheckpointError` only."""
    path = Path(path)
    arrays = _read_members(path)
    sha = _json_text(path, arrays.get(_SHA), "checksum")
    if sha != _digest(arrays):
        raise CheckpointError(f"checkpoint {path} is corrupted: its SHA-256 does not match its contents")
    try:
        header = json.loads(_json_text(path, arrays.get(_HEADER), "header"))
    except ValueError:
        raise CheckpointError(f"checkpoint {path}: the header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise CheckpointError(f"checkpoint {path} is not a microcircuit checkpoint")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {header.get('version')!r}; this microcircuit reads "
            f"version {FORMAT_VERSION}"
        )
    try:
        saved_cfg = from_dict(Config, tomllib.loads(_json_text(path, arrays.get(_CONFIG), "config")))
    except (ConfigError, tomllib.TOMLDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {e}") from None
    if cfg is not None:
        diff = config_differences(saved_cfg, cfg, ignore)
        if diff:
            raise CheckpointError(
                f"checkpoint {path} was written for another configuration: it differs in "
                f"{_describe_differences(saved_cfg, cfg, diff)}"
            )
    tree_names = header.get("trees")
    counters = header.get("counters")
    meta = header.get("meta")
    if (
        not isinstance(tree_names, list)
        or not all(isinstance(t, str) for t in tree_names)
        or not isinstance(counters, dict)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in counters.values())
        or not isinstance(meta, dict)
    ):
        raise CheckpointError(f"checkpoint {path}: malformed header")
    flat: dict[str, dict[str, np.ndarray]] = {t: {} for t in tree_names}
    for name, a in arrays.items():
        if name in (_HEADER, _CONFIG, _KEY, _SHA):
            continue
        tree, _, leaf = name.removeprefix(_TREE).partition("/")
        if not name.startswith(_TREE) or tree not in flat or not leaf:
            raise CheckpointError(f"checkpoint {path}: unexpected array {name!r}")
        flat[tree][leaf] = a
    trees: dict[str, Any] = dict(flat)
    for tree, template in (like or {}).items():
        if tree not in flat:
            raise CheckpointError(f"checkpoint {path} holds no {tree!r} (it has: {', '.join(tree_names)})")
        trees[tree] = _restore(path, tree, template, flat[tree])
    key = None
    if _KEY in arrays:
        try:
            key = jax.random.wrap_key_data(arrays[_KEY], impl=header.get("key_impl"))
        except Exception as e:  # wrong shape/dtype for the implementation, unknown implementation
            raise CheckpointError(f"checkpoint {path}: invalid RNG key ({e})") from None
    return Checkpoint(path, FORMAT_VERSION, saved_cfg, trees, counters, key, meta)


# --------------------------------------------------------------------------------------------------
# A folder of checkpoints


def checkpoint_path(directory: str | Path, index: int) -> Path:
    """``directory/ckpt-<index, 12 digits>.npz``."""
    if index < 0:
        raise ValueError(f"checkpoint index must be >= 0, got {index}")
    return Path(directory) / f"ckpt-{index:012d}.npz"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(index, path) of the checkpoints in ``directory``, oldest first; [] when there are none."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME_RE.match(p.name)) and p.is_file()]
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint with the highest index in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def load_latest(
    directory: str | Path,
    cfg: Config | None = None,
    *,
    like: Mapping[str, Any] | None = None,
    ignore: Iterable[str] = NON_COMPUTATIONAL,
    check: Callable[[Checkpoint], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
    advice: str = "remove them to start the run afresh",
) -> Checkpoint | None:
    """The newest checkpoint in ``directory`` that loads and verifies (:func:`load_checkpoint`, then
    ``check``, which may raise :class:`CheckpointError` too); a newer one that fails is skipped and the next
    older one tried; once one loads, ``on_skip(path, reason)`` is called for each skipped one. None when
    the folder holds no checkpoint; a :class:`CheckpointError` naming every file and its problem when none
    of them is usable, ending with ``advice`` (what to do; empty where the checkpoints are another run's,
    which must not be touched)."""
    found = list_checkpoints(directory)
    problems: list[tuple[Path, str]] = []
    for _, path in reversed(found):
        try:
            ck = load_checkpoint(path, cfg, like=like, ignore=ignore)
            if check is not None:
                check(ck)
        except CheckpointError as e:
            problems.append((path, str(e)))
            continue
        for skipped, why in problems if on_skip is not None else ():
            on_skip(skipped, why)
        return ck
    if problems:
        raise CheckpointError(f"no usable checkpoint in {directory}: " + "; ".join(why for _, why in problems)
                              + (f"; {advice}" if advice else ""))
    return None


def prune_checkpoints(directory: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints (``keep`` >= 1); returns the deleted paths."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    old = [p for _, p in list_checkpoints(directory)[:-keep]]
    for p in old:
        p.unlink(missing_ok=True)
    return old
