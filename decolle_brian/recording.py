"""Recording during learning: a plan checked before compiling, and the run's ``recordings.h5``.

What is recorded is set by the ``[recording]`` table of a configuration (docs/recording.md has the file
layout). The recorded samples run through the SAME compiled network as all the others: when recording is
on, the experiment builds its one Simulator with :class:`~decolle_brian.network.builder.Probes` whose
neuron and synapse indices are compiled into the monitors, so every chunk records only the chosen neurons
(cost independent of the network size) and the spikes (sparse SpikeMonitors). A chunk that holds a recorded
sample is cut into per-sample arrays here and appended to the HDF5 file at once; nothing accumulates in RAM
over a run. Training samples are recorded while they are learned (``train_every``), test samples in a short
extra pass through the same network after every evaluation (``test_samples``). A second network only for
the recorded samples is not an option: Brian2 has one standalone device per process, and switching
networks means regenerating and recompiling code every time.

Weight snapshots (W or conv kernels K, biases, optimiser state, a histogram of every weight) are written at
the start, every ``weights_every`` training samples (at the first chunk boundary after each multiple) and at
the end of training.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import sympy as sp

from decolle_brian.config import ConfigError
from decolle_brian.derivation import parse_surrogate
from decolle_brian.network.builder import Probes
from decolle_brian.store import writing
from decolle_brian.training import iter_chunks, majority_vote

FILENAME = "recordings.h5"
FORMAT_VERSION = 1
#: layer variables read by StateMonitors (LIF layers; a conv layer's pooled units have no r)
TRACE_VARIABLES = ("u", "p", "q", "r", "delta", "bp")
#: everything that can be asked for; 'all' selects every one
VARIABLES = TRACE_VARIABLES + ("sigma", "s", "y", "dw", "W", "b", "opt")
SNAPSHOT_VARIABLES = ("W", "b", "opt")
#: 'auto' stores a whole weight matrix up to this many weights, else the subset
AUTO_FULL_MAX = 262144
HIST_BINS = 40
#: bytes of HDF5 bookkeeping per dataset (header, attributes, index entry), added to the size estimate
DATASET_OVERHEAD = 1200
_SELECTION_SEED = 0x5EC0  # neuron choice has its own generator: recording never changes the training draws

#: unit, time axis and meaning of every dataset (also written as attributes of each dataset)
DATASETS: dict[str, tuple[str, str, str]] = {
    "t_ms": ("ms", "t_ms", "time of each recorded step from the sample start (every every_steps steps)"),
    "eta": ("1", "t_ms", "learning rate of the step (0: burn-in, evaluation)"),
    "target": ("1", "t_ms", "one-hot target per class"),
    "input": ("events", "step", "input event counts per 1 ms step, all input neurons (C-order flattening)"),
    "u": ("1", "t_ms", "membrane potential U[t] (threshold 0), before the learning step"),
    "p": ("1", "t_ms", "membrane trace P[t] of the neuron's own events (the next layer's input)"),
    "q": ("1", "t_ms", "synaptic trace Q[t], after this step's events"),
    "r": ("1", "t_ms", "refractory trace R[t]"),
    "delta": ("1", "t_ms", "learning signal E = dL/dU = bp sigma'(U)"),
    "bp": ("1", "t_ms", "error back-projected through the fixed readout, sum_k G_ki m_i dL/dy_k"),
    "sigma": ("1", "t_ms", "surrogate derivative sigma'(U[t]) of the run's rule (computed from u)"),
    "s": ("spikes", "step", "spike flags of every neuron of the layer at every 1 ms step"),
    "y": ("1", "t_ms", "readout y_k[t] of every class"),
    "syn_bp": ("1", "t_ms", "factor 1 of a recorded synapse: bp of its postsynaptic neuron"),
    "syn_sigma": ("1", "t_ms", "factor 2: sigma'(U) of its postsynaptic neuron"),
    "syn_p": ("1", "t_ms", "factor 3: trace P of its presynaptic neuron"),
    "syn_w": ("1", "t_ms", "weight after the learning step of the step"),
    "syn_dw": ("1", "t_ms", "weight change made by the learning step of the step"),
    "W": ("1", "snapshot", "forward weights W[post, pre] (rows W_rows, columns W_cols)"),
    "K": ("1", "snapshot", "conv kernel K[out channel, in channel, row, column]"),
    "b": ("1", "snapshot", "biases"),
    "v_W": ("1", "snapshot", "Adamax infinity-norm state of W (same rows, columns as W)"),
    "v_K": ("1", "snapshot", "Adamax infinity-norm state of K"),
    "v_b": ("1", "snapshot", "Adamax infinity-norm state of b"),
    "W_hist": ("weights", "snapshot", "histogram of EVERY weight of the layer (also when W is a subset)"),
    "W_hist_edges": ("1", "snapshot", "bin edges of W_hist"),
}


# ---- the plan: what to record, checked and sized before anything is compiled ------------------------------------
@dataclass
class RecordingPlan:
    """What a run records; built by :meth:`from_config` before the network is compiled.

    Attributes
    ----------
    variables : tuple of str
        Requested variables (see ``VARIABLES``).
    layers : tuple of int
        Recorded layers, 1-based.
    neurons : dict
        Layer (0 = input) -> sorted indices of the neurons whose traces are stored (and the rows and
        columns of subset weight snapshots).
    synapses : dict
        Dense layer -> ``(n, 2)`` array of ``(post, pre)`` synapses whose three factors are stored (``dw``).
    test_indices : numpy.ndarray
        Test samples recorded after every evaluation.
    estimate : dict
        Estimated bytes per part (uncompressed, an upper bound of what is written).
    """

    variables: tuple[str, ...]
    layers: tuple[int, ...]
    neurons: dict[int, np.ndarray]
    synapses: dict[int, np.ndarray]
    train_every: int
    test_indices: np.ndarray
    every_steps: int
    weights_every: int
    weights_full: dict[int, bool]
    max_mb: float
    layer_sizes: list[int]
    layer_kinds: list[str]
    n_classes: int
    burnin: int
    estimate: dict[str, float] = field(default_factory=dict)

    # ---- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict, experiment) -> RecordingPlan | None:
        """The plan of a resolved configuration, or None when nothing is to be recorded.

        Raises
        ------
        ConfigError
            For an impossible request, or one whose estimated size exceeds ``recording.max_mb`` (the
            message gives the estimate): before anything is compiled or written.
        """
        rec = config["recording"]
        variables = _variables(rec["variables"])
        if not variables:
            return None
        spec = experiment.spec
        n_layers = len(spec.layers)
        layers = tuple(sorted(set(rec["layers"]))) or tuple(range(1, n_layers + 1))
        bad = [k for k in layers if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_layers]
        if bad:
            raise ConfigError(f"recording.layers: {bad} are not layers of this network (1 .. {n_layers})")
        sizes = spec.layer_sizes()
        rng = np.random.default_rng([config["seed"], _SELECTION_SEED])
        neurons = {k: _choose(rec["neurons"], sizes[k], rng, f"layer {k}") for k in range(1, n_layers + 1)}
        neurons[0] = _choose(rec["neurons"], sizes[0], rng, "input", candidates=_active_inputs(experiment.train_set))
        kinds = [layer.kind for layer in spec.layers]
        synapses = {}
        if "dw" in variables:
            for k in layers:
                if kinds[k - 1] != "dense":
                    continue  # a conv kernel element acts at many positions: no single synapse to follow
                post, pre = neurons[k], neurons[k - 1]
                chosen = rng.choice(len(post) * len(pre), min(rec["synapses"], len(post) * len(pre)), replace=False)
                synapses[k] = np.stack([post[chosen // len(pre)], pre[chosen % len(pre)]], axis=1)
        test_indices = _test_indices(rec["test_samples"], experiment.test_set)
        sample_variables = set(variables) - set(SNAPSHOT_VARIABLES)
        if sample_variables and rec["train_every"] == 0 and len(test_indices) == 0:
            raise ConfigError(f"recording.variables {sorted(sample_variables)} need recorded samples: set "
                              "recording.train_every > 0 or recording.test_samples")
        weights_full = {}
        for k in range(1, n_layers + 1):
            dense = kinds[k - 1] == "dense"
            n_weights = sizes[k] * sizes[k - 1] if dense else math.prod(spec.layers[k - 1].kernel_shape)
            weights_full[k] = kinds[k - 1] != "dense" or rec["weights"] == "all" or (
                rec["weights"] == "auto" and n_weights <= AUTO_FULL_MAX)
        plan = cls(variables, layers, neurons, synapses, rec["train_every"], test_indices, rec["every_steps"],
                   rec["weights_every"], weights_full, rec["max_mb"], sizes, kinds, spec.n_classes,
                   config["learning"]["burnin"])
        plan.estimate = plan._estimate(config, experiment, spec)
        if plan.mb > plan.max_mb:
            raise ConfigError(
                f"recording: this request needs about {plan.mb:.1f} MB ({plan.describe_estimate()}), more than "
                f"recording.max_mb = {plan.max_mb:g}. Record fewer samples (train_every, test_samples), neurons, "
                "variables or steps (every_steps), or raise max_mb.")
        return plan

    def _estimate(self, config: dict, experiment, spec) -> dict[str, float]:
        tcfg = config["training"]
        epochs, n_train = tcfg["epochs"], len(experiment.train_set)
        total = epochs * n_train
        n_evals = sum(1 for e in range(1, epochs + 1) if e % tcfg["eval_every"] == 0 or e == epochs)
        out = {}
        if set(self.variables) - set(SNAPSHOT_VARIABLES):
            n_train_rec = math.ceil(total / self.train_every) if self.train_every else 0
            out["training samples"] = n_train_rec * self.sample_bytes(experiment.train_set.n_steps)
            out["test samples"] = n_evals * len(self.test_indices) * self.sample_bytes(experiment.test_set.n_steps)
        if set(self.variables) & set(SNAPSHOT_VARIABLES):
            n_snap = 2 + (total // self.weights_every if self.weights_every else 0)
            out["weight snapshots"] = n_snap * self.snapshot_bytes(spec)
        return out

    def sample_bytes(self, n_steps: int) -> int:
        """Uncompressed bytes of one recorded sample of ``n_steps`` steps."""
        m = math.ceil(n_steps / self.every_steps)
        c = self.n_classes
        total = 8 * m * (2 + c) + 2 * n_steps * self.layer_sizes[0]   # t_ms, eta, target, input counts
        n_datasets = 4
        traces = [v for v in self.variables if v in TRACE_VARIABLES or v == "sigma"]
        if self.records_input():
            inputs = len({"p", "q"} & set(self.variables))
            total += 8 * m * len(self.neurons[0]) * inputs
            n_datasets += inputs
        for k in self.layers:
            total += 8 * m * len(self.neurons[k]) * len(traces)
            total += n_steps * self.layer_sizes[k] * ("s" in self.variables)
            total += 8 * m * c * ("y" in self.variables)
            total += 8 * m * 5 * len(self.synapses.get(k, ()))
            n_datasets += len(traces) + ("s" in self.variables) + ("y" in self.variables) + 5 * (k in self.synapses)
        return total + DATASET_OVERHEAD * (n_datasets + 1)

    def snapshot_bytes(self, spec) -> int:
        """Uncompressed bytes of one weight snapshot."""
        total = 8 * 2
        for k in self.layers:
            layer = spec.layers[k - 1]
            if layer.kind == "dense":
                weights = (self.layer_sizes[k] * self.layer_sizes[k - 1] if self.weights_full[k]
                           else len(self.neurons[k]) * len(self.neurons[k - 1]))
                n_bias = layer.n
            else:
                weights, n_bias = math.prod(layer.kernel_shape), layer.channels
            per = 8 * weights * ("W" in self.variables) + 8 * n_bias * ("b" in self.variables)
            total += per * (1 + ("opt" in self.variables)) + 8 * (2 * HIST_BINS + 1) * ("W" in self.variables)
        return total

    @property
    def mb(self) -> float:
        return sum(self.estimate.values()) / 1e6

    def describe_estimate(self) -> str:
        return ", ".join(f"{name} {value / 1e6:.1f} MB" for name, value in self.estimate.items() if value)

    def describe(self) -> str:
        """One line for the log before the run."""
        return (f"recording {', '.join(self.variables)} of layers {list(self.layers)}: about {self.mb:.1f} MB "
                f"uncompressed ({self.describe_estimate() or 'nothing'}; cap recording.max_mb = {self.max_mb:g})")

    # ---- what the network must monitor ---------------------------------------------------------------------
    def monitored(self) -> dict[int, np.ndarray]:
        """Layer (0 = input) -> neurons the monitors record: the recorded ones and the presynaptic
        neurons of recorded synapses."""
        out = {k: (self.neurons[k] if k in self.layers else np.zeros(0, dtype=int))
               for k in range(len(self.layer_sizes))}
        out[0] = self.neurons[0] if self.records_input() else np.zeros(0, dtype=int)
        for k, pairs in self.synapses.items():
            out[k - 1] = np.union1d(out[k - 1], pairs[:, 1]).astype(int)
        return out

    def records_input(self) -> bool:
        return 1 in self.layers and bool({"p", "q"} & set(self.variables))

    def probes(self) -> Probes | None:
        """Probes of the recording network, or None when the plain network records everything needed."""
        wanted = set(self.variables)
        probed = {v for v in TRACE_VARIABLES if v in wanted}
        probed |= {"u"} if "sigma" in wanted else set()
        probed |= {"u", "bp", "p"} if self.synapses else set()
        input_vars = ({"p", "q"} & wanted) if self.records_input() else set()
        input_vars |= {"p"} if 1 in self.synapses else set()
        if not probed and not input_vars and "s" not in wanted:
            return None
        monitored = self.monitored()
        n_layers = len(self.layer_sizes) - 1
        return Probes(
            variables=tuple(v for v in TRACE_VARIABLES if v in probed),
            neurons=tuple(tuple(int(i) for i in monitored[k]) for k in range(1, n_layers + 1)),
            input_variables=tuple(v for v in ("q", "p") if v in input_vars),
            input_neurons=tuple(int(i) for i in monitored[0]),
            synapses=tuple(tuple(map(tuple, self.synapses[k].tolist())) if k in self.synapses else ()
                           for k in range(1, n_layers + 1)),
            spikes="s" in wanted,
        )


def _variables(requested: list) -> tuple[str, ...]:
    if any(not isinstance(v, str) for v in requested):
        raise ConfigError(f"recording.variables: expected names (strings), got {requested!r}")
    if "all" in requested:
        return VARIABLES
    unknown = sorted(set(requested) - set(VARIABLES))
    if unknown:
        raise ConfigError(f"recording.variables: unknown {unknown}; choose from {list(VARIABLES)} or 'all'")
    return tuple(v for v in VARIABLES if v in requested)


def _choose(neurons, n: int, rng: np.random.Generator, what: str, candidates: np.ndarray | None = None) -> np.ndarray:
    """Recorded neuron indices: 'all', a list (checked), or a count drawn from ``candidates`` (default all)."""
    if isinstance(neurons, str):
        if neurons != "all":
            raise ConfigError(f"recording.neurons: expected a count, a list of indices or 'all', got {neurons!r}")
        return np.arange(n)
    if isinstance(neurons, list) and what != "input":
        bad = [i for i in neurons if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n]
        if bad or not neurons:
            raise ConfigError(f"recording.neurons: {bad or 'an empty list'} are not neurons of {what} (0 .. {n - 1})")
        return np.unique(np.asarray(neurons, dtype=int))
    count = len(neurons) if isinstance(neurons, list) else neurons
    if count < 1:
        raise ConfigError(f"recording.neurons: must be >= 1, got {count}")
    pool = np.arange(n) if candidates is None or len(candidates) == 0 else candidates
    return np.sort(rng.choice(pool, min(count, len(pool)), replace=False)).astype(int)


def _active_inputs(train_set, n_samples: int = 8) -> np.ndarray:
    """Input neurons with events in the first training samples: recorded input traces are rarely all zero."""
    activity = None
    for i in range(min(n_samples, len(train_set))):
        counts = np.asarray(train_set[i][0]).reshape(train_set.n_steps, -1).sum(axis=0)
        activity = counts if activity is None else activity + counts
    return np.zeros(0, dtype=int) if activity is None else np.flatnonzero(activity)


def _test_indices(text: str, test_set) -> np.ndarray:
    if text == "none":
        return np.zeros(0, dtype=int)
    labels = np.asarray(test_set.labels)
    if text == "first_of_class":
        return np.array(sorted(int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)), dtype=int)
    if text.startswith("every:"):
        try:
            step = int(text.split(":", 1)[1])
        except ValueError:
            step = 0
        if step >= 1:
            return np.arange(0, len(labels), step)
    raise ConfigError(f"recording.test_samples: expected 'first_of_class', 'every:<N>' (N >= 1) or 'none', "
                      f"got {text!r}")


# ---- the file ------------------------------------------------------------------------------------------------------
_INDEX = (("name", h5py.string_dtype()), ("split", h5py.string_dtype()), ("epoch", np.int64),
          ("samples_seen", np.int64), ("dataset_index", np.int64), ("label", np.int64), ("n_steps", np.int64))
_SNAP_INDEX = (("samples_seen", np.int64), ("epoch", np.int64), ("tag", h5py.string_dtype()))


def _writes(method):
    """A RecordingFile method whose OS failures (h5py's included) become a StoreError naming the file."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with writing(self.path):
            return method(self, *args, **kwargs)
    return wrapper


class RecordingFile:
    """``recordings.h5``: the layout of docs/recording.md, written sample by sample, read back as arrays.

    Parameters
    ----------
    path : path
    mode : {"r", "a", "w"}
        Read, append, or create (replacing the file).
    """

    def __init__(self, path: str | Path, mode: str = "r"):
        self.path = Path(path)
        with writing(self.path) if mode == "w" else nullcontext():  # "a": the caller handles an unreadable file
            self.f = h5py.File(self.path, mode)
        version = self.f.attrs.get("format_version")
        if mode != "w" and version != FORMAT_VERSION:
            self.f.close()
            raise OSError(f"{self.path}: not a decolle-brian recordings file (format {version})")

    def __enter__(self) -> RecordingFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_writes
    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()

    @_writes
    def flush(self) -> None:
        self.f.flush()

    # ---- writing -------------------------------------------------------------------------------------------
    @_writes
    def init_layout(self, attrs: dict, neurons: dict[int, np.ndarray], synapses: dict[int, np.ndarray]) -> None:
        """Top-level attributes, recorded neuron and synapse indices, empty sample and snapshot indexes."""
        f = self.f
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["created"] = time.time()
        for key, value in attrs.items():
            f.attrs[key] = value
        for k, idx in neurons.items():
            f.create_dataset(f"neurons/L{k}", data=np.asarray(idx, dtype=np.int64))
        for k, pairs in synapses.items():
            ds = f.create_dataset(f"synapses/L{k}", data=np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
            ds.attrs["columns"] = "post, pre"
        for name, dtype in _INDEX:
            f.create_dataset(f"index/{name}", shape=(0,), maxshape=(None,), dtype=dtype)
        for name, dtype in _SNAP_INDEX:
            f.create_dataset(f"weights/{name}", shape=(0,), maxshape=(None,), dtype=dtype)

    @_writes
    def add_sample(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        """Append one sample: ``meta`` has the index fields (and ``predictions``), ``arrays`` maps paths
        like ``"L1/u"`` or ``"input"`` to arrays."""
        group = self.f.create_group(f"samples/{meta['name']}")
        for key, value in meta.items():
            group.attrs[key] = value
        for path, array in arrays.items():
            _dataset(group, path, np.asarray(array))
        _append(self.f["index"], {name: meta[name] for name, _ in _INDEX})

    @_writes
    def add_snapshot(self, samples_seen: int, epoch: int, tag: str, arrays: dict[str, np.ndarray]) -> None:
        """Append one weight snapshot: ``arrays`` maps ``"L1/W"`` etc. to one snapshot's array."""
        weights = self.f["weights"]
        n = len(weights["samples_seen"])
        for path, array in arrays.items():
            array = np.asarray(array)
            if path not in weights:
                ds = weights.create_dataset(path, shape=(0,) + array.shape, maxshape=(None,) + array.shape,
                                            dtype=array.dtype, chunks=(1,) + array.shape)
                _describe(ds, path.rsplit("/", 1)[-1])
            ds = weights[path]
            if ds.shape[1:] != array.shape or len(ds) != n:
                raise ValueError(f"weight snapshot {path}: shape {array.shape} or count {len(ds)} does not fit")
            ds.resize(n + 1, axis=0)
            ds[n] = array
        _append(weights, {"samples_seen": samples_seen, "epoch": epoch, "tag": tag})

    def truncate(self, samples_seen: int, epochs_done: int) -> int:
        """Drop what was recorded after a checkpoint (it is recorded again on resume); returns the count.

        Its OSError means an unreadable file, which the :class:`Recorder` moves aside (no StoreError here)."""
        index = self.index()
        keep = [(r["split"] == "train" and r["samples_seen"] < samples_seen)
                or (r["split"] == "test" and r["epoch"] <= epochs_done) for r in index]
        for row, kept in zip(index, keep, strict=True):
            if not kept:
                del self.f[f"samples/{row['name']}"]
        _keep_rows(self.f["index"], np.array(keep, dtype=bool))
        weights = self.f["weights"]
        snap_keep = np.asarray(weights["samples_seen"][:]) <= samples_seen
        snap_keep &= np.asarray([t.decode() if isinstance(t, bytes) else t for t in weights["tag"][:]]) != "end"
        _keep_rows(weights, snap_keep)
        return int(len(keep) - sum(keep) + len(snap_keep) - snap_keep.sum())

    # ---- reading -------------------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return {key: _plain(value) for key, value in self.f.attrs.items()}

    def neurons(self) -> dict[int, np.ndarray]:
        return {int(k[1:]): np.asarray(v) for k, v in self.f.get("neurons", {}).items()}

    def synapses(self) -> dict[int, np.ndarray]:
        return {int(k[1:]): np.asarray(v) for k, v in self.f.get("synapses", {}).items()}

    def index(self, split: str | None = None) -> list[dict]:
        """One dict per recorded sample, in recording order (``split``: only 'train' or 'test')."""
        columns = {name: [_plain(v) for v in self.f["index"][name][:]] for name, _ in _INDEX}
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return [r for r in rows if split is None or r["split"] == split]

    def sample(self, name: str) -> tuple[dict, dict[str, np.ndarray]]:
        """``(meta, arrays)`` of one recorded sample; arrays keyed by path (``"L1/u"``, ``"input"``)."""
        group = self.f[f"samples/{name}"]
        arrays: dict[str, np.ndarray] = {}
        group.visititems(lambda path, obj: arrays.__setitem__(path, obj[()]) if isinstance(obj, h5py.Dataset)
                         else None)
        return {key: _plain(value) for key, value in group.attrs.items()}, arrays

    def dataset_attrs(self, path: str) -> dict:
        """Attributes (``unit``, ``time_axis``, ``doc``) of a dataset, e.g. ``samples/<name>/L1/u``."""
        return {key: _plain(value) for key, value in self.f[path].attrs.items()}

    def weights(self) -> dict:
        """Snapshot index (``samples_seen``, ``epoch``, ``tag``) and arrays (``"L1/W"``: (n_snap, ...))."""
        out: dict = {}
        self.f["weights"].visititems(lambda path, obj: out.__setitem__(path, np.asarray(
            [_plain(v) for v in obj[()]] if obj.dtype.kind == "O" else obj[()])) if isinstance(obj, h5py.Dataset)
            else None)
        return out


def _dataset(group: h5py.Group, path: str, array: np.ndarray) -> h5py.Dataset:
    big = array.size > 4096
    ds = group.create_dataset(path, data=array, compression="gzip" if big else None,
                              compression_opts=4 if big else None, shuffle=big)
    _describe(ds, path.rsplit("/", 1)[-1])
    return ds


def _describe(ds: h5py.Dataset, name: str) -> None:
    unit, axis, doc = DATASETS.get(name, ("1", "", ""))
    ds.attrs["unit"], ds.attrs["time_axis"], ds.attrs["doc"] = unit, axis, doc


def _append(group: h5py.Group, row: dict) -> None:
    for name, value in row.items():
        ds = group[name]
        ds.resize(len(ds) + 1, axis=0)
        ds[-1] = value


def _keep_rows(group: h5py.Group, keep: np.ndarray) -> None:
    """Keep the rows ``keep`` of every resizable dataset of ``group`` (same first axis)."""
    def visit(path, obj):
        if isinstance(obj, h5py.Dataset) and obj.maxshape[0] is None and len(obj) == len(keep):
            data = obj[()][keep]
            obj.resize(len(data), axis=0)
            if len(data):
                obj[...] = data
    group.visititems(visit)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- the recorder: hooks of the training loop ----------------------------------------------------------------------
def surrogate_function(expr: sp.Expr) -> Callable[[np.ndarray], np.ndarray]:
    """NumPy function sigma'(u) of a derived rule's surrogate (``rule.surrogate``) or its text.

    Text is read with the safe grammar of :mod:`decolle_brian.expressions` (an expression of ``u``, as
    ``learning.surrogate``), never evaluated.
    """
    if isinstance(expr, str):
        expr = parse_surrogate(expr)[1]
    (symbol,) = [s for s in expr.free_symbols if s.name == "u"] or [sp.Symbol("u", real=True)]
    function = sp.lambdify(symbol, expr, modules="numpy")

    def sigma(u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        return np.broadcast_to(np.asarray(function(u), dtype=float), u.shape).copy()

    return sigma


class Recorder:
    """Writes a run's recordings while it trains (see the module docstring).

    Parameters
    ----------
    plan : RecordingPlan
    run_dir : path
    rule : DerivedRule
        The run's rule (``Simulator.rule``): its surrogate gives ``sigma``.
    config : dict
        The resolved configuration (stored as an attribute).
    resume : dict, optional
        The checkpoint state when resuming: recordings made after it are dropped (they are made again).
    """

    def __init__(self, plan: RecordingPlan, run_dir: str | Path, rule, config: dict, resume: dict | None = None,
                 log=print):
        self.plan, self.log = plan, log
        self.sigma = surrogate_function(rule.surrogate)
        self.monitored = plan.monitored()
        path = Path(run_dir) / FILENAME
        self.file = None
        if resume is not None and path.is_file():
            try:
                self.file = RecordingFile(path, "a")
                dropped = self.file.truncate(resume["samples_seen"], resume["epoch"])
                if dropped:
                    log(f"recordings: dropped {dropped} entries made after the checkpoint (recorded again)")
            except (OSError, KeyError, ValueError) as exc:
                moved = path.with_name(f"{FILENAME}.unreadable-{int(time.time())}")
                with writing(moved):
                    path.rename(moved)
                log(f"recordings: {path} could not be reopened ({exc}); moved to {moved.name}, starting a new file")
                self.file = None
        if self.file is None:
            self.file = RecordingFile(path, "w")
            self.file.init_layout({
                "dt_ms": 1.0, "time_unit": "ms", "every_steps": plan.every_steps, "burnin": plan.burnin,
                "variables": json.dumps(list(plan.variables)), "layers": json.dumps(list(plan.layers)),
                "layer_sizes": json.dumps(plan.layer_sizes), "layer_kinds": json.dumps(plan.layer_kinds),
                "n_classes": plan.n_classes, "surrogate": str(rule.surrogate),
                "surrogate_name": rule.surrogate_name, "loss": rule.loss_name,
                "optimizer": config["learning"]["optimizer"], "seed": config["seed"],
                "recording_config": json.dumps(config["recording"]),
            }, {k: v for k, v in plan.neurons.items() if k in plan.layers or k == 0}, plan.synapses)
        weights = self.file.weights()
        seen = weights.get("samples_seen", np.zeros(0))
        self._last_snapshot = int(seen[-1]) if len(seen) else None

    # ---- samples -------------------------------------------------------------------------------------------
    def train_observer(self, state: dict) -> Callable | None:
        """Observer for :func:`~decolle_brian.training.iter_chunks` during training (reads the loop ``state``:
        ``epoch`` and ``samples_seen`` before the chunk); None when no training sample is recorded."""
        every = self.plan.train_every
        if not every or not (set(self.plan.variables) - set(SNAPSHOT_VARIABLES)):
            return None

        def observe(indices, slots, inputs, outputs, params_before):
            for k, (index, slot) in enumerate(zip(indices, slots, strict=True)):
                number = state["samples_seen"] + k  # samples learned before this one
                if number % every == 0:
                    self._record(dict(name=f"train-{number:09d}", split="train", epoch=state["epoch"] + 1,
                                      samples_seen=number, dataset_index=int(index), label=slot.label),
                                 slot, inputs, outputs, params_before)
        return observe

    def record_test(self, sim, dataset, params: dict, epoch: int, samples_seen: int) -> None:
        """Run the recorded test samples through ``sim`` (no learning) and store them."""
        if not len(self.plan.test_indices) or not (set(self.plan.variables) - set(SNAPSHOT_VARIABLES)):
            return

        def observe(indices, slots, inputs, outputs, params_before):
            for index, slot in zip(indices, slots, strict=True):
                self._record(dict(name=f"test-e{epoch:04d}-{int(index):07d}", split="test", epoch=epoch,
                                  samples_seen=samples_seen, dataset_index=int(index), label=slot.label),
                             slot, inputs, outputs, params_before)

        for _ in iter_chunks(sim, dataset, self.plan.test_indices, params, learn=False, observer=observe):
            pass
        self.file.flush()

    def _record(self, meta: dict, slot, inputs, outputs, params_before: dict) -> None:
        plan, wanted = self.plan, set(self.plan.variables)
        n = slot.n_steps
        window = np.arange(slot.start, slot.start + n)
        rec = window[::plan.every_steps]
        arrays = {"t_ms": (rec - slot.start).astype(float), "eta": inputs.eta[rec], "target": inputs.targets[rec],
                  "input": _as_counts(inputs.counts[window])}
        if plan.records_input():
            chosen = _positions(self.monitored[0], plan.neurons[0])
            for v in ("p", "q"):
                if v in wanted:
                    arrays[f"L0/{v}"] = outputs.input_probes[v][rec][:, chosen]
        for k in plan.layers:
            probes = outputs.probes[k - 1] if outputs.probes else {}
            chosen = _positions(self.monitored[k], plan.neurons[k])
            for v in TRACE_VARIABLES:
                if v in wanted and v in probes:
                    arrays[f"L{k}/{v}"] = probes[v][rec][:, chosen]
            if "sigma" in wanted and "u" in probes:
                arrays[f"L{k}/sigma"] = self.sigma(probes["u"][rec][:, chosen])
            if "s" in wanted:
                steps, neurons = outputs.spikes[k - 1]
                inside = (steps >= slot.start) & (steps < slot.start + n)
                spikes = np.zeros((n, plan.layer_sizes[k]), dtype=np.uint8)
                np.add.at(spikes, (steps[inside] - slot.start, neurons[inside]), 1)
                arrays[f"L{k}/s"] = spikes
            y = outputs.y[k - 1]
            if "y" in wanted:
                arrays[f"L{k}/y"] = y[rec]
            if k in plan.synapses:
                arrays.update(self._synapse_factors(k, probes, outputs, slot, rec, params_before))
        burnin = min(plan.burnin, n - 1)
        predictions = [majority_vote(y[slot.start + burnin:slot.start + n]) for y in outputs.y]
        self.file.add_sample({**meta, "n_steps": n, "predictions": predictions}, arrays)

    def _synapse_factors(self, k: int, probes: dict, outputs, slot, rec: np.ndarray, params_before: dict) -> dict:
        """The three factors of the recorded synapses of layer k and the weight change they cause."""
        post, pre = self.plan.synapses[k].T
        at_post = _positions(self.monitored[k], post)
        u, bp = probes["u"][:, at_post], probes["bp"][:, at_post]
        p_pre = (outputs.input_probes["p"] if k == 1 else outputs.probes[k - 2]["p"])[:, _positions(
            self.monitored[k - 1], pre)]
        w = outputs.synapse_w[k - 1]
        start, stop = slot.start, slot.start + slot.n_steps
        before = w[start - 1] if start > 0 else params_before[f"layer{k}.W"][post, pre]
        dw = np.diff(np.concatenate([before[None], w[start:stop]]), axis=0)
        return {f"L{k}/syn_bp": bp[rec], f"L{k}/syn_sigma": self.sigma(u[rec]), f"L{k}/syn_p": p_pre[rec],
                f"L{k}/syn_w": w[rec], f"L{k}/syn_dw": dw[rec - start]}

    # ---- weights -------------------------------------------------------------------------------------------
    def snapshot(self, params: dict, samples_seen: int, epoch: int, tag: str) -> None:
        """Store a weight snapshot (when weights are recorded); one per point of training."""
        wanted = set(self.plan.variables) & set(SNAPSHOT_VARIABLES)
        if not wanted or (self._last_snapshot == samples_seen and tag != "end"):
            return
        arrays = {}
        for k in self.plan.layers:
            key = "K" if f"layer{k}.K" in params else "W"
            full = self.plan.weights_full[k]
            rows, cols = self.plan.neurons[k], self.plan.neurons[k - 1]

            def subset(a, key=key, full=full, rows=rows, cols=cols):
                return a if full or key == "K" else a[np.ix_(rows, cols)]

            weights = np.asarray(params[f"layer{k}.{key}"])
            if "W" in wanted:
                arrays[f"L{k}/{key}"] = subset(weights)
                if key == "W" and not full:
                    arrays[f"L{k}/W_rows"], arrays[f"L{k}/W_cols"] = rows, cols
                counts, edges = np.histogram(weights, bins=HIST_BINS)
                arrays[f"L{k}/W_hist"], arrays[f"L{k}/W_hist_edges"] = counts, edges
            if "b" in wanted:
                arrays[f"L{k}/b"] = params[f"layer{k}.b"]
            if "opt" in wanted and f"layer{k}.v_{key}" in params:
                if "W" in wanted:
                    arrays[f"L{k}/v_{key}"] = subset(np.asarray(params[f"layer{k}.v_{key}"]))
                if "b" in wanted:
                    arrays[f"L{k}/v_b"] = params[f"layer{k}.v_b"]
        self.file.add_snapshot(samples_seen, epoch, tag, arrays)
        self._last_snapshot = samples_seen
        self.file.flush()

    def after_chunk(self, params: dict, samples_seen: int, epoch: int) -> None:
        """Periodic snapshot at the first chunk boundary at or after each multiple of ``weights_every``."""
        every = self.plan.weights_every
        if every and (self._last_snapshot is None or samples_seen // every > self._last_snapshot // every):
            self.snapshot(params, samples_seen, epoch, "periodic")

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _positions(monitored: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Columns of the monitored neurons (sorted) that hold ``wanted``."""
    pos = np.searchsorted(monitored, wanted)
    if np.any(pos >= len(monitored)) or np.any(monitored[np.minimum(pos, len(monitored) - 1)] != wanted):
        raise ValueError("recorded neurons are not all monitored (a plan and network that do not match)")
    return pos


def _as_counts(counts: np.ndarray) -> np.ndarray:
    """Event counts as the smallest unsigned integer type that holds them (exact: counts are integers)."""
    top = counts.max(initial=0)
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
    return np.rint(counts).astype(dtype)


def open_recordings(run_dir: str | Path) -> RecordingFile:
    """The recordings of a run folder (read only)."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run recorded nothing (set [recording] variables)")
    return RecordingFile(path, "r")
