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
        return np.asarray(self)[key]


@dataclass
class ChunkInputs:
    """Per-step inputs of one run (arrays of ``n_steps`` rows)."""

    counts: np.ndarray        # (n_steps, n_inputs) event counts (a batch: an EventCounts)
    targets: np.ndarray       # (n_steps, n_classes) one-hot
    eta: np.ndarray           # (n_steps,) learning rate, 0 = no learning this step
    new_sample: np.ndarray    # (n_steps,) 1 at the first step of a sample (and of the padding)
    masks: list | None        # per layer (n_steps, n_neurons) dropout multipliers, or None (no dropout)


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
    n_inputs = samples[0][0].shape[1] if samples else 0
    # in the samples' own dtype (float32 from the datasets: half the bytes to fill and to scan for events)
    counts = np.zeros((chunk_steps, n_inputs), dtype=np.result_type(*(np.asarray(c).dtype for c, _ in samples))
                      if samples else float)
    targets = np.zeros((chunk_steps, n_classes))
    eta = np.zeros(chunk_steps)
    new_sample = np.zeros(chunk_steps)
    slots, start = [], 0
    for sample_counts, label in samples:
        length = sample_counts.shape[0]
        if start + length > chunk_steps:
            raise ValueError(f"Samples need {start + length} steps, the chunk has {chunk_steps}")
        if sample_counts.ndim != 2 or sample_counts.shape[1] != n_inputs:
            raise ValueError(f"Sample counts must be (T, {n_inputs}), got {sample_counts.shape}")
        counts[start:start + length] = sample_counts
        targets[start:start + length, label] = 1.0
        new_sample[start] = 1.0
        if learn:
            eta[start + burnin:start + length] = lr
        slots.append(Slot(start, length, int(label)))
        start += length
    if start < chunk_steps:
        new_sample[start] = 1.0  # padding starts from a clean state and learns nothing
    masks = None
    if dropout > 0:
        if learn:
            if rng is None:
                raise ValueError("Learning with dropout needs a random generator for the masks")
            masks = [(rng.random((chunk_steps, n)) >= dropout) / (1.0 - dropout) for n in layer_sizes]
        else:
            masks = [np.ones((chunk_steps, n)) for n in layer_sizes]
    return ChunkInputs(counts, targets, eta, new_sample, masks), slots
