"""The run store: one folder per run with its configuration, metrics, summary and checkpoints.

Layout of ``<out>/<name>/<timestamp>/``::

    config.toml        resolved configuration (every parameter, defaults filled in)
    meta.json          package versions, device, seed, git commit, structure key, host, start time
    metrics.csv        one row per evaluation point: per-layer loss, accuracy, firing rate, synaptic ops
    summary.json       final per-layer metrics and confusion matrices, wall time, samples/s
    checkpoint.h5      parameters, optimiser state, RNG state, position in the epoch (HDF5, no pickle)
    recordings.h5      traces and weights, when recording was asked for (decolle_brian.recording, docs/recording.md)
    figures/           figures drawn from these files by `decolle-brian plot RUN_DIR` (decolle_brian.plotting)

Files are replaced atomically (temp file in the same folder, fsync, rename), so a run killed at any moment
leaves either the old or the new version, never a torn one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from decolle_brian.errors import StoreError

CHECKPOINT = "checkpoint.h5"
FORMAT_VERSION = 1


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OS refusal of a write to ``path`` into a :class:`StoreError` naming the path and the reason.

    Permission denied, disk full, a read-only file system (and h5py's errors, OSError subclasses) end a run
    with the run-store exit code and a message, not a traceback; what was written before is untouched
    (files are replaced atomically).
    """
    try:
        yield
    except OSError as exc:
        reason = f"{os.strerror(exc.errno)} (errno {exc.errno})" if exc.errno else str(exc)  # h5py: a long text
        raise StoreError(f"Cannot write {path}: {reason}. Files written before are untouched (the last checkpoint "
                         "still resumes); free space or make the folder writable, then run again") from None


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(tmp_path)``, fsync, then rename over ``path``.

    Raises :class:`StoreError` naming ``path`` when the OS refuses any step; ``path`` is then unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with writing(path):
        try:
            write(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a reader sees the old file or the new one, never a part."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def new_run_dir(out_root: Path, name: str) -> Path:
    """Create ``out_root/name/<UTC timestamp>/`` (unique), checking that it is writable."""
    out_root = Path(out_root)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_dir = out_root / name / stamp
        suffix = 1
        while run_dir.exists():
            run_dir = out_root / name / f"{stamp}-{suffix}"
            suffix += 1
        run_dir.mkdir(parents=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StoreError(f"Cannot write run outputs under {out_root}: {exc.strerror or exc}. "
                         "Choose a writable folder with --out.") from None
    return run_dir


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a run depends on (one not installed is left out)."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    versions = {"python": platform.python_version()}
    for name in ("decolle-brian", "brian2", "numpy", "sympy", "scipy", "tonic", "h5py", "brian2cuda"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def git_commit() -> str:
    """The checkout's commit (``-dirty`` when tracked files changed), or ``"unknown"`` outside a git checkout."""
    try:
        root = Path(__file__).resolve().parent.parent
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False)
        commit = result.stdout.strip()
        if commit:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5, check=False).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def write_meta(run_dir: Path, **extra) -> None:
    """Write ``meta.json`` of a run: creation time, host, versions, git commit, format version and ``extra``."""
    meta = {"created": datetime.now(UTC).isoformat(), "host": platform.node(),
            "versions": package_versions(), "git_commit": git_commit(), "format_version": FORMAT_VERSION,
            **extra}
    atomic_write_text(run_dir / "meta.json", json.dumps(meta, indent=2))


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically (NumPy numbers and arrays as plain JSON)."""
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def write_csv_table(path: Path, rows: list[dict]) -> None:
    """(Re)write a CSV table from all rows (atomic; columns = union of keys in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """(Re)write metrics.csv from all rows (see :func:`write_csv_table`)."""
    write_csv_table(Path(run_dir) / "metrics.csv", rows)


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's ``metrics.csv`` with numbers as numbers; an empty list when there is none yet."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _number(text: str):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


# ---- checkpoints ---------------------------------------------------------------------------------------------
def write_checkpoint(run_dir: Path, params: dict[str, np.ndarray], state: dict) -> None:
    """Atomically write parameters and the loop state (JSON-able dict incl. the RNG state)."""
    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["state"] = json.dumps(state, default=_json_default)
            f.attrs["written"] = time.time()
            group = f.create_group("params")
            for key, value in params.items():
                group.create_dataset(key, data=np.asarray(value))
    atomic_write(Path(run_dir) / CHECKPOINT, write)


def read_checkpoint(run_dir: Path, expected_shapes: dict[str, tuple] | None = None,
                    structure_key: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint; raise StoreError for a missing, corrupt or foreign one (nothing is modified)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise StoreError(f"No checkpoint in {run_dir} ({CHECKPOINT} missing): nothing to resume")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format_version") != FORMAT_VERSION:
                raise StoreError(f"{path}: not a decolle-brian checkpoint (format {f.attrs.get('format_version')})")
            state = json.loads(f.attrs["state"])
            params = {key: np.array(f["params"][key]) for key in f["params"]}
    except StoreError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise StoreError(f"{path} is corrupt or unreadable ({exc}); it was left untouched. "
                         "Start a new run, or restore the file from a backup.") from None
    if structure_key is not None and state.get("structure_key") != structure_key:
        raise StoreError(f"{path} belongs to another network (structure {state.get('structure_key')}, "
                         f"this configuration has {structure_key}); resume with the run's own config.toml")
    if expected_shapes is not None:
        bad = {k: params[k].shape for k in params if k in expected_shapes and params[k].shape != expected_shapes[k]}
        missing = sorted(set(expected_shapes) - set(params))
        if bad or missing:
            raise StoreError(f"{path} does not fit this network: missing {missing}, wrong shapes {bad}")
    return params, state
