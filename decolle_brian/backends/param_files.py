"""Parameters stay in the files the C++ standalone binary wrote: read without a copy, given back without a write.

Every run of a compiled network is given the parameters (weights, biases, readouts; with Adamax its state) and
writes them back after learning; the next run is given what the last one wrote. Done the plain way, each run
of the dense 2048-500-500 event benchmark moved its 10 MB of weights four times outside the simulation: the
binary wrote them, Python read them (``np.fromfile``) and copied them (its own array), then wrote them into a
new file for the next run, which the binary read: about 11 ms of the ~45 ms a 16-sample run spent outside its
simulation (docs/batch.md).

Here a parameter's result file is *kept*: moved (renamed, no copy) out of the results folder into the
process's ``params`` folder and mapped read-only (``np.memmap`` mode ``"r"``); that mapping is the array the
:class:`~decolle_brian.devices.Simulator` returns. When an array given to the next run is exactly a kept one
(the same memory, the whole of it, C order, same dtype), the run's argument names the kept file instead of a
new file written from it. The bytes are the same: a read-only mapping of a file can be changed neither by
numpy (not writeable, and cannot be made so) nor by the binary (it writes its results into new files, the old
names removed first, :func:`~decolle_brian.backends.cpp_standalone.clear_results`; a kept file is never
opened for writing). Anything else (a copy, a changed array, a parameter computed in Python) is written as
before. A kept file is removed once the last array using its memory is freed, but not before the next run: until
then Brian's own reads of the variable find it (:attr:`~decolle_brian.backends.read_back.ReadBackDevice.moved`).
The files are handed to the next run (:meth:`KeptFiles.new_run`), which removes them while its binary runs:
freeing a weight file's pages in the training loop's thread cost it about 1-2 ms per run (docs/batch.md).
Whether a kept file's values are all finite (the check every run's parameters get) is worked out on a thread of
its own as soon as it is kept, while the loop reads the run's other results (:meth:`KeptFiles.known_finite`): the
first reading of a 10 MB mapping's pages cost the loop's thread 1-1.5 ms.
The process's folder goes with its results folder
(:func:`~decolle_brian.backends.cpp_standalone.remove_stale_results`).
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

#: the folder of the kept files inside a process's results folder
KEPT_FOLDER = "params"

_names = itertools.count()  # one sequence per process: two networks of one build folder share its folder


class KeptFiles:
    """The parameter files of one process's runs kept for reading and for the next run (module docstring).

    Parameters
    ----------
    folder : Path
        Where kept files go (``<results folder>/params``); made when the first file is kept.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._by_address: dict[int, tuple[int, np.dtype, Path]] = {}  # data address -> (bytes, dtype, file)
        self._finite: dict[int, tuple[int, np.dtype, Future]] = {}  # data address -> (bytes, dtype, all finite?)
        self._in_use: set[Path] = set()  # files whose mapping is alive
        self._latest: set[Path] = set()  # files kept from the last run: stay until the next one starts
        self._unused: list[Path] = []  # files of earlier runs no array uses: removed by the next run
        self._pid = os.getpid()  # a forked process inherits the mappings, not the files: it removes none
        self._lock = threading.Lock()  # mappings may be freed on another thread (the loop's preparing one)

    def new_run(self) -> list[Path]:
        """A run starts: the kept files no array uses any more, for the caller to remove (while its binary runs,
        :func:`remove_files`), the last run's among them."""
        with self._lock:
            unused = [*self._unused, *(self._latest - self._in_use)]
            self._unused, self._latest = [], set()
        return unused

    def keep(self, path: Path, dtype) -> tuple[np.ndarray, Path | None]:
        """Move the result file ``path`` into :attr:`folder`; its values mapped read-only (1-D) and where it went
        (an empty file is read and left: None)."""
        dtype = np.dtype(dtype)
        if path.stat().st_size == 0:  # nothing to map (mmap refuses empty files)
            values = np.fromfile(path, dtype=dtype)
            values.flags.writeable = False
            return values, None
        self.folder.mkdir(exist_ok=True)
        # lower case, as every file a run names (brian2cuda's binary lower-cases its argument values)
        kept = self.folder / f"{next(_names)}_{path.name.lower()}"
        os.replace(path, kept)  # the same file under another name: the binary's next results go to new files
        values = np.memmap(kept, dtype=dtype, mode="r")
        address = values.ctypes.data
        finite = file_work().submit(_all_finite, values)
        with self._lock:
            self._by_address[address] = (values.nbytes, dtype, kept)
            self._finite[address] = (values.nbytes, dtype, finite)
            self._in_use.add(kept)
            self._latest.add(kept)
        # views keep ``values`` alive; when it goes, nothing reads the file any more
        weakref.finalize(values, self._forget, address, kept)
        return values, kept

    def file_of(self, array: np.ndarray) -> Path | None:
        """The kept file holding exactly ``array``'s bytes (the whole mapping, C order, same dtype), else None (also
        when the file is gone: removed from outside, the mapping still holds the values, to be written anew)."""
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or array.flags.writeable:
            return None
        with self._lock:
            found = self._by_address.get(array.ctypes.data)
        if found is None:
            return None
        nbytes, dtype, kept = found
        return kept if (array.nbytes == nbytes and array.dtype == dtype and kept.is_file()) else None

    def known_finite(self, array: np.ndarray) -> bool | None:
        """Whether ``array``, the whole of a kept mapping (C or Fortran order: every value once), is all finite;
        None for any other array. Waits for the check started when the file was kept, if it is still running."""
        if not isinstance(array, np.ndarray) or not (array.flags.c_contiguous or array.flags.f_contiguous):
            return None
        with self._lock:
            found = self._finite.get(array.ctypes.data)
        if found is None or array.nbytes != found[0] or array.dtype != found[1]:
            return None
        try:
            return found[2].result()
        except Exception:  # the check failed (not the values): looked at by the caller
            return None

    def _forget(self, address: int, kept: Path) -> None:
        if os.getpid() != self._pid:
            return
        with self._lock:
            self._finite.pop(address, None)
            if self._by_address.get(address, (None, None, None))[2] == kept:
                del self._by_address[address]
            self._in_use.discard(kept)
            if kept not in self._latest:
                self._unused.append(kept)


def _all_finite(values: np.ndarray) -> bool:
    return bool(np.isfinite(values).all())  # numpy leaves the interpreter lock while it reads the pages


_file_work: tuple[int, ThreadPoolExecutor] | None = None  # (pid, executor)
_file_work_lock = threading.Lock()


def _after_fork() -> None:  # a forked process starts without the parent's thread, and with a lock of its own
    global _file_work, _file_work_lock
    _file_work, _file_work_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def file_work() -> ThreadPoolExecutor:
    """This process's thread for work on kept and spent files besides the training loop's (made when first used;
    a forked process has the executor, not its thread, and makes its own). A thread that stays: starting one for
    each run cost the loop 1.7 ms, waiting for the interpreter lock held by the thread preparing the next run."""
    global _file_work
    with _file_work_lock:
        if _file_work is None or _file_work[0] != os.getpid():
            _file_work = os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="decolle-files")
        return _file_work[1]


def remove_files(paths: list[Path]) -> Future:
    """Remove ``paths`` on :func:`file_work`'s thread (returns at once; wait for the future): a run's binary runs
    meanwhile, and the loop's thread waits for it outside the interpreter lock (unlink releases it too)."""
    def remove() -> None:
        for path in paths:
            unlink_quietly(path)

    return file_work().submit(remove)


def unlink_quietly(path: Path) -> None:
    """Remove a spent file; one gone already, or not ours to remove, is nothing a run depends on."""
    try:
        os.unlink(path)
    except OSError:
        pass
