"""``recordings.h5``: the file a recording run writes, read back as arrays (docs/recording.md has the layout).

Imports only h5py and NumPy: reading a run's recordings (plotting, analysis) never loads the simulator.
"""

from __future__ import annotations

import functools
import time
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np

from decolle_brian.store import writing

FILENAME = "recordings.h5"
FORMAT_VERSION = 1

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


def open_recordings(run_dir: str | Path) -> RecordingFile:
    """The recordings of a run folder (read only)."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run recorded nothing (set [recording] variables)")
    return RecordingFile(path, "r")
