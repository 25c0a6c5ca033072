"""Devices: how a DECOLLE network runs (Brian2 runtime, C++ standalone, CUDA standalone).

The model (``network/builder.py``) does not know how it runs. A :class:`Simulator` builds the network on
one device once and then runs any number of chunks through it: per-chunk inputs go into the network's
TimedArrays, parameters (weights, biases, optimiser state, neuron constants) are handed in and read back
every chunk, and all state is reset at every sample start inside the run. Standalone devices compile once
per network structure and pass everything through ``run_args``: no recompilation per sample.

Brian2 has one global device per process. Building a new standalone network re-initialises it, so an
older standalone :class:`Simulator` of the same process cannot run any more (it says so).
"""

from __future__ import annotations

import fcntl
import gc
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import brian2
import numpy as np
from brian2 import Network, get_device, prefs, set_device
from brian2.devices.device import all_devices

from decolle_brian.derivation import derive, loss_function
from decolle_brian.errors import DeviceError
from decolle_brian.names import DEFAULT_RUNTIME_TARGET, DEVICES
from decolle_brian.network.builder import DT, BrianNetwork, Probes
from decolle_brian.network.chunks import ChunkInputs
from decolle_brian.network.params import check_params
from decolle_brian.network.spec import NetworkSpec, NeuronParams


@dataclass
class ChunkOutputs:
    """What one run returns."""

    params: dict[str, np.ndarray]   # parameters after the run (learned ones updated)
    y: list[np.ndarray]             # per layer (n_steps, n_classes) readout at every step
    n_spikes: list[np.ndarray]      # per layer (n_steps,) spikes of the whole layer per step
    probes: list[dict[str, np.ndarray]]  # per layer {variable: (n_steps, n_neurons)} when probes were asked
    # with a Probes spec: input traces {variable: (n_steps, n_input_neurons)}, per layer the recorded synapse
    # weights (n_steps, n_synapses) or None, per layer the spikes as (step, neuron) index arrays
    input_probes: dict[str, np.ndarray] = field(default_factory=dict)
    synapse_w: list = field(default_factory=list)
    spikes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


_run_counter = 0  # names the files of one run's arrays
_generation = 0  # incremented whenever Brian's global standalone device is re-initialised


def default_build_dir(spec: NetworkSpec, device_name: str, chunk_steps: int, tag: str = "",
                      threads: int = 1) -> Path:
    """Per-structure build folder, so that equal structures reuse one compiled binary.

    The OpenMP thread count is compiled in: a build with ``threads > 1`` is another binary and gets its own
    folder (``-omp<threads>``); sharing one would recompile at every switch and let a process with one count
    run, or overwrite, the other's binary.
    """
    omp = f"-omp{threads}" if threads > 1 else ""
    return build_root() / f"{device_name}-{spec.structure_key()}-{chunk_steps}{tag}{omp}"


def build_root() -> Path:
    """Where the per-structure build folders go: ``$DECOLLE_BUILD_DIR`` or ``<temp>/decolle-brian-build``."""
    return Path(os.environ.get("DECOLLE_BUILD_DIR", Path(tempfile.gettempdir()) / "decolle-brian-build"))


def check_toolchain(device_name: str) -> None:
    """Raise :class:`DeviceError` when the C++ standalone device cannot compile here: before anything is built.

    Brian's generated makefile runs ``make`` and compiles with ``$(CXX)``: the ``CXX`` environment variable
    when set, else make's default ``g++``. Other devices are checked where they are set up.
    """
    if device_name != "cpp_standalone":
        return
    if shutil.which("make") is None:
        raise DeviceError("The cpp_standalone device needs 'make', which was not found on PATH: install it "
                          "(e.g. apt install build-essential) or use device.name = \"runtime\"")
    compiler = os.environ.get("CXX", "").split()
    name, origin = (compiler[0], f"CXX={os.environ['CXX']!r}") if compiler else ("g++", "make's default g++")
    if shutil.which(name) is None:
        raise DeviceError(f"The cpp_standalone device compiles with {origin}, which was not found: install a C++ "
                          "compiler (e.g. apt install g++), point CXX at one (e.g. CXX=clang++), or use "
                          "device.name = \"runtime\"")


RESULTS_PREFIX = "results-"


def _remove_stale_results(build_dir: Path) -> None:
    """Remove the per-process results folders of processes that no longer run."""
    for folder in build_dir.glob(f"{RESULTS_PREFIX}*"):
        pid = folder.name.removeprefix(RESULTS_PREFIX)
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


class Simulator:
    """A DECOLLE network built (and for standalone devices compiled) once, run chunk by chunk.

    Parameters
    ----------
    spec : NetworkSpec
        The network; validated before anything is built.
    chunk_steps : int
        Steps of every run.
    device : {"runtime", "cpp_standalone", "cuda_standalone"}
    build_dir : path, optional
        Standalone project folder (default: one per structure, see :func:`default_build_dir`).
    threads : int
        OpenMP threads of the C++ standalone device (compiled in).
    runtime_target : {"numpy", "cython"}
        Code generation target of the runtime device.
    probes : tuple of str or Probes
        Layer variables to record for every neuron and step, or a :class:`~decolle_brian.network.builder.Probes`
        that chooses neurons, input traces, synapse weights and spikes (see :class:`BrianNetwork`).
    """

    def __init__(self, spec: NetworkSpec, chunk_steps: int, device: str = "cpp_standalone",
                 build_dir: str | Path | None = None, threads: int = 1, runtime_target: str = DEFAULT_RUNTIME_TARGET,
                 probes: tuple[str, ...] | Probes = ()):
        global _generation
        spec.validate()
        if device not in DEVICES:
            raise DeviceError(f"Unknown device '{device}'; choose one of {list(DEVICES)}")
        if not isinstance(threads, int) or threads < 1:
            raise DeviceError(f"threads must be a positive integer, got {threads!r}")
        check_toolchain(device)
        self.spec, self.chunk_steps, self.device_name = spec, chunk_steps, device
        self.rule = derive(spec.learning.loss, spec.learning.surrogate, **dict(spec.learning.surrogate_params))
        self.loss_fn = loss_function(spec.learning.loss)
        self.standalone = device != "runtime"
        # Fresh devices, and no live objects of an earlier network: Brian would otherwise rename this one's
        # objects (network_1, ..._codeobject_1), change the generated code and force a full recompile. Every
        # device, not only the current one: set_device below takes the device as it is, and one that is not
        # current may still hold an earlier run (its results folder, its code objects). The devices hold the
        # last network's objects until reinit(), so collect after it, not before.
        for known in all_devices.values():
            known.reinit()
        gc.collect()
        brian2.devices.device.activate()
        _generation += 1
        self._generation = _generation
        if self.standalone:
            self.build_dir = Path(build_dir) if build_dir else default_build_dir(
                spec, device, chunk_steps, Probes.of(probes).tag(), threads if device == "cpp_standalone" else 1)
            self.build_dir.mkdir(parents=True, exist_ok=True)
            if device == "cuda_standalone":
                from decolle_brian.cuda import activate_cuda  # noqa: PLC0415 - optional extra
                activate_cuda(self.build_dir)
            else:
                set_device("cpp_standalone", directory=str(self.build_dir), build_on_run=False)
                prefs.devices.cpp_standalone.openmp_threads = threads if threads > 1 else 0
        else:
            set_device("runtime")
            prefs.codegen.target = runtime_target
        self.net = BrianNetwork(spec, self.rule, chunk_steps, probes=Probes.of(probes))
        self.network = Network(self.net.all_objects())
        if self.standalone:
            # records the run into the project; values come through run_args on every device.run
            if device == "cuda_standalone":
                from decolle_brian.cuda import check_clocks  # noqa: PLC0415

                check_clocks(self.network.objects)
            self.network.run(chunk_steps * DT, namespace=self.net.namespace)
            # one process at a time compiles a build folder (the others then find it up to date)
            with open(self.build_dir / ".build.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                get_device().build(directory=str(self.build_dir), compile=True, run=False, with_output=False)
            _remove_stale_results(self.build_dir)
        else:
            self.network.store("initial")

    # ---- running -------------------------------------------------------------------------------------------
    def run_chunk(self, inputs: ChunkInputs, params: dict[str, np.ndarray],
                  neuron: NeuronParams | None = None) -> ChunkOutputs:
        """Run one chunk from a clean state with these inputs and parameters; return outputs and new params."""
        if self.standalone and self._generation != _generation:
            raise DeviceError("This standalone network was replaced by a newer one built in the same process "
                              "(Brian2 has one standalone device per process); rebuild it")
        neuron = neuron or self.spec.neuron
        neuron.validate()
        check_params(self.spec, params)
        arrays, scalars = self._input_arrays(inputs)
        net = self.net
        if net.event is not None:  # mode "event": the frame schedule, from the run-time decays
            arrays.update(net.event.inputs(inputs, neuron))
        if self.standalone:
            run_args = {ta: values for ta, values in arrays.items()}
            for key, binding in net.bindings.items():
                run_args[getattr(binding.view_owner, binding.variable)] = binding.to_brian(params[key])
            for owner, variable, getter in net.constant_bindings:
                run_args[getattr(owner, variable)] = getter(neuron)
            for (owner, variable), value in scalars.items():
                run_args[getattr(owner, variable)] = value
            if self.device_name == "cuda_standalone":
                from decolle_brian.cuda import before_run_check  # noqa: PLC0415 - optional extra

                before_run_check(self.build_dir)  # no GPU / wrong compute capability: say so, do not crash
            files = []
            try:
                # results of this process only: other runs may use the same build folder at the same time
                get_device().run(results_directory=f"{RESULTS_PREFIX}{os.getpid()}",
                                 run_args=self._command_line(run_args, files), with_output=False)
            finally:
                for path in files:
                    path.unlink(missing_ok=True)
        else:
            self.network.restore("initial")
            for ta, values in arrays.items():
                ta.values[:] = values
            for key, binding in net.bindings.items():
                getattr(binding.view_owner, binding.variable)[:] = binding.to_brian(params[key])
            for owner, variable, getter in net.constant_bindings:
                setattr(owner, variable, getter(neuron))
            for (owner, variable), value in scalars.items():
                setattr(owner, variable, value)
            self.network.run(self.chunk_steps * DT, namespace=net.namespace)
        new_params = {key: np.array(binding.from_brian(np.asarray(getattr(binding.view_owner, binding.variable)[:])))
                      for key, binding in net.bindings.items()}
        y = [np.asarray(mon.y[:]).T.copy() for mon in net.y_monitors]
        n_spikes = [np.asarray(mon.n_spikes[0]).copy() for mon in net.count_monitors]
        probes = [{} for _ in net.layers]
        for mon in net.probe_monitors:
            layer = int(mon.source.name.removeprefix("layer")) - 1
            probes[layer].update({var: np.asarray(getattr(mon, var)[:]).T.copy() for var in mon.record_variables})
        input_probes = {}
        if net.input_monitor is not None:
            input_probes = {var: np.asarray(getattr(net.input_monitor, var)[:]).T.copy()
                            for var in net.input_monitor.record_variables}
        synapse_w = [None if mon is None else np.asarray(mon.w[:]).T.copy() for mon in net.synapse_monitors]
        if net.event is not None:  # mode "event": the weight in use is the stored one minus the pending sum
            synapse_w = net.event.weights_in_use(synapse_w)
        spikes = [(np.round(np.asarray(mon.t[:] / DT)).astype(np.int64), np.asarray(mon.i[:]).astype(np.int64))
                  for mon in net.spike_monitors]
        return ChunkOutputs(new_params, y, n_spikes, probes, input_probes, synapse_w, spikes)

    def _input_arrays(self, inputs: ChunkInputs) -> tuple[dict, dict]:
        """The run's TimedArray values (counts and mask bits packed, network/packed.py) and per-group scalars."""
        net, steps = self.net, self.chunk_steps
        if steps != np.shape(inputs.counts)[0]:
            raise ValueError(f"Chunk has {np.shape(inputs.counts)[0]} steps, network runs {steps}")
        arrays = {net.counts.array: net.counts.pack(inputs.counts, "counts_in")}
        scalars = {}
        for ta, values in ((net.targets, inputs.targets), (net.eta, inputs.eta), (net.new_sample, inputs.new_sample)):
            values = np.asarray(values, dtype=float)
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
                mask = np.asarray(mask, dtype=float)
                gains = np.unique(mask[mask != 0])
                if len(gains) > 1 or np.any(mask < 0) or not np.all(np.isfinite(gains)):
                    raise ValueError(f"Dropout masks of {layer.group.name} must be 0 or one gain 1/(1-p) per run, "
                                     f"got values {gains[:5]}")
                arrays[layer.mask_array.array] = layer.mask_array.pack(mask != 0, f"{layer.group.name}_masks")
                scalars[(layer.group, "mask_gain")] = float(gains[0]) if len(gains) else 1.0
        elif inputs.masks is not None and any(np.any(m != 1) for m in inputs.masks):
            raise ValueError("This network was built without dropout (dropout = 0) but got dropout masks")
        return arrays, scalars

    def _command_line(self, run_args: dict, files: list) -> list[str]:
        """``name=value`` arguments of the standalone binary; arrays go to files listed in ``files``.

        Brian's own ``run_args`` dictionary names each file by the MD5 hash of its content: ~10 ms per
        sample of dense input counts, more than the event-driven simulation of the sample. A run's files
        are used once, so they are named by run instead (and removed after it).
        """
        global _run_counter
        arguments = []
        static = Path(get_device().project_dir) / "static_arrays"
        for key, value in run_args.items():
            if isinstance(key, brian2.TimedArray):
                name, dtype, shape = f"{key.name}.values", key.values.dtype, key.values.shape
            else:  # a variable; synapse counts are known in the binary only (checked by check_params)
                name, dtype = f"{key.group_name}.{key.name}", key.dtype
                shape = None if key.variable.dynamic else (key.variable.size,)
            array = np.ascontiguousarray(value, dtype=dtype)
            if array.size == 1:
                arguments.append(f"{name}={array.item()!r}")
                continue
            if shape is not None and array.size != int(np.prod(shape)):
                raise ValueError(f"'{name}' needs {int(np.prod(shape))} values, got {array.size}")
            _run_counter += 1
            # lower case: brian2cuda's binary lower-cases every argument value (to parse true/false), paths too
            path = static / f"decolle_{os.getpid()}_{_run_counter}_{name.lower()}.dat"
            array.tofile(path)
            files.append(path)
            arguments.append(f"{name}={Path('static_arrays') / path.name}")
        return arguments
