"""Compiled networks shared by the points of a sweep: one compile per network structure, and no clashes.

Points that differ only in run-time values (learning rate, neuron decay factors, seed, data subset) share
one network structure (:meth:`NetworkSpec.structure_key`) and so one compiled binary. Parallel workers
must not build or run in one standalone project folder at the same time: a build rewrites sources and
static arrays, and a run writes ``results/`` and run-argument files there. Hence, under the build root::

    <key>/                                  master build of one structure, compiled once
    <key>.lock                              file lock held while the master is built or copied
    <key>.workers/<host>-<slot>/<name>/     a worker's private copy, where its points run
    <key>.workers/<host>-<slot>.lock        held by the process using that copy

``key`` is the Simulator's per-structure folder name (device, structure hash, chunk steps) plus the OpenMP thread
count, which is compiled in too. The master is (re)built under its lock, so concurrent workers wait for one compile
instead of compiling the same code twice. The master may also be the build folder of plain runs (when the sweep's
build folder is theirs), which build and run there without that lock; copies out of and into it therefore hold the
folder's own lock too (:func:`~decolle_brian.devices.build_folder_lock`: shared to copy out, exclusive to copy in),
so that no copy takes a torn file and no run reads one. A private copy keeps file times, so ``make`` in it finds
nothing to do. Whether a point compiled is measured, not assumed: the binary ``main`` changed (modification time or
size) in the master or in the private copy.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from brian2.utils.filelock import FileLock, Timeout

from decolle_brian.devices import Simulator, build_folder_lock, build_root, default_build_dir

BINARY = "main"
SEEDED = "seeded.json"


def default_build_root() -> Path:
    """``$DECOLLE_BUILD_DIR/sweep`` or ``<temp>/decolle-brian-build/sweep`` (kept apart from plain runs,
    which build without these locks)."""
    return build_root() / "sweep"


@dataclass
class BuildSlot:
    """Where a point's network runs, and whether getting it there compiled anything.

    Attributes
    ----------
    key : str
        Structure folder name ('' for the runtime device, which compiles nothing to share).
    master : Path or None
    private : Path or None
        The worker's private project folder; the Simulator of the point's run builds (normally: no-op)
        and runs there, found through ``$DECOLLE_BUILD_DIR``.
    compiled : bool
        The master or the private copy was compiled for this point.
    """

    key: str = ""
    master: Path | None = None
    private: Path | None = None
    compiled: bool = False


def stamp(binary: Path) -> list | None:
    """(mtime_ns, size) of a compiled binary, None when absent: a relink changes it."""
    try:
        info = binary.stat()
    except FileNotFoundError:
        return None
    return [info.st_mtime_ns, info.st_size]


def fresh_brian_names() -> None:
    """Drop the previous network's Brian objects so the next one gets the same object names.

    Brian names objects uniquely among the living ones (``network``, then ``network_1``, ...), and the
    names are in the generated code: a second network of one process would differ from the master build
    and recompile. Re-initialising the device releases its references; collecting frees the cycles.
    """
    import brian2  # noqa: PLC0415

    brian2.devices.device.reinit()
    gc.collect()


def structure_key(experiment) -> str:
    """Build folder name of an experiment's network (see the module docstring)."""
    dev = experiment.config["device"]
    return default_build_dir(experiment.spec, dev["name"], experiment.chunk_steps, threads=dev["threads"]).name


@contextmanager
def structure_build(experiment, build_root: str | Path) -> Iterator[BuildSlot]:
    """Make the experiment's network available, compiled, in a private folder of this process.

    Inside the block ``$DECOLLE_BUILD_DIR`` points at the private copy's parent, so a run of this
    experiment with ``device.build_dir = ""`` builds (a no-op) and runs there. On leaving, a private
    copy that had to compile anyway (the master was stale) is copied back to the master.

    Parameters
    ----------
    experiment : decolle_brian.experiment.Experiment
    build_root : path
        Shared by all workers of a machine (or of a cluster, on a shared file system).

    Yields
    ------
    BuildSlot
    """
    dev = experiment.config["device"]
    if dev["name"] == "runtime":
        yield BuildSlot()
        return
    root = Path(build_root)
    root.mkdir(parents=True, exist_ok=True)
    key = structure_key(experiment)
    master = root / key
    master_lock = FileLock(str(root / f"{key}.lock"))
    workers = root / f"{key}.workers"
    workers.mkdir(exist_ok=True)
    slot_lock, private_root = _claim_slot(workers)
    private = private_root / key  # the folder the run's own Simulator finds under $DECOLLE_BUILD_DIR
    slot = BuildSlot(key, master, private)
    previous_env = os.environ.get("DECOLLE_BUILD_DIR")
    try:
        with master_lock:
            before = stamp(master / BINARY)
            fresh_brian_names()
            sim = Simulator(experiment.spec, experiment.chunk_steps, device=dev["name"], build_dir=master,
                            threads=dev["threads"], runtime_target=dev["runtime_target"])
            del sim
            fresh_brian_names()
            master_stamp = stamp(master / BINARY)
            slot.compiled = master_stamp != before
            seeded = _read_json(private_root / SEEDED)
            if seeded != master_stamp or stamp(private / BINARY) is None:
                with build_folder_lock(master, exclusive=False):  # a plain run may be building the master
                    _copy_project(master, private)
                _write_json(private_root / SEEDED, master_stamp)
        os.environ["DECOLLE_BUILD_DIR"] = str(private_root)
        private_before = stamp(private / BINARY)
        try:
            yield slot
        finally:  # also when the run failed after building
            private_after = stamp(private / BINARY)
            if private_after != private_before:
                slot.compiled = True
                if private_after is not None:
                    # share what this worker had to compile; no plain run reads the master meanwhile
                    with master_lock, build_folder_lock(master, exclusive=True):
                        _copy_project(private, master)
                        _write_json(private_root / SEEDED, stamp(master / BINARY))
    finally:
        if previous_env is None:
            os.environ.pop("DECOLLE_BUILD_DIR", None)
        else:
            os.environ["DECOLLE_BUILD_DIR"] = previous_env
        slot_lock.release()


def _claim_slot(workers: Path) -> tuple[FileLock, Path]:
    """The lowest free private-copy slot of this host (its lock is held until released)."""
    host = platform.node() or "host"
    for index in itertools.count():
        lock = FileLock(str(workers / f"{host}-{index}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        path = workers / f"{host}-{index}"
        path.mkdir(exist_ok=True)
        return lock, path
    raise AssertionError("unreachable")


def _copy_project(source: Path, target: Path) -> None:
    """Copy a standalone project keeping file times (so make finds it up to date); not its results. Each file
    replaces the old one by a rename: a binary that runs (a served one, backends/served.py) cannot be written in
    place, and a new inode tells its server that the build changed."""
    shutil.copytree(source, target, dirs_exist_ok=True, copy_function=_copy_by_rename,
                    ignore=shutil.ignore_patterns("results", "results-*", "*.lock", "init_*.dat", "decolle_*.dat",
                                                 ".static_arrays.staging"))


def _copy_by_rename(source: str, target: str) -> str:
    staging = f"{target}.copy-{os.getpid()}"
    shutil.copy2(source, staging)
    os.replace(staging, target)
    return target


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
