"""Training-loop helpers that need no compiled network: random translations of samples."""

import numpy as np
import pytest

from decolle_brian.training import random_shift


class FixedShift:
    """A generator stand-in that returns a chosen (dy, dx)."""

    def __init__(self, dy, dx):
        self.values = np.array([dy, dx])

    def integers(self, low, high, size):
        assert size == 2 and np.all((low <= self.values) & (self.values < high))
        return self.values


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (1, 0), (0, -2), (-1, 2), (2, 2)])
def test_random_shift_moves_every_event_and_drops_the_border(dy, dx):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, size=(5, 2, 6, 7)).astype(np.float32)
    shifted = random_shift(counts, 2, FixedShift(dy, dx))
    assert shifted.shape == counts.shape and shifted.dtype == counts.dtype
    for t, c, y, x in np.ndindex(*counts.shape):
        ys, xs = y - dy, x - dx  # the source pixel of (y, x)
        expected = counts[t, c, ys, xs] if 0 <= ys < 6 and 0 <= xs < 7 else 0.0
        assert shifted[t, c, y, x] == expected


def test_random_shift_draws_within_the_range_and_uses_all_of_it():
    rng = np.random.default_rng(1)
    image = np.zeros((1, 1, 9, 9))
    image[0, 0, 4, 4] = 1.0
    seen = set()
    for _ in range(400):
        y, x = np.argwhere(random_shift(image, 2, rng)[0, 0])[0]
        seen.add((y - 4, x - 4))
    assert seen == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_random_shift_refuses_flat_samples():
    with pytest.raises(ValueError, match="H, W"):
        random_shift(np.zeros((4, 64)), 1, np.random.default_rng(0))
