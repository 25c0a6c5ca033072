"""Brian2's C++ standalone device: the network compiled once per structure, every run a call of the binary.

Everything that changes between runs (inputs, parameters, neuron constants) goes through ``run_args``, so
a structure compiles once and serves every sample, learning rate and time constant. One build folder may
be used by several processes at once: each process writes its run-argument files under its own names and
reads its results from its own folder (``results-<pid>``); what they share, the binary and the static
arrays it reads at every start, is rewritten by every build, so builds hold the folder's lock exclusively
and runs hold it shared (:func:`~decolle_brian.backends.base.build_folder_lock`).

Compiling: with ``objects.h`` precompiled (:mod:`decolle_brian.backends.precompiled_header`), the static arrays
written whole or not at all (:mod:`decolle_brian.backends.atomic_arrays`).

Results: after a run the binary writes only the arrays that Python reads back (the network's
:meth:`~decolle_brian.network.builder.BrianNetwork.read_back` and Brian's own post-run check;
:mod:`decolle_brian.backends.read_back`), not Brian's every array, and before a run only those files are
removed; :attr:`~decolle_brian.devices.Simulator.write_all_results` writes every array again (debugging).

Code generation: all-to-all synapses get the dense-row loops of :mod:`decolle_brian.backends.dense_rows`
instead of Brian's generic ones, conv layers the loops over the convolution of
:mod:`decolle_brian.backends.conv_loops` instead of a synapse list, and very large synapse sets are
connected without Brian's Python-side index caches (:meth:`CppStandaloneBackend.connecting`).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import stat
import tempfile
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path

import brian2
import numpy as np
from brian2 import Network, get_device, prefs, second, set_device

from decolle_brian.backends.atomic_arrays import atomic_static_arrays
from decolle_brian.backends.base import (
    BUILD_LOCK,
    Backend,
    RunValues,
    build_folder_lock,
    default_build_dir,
    register_backend,
)
from decolle_brian.backends.conv_loops import ConvGeometry, conv_event_scatter, conv_loops, gated
from decolle_brian.backends.dense_rows import all_to_all_connect, dense_pathway, dense_sums
from decolle_brian.backends.input_events import EventListInput
from decolle_brian.backends.param_files import KEPT_FOLDER, KeptFiles, remove_files, unlink_quietly
from decolle_brian.backends.precompiled_header import precompiled_objects_header
from decolle_brian.backends.read_back import DEVICE_NAME, WRITE_ALL_VARIABLE
from decolle_brian.backends.served import (
    BINARY_COMMAND,
    SERVED_VARIABLE,
    ServedBinary,
    build_identity,
    close_servers,
    launching,
)
from decolle_brian.errors import DeviceError
from decolle_brian.network.schedule import DT
from decolle_brian.network.spec import NetworkSpec

#: per-process results folders inside a build folder: results-<pid>
RESULTS_PREFIX = "results-"
#: a tmpfs where results folders go (:func:`make_results_folder`)
MEMORY_FOLDER = "/dev/shm"
#: results folders stay in the build folder when the tmpfs has less free (bytes)
MEMORY_MIN_FREE = 1 << 30
#: environment variable: "0" keeps results folders in the build folder
MEMORY_VARIABLE = "DECOLLE_RESULTS_IN_MEMORY"
#: the binary's profile of a run, in its results folder
PROFILING_FILE = "profiling_info.txt"
#: the folder of a run's argument files inside the results folder
ARGUMENTS_FOLDER = "arguments"
#: the folder, inside the results folder, of what a served binary's child prints until its command names the run's
#: output file (:mod:`decolle_brian.backends.served`)
SERVED_FOLDER = "served"
#: glibc's malloc asks for transparent huge pages (:func:`huge_page_tunables`)
HUGE_PAGE_TUNABLE = "glibc.malloc.hugetlb=1"
TUNABLES_VARIABLE = "GLIBC_TUNABLES"

_arguments_folders: set[Path] = set()  # made by this process (a forked one's are its own: results-<pid>)
_file_numbers = itertools.count(1)  # name the files of runs' arrays (next() is atomic: two threads write them)


class StagedArray:
    """A run argument's values, already written into the file the binary reads (:meth:`CppStandaloneBackend.stage`).

    The first run of this process given it names the file (:meth:`take`; the file goes after that run); any other
    run writes the values anew: a later run of the same prepared inputs, a forked process's, a deep copy's (which
    is the values alone). A file no run took is removed when the array is freed.
    """

    def __init__(self, name: str, values: np.ndarray, path: Path):
        self.name = name  # the binary's name of the argument
        self.values = values
        self.path = path
        self._taken = [False]  # shared with the finaliser, which must not hold the array
        self._pid = os.getpid()
        weakref.finalize(self, _remove_untaken, path, self._taken, self._pid)

    @property
    def taken(self) -> bool:
        """Whether a run named the file (:meth:`take`)."""
        return self._taken[0]

    def take(self) -> Path | None:
        """The file, for the first run of the process that wrote it; None for any other (write the values anew)."""
        if self._taken[0] or self._pid != os.getpid() or not self.path.is_file():
            return None
        self._taken[0] = True
        return self.path

    def __deepcopy__(self, memo) -> np.ndarray:
        return np.array(self.values)  # a copy's run writes its own file


def _remove_untaken(path: Path, taken: list, pid: int) -> None:
    if not taken[0] and os.getpid() == pid:
        unlink_quietly(path)


def memory_root() -> Path | None:
    """Where results folders go in memory: ``/dev/shm/decolle-brian-<uid>``, a folder of this user's only, when
    this system has a writable ``/dev/shm`` (a tmpfs) with at least :data:`MEMORY_MIN_FREE` bytes free and
    ``$DECOLLE_RESULTS_IN_MEMORY`` is not ``0``; else None (results folders stay in the build folder). Folders
    there of processes that no longer run (killed before their exit handler) are removed."""
    shm = Path(MEMORY_FOLDER)
    if os.environ.get(MEMORY_VARIABLE, "1") == "0" or not (shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)):
        return None
    try:
        space = os.statvfs(shm)
        if space.f_bavail * space.f_frsize < MEMORY_MIN_FREE:
            return None  # a small /dev/shm (containers get 64 MB): the build folder
        root = shm / f"decolle-brian-{os.getuid()}"
        root.mkdir(mode=0o700, exist_ok=True)
        status = root.lstat()
    except OSError:
        return None
    # /dev/shm is shared by every user: only a real folder of this user's that nobody else may write is used
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid() or status.st_mode & 0o077:
        return None
    return root


def _owner_pid(folder: Path) -> int | None:
    """The process a results folder in memory belongs to (its name: ``<build>-results-<pid>-<random>``)."""
    parts = folder.name.rsplit("-", 2)
    if len(parts) != 3 or not parts[0].endswith(RESULTS_PREFIX.rstrip("-")) or not parts[1].isdigit():
        return None
    return int(parts[1])


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def make_results_folder(folder: Path, in_memory: bool) -> None:
    """Make this process's results folder ``folder`` (``results-<pid>`` of a build folder) unless it exists.

    ``in_memory``: a link to a new folder under :func:`memory_root`. The binary writes its results there and
    Python reads them from there, through the link (Brian takes a results folder inside the project only). On
    ext4 the binary's writing of a run's 11 MB of results (33 files, the dense 2048-500-500 event benchmark)
    took 13.5-14.5 ms, on the tmpfs 5-6 ms (docs/batch.md). Removed when the process ends
    (:func:`remove_results_folder`), or by the next process that finds it stale (:func:`remove_stale_results`,
    :func:`memory_root`).
    """
    if folder.is_dir():
        return
    root = memory_root() if in_memory else None
    if root is not None:
        for other in root.iterdir():  # folders of processes killed before their exit handler ran
            pid = _owner_pid(other)
            if pid is not None and not _running(pid):
                shutil.rmtree(other, ignore_errors=True)
    if root is None:
        folder.mkdir(exist_ok=True)
        return
    target = Path(tempfile.mkdtemp(prefix=f"{folder.parent.name}-{folder.name}-", dir=root))
    if folder.is_symlink():  # a link whose folder is gone (removed from memory, e.g. by a reboot)
        folder.unlink()
    folder.symlink_to(target, target_is_directory=True)
    atexit.register(remove_results_folder, folder, os.getpid())


def remove_results_folder(folder: Path, owner: int | None = None) -> None:
    """Remove a results folder, or the link to one in memory and the folder it names (only in process ``owner``,
    when given: a forked process does not remove its parent's)."""
    if owner is not None and owner != os.getpid():
        return
    if folder.is_symlink():
        target = Path(os.readlink(folder))
        folder.unlink(missing_ok=True)
        # only a folder this package made for this link: in its memory root, named after the link
        if (target.is_absolute() and ".." not in target.parts and target.parent == memory_root()
                and target.name.startswith(f"{folder.parent.name}-{folder.name}-")):
            shutil.rmtree(target, ignore_errors=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale_results(build_dir: Path) -> None:
    """Remove the per-process results folders of processes that no longer run."""
    for folder in build_dir.glob(f"{RESULTS_PREFIX}*"):
        pid = folder.name.removeprefix(RESULTS_PREFIX)
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if not _running(int(pid)):
            remove_results_folder(folder)


def clear_results(folder: Path, names: list[str] | None = None) -> None:
    """Remove the files of the previous run's results before the binary writes new ones: ``names``, or every file.

    The binary writes its arrays into files of fixed names. Overwriting a file (truncate, then write) makes
    ext4 start writing it to disk when it is closed (its ``auto_da_alloc`` safeguard), so each run waited
    on the disk for the previous run's 60-85 MB (DvsGesture, every array written); files created anew stay in
    the page cache. Nothing in the folder is read before the binary has written it again, and no array that the
    binary did not write is read at all (:class:`~decolle_brian.backends.read_back.ReadBackDevice`).
    """
    if names is not None:
        prefix = f"{folder}{os.sep}"  # strings, not Paths: 30-40 files every run
        for name in names:
            try:
                os.unlink(prefix + name)
            except FileNotFoundError:
                pass
    elif folder.is_dir():
        for path in folder.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)


def forget_unknown_values(device) -> None:
    """Remove the entries of values the device does not know (``None``) from its array cache.

    Brian's ``device.run`` compares every run argument with every entry of the cache in a Python loop, to mark
    the variables set on the command line as unknown: for the 40 arguments of a run of the benchmark network and
    its ~150 entries, 20 ms per run, as long as the event-driven simulation of 2-3 samples. An entry ``None``
    means "read it from the results", exactly as a missing one (``get_value`` looks up ``cache.get(var)``), and
    after the build nothing reads the cache by ``[]``; so removing them changes nothing but the loop's length.
    """
    cache = device.array_cache
    for var in [var for var, value in cache.items() if value is None]:
        del cache[var]


def huge_page_tunables(existing: str | None) -> str:
    """``GLIBC_TUNABLES`` for the binary: the caller's settings, plus ``glibc.malloc.hugetlb=1`` unless they set it.

    With it glibc's ``malloc`` asks for transparent huge pages (``madvise``) on the memory it maps for large
    arrays, where the kernel gives them only on request (``/sys/kernel/mm/transparent_hugepage/enabled`` =
    ``madvise``, as on these machines). The binary allocates its synapse and parameter arrays anew in every run
    and touches them once per 4 KiB page otherwise: for the dense 2048-500-500 event benchmark network 6,700 ->
    3,700-4,100 page faults and 162 -> 141-145 ms of CPU per 16-sample run (``perf stat -r 15``, docs/batch.md).
    Only where memory is laid out; the numbers computed are the same. A glibc older than 2.35 ignores the name.
    """
    settings = [item for item in (existing or "").split(":") if item]
    if not any(item.split("=", 1)[0] == HUGE_PAGE_TUNABLE.split("=", 1)[0] for item in settings):
        settings.append(HUGE_PAGE_TUNABLE)
    return ":".join(settings)


def run_output(folder: Path) -> str:
    """What the binary printed in its run (``stdout.txt`` of its results folder), or ''."""
    path = folder / "stdout.txt"
    return path.read_text(errors="replace").strip() if path.is_file() else ""


@register_backend("cpp_standalone")
class CppStandaloneBackend(Backend):
    """Compile once (:meth:`prepare`), then run the binary with each chunk's values as ``run_args``."""

    #: compile with a precompiled ``objects.h`` (:mod:`decolle_brian.backends.precompiled_header`)
    precompiled_header = True
    #: drop the device's cache entries of unknown values before every run (:func:`forget_unknown_values`)
    prune_array_cache = True
    #: the binary writes only the arrays read back (:mod:`decolle_brian.backends.read_back`); its parameter files
    #: are kept for reading and for the next run (:mod:`decolle_brian.backends.param_files`)
    selects_results = True
    #: results folders in memory (:func:`make_results_folder`)
    results_in_memory = True
    #: run the binary as a fork server (:mod:`decolle_brian.backends.served`) where its build allows it
    served = True
    _results_known = False  # whether the results folder holds only what the last run wrote
    _kept: KeptFiles | None = None
    _litter: tuple[int | None, list] = (None, [])  # (pid, the last run's argument files): removed by the next run
    _results_folder: tuple | None = None  # ((project folder, pid), results folder)
    _server: ServedBinary | None = None

    @classmethod
    def check_toolchain(cls) -> None:
        """Brian's generated makefile runs ``make`` and compiles with ``$(CXX)``: the ``CXX`` environment variable
        when set, else make's default ``g++``."""
        if shutil.which("make") is None:
            raise DeviceError(f"The {cls.name} device needs 'make', which was not found on PATH: install it "
                              "(e.g. apt install build-essential) or use device.name = \"runtime\"")
        compiler = os.environ.get("CXX", "").split()
        name, origin = (compiler[0], f"CXX={os.environ['CXX']!r}") if compiler else ("g++", "make's default g++")
        if shutil.which(name) is None:
            raise DeviceError(f"The {cls.name} device compiles with {origin}, which was not found: install a C++ "
                              "compiler (e.g. apt install g++), point CXX at one (e.g. CXX=clang++), or use "
                              "device.name = \"runtime\"")

    def make_current(self, spec: NetworkSpec, chunk_steps: int, tag: str, build_dir: str | Path | None) -> None:
        # profiling is compiled in: a profiled build is another binary, in another folder
        tag += "-profile" if self.profile else ""
        # absolute: Brian's run changes the working directory while the next run's files are written ahead
        self.build_dir = (Path(build_dir) if build_dir
                          else default_build_dir(spec, self.name, chunk_steps, tag, threads=self.threads)).absolute()
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.set_device()
        self.device = get_device()

    def set_device(self) -> None:
        """``set_device`` of this backend's Brian device, building into ``build_dir``."""
        # Brian's C++ standalone device, writing only the arrays read back after a run
        set_device(DEVICE_NAME, directory=str(self.build_dir), build_on_run=False)
        prefs.devices.cpp_standalone.openmp_threads = self.threads if self.threads > 1 else 0
        tunables = huge_page_tunables(os.environ.get(TUNABLES_VARIABLE))
        get_device().run_environment_variables[TUNABLES_VARIABLE] = tunables

    def check_network(self, network: Network) -> None:
        """Raise :class:`DeviceError` before generating code if the device cannot take ``network``."""

    def prepare(self, network: Network, namespace: dict, chunk_steps: int) -> None:
        self.check_network(network)
        close_servers()  # Brian has one device per process: no earlier build runs again
        # records the run into the project; values come through run_args on every device.run
        network.run(chunk_steps * DT, namespace=namespace, profile=self.profile or None)  # None: Brian's default
        if self.selects_results and self.read_back is not None:
            self.device.select(self.read_back)  # every array exists now; the build renders the writes of these
        # one process at a time compiles a build folder (the others then find it up to date), and none runs
        # its binary meanwhile: the build rewrites what every run reads (static arrays: whole files, only
        # when changed, see atomic_arrays)
        with build_folder_lock(self.build_dir, exclusive=True), atomic_static_arrays(self.device):
            with precompiled_objects_header(self.device) if self.precompiled_header else nullcontext():
                self.device.build(directory=str(self.build_dir), compile=True, run=False, with_output=False)
        remove_stale_results(self.build_dir)
        self._results_known = False  # the folder may hold another build's results: the first run clears it all

    def check_usable(self) -> None:
        if not self.is_latest():
            raise DeviceError("This standalone network was replaced by a newer one built in the same process "
                              "(Brian2 has one standalone device per process); rebuild it")

    def run(self, network: Network, namespace: dict, chunk_steps: int, values: RunValues) -> None:
        run_args = dict(values.arrays)
        for owner, variable, value in [*values.params, *values.constants]:
            run_args[getattr(owner, variable)] = value
        files = []
        folder = self.results_folder()
        every = self.write_all_results or not self.selects_results
        if self.selects_results:  # set every time: Brian puts it into os.environ and never removes it
            self.device.run_environment_variables[WRITE_ALL_VARIABLE] = "1" if every else "0"
        written = None if every else self.device.files_written()
        # removed while the binary runs: the last run's argument files, parameter files nothing uses any more
        owner, litter = self._litter  # a forked process removes none of its parent's
        litter = list(litter) if owner == os.getpid() else []
        self._litter = os.getpid(), []
        remover = None
        try:
            if self.selects_results:
                litter += self.kept_files().new_run()
            # after a run of this build that wrote only the chosen arrays, only those files are there to remove
            clear_results(folder, written if self._results_known else None)
            self._results_known = written is not None
            # the inputs read by this package's own code (the input event list): in the results folder, which is
            # this process's own and cleared before every run
            make_results_folder(folder, self.results_in_memory)
            for name, data in values.files.items():
                (folder / name).write_bytes(data)
            if self.prune_array_cache:
                forget_unknown_values(self.device)
            arguments = self.command_line(run_args, files)
            # shared: other processes may run this binary at the same time, but none may build the folder
            with build_folder_lock(self.build_dir, exclusive=False):
                values.started()  # the binary starts next; the Python work of this run is done
                remover = remove_files(litter) if litter else None
                # results of this process only: other runs may use the same build folder at the same time
                tunables = os.environ.get(TUNABLES_VARIABLE)
                try:
                    with launching(self._launch) if self.serving() else nullcontext():
                        self.device.run(results_directory=folder.name, run_args=arguments, with_output=False)
                except RuntimeError as failure:
                    printed = run_output(folder)
                    raise DeviceError(f"The compiled network in {self.build_dir} stopped: "
                                      f"{f'{printed} ({failure})' if printed else failure}") from failure
                finally:  # Brian sets the binary's environment in this process's: the tunable is the binary's only
                    if tunables is None:
                        os.environ.pop(TUNABLES_VARIABLE, None)
                    else:
                        os.environ[TUNABLES_VARIABLE] = tunables
                    if remover is not None:
                        remover.result()
            # a SIGINT that reached the binary (Ctrl-C sends it to the whole process group) ends its network run
            # early and the binary exits 0 with shorter monitors: a failed run, never outputs to read
            completed = getattr(self.device, "_last_run_completed_fraction", 1.0)
            if completed < 1.0:
                raise DeviceError(f"The compiled network in {self.build_dir} was stopped after {completed:.0%} of "
                                  "its run (an interrupt reached it); its outputs are incomplete: run it again")
        finally:  # read once, at the first step
            # removed by the next run (or with the folder); so is what this run did not get to remove
            self._litter[1].extend([*files, *(litter if remover is None else ())])
            for name in values.files:  # the next run writes them under the same names
                (folder / name).unlink(missing_ok=True)

    def serving(self) -> bool:
        """Whether runs go to a served binary (:mod:`decolle_brian.backends.served`): this backend's :attr:`served`,
        a build whose ``main`` allows it, Brian's own command to run it, and ``$DECOLLE_SERVED_BINARY`` not "0"."""
        command = prefs.devices.cpp_standalone.run_cmd_unix
        return (self.served and getattr(self.device, "servable", False) and os.name == "posix"
                and command in (BINARY_COMMAND, [BINARY_COMMAND]) and os.environ.get(SERVED_VARIABLE, "1") != "0")

    def _launch(self, command: list[str], stdout=None) -> int:
        """Brian's launch of the binary (``subprocess.call``), by this process's server of the build: started anew
        when there is none, it ended, or the build or the environment changed since it started (the run holds the
        build folder's lock shared: no build is half done)."""
        server = self._server
        if server is None or not server.alive or server.identity != build_identity(self.device.project_dir):
            if server is not None:
                server.close()
            pending = self.results_folder() / SERVED_FOLDER
            pending.mkdir(exist_ok=True)
            server = self._server = ServedBinary(Path(self.device.project_dir), pending / "output.txt",
                                                 self.build_dir / BUILD_LOCK)
        return server.call(command, stdout=stdout)

    def results_folder(self) -> Path:
        """The folder of this process's results in the build folder (``results-<pid>``)."""
        key = (self.device.project_dir, os.getpid())  # asked several times a run: made once
        if self._results_folder is None or self._results_folder[0] != key:
            self._results_folder = key, Path(key[0]) / f"{RESULTS_PREFIX}{key[1]}"
        return self._results_folder[1]

    def kept_files(self) -> KeptFiles:
        """This process's kept parameter files (:mod:`decolle_brian.backends.param_files`)."""
        folder = self.results_folder() / KEPT_FOLDER
        if self._kept is None or self._kept.folder != folder:  # a forked process keeps its own
            self._kept = KeptFiles(folder)
        return self._kept

    def read_param(self, owner, variable: str) -> np.ndarray:
        """The binary's result file of the parameter, kept and mapped read-only (no copy; given back to the next
        run as it is, :mod:`decolle_brian.backends.param_files`); Brian's read where the binary writes every
        array its own way (brian2cuda) or the value is known without a run."""
        var = owner.variables[variable]
        device = self.device
        whole = getattr(var.owner, "name", None) == owner.name  # a subgroup's values are part of the file
        if not (self.selects_results and whole) or device.array_cache.get(var) is not None:
            return super().read_param(owner, variable)
        path = device.result_file(var)  # DeviceError for an array the run did not write
        values, kept = self.kept_files().keep(path, var.dtype)
        if kept is not None:
            device.moved[var] = kept  # Brian's reads of it (get_value) look there
        return values

    def arguments_folder(self) -> Path:
        """The folder of the runs' argument files in the results folder (made here): apart from the results, each
        run's removed by the next run, and the folder when the process ends (on disk too)."""
        folder = self.results_folder() / ARGUMENTS_FOLDER
        if folder not in _arguments_folders:
            folder.mkdir(exist_ok=True)
            _arguments_folders.add(folder)
            atexit.register(remove_results_folder, folder, os.getpid())
        return folder

    def stage(self, arrays: dict) -> dict:
        """Write a run's TimedArray values into the files the binary reads, ahead of the run (on the thread that
        prepares the next run while the binary runs this one): 1.0-1.3 ms per run of the event benchmark's 16
        samples that the loop's thread no longer spends between runs (docs/batch.md)."""
        if not self.is_latest():  # Brian's one device is another network's now: the run will say so
            return arrays
        make_results_folder(self.results_folder(), self.results_in_memory)
        folder = self.arguments_folder()
        staged = {}
        for key, value in arrays.items():
            name, array = self._argument(key, value)
            staged[key] = value if array.size == 1 else StagedArray(name, array,
                                                                    self._write_argument(folder, name, array))
        return staged

    def _argument(self, key, value) -> tuple[str, np.ndarray]:
        """The binary's name of a run argument and its values as the binary reads them (ValueError: wrong size)."""
        if isinstance(key, brian2.TimedArray):
            name, dtype, shape = f"{key.name}.values", key.values.dtype, key.values.shape
        else:  # a variable; synapse counts are known in the binary only (checked by check_params)
            name, dtype = f"{key.group_name}.{key.name}", key.dtype
            shape = None if key.variable.dynamic else (key.variable.size,)
        array = np.ascontiguousarray(value, dtype=dtype)
        if array.size != 1 and shape is not None and array.size != int(np.prod(shape)):
            raise ValueError(f"'{name}' needs {int(np.prod(shape))} values, got {array.size}")
        return name, array

    @staticmethod
    def _write_argument(folder: Path, name: str, array: np.ndarray) -> Path:
        # lower case: brian2cuda's binary lower-cases every argument value (to parse true/false), paths too
        path = folder / f"decolle_{next(_file_numbers)}_{name.lower()}.dat"
        array.tofile(path)
        return path

    def command_line(self, run_args: dict, files: list) -> list[str]:
        """``name=value`` arguments of the standalone binary; arrays go to files listed in ``files``.

        Brian's own ``run_args`` dictionary names each file by the MD5 hash of its content: ~10 ms per
        sample of dense input counts, more than the event-driven simulation of the sample. A run's files
        are used once, so they are named by run instead, and removed by the next run while its binary runs
        (:func:`~decolle_brian.backends.param_files.remove_files`). They go into the ``arguments`` folder of the
        process's results folder (in memory where it is, :func:`make_results_folder`); a parameter file an earlier
        run wrote is named as it is (:mod:`decolle_brian.backends.param_files`).
        """
        arguments = []
        project = Path(self.device.project_dir)
        folder = self.arguments_folder()
        kept_files = self.kept_files() if self.selects_results else None  # once a run, not once an argument
        for key, value in run_args.items():
            if isinstance(value, StagedArray):
                path = value.take()
                if path is not None:  # written ahead for this run
                    files.append(path)
                    arguments.append(f"{value.name}={path.relative_to(project)}")
                    continue
                value = value.values
            name, array = self._argument(key, value)
            if array.size == 1:
                arguments.append(f"{name}={array.item()!r}")
                continue
            kept = kept_files.file_of(array) if kept_files is not None else None
            if kept is not None:  # exactly what an earlier run wrote: its file, not a copy
                arguments.append(f"{name}={kept.relative_to(project)}")
                continue
            path = self._write_argument(folder, name, array)
            files.append(path)
            arguments.append(f"{name}={path.relative_to(project)}")
        return arguments

    def known_finite(self, array: np.ndarray) -> bool | None:
        return self.kept_files().known_finite(array) if self.selects_results else None

    def profiling_info(self, network: Network) -> list[tuple[str, object]]:
        # Brian's own reader looks in <project>/results only; each run here has its per-process folder
        path = Path(self.device.results_dir or "") / PROFILING_FILE
        if not self.profile or not path.is_file():
            raise ValueError(f"No profiling info in {path}: build the Simulator with profile=True and run a chunk")
        info = []
        for line in path.read_text().splitlines():
            if line.strip():
                name, seconds = line.split()
                info.append((name, float(seconds) * second))
        return sorted(info, key=lambda item: item[1], reverse=True)

    # ---- code generation -----------------------------------------------------------------------------------
    def input_counts(self, name: str, steps: int, n: int) -> EventListInput:
        return EventListInput(name, steps, n)  # a file of the events only, scattered by generated code

    def all_to_all_sums(self, synapses, batch: int = 1, skip_rows: dict | None = None) -> None:
        dense_sums(synapses, batch, skip_rows)  # vectorised rows, the rows of silent units skipped

    def all_to_all_connect(self, synapses) -> None:
        all_to_all_connect(synapses)  # the index arrays filled in place, not pushed back one synapse at a time

    def all_to_all_pathway(self, pathway) -> None:
        dense_pathway(pathway)  # contiguous, vectorised rows; no spike queue

    def convolution(self, synapses, layer, connect, gates, batch: int = 1) -> None:
        # loops over the convolution: nothing per synapse is created, stored or streamed
        conv_loops(synapses, ConvGeometry.of(layer, batch), gates.gradient, gates.skip_zero, gates.gate,
                   gates.zero_input)

    def conv_events(self, pathway, layer, connect, kernel_gate=None) -> None:
        # loops over the taps of each event, read from the source's event space: no synapse, no spike queue
        conv_event_scatter(pathway, ConvGeometry.of(layer), kernel_gate)

    def gated(self, runner, gate: str) -> None:
        gated(runner, gate)  # burn-in and evaluation skip it

    @contextmanager
    def connecting(self, synapses):
        """Keep the device from holding Python copies of 10^8 synapse indices (GBs) that nothing reads.

        Brian's C++ standalone device caches, for reading before the first run, every synapse's pre/post
        index (as int64) and every connect call's index arrays, besides the copy it writes into the project.
        Marking the synapse count unknown (``None``, Brian's own "computed at run time" state) before
        connecting stops the first; the second is dropped after the calls. Values are read back from the
        binary after a run as usual.
        """
        cache = self.device.array_cache
        cache[synapses.variables["N"]] = None
        yield
        for codeobj in self.device.code_objects.values():
            if codeobj.template_name == "synapses_create_array" and codeobj.owner.name == synapses.name:
                for name in ("sources", "targets"):
                    cache[codeobj.variables[name]] = None
