"""The two records of the data layer: a dense :class:`Sample` and a sparse binned recording (:class:`Binned`).

A leaf of :mod:`decolle_brian.data` (NumPy only): the readers, the cache and the training loop share them
without importing one another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Sample(NamedTuple):
    """One sample: event counts per 1 ms step and the class index.

    Attributes
    ----------
    counts : numpy.ndarray
        ``float32`` array of shape ``(T, *input_shape)``; counts above 1 are kept.
    label : int
        Class index in ``range(n_classes)``.
    """

    counts: np.ndarray
    label: int


class Binned(NamedTuple):
    """Sparse event counts of one recording, binned in 1 ms steps.

    Attributes
    ----------
    t : numpy.ndarray
        ``int32`` step index of each non-zero bin (sorted).
    idx : numpy.ndarray
        ``int32`` flat (C-order) index into ``input_shape`` of each non-zero bin.
    n : numpy.ndarray
        ``int32`` event count of each non-zero bin (> 0).
    n_bins : int
        Length of the recording in steps (one past the last step that may hold events).
    """

    t: np.ndarray
    idx: np.ndarray
    n: np.ndarray
    n_bins: int

    @property
    def n_events(self) -> int:
        """Total number of events."""
        return int(self.n.sum())

    def to_dense(self, start: int, n_steps: int, shape: Sequence[int]) -> np.ndarray:
        """Dense ``float32`` counts of steps ``start .. start + n_steps - 1``.

        Parameters
        ----------
        start : int
            First step of the window.
        n_steps : int
            Window length T; steps past the end of the recording are zero.
        shape : sequence of int
            ``input_shape`` of the dataset.

        Returns
        -------
        numpy.ndarray
            Array of shape ``(n_steps, *shape)``.
        """
        size = int(np.prod(shape))
        out = np.zeros((n_steps, size), dtype=np.float32)
        lo, hi = np.searchsorted(self.t, [start, start + n_steps])
        # (t, idx) pairs are unique, so plain fancy assignment is exact.
        out[self.t[lo:hi] - start, self.idx[lo:hi]] = self.n[lo:hi]
        return out.reshape((n_steps, *shape))
