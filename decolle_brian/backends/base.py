"""The device backend interface, the registry of backends by device name, and what all backends share.

A backend makes one Brian device current, may generate device-specific code for some network objects (the
:class:`~decolle_brian.network.hooks.CodeGeneration` hooks), prepares a built network for runs and runs it
with one chunk's values. The :class:`~decolle_brian.devices.Simulator` only calls these hooks::

    backend = backend_for("cpp_standalone")(threads=1, runtime_target="numpy", profile=False)
    backend.activate(spec, chunk_steps, probes_tag, build_dir)   # fresh Brian devices, this one current
    net = BrianNetwork(..., codegen=backend)                      # device-specific code where it pays
    backend.prepare(network, namespace, chunk_steps)              # compile (standalone) or store (runtime)
    backend.run(network, namespace, chunk_steps, values)          # every chunk
"""

from __future__ import annotations

import fcntl
import gc
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import brian2
import numpy as np
from brian2 import Network
from brian2.devices.device import all_devices

from decolle_brian.errors import DeviceError
from decolle_brian.names import DEFAULT_RUNTIME_TARGET
from decolle_brian.network.hooks import CodeGeneration
from decolle_brian.network.spec import NetworkSpec
from decolle_brian.registries import registrar

#: device name -> Backend subclass (filled by the backend modules, see decolle_brian.backends)
BACKENDS: dict[str, type[Backend]] = {}

_claims = 0  # incremented whenever a backend re-initialises Brian's devices for a new network


#: class decorator ``@register_backend(name)``: a backend of the device called ``name`` (``Simulator(device=name)``)
register_backend = registrar(BACKENDS, "backend", attribute="name")


def build_root() -> Path:
    """Where the per-structure build folders go: ``$DECOLLE_BUILD_DIR`` or ``<temp>/decolle-brian-build``."""
    return Path(os.environ.get("DECOLLE_BUILD_DIR", Path(tempfile.gettempdir()) / "decolle-brian-build"))


def default_build_dir(spec: NetworkSpec, device_name: str, chunk_steps: int, tag: str = "",
                      threads: int = 1) -> Path:
    """Per-structure build folder, so that equal structures reuse one compiled binary.

    The OpenMP thread count is compiled in: a build with ``threads > 1`` is another binary and gets its own
    folder (``-omp<threads>``); sharing one would recompile at every switch and let a process with one count
    run, or overwrite, the other's binary.
    """
    omp = f"-omp{threads}" if threads > 1 else ""
    return build_root() / f"{device_name}-{spec.structure_key()}-{chunk_steps}{tag}{omp}"


#: the lock file of a build folder (see :func:`build_folder_lock`)
BUILD_LOCK = ".build.lock"


@contextmanager
def build_folder_lock(build_dir: str | Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a build folder's lock: ``exclusive`` while its files are written, shared while they are read.

    Every build of a standalone project rewrites its static arrays in place (Brian truncates and writes each
    file, same content or not), and every run of the binary reads them when it starts: a run that starts
    while another process builds the folder reads a torn file and computes silently different numbers.
    So a build, or a copy into the folder, holds the lock exclusively; a run of the binary, or a copy out
    of the folder, holds it shared (runs of many processes still overlap). An ``flock`` is released by the
    kernel when its holder dies, killed or not.
    """
    with open(Path(build_dir) / BUILD_LOCK, "a+") as handle:  # readable too: NFS needs it for LOCK_SH
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield  # closing the file releases the lock


@dataclass
class RunValues:
    """Everything one run is given besides the compiled structure.

    Attributes
    ----------
    arrays : dict
        ``{TimedArray: values}``: the per-step inputs of the run.
    params : list of (owner, variable, value)
        Learned and fixed parameters, already in Brian's layout (one value per neuron or synapse).
    constants : list of (owner, variable, value)
        Run-time neuron constants and per-group scalars (Brian quantities where the variable has units).
    files : dict
        ``{file name: bytes}``: inputs that the device's own generated code reads from the run's results folder
        (C++ standalone's input event list, :mod:`decolle_brian.backends.input_events`); empty elsewhere.
    on_start : callable or None
        Called once when the simulation starts, after the run's own Python work before it (standalone: files
        written, just before the binary starts): work given to another thread then does not compete with that
        work for Python's interpreter lock (:func:`~decolle_brian.training.run_ahead`).
    """

    arrays: dict = field(default_factory=dict)
    params: list = field(default_factory=list)
    constants: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    on_start: Callable[[], None] | None = None

    def started(self) -> None:
        """Call :attr:`on_start` (backends, when the simulation starts)."""
        if self.on_start is not None:
            self.on_start()


class Backend(CodeGeneration):
    """How a network runs on one Brian device; subclasses override the hooks they need.

    Parameters
    ----------
    threads : int
        OpenMP threads (C++ standalone only).
    runtime_target : str
        Code generation target (runtime only).
    profile : bool
        Record the time spent in every code object (:meth:`profiling_info`).
    """

    name: str = ""
    #: the project folder of a standalone device (None: nothing is written)
    build_dir: Path | None = None
    #: ``(owner, variable name)`` pairs that Python reads after a run (set before :meth:`prepare`, from
    #: :meth:`BrianNetwork.read_back <decolle_brian.network.builder.BrianNetwork.read_back>`); a standalone
    #: binary writes only these (None: every array)
    read_back: list | None = None
    #: a standalone binary writes every array after a run, not only :attr:`read_back` (debugging)
    write_all_results: bool = False

    def __init__(self, *, threads: int = 1, runtime_target: str = DEFAULT_RUNTIME_TARGET, profile: bool = False):
        self.threads, self.runtime_target, self.profile = threads, runtime_target, profile
        self.claim = 0

    def activate(self, spec: NetworkSpec, chunk_steps: int, tag: str = "", build_dir: str | Path | None = None):
        """Fresh Brian devices, then this backend's device made current (``tag`` names what the build records)."""
        global _claims
        # Fresh devices, and no live objects of an earlier network: Brian would otherwise rename this one's
        # objects (network_1, ..._codeobject_1), change the generated code and force a full recompile. Every
        # device, not only the current one: set_device takes the device as it is, and one that is not
        # current may still hold an earlier run (its results folder, its code objects). The devices hold the
        # last network's objects until reinit(), so collect after it, not before.
        for known in all_devices.values():
            known.reinit()
        gc.collect()
        brian2.devices.device.activate()
        _claims += 1
        self.claim = _claims
        self.make_current(spec, chunk_steps, tag, build_dir)

    def is_latest(self) -> bool:
        """Whether no other network was built since this backend's (Brian has one device per process)."""
        return self.claim == _claims

    # ---- hooks ---------------------------------------------------------------------------------------------
    @classmethod
    def check_toolchain(cls) -> None:
        """Raise :class:`DeviceError` when the tools this device builds with are missing: before anything is built."""

    @classmethod
    def check_runnable(cls) -> None:
        """Raise :class:`DeviceError` when this device's networks cannot run here (e.g. no GPU): before a run
        folder is made. Building alone (for another machine) needs only :meth:`check_toolchain`."""

    def make_current(self, spec: NetworkSpec, chunk_steps: int, tag: str, build_dir: str | Path | None) -> None:
        """Make this backend's Brian device the current one (``set_device``)."""
        raise NotImplementedError

    def prepare(self, network: Network, namespace: dict, chunk_steps: int) -> None:
        """Make a freshly built network ready for :meth:`run` (compile it, or store its initial state)."""
        raise NotImplementedError

    def check_usable(self) -> None:
        """Raise :class:`DeviceError` if this network cannot run any more (or not here)."""

    def run(self, network: Network, namespace: dict, chunk_steps: int, values: RunValues) -> None:
        """One run of ``chunk_steps`` steps from the initial state with ``values``; results stay in Brian."""
        raise NotImplementedError

    def stage(self, arrays: dict) -> dict:
        """A run's ``{TimedArray: values}`` made ready for the device ahead of the run (on the thread that prepares
        the next run while one runs, :func:`~decolle_brian.training.run_ahead`); as they are here. C++ standalone
        writes them into the files the binary reads."""
        return arrays

    def known_finite(self, array: np.ndarray) -> bool | None:
        """Whether ``array`` (a parameter given to the next run) is all finite, where the device already knows,
        else None (:func:`~decolle_brian.network.params.check_params` looks)."""
        return None

    def read_param(self, owner, variable: str) -> np.ndarray:
        """A parameter's values after a run, in Brian's layout (1-D), as an array of its own: later runs do not change
        it. Here a copy of what Brian reads; C++ standalone keeps the binary's file instead
        (:mod:`decolle_brian.backends.param_files`)."""
        return np.array(getattr(owner, variable)[:])

    def profiling_info(self, network: Network) -> list[tuple[str, object]]:
        """``(code object, time)`` of the last run, most expensive first (needs ``profile=True``)."""
        return network.profiling_info


def backend_class(name: str) -> type[Backend]:
    """The backend registered for device ``name`` (DeviceError naming the choices)."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise DeviceError(f"Unknown device '{name}'; choose one of {list(BACKENDS)}") from None
