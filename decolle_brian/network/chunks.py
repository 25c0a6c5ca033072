"""Pack samples into the per-step input arrays of one run (a chunk).

A compiled network runs a fixed number of steps per call. Samples of any length are laid end to end;
``new_sample`` marks each start (all state is reset there), ``eta`` is the learning rate of each step
(0 during burn-in, evaluation and padding), ``targets`` the one-hot class, ``masks`` the dropout
multipliers of the readout path (0 or 1/(1-p), drawn from the run's NumPy generator; all 1 without
learning). Unused steps at the end are padding: no input, no learning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class EventCounts:
    """Per-step event counts ``(steps, n)`` held as their non-zero entries, in step order.

    What :func:`decolle_brian.network.batch.pack_batch` returns as a batch's counts: laying 72 samples of 300 x 2048
    mostly-zero counts side by side densely (177 MB of float32) took longer than finding their events, and a C++
    standalone run sends only the events (:mod:`decolle_brian.backends.input_events`). Anything that needs the
    dense array gets it from ``np.asarray`` (the runtime and CUDA devices' packed input; tests).

    Parameters
    ----------
    shape : (int, int)
        Steps and units.
    step, unit : numpy.ndarray
        Step and unit of every non-zero count, ``step`` non-decreasing (ValueError otherwise); a (step, unit)
        given twice counts the sum of its values.
    value : numpy.ndarray
        The counts (non-zero; checked by whoever sends them to a network).
    """

    ndim = 2

    def __init__(self, shape: tuple[int, int], step: np.ndarray, unit: np.ndarray, value: np.ndarray):
        self.shape = (int(shape[0]), int(shape[1]))
        step, unit, value = np.asarray(step), np.asarray(unit), np.asarray(value)
        if not step.shape == unit.shape == value.shape or step.ndim != 1:
            raise ValueError(f"EventCounts: step, unit and value must be 1-d of one length, got {step.shape}, "
                             f"{unit.shape}, {value.shape}")
        if step.size:
            # an event list's offsets come from the steps in order: unsorted entries would land in other steps
            if step.min() < 0 or step.max() >= self.shape[0] or unit.min() < 0 or unit.max() >= self.shape[1]:
                raise ValueError(f"EventCounts: a step or unit lies outside the shape {self.shape}")
            if np.any(np.diff(step) < 0):
                raise ValueError("EventCounts: entries must be in step order")
        self.step, self.unit, self.value = step, unit, value
        self.dtype = value.dtype

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = np.zeros(self.shape, dtype=dtype or self.dtype)
        np.add.at(dense, (self.step, self.unit), self.value)  # a repeated (step, unit) adds, as in the event list
        return dense

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice) and key.step in (None, 1):  # a window of steps: from its own entries only
            start, stop, _ = key.indices(self.shape[0])
            stop = max(start, stop)
            lo, hi = np.searchsorted(self.step, [start, stop])
            return np.asarray(EventCounts((stop - start, self.shape[1]), self.step[lo:hi] - start, self.unit[lo:hi],
                                          self.value[lo:hi]))
        return np.asarray(self)[key]

    @classmethod
    def of_samples(cls, arrays: list[np.ndarray], starts: list[int], steps: int) -> EventCounts:
        """The non-zero counts of per-sample arrays ``(T_k, n)`` laid end to end, sample k from step ``starts[k]``
        (non-decreasing, without overlap): in step order as they come, no sort needed."""
        n = arrays[0].shape[1] if arrays else 0
        found = [np.flatnonzero(array != 0) for array in arrays]  # NaN too: refused where it is sent
        flat = np.concatenate(found) if found else np.zeros(0, dtype=np.intp)
        step = flat // n if n else flat
        unit = flat - step * n
        step += np.repeat(np.asarray(starts, dtype=np.intp), [f.size for f in found])
        value = (np.concatenate([array.reshape(-1)[f] for array, f in zip(arrays, found, strict=True)])
                 if found else np.zeros(0))
        return cls((steps, n), step, unit, value)


class DropoutMasks:
    """Dropout multipliers ``(steps, n)``, 0 or one ``gain`` (1/(1-p)), held as the kept bits and the gain.

    What :func:`pack_chunk` and :func:`~decolle_brian.network.batch.pack_batch` return: the network takes masks as
    bits and one gain per run (:class:`~decolle_brian.network.packed.PackedInput`), so multipliers drawn here need no
    float array (steps x n x 8 bytes) nor the check that user-given multipliers get. ``np.asarray`` or indexing
    gives the multipliers, ``kept * gain``: the same doubles as ``kept / (1 - p)`` (1.0 / (1 - p) is the gain).
    """

    ndim = 2
    dtype = np.dtype(float)

    def __init__(self, kept: np.ndarray, gain: float):
        kept = np.asarray(kept)
        if kept.dtype != bool or kept.ndim != 2:
            raise ValueError(f"DropoutMasks: kept must be a 2-d bool array, got {kept.dtype} of shape {kept.shape}")
        if not (np.isfinite(gain) and gain > 0):
            raise ValueError(f"DropoutMasks: the gain must be finite and positive, got {gain!r}")
        self.kept, self.gain, self.shape = kept, float(gain), kept.shape

    @classmethod
    def of(cls, mask, what: str) -> DropoutMasks:
        """``mask`` as DropoutMasks: as it is, or multipliers checked to be 0 or one gain (ValueError naming ``what``).

        Every kept (non-zero) multiplier must be the largest, a finite positive gain 1/(1-p); none kept: gain 1.
        """
        if isinstance(mask, DropoutMasks):
            return mask
        mask = np.asarray(mask, dtype=float)
        kept = mask != 0
        n_kept = np.count_nonzero(kept)
        gain = mask.max() if n_kept else 1.0  # NaN if there is one
        # counting instead of np.unique's sort
        if n_kept and not (np.isfinite(gain) and gain > 0 and np.count_nonzero(mask == gain) == n_kept):
            raise ValueError(f"Dropout masks of {what} must be 0 or one gain 1/(1-p) per run, "
                             f"got values {np.unique(mask[kept])[:5]}")
        return cls(kept, float(gain))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return (self.kept * self.gain).astype(dtype or float, copy=False)

    def __getitem__(self, key) -> np.ndarray:
        return self.kept[key] * self.gain

    def __len__(self) -> int:
        return self.shape[0]


@dataclass
class ChunkInputs:
    """Per-step inputs of one run (arrays of ``n_steps`` rows)."""

    counts: np.ndarray        # (n_steps, n_inputs) event counts (packed here: an EventCounts, its non-zeros)
    targets: np.ndarray       # (n_steps, n_classes) one-hot
    eta: np.ndarray           # (n_steps,) learning rate, 0 = no learning this step
    new_sample: np.ndarray    # (n_steps,) 1 at the first step of a sample (and of the padding)
    masks: list | None        # per layer (n_steps, n_neurons) dropout multipliers (packed here: DropoutMasks),
                              # or None (no dropout)


@dataclass(frozen=True)
class Slot:
    """Where a sample lies in a chunk."""

    start: int
    n_steps: int
    label: int


def plan_chunks(lengths: list[int], chunk_steps: int) -> list[list[int]]:
    """Greedy split of samples (by length) into consecutive chunks of at most ``chunk_steps`` steps."""
    chunks, current, used = [], [], 0
    for index, length in enumerate(lengths):
        if length > chunk_steps:
            raise ValueError(f"Sample {index} has {length} steps, more than the chunk length {chunk_steps}")
        if used + length > chunk_steps:
            chunks.append(current)
            current, used = [], 0
        current.append(index)
        used += length
    if current:
        chunks.append(current)
    return chunks


def pack_chunk(
    samples: list[tuple[np.ndarray, int]],
    chunk_steps: int,
    n_classes: int,
    *,
    lr: float,
    burnin: int,
    learn: bool,
    dropout: float,
    layer_sizes: list[int],
    rng: np.random.Generator | None = None,
) -> tuple[ChunkInputs, list[Slot]]:
    """Lay ``samples`` (counts (T, n_inputs), label) into one chunk.

    Parameters
    ----------
    lr : float
        Learning rate of the learning steps (steps t >= burnin of each sample, when ``learn``).
    dropout : float
        Dropout probability of the readout path; masks are drawn only when ``learn`` and ``dropout > 0``.
    layer_sizes : list of int
        Neurons per layer (no input), for the mask arrays.
    rng : numpy.random.Generator
        Source of the dropout masks (needed when learning with dropout).
    """
    n_inputs = np.shape(samples[0][0])[1] if samples else 0
    targets = np.zeros((chunk_steps, n_classes))
    eta = np.zeros(chunk_steps)
    new_sample = np.zeros(chunk_steps)
    slots, start, arrays = [], 0, []
    for sample_counts, label in samples:
        sample_counts = np.asarray(sample_counts)
        length = sample_counts.shape[0]
        if start + length > chunk_steps:
            raise ValueError(f"Samples need {start + length} steps, the chunk has {chunk_steps}")
        if sample_counts.ndim != 2 or sample_counts.shape[1] != n_inputs:
            raise ValueError(f"Sample counts must be (T, {n_inputs}), got {sample_counts.shape}")
        arrays.append(sample_counts)
        targets[start:start + length, label] = 1.0
        new_sample[start] = 1.0
        if learn:
            eta[start + burnin:start + length] = lr
        slots.append(Slot(start, length, int(label)))
        start += length
    if start < chunk_steps:
        new_sample[start] = 1.0  # padding starts from a clean state and learns nothing
    # the events only (counts are mostly 0), in the samples' own dtype; the network checks every value it is sent
    counts = EventCounts.of_samples(arrays, [slot.start for slot in slots], chunk_steps)
    masks = None
    if dropout > 0:
        if learn:
            if rng is None:
                raise ValueError("Learning with dropout needs a random generator for the masks")
            masks = [DropoutMasks(rng.random((chunk_steps, n)) >= dropout, 1.0 / (1.0 - dropout)) for n in layer_sizes]
        else:
            masks = [DropoutMasks(np.ones((chunk_steps, n), dtype=bool), 1.0) for n in layer_sizes]
    return ChunkInputs(counts, targets, eta, new_sample, masks), slots
