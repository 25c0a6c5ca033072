"""Devices: how a DECOLLE network runs (Brian2 runtime, C++ standalone, CUDA standalone).

The model (``network/builder.py``) does not know how it runs. A :class:`Simulator` builds the network on
one device once and then runs any number of chunks through it: per-chunk inputs go into the network's
TimedArrays, parameters (weights, biases, optimiser state, neuron constants) are handed in and read back
every chunk, and all state is reset at every sample start inside the run. Standalone devices compile once
per network structure and pass everything through ``run_args``: no recompilation per sample. What
differs between devices (setting the device up, device-specific code, compiling, running) is in the
device's backend (:mod:`decolle_brian.backends`), chosen by name.

Brian2 has one global device per process. Building a new standalone network re-initialises it, so an
older standalone :class:`Simulator` of the same process cannot run any more (it says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from brian2 import Network, prefs

from decolle_brian.backends import (
    DEVICES,
    Backend,
    RunValues,
    backend_class,
    build_folder_lock,
    build_root,
    default_build_dir,
)
from decolle_brian.derivation import derive, loss_function
from decolle_brian.errors import DeviceError
from decolle_brian.names import DEFAULT_PRECISION, DEFAULT_RUNTIME_TARGET, PRECISION_DEVICES
from decolle_brian.network.builder import BrianNetwork, Probes
from decolle_brian.network.chunks import ChunkInputs, DropoutMasks
from decolle_brian.network.params import check_params
from decolle_brian.network.schedule import DT
from decolle_brian.network.spec import NetworkSpec, NeuronParams

__all__ = ["DEVICES", "ChunkOutputs", "DeviceError", "Simulator", "build_folder_lock", "build_root", "check_runnable",
           "check_toolchain", "default_build_dir"]


@dataclass
class ChunkOutputs:
    """What one run returns."""

    params: dict[str, np.ndarray]   # parameters after the run (learned ones updated)
    # a batch (spec.batch_size = B > 1): y and probes in the unit layout of network/batch.py (n_classes * B
    # columns, class k of sample b at k * B + b), n_spikes per layer (n_steps, B)
    y: list[np.ndarray]             # per layer (n_steps, n_classes) readout at every step
    n_spikes: list[np.ndarray]      # per layer (n_steps,) spikes of the whole layer per step
    probes: list[dict[str, np.ndarray]]  # per layer {variable: (n_steps, n_neurons)} when probes were asked
    # with a Probes spec: input traces {variable: (n_steps, n_input_neurons)}, per layer the recorded synapse
    # weights (n_steps, n_synapses) or None, per layer the spikes as (step, neuron) index arrays
    input_probes: dict[str, np.ndarray] = field(default_factory=dict)
    synapse_w: list = field(default_factory=list)
    spikes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def check_toolchain(device: str) -> None:
    """Raise :class:`DeviceError` when ``device`` cannot build here (e.g. no C++ compiler): before anything is
    built or written (:meth:`Backend.check_toolchain <decolle_brian.backends.base.Backend.check_toolchain>`)."""
    backend_class(device).check_toolchain()


def check_runnable(device: str) -> None:
    """Raise :class:`DeviceError` when ``device`` cannot build or cannot run here (e.g. a CUDA device without a
    GPU): before a run folder is made (:meth:`Backend.check_runnable
    <decolle_brian.backends.base.Backend.check_runnable>`)."""
    check_toolchain(device)
    backend_class(device).check_runnable()


def check_precision(spec: NetworkSpec, device: str) -> None:
    """Raise :class:`DeviceError` when ``device`` does not build ``spec.precision`` (names.PRECISION_DEVICES)."""
    built_on = PRECISION_DEVICES[spec.precision]
    if device not in built_on:
        raise DeviceError(f"network.precision = {spec.precision!r} is not built on the {device} device (only on "
                          f"{' or '.join(built_on)}); set network.precision = {DEFAULT_PRECISION!r} or use "
                          f"device.name = {built_on[0]!r}")


@contextmanager
def float_precision(precision: str) -> Iterator[None]:
    """Brian's ``core.default_float_dtype`` set to ``precision`` while a network is built and its code generated,
    then restored.

    Every floating-point variable that Brian creates meanwhile (state variables, shared constants, the summed
    variables' targets) takes that dtype, and with it its arrays, the C type of the generated code and of the
    files the binary reads and writes; TimedArrays stay float64 (Brian's own), so the packed per-step inputs
    (:mod:`decolle_brian.network.packed`, 48 bits per word) are exact in either precision.
    """
    saved = prefs.core.default_float_dtype
    prefs.core.default_float_dtype = np.dtype(precision).type
    try:
        yield
    finally:
        prefs.core.default_float_dtype = saved


@dataclass(frozen=True)
class PreparedInputs:
    """A chunk's inputs checked and converted for one Simulator's device (:meth:`Simulator.prepare_inputs`)."""

    simulator: Simulator
    inputs: ChunkInputs       # as given (recording reads them)
    neuron: NeuronParams
    arrays: dict              # {TimedArray: values}
    scalars: dict             # {(group, variable): value}
    files: dict               # {file name: bytes}

    def __getattr__(self, name: str):
        """The given inputs' fields (``counts``, ``eta``, ``masks``, ...) read through: a stand-in for them."""
        if name == "inputs":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inputs, name)


class Simulator:
    """A DECOLLE network built (and for standalone devices compiled) once, run chunk by chunk.

    Parameters
    ----------
    spec : NetworkSpec
        The network; validated before anything is built.
    chunk_steps : int
        Steps of every run.
    device : {"runtime", "cpp_standalone", "cuda_standalone"}
        The device backend (:mod:`decolle_brian.backends`).
    build_dir : path, optional
        Standalone project folder (default: one per structure, see :func:`default_build_dir`).
    threads : int
        OpenMP threads of the C++ standalone device (compiled in).
    runtime_target : {"numpy", "cython"}
        Code generation target of the runtime device.
    probes : tuple of str or Probes
        Layer variables to record for every neuron and step, or a :class:`~decolle_brian.network.builder.Probes`
        that chooses neurons, input traces, synapse weights and spikes (see :class:`BrianNetwork`).
    profile : bool
        Record the time spent in every code object (:meth:`profiling_info`); compiled in on standalone
        devices (a build folder of its own).
    """

    def __init__(self, spec: NetworkSpec, chunk_steps: int, device: str = "cpp_standalone",
                 build_dir: str | Path | None = None, threads: int = 1,
                 runtime_target: str = DEFAULT_RUNTIME_TARGET,
                 probes: tuple[str, ...] | Probes = (), profile: bool = False):
        spec.validate()
        backend_type = backend_class(device)
        check_precision(spec, device)
        if not isinstance(threads, int) or threads < 1:
            raise DeviceError(f"threads must be a positive integer, got {threads!r}")
        backend_type.check_toolchain()
        self.spec, self.chunk_steps, self.device_name = spec, chunk_steps, device
        self.rule = derive(spec.learning.loss, spec.learning.surrogate, **dict(spec.learning.surrogate_params))
        self.loss_fn = loss_function(spec.learning.loss)
        self.backend: Backend = backend_type(threads=threads, runtime_target=runtime_target, profile=profile)
        self.backend.activate(spec, chunk_steps, Probes.of(probes).tag(), build_dir)
        self.build_dir = self.backend.build_dir
        with float_precision(spec.precision):  # the objects and their code in the spec's precision
            self.net = BrianNetwork(spec, self.rule, chunk_steps, probes=Probes.of(probes), codegen=self.backend)
            self.network = Network(self.net.all_objects())
            self.backend.read_back = self.net.read_back()  # a standalone binary writes only these after a run
            self.backend.prepare(self.network, self.net.namespace, chunk_steps)
        #: wall seconds of the last :meth:`run_chunk`'s parts: ``inputs`` (checking and converting the inputs and
        #: parameters for the device; not the time of inputs prepared ahead by :meth:`prepare_inputs`),
        #: ``device`` (the backend's run: files written, binary run, its results
        #: written; the simulation's own timing is Brian's ``device._last_run_time``), ``read`` (results read back)
        self.last_run_parts: dict[str, float] = {}

    @property
    def write_all_results(self) -> bool:
        """Whether the next runs write every array of a standalone network (Brian's behaviour), not only those read
        back (:meth:`BrianNetwork.read_back <decolle_brian.network.builder.BrianNetwork.read_back>`). For debugging:
        any variable can then be read after a run (``group.variables[name].get_value()``), at the cost of writing
        them all (22 MB per run of the dense 2048-500-500 network instead of 11). No rebuild; the runtime device
        keeps everything anyway."""
        return self.backend.write_all_results

    @write_all_results.setter
    def write_all_results(self, value: bool) -> None:
        self.backend.write_all_results = bool(value)

    # ---- running -------------------------------------------------------------------------------------------
    def prepare_inputs(self, inputs: ChunkInputs, neuron: NeuronParams | None = None) -> PreparedInputs:
        """Check a chunk's inputs and convert them for the device (event list, mask bits, schedules), without
        running: what :meth:`run_chunk` does first, so that a training loop can do it for the next chunk while the
        binary runs this one (:func:`~decolle_brian.training.run_ahead`). ValueError for bad inputs."""
        neuron = neuron or self.spec.neuron
        neuron.validate()
        arrays, scalars, files = self._input_arrays(inputs)
        arrays.update(self.net.mode.chunk_arrays(inputs, neuron))  # e.g. mode "event": the frame schedule
        return PreparedInputs(self, inputs, neuron, self.backend.stage(arrays), scalars, files)

    def run_chunk(self, inputs: ChunkInputs | PreparedInputs, params: dict[str, np.ndarray],
                  neuron: NeuronParams | None = None, *, on_start: Callable[[], None] | None = None) -> ChunkOutputs:
        """Run one chunk from a clean state with these inputs (or :meth:`prepare_inputs`' result) and parameters;
        return outputs and new params. ``on_start()`` is called when the simulation starts (a standalone binary:
        just before it starts), once the run's Python work before it is done; not at all if the run fails before.

        On C++ standalone the returned parameters are the binary's result files mapped read-only, and given back
        unchanged to the next run they are not written again (:mod:`decolle_brian.backends.param_files`): change
        a copy."""
        self.backend.check_usable()
        check_params(self.spec, params, self.backend.known_finite)
        started = time.perf_counter()
        if isinstance(inputs, PreparedInputs):
            if inputs.simulator is not self or neuron not in (None, inputs.neuron):
                raise ValueError("run_chunk: these inputs were prepared by another Simulator or for other neuron "
                                 "parameters; prepare them with this Simulator's prepare_inputs(inputs, neuron)")
            prepared_inputs = inputs
        else:
            prepared_inputs = self.prepare_inputs(inputs, neuron)
        neuron, scalars, net = prepared_inputs.neuron, prepared_inputs.scalars, self.net
        values = RunValues(
            arrays=dict(prepared_inputs.arrays),
            params=[(b.view_owner, b.variable, b.to_brian(params[key])) for key, b in net.bindings.items()],
            constants=[(owner, variable, getter(neuron)) for owner, variable, getter in net.constant_bindings]
            + [(owner, variable, value) for (owner, variable), value in scalars.items()],
            files=prepared_inputs.files,
            on_start=on_start,
        )
        prepared = time.perf_counter()
        # Brian's check of the state after a run compares it with 1e50, beyond float32 (a cast warning, nothing else)
        with np.errstate(over="ignore"):
            self.backend.run(self.network, net.namespace, self.chunk_steps, values)
        ran = time.perf_counter()
        new_params = {key: binding.from_brian(self.backend.read_param(binding.view_owner, binding.variable))
                      for key, binding in net.bindings.items()}
        y = [np.asarray(mon.y[:]).T.copy() for mon in net.y_monitors]
        n_spikes = [np.asarray(mon.n_spikes[0]).copy() if net.batch_size == 1 else np.asarray(mon.n_spikes[:]).T.copy()
                    for mon in net.count_monitors]
        probes = [{} for _ in net.layers]
        for mon in net.probe_monitors:
            layer = int(mon.source.name.removeprefix("layer")) - 1
            probes[layer].update({var: np.asarray(getattr(mon, var)[:]).T.copy() for var in mon.record_variables})
        input_probes = {}
        if net.input_monitor is not None:
            input_probes = {var: np.asarray(getattr(net.input_monitor, var)[:]).T.copy()
                            for var in net.input_monitor.record_variables}
        synapse_w = [None if mon is None else np.asarray(mon.w[:]).T.copy() for mon in net.synapse_monitors]
        synapse_w = net.mode.weights_in_use(synapse_w)  # mode "event": the stored weight minus the pending sum
        spikes = [(np.round(np.asarray(mon.t[:] / DT)).astype(np.int64), np.asarray(mon.i[:]).astype(np.int64))
                  for mon in net.spike_monitors]
        self.last_run_parts = {"inputs": prepared - started, "device": ran - prepared,
                               "read": time.perf_counter() - ran}
        return ChunkOutputs(new_params, y, n_spikes, probes, input_probes, synapse_w, spikes)

    def _input_arrays(self, inputs: ChunkInputs) -> tuple[dict, dict, dict]:
        """The run's TimedArray values (mask bits packed, network/packed.py), per-group scalars and input files.

        The counts go as the device takes them (``net.counts``: a packed TimedArray, or on C++ standalone an
        event-list file, :mod:`decolle_brian.backends.input_events`)."""
        net, steps = self.net, self.chunk_steps
        if steps != np.shape(inputs.counts)[0]:
            raise ValueError(f"Chunk has {np.shape(inputs.counts)[0]} steps, network runs {steps}")
        arrays, files = net.counts.run_values(inputs.counts, "counts_in")  # as the device takes them
        scalars = {}
        for ta, values in ((net.targets, inputs.targets), (net.eta, inputs.eta), (net.new_sample, inputs.new_sample)):
            values = np.array(values, dtype=float)  # a copy: inputs changed after preparing them are not sent
            if values.shape != ta.values.shape:
                # Brian's run_args would silently ignore (standalone) or broadcast (runtime) a wrong size
                raise ValueError(f"Input '{ta.name}' has shape {values.shape}; this network needs {ta.values.shape}")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"Input '{ta.name}' contains NaN or infinite values")
            arrays[ta] = values
        if net.with_dropout:
            if inputs.masks is None or len(inputs.masks) != len(net.layers):
                raise ValueError("This network was built with dropout: give one mask array per layer")
            for layer, mask in zip(net.layers, inputs.masks, strict=True):
                mask = DropoutMasks.of(mask, layer.group.name)  # drawn by pack_chunk / pack_batch: bits already
                arrays[layer.mask_array.array] = layer.mask_array.pack(mask.kept, f"{layer.group.name}_masks")
                scalars[(layer.group, "mask_gain")] = mask.gain
        elif inputs.masks is not None and any(np.any(np.asarray(m) != 1) for m in inputs.masks):
            raise ValueError("This network was built without dropout (dropout = 0) but got dropout masks")
        return arrays, scalars, files

    def profiling_info(self) -> list[tuple[str, object]]:
        """``(code object name, time)`` of the last run, most expensive first (needs ``profile=True``)."""
        return self.backend.profiling_info(self.network)
