"""Dataset contract shared by every data source: samples, errors, binning and the base classes.

Every dataset yields :class:`Sample` objects whose ``counts`` are event counts per 1 ms step with
shape ``(T, *input_shape)``. Event-file datasets (:class:`RecordingDataset`) keep a sparse binned copy
of each recording in an on-disk cache (:mod:`decolle_brian.data.cache`); static-image datasets
(:class:`StaticImageDataset`) encode an image on the fly with a seeded encoder
(:mod:`decolle_brian.data.encoders`).
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from decolle_brian.errors import DataError, ParamError

from .cache import BinCache
from .encoders import encode_image, encoder_output_shape, resolve_encoder
from .samples import Binned, Sample

#: Environment variable naming one or more data roots (``os.pathsep``-separated).
ENV_VAR = "DECOLLE_DATA"
#: Width of one time step of every sample, microseconds (1 ms, as in the reference).
DT_US = 1000

SPLITS = ("train", "test")
ON_ERROR = ("raise", "skip")


def bin_events(
    t_us: np.ndarray,
    channel: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    shape: Sequence[int],
    t0_us: int,
    n_bins: int | None = None,
) -> Binned:
    """Count events per 1 ms step and per (channel, y, x) cell.

    Parameters
    ----------
    t_us : numpy.ndarray
        Event times in microseconds.
    channel, y, x : numpy.ndarray
        Integer coordinates of each event inside ``shape`` (already checked by the reader).
    shape : sequence of int
        ``(channels, height, width)``.
    t0_us : int
        Time of step 0; events before it are dropped.
    n_bins : int, optional
        Recording length in steps; events at or after it are dropped. Default: up to the last event.

    Returns
    -------
    Binned
    """
    t_us = np.asarray(t_us, dtype=np.int64)
    step = (t_us - int(t0_us)) // DT_US
    if n_bins is None:
        n_bins = int(step.max()) + 1 if step.size else 0
    keep = (step >= 0) & (step < n_bins)
    flat = np.ravel_multi_index(
        (np.asarray(channel, np.int64)[keep], np.asarray(y, np.int64)[keep], np.asarray(x, np.int64)[keep]),
        tuple(shape),
    )
    size = int(np.prod(shape))
    key = step[keep] * size + flat
    uniq, n = np.unique(key, return_counts=True)  # sorted by step, then cell
    return Binned(
        t=(uniq // size).astype(np.int32),
        idx=(uniq % size).astype(np.int32),
        n=n.astype(np.int32),
        n_bins=int(n_bins),
    )


def one_hot(label: int | np.ndarray, n_classes: int, n_steps: int | None = None) -> np.ndarray:
    """One-hot ``float32`` target(s), optionally repeated over ``n_steps`` (reference targets).

    Parameters
    ----------
    label : int or numpy.ndarray
        Class index or array of class indices.
    n_classes : int
        Number of classes.
    n_steps : int, optional
        If given, the target is repeated at every step: shape ``(n_steps, ..., n_classes)``.

    Returns
    -------
    numpy.ndarray
    """
    lab = np.asarray(label, dtype=np.int64)
    out = np.eye(n_classes, dtype=np.float32)[lab]
    if n_steps is not None:
        out = np.broadcast_to(out, (n_steps, *out.shape)).copy()
    return out


def search_paths(root: str | Path | None = None) -> list[Path]:
    """Base folders searched for data, in order.

    An explicit ``root`` is the only place searched (an explicit choice is never silently replaced
    by other data). Otherwise: ``$DECOLLE_DATA`` (``os.pathsep``-separated), ``../shared/data``
    relative to the working directory, ``../shared/data`` relative to the repository, and
    ``~/.decolle-brian/data``.

    Parameters
    ----------
    root : str or Path, optional
        Explicit data folder.

    Returns
    -------
    list of Path
        Absolute paths.
    """
    # absolute: samples are read while the training loop runs a binary, from its build folder as the process's
    # working directory (training.run_ahead)
    if root is not None:
        return [Path(root).expanduser().absolute()]
    paths = [Path(p).expanduser().absolute() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    repo = Path(__file__).resolve().parents[2]
    paths += [Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"]
    paths.append(Path.home() / ".decolle-brian" / "data")
    unique: list[Path] = []
    for p in paths:
        if p not in unique:
            unique.append(p)
    return unique


@contextmanager
def network_timeout(seconds: float) -> Iterator[None]:
    """Temporarily set the default socket timeout.

    tonic's downloader calls ``urlopen`` without a timeout; offline, a download must fail, not hang.
    """
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def balanced_subset(labels: np.ndarray, max_samples: int | None) -> np.ndarray:
    """Indices of a class-balanced, deterministic subset of at most ``max_samples`` samples.

    Samples are taken round-robin over classes in their original order, so small subsets contain
    every class; the result is sorted (original order kept).

    Parameters
    ----------
    labels : numpy.ndarray
        Labels of the full set.
    max_samples : int or None
        Size limit; ``None`` keeps everything.

    Returns
    -------
    numpy.ndarray
        Sorted ``int64`` indices.
    """
    n = len(labels)
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    if max_samples < 1:
        raise ParamError(f"max_samples must be >= 1, got {max_samples}")
    order = np.argsort(labels, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    for c in np.unique(labels):  # rank of each sample within its class
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    pick = np.lexsort((labels, rank))[:max_samples]
    return np.sort(pick)


def _check_choice(name: str, value: Any, valid: Sequence[Any]) -> None:
    if value not in valid:
        raise ParamError(f"invalid {name} {value!r}; valid values: {', '.join(map(repr, valid))}")


class EventDataset:
    """Base class of all datasets: a list of samples of event counts per 1 ms step.

    Attributes
    ----------
    name : str
        Registry name (``"nmnist"``, ``"dvsgesture"``, ``"mnist"``, ``"digits"``).
    input_shape : tuple of int
        Shape of one step, e.g. ``(2, 32, 32)`` = (polarity, y, x); networks flatten it in C order.
    n_classes : int
    class_names : list of str
    n_steps : int
        T, the number of 1 ms steps per sample.
    split : str
        ``"train"`` or ``"test"``.
    params : dict
        Preprocessing parameters (shown by :meth:`describe`, part of cache keys).
    source : str
        Where the data came from.
    split_keys : dict
        The preprocessing parameters that choose which samples form a split, and how: ``"one"``, one draw makes
        both splits (the two must have the same value); ``"each"``, each split lists its own (the two lists must
        share nothing). Configurations are held to it (``data.test_params``), so that no test sample is a
        training sample.
    """

    split_keys: dict[str, str] = {}
    name: str = ""
    input_shape: tuple[int, ...] = ()
    n_classes: int = 0
    class_names: list[str] = []
    n_steps: int = 0

    def __init__(self, split: str, seed: int = 0):
        _check_choice("split", split, SPLITS)
        self.split = split
        self.seed = int(seed)
        self.epoch = 0
        self.params: dict[str, Any] = {}
        self.source = ""
        self._labels = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def labels(self) -> np.ndarray:
        """Labels of all samples (``int64``), without loading any events."""
        return self._labels.copy()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used to seed random choices (train windows, Poisson draws).

        Parameters
        ----------
        epoch : int
            Same ``seed``, index and epoch always give the same sample.
        """
        self.epoch = int(epoch)

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample index {i} out of range for {self.name} {self.split} ({n} samples)")
        return int(i) % n

    def _rng(self, key: int) -> np.random.Generator:
        # Independent stream per (seed, split, sample, epoch): reproducible and order-independent.
        return np.random.default_rng([self.seed, SPLITS.index(self.split), int(key), self.epoch])

    def describe(self) -> str:
        """Human-readable summary: name, split, size, shape, T, class counts, source, preprocessing.

        Returns
        -------
        str
        """
        counts = np.bincount(self._labels, minlength=self.n_classes)
        lines = [
            f"dataset      {self.name} ({self.split} split)",
            f"samples      {len(self)}",
            f"input shape  {self.input_shape} per step, T = {self.n_steps} steps of 1 ms",
            f"classes      {self.n_classes}; samples per class:",
        ]
        width = max(len(nm) for nm in self.class_names)
        lines += [
            f"  {c:2d}  {nm:<{width}s}  {counts[c]:6d}" if nm != str(c) else f"  {c:2d}  {counts[c]:6d}"
            for c, nm in enumerate(self.class_names)
        ]
        lines.append(f"source       {self.source}")
        lines.append("preprocessing")
        lines += [f"  {k} = {v!r}" for k, v in self.params.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name}/{self.split}: {len(self)} samples, "
            f"shape {self.input_shape}, T={self.n_steps}>"
        )


class RecordingDataset(EventDataset):
    """Base class of datasets read from event files, with an on-disk cache of binned recordings.

    Subclasses fill ``self._items`` with one tuple ``(sources, k)`` per sample: ``sources`` is the
    tuple of files the sample is read from (its cache key), ``k`` the sample's position among the
    samples those files hold. They implement :meth:`_read_group`.

    Parameters
    ----------
    split : str
    seed : int
    cache : bool
        Keep binned recordings on disk so later epochs do not re-read the event files.
    cache_dir : str or Path, optional
        Cache folder (default: see :func:`decolle_brian.data.cache.default_cache_dir`).
    on_error : {"raise", "skip"}
        What to do with a bad file: raise :class:`DataError`, or skip it with a warning.
    """

    def __init__(
        self,
        split: str,
        seed: int = 0,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        on_error: str = "raise",
    ):
        super().__init__(split, seed)
        _check_choice("on_error", on_error, ON_ERROR)
        self.on_error = on_error
        self.use_cache = bool(cache)
        self.cache_dir = cache_dir
        self.skipped: list[tuple[str, str]] = []
        self._items: list[tuple[tuple[Path, ...], int]] = []
        self._cache: BinCache | None = None
        self._memo: tuple[tuple, list[Binned]] | None = None

    # -- subclass hooks ------------------------------------------------------------------------
    def _read_group(self, sources: tuple[Path, ...]) -> list[Binned]:  # pragma: no cover - abstract
        """Read and bin every sample stored in ``sources``."""
        raise NotImplementedError

    def _cache_params(self) -> dict[str, Any]:
        """Parameters that change the binned recordings (the cache key)."""
        return {}

    def _window_start(self, i: int, rec: Binned) -> int:
        """First step of sample ``i``'s window (default: the start of the recording)."""
        return 0

    # -- scan helpers --------------------------------------------------------------------------
    def _bad_file(self, path: Path | str, reason: str | DataError) -> None:
        """Apply the ``on_error`` policy to a file found bad while scanning.

        ``reason`` is what is wrong with ``path``, or a :class:`DataError` whose message names the file itself.
        ``skipped`` keeps ``(path, message naming the file)``.
        """
        message = str(reason) if isinstance(reason, DataError) else f"{path}: {reason}"
        if self.on_error == "raise":
            raise DataError(f"{message} (or pass on_error='skip' to skip bad files)")
        self.skipped.append((str(path), message))

    def _finish_scan(self, labels: list[int], what: str) -> None:
        """Store labels, apply ``max_samples`` and warn about skipped files."""
        if self.skipped:
            first = "; ".join(message for _, message in self.skipped[:3])
            warnings.warn(
                f"{self.name}: skipped {len(self.skipped)} bad {what} (on_error='skip'); first: {first}",
                stacklevel=3,
            )
        labels_arr = np.asarray(labels, dtype=np.int64)
        keep = balanced_subset(labels_arr, self.params.get("max_samples"))
        self._items = [self._items[j] for j in keep]
        self._orig_index = keep
        self._labels = labels_arr[keep]
        if len(self._items) == 0:
            raise DataError(f"{self.name} {self.split}: no usable samples found in {self.source}")

    # -- access --------------------------------------------------------------------------------
    @property
    def cache(self) -> BinCache | None:
        """The on-disk cache (``None`` when caching is off)."""
        if self.use_cache and self._cache is None:
            root = getattr(self, "root", None)
            self._cache = BinCache(self.name, self._cache_params(), self.cache_dir, data_root=root)
        return self._cache if self.use_cache else None

    def binned(self, i: int) -> Binned:
        """Sparse binned recording of sample ``i`` (whole recording, before windowing).

        Parameters
        ----------
        i : int

        Returns
        -------
        Binned
        """
        i = self._check_index(i)
        sources, k = self._items[i]
        return self._group(sources)[k]

    def _group(self, sources: tuple[Path, ...]) -> list[Binned]:
        try:  # the memo of the last group must notice a file changed on disk
            stamp = tuple((s, s.stat().st_size, s.stat().st_mtime_ns) for s in sources)
        except OSError as err:
            raise DataError(f"{sources[0]}: cannot read the source file ({err}); check the data folder") from err
        if self._memo is not None and self._memo[0] == stamp:
            return self._memo[1]
        cache = self.cache
        group = cache.load(sources) if cache is not None else None
        if group is None:
            group = self._read_group(sources)
            if cache is not None:
                cache.store(sources, group)
        self._memo = (stamp, group)
        return group

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        rec = self.binned(i)
        start = self._window_start(i, rec)
        return Sample(rec.to_dense(start, self.n_steps, self.input_shape), int(self._labels[i]))

    def prepare(self, progress: bool = True) -> int:
        """Check every recording once, before it is used: read, validate and bin it into the cache.

        A recording already in the cache is not read again (it was validated when it was binned, and its
        cache key changes with the file), so only the first scan of a data set costs reading its files; with
        the cache off every call reads them all. A bad file raises :class:`DataError` naming it, or with
        ``on_error="skip"`` is dropped and named in a warning.

        Parameters
        ----------
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        int
            Number of samples dropped (only with ``on_error="skip"``).
        """
        bad: set[tuple[Path, ...]] = set()
        messages: list[str] = []
        cache = self.cache
        groups = [src for src in dict.fromkeys(src for src, _ in self._items) if cache is None or not cache.has(src)]
        for sources in tqdm(groups, desc=f"checking {self.name} {self.split}", disable=not progress or not groups,
                            unit="file"):
            try:
                self._group(sources)
            except DataError as err:
                if self.on_error == "raise":
                    raise DataError(f"{err} (or pass on_error='skip' to skip bad files)") from err
                bad.add(sources)
                messages.append(str(err))
                self.skipped.append((str(sources[0]), str(err)))
        if not bad:
            return 0
        keep = [j for j, (src, _) in enumerate(self._items) if src not in bad]
        dropped = len(self._items) - len(keep)
        named = "; ".join(messages)
        warnings.warn(f"{self.name} {self.split}: dropped {dropped} samples from {len(bad)} bad files "
                      f"(on_error='skip'): {named}", stacklevel=2)
        self._items = [self._items[j] for j in keep]
        self._orig_index = self._orig_index[keep]
        self._labels = self._labels[keep]
        return dropped


class StaticImageDataset(EventDataset):
    """Base class of static-image datasets turned into events by a seeded encoder.

    Subclasses set ``self._images`` (``float32``, shape ``(N, H, W)``, values in [0, 1]),
    ``self._labels`` and ``self._orig_index`` (index of each image in the full split, the seed key),
    then call :meth:`_setup_encoder`.
    """

    def _setup_encoder(self, encoder: str, n_steps: int | None, crop: str | None, enc_params: dict) -> None:
        encoder, n_steps, enc_params = resolve_encoder(encoder, n_steps, enc_params)
        self.encoder = encoder
        self.n_steps = n_steps
        self.crop = crop
        self.enc_params = enc_params
        self.input_shape = encoder_output_shape(encoder, self._images.shape[1:], enc_params, crop)
        self.params.update({"encoder": encoder, "n_steps": n_steps, **enc_params})
        if encoder == "saccade":
            self.params["crop"] = crop

    def image(self, i: int) -> np.ndarray:
        """Intensity image of sample ``i`` (``float32`` in [0, 1], shape ``(H, W)``)."""
        return self._images[self._check_index(i)]

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        rng = self._rng(int(self._orig_index[i]))
        counts = encode_image(self._images[i], self.encoder, self.n_steps, rng, self.enc_params, self.crop)
        return Sample(counts, int(self._labels[i]))
