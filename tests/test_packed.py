"""Per-step inputs packed several to a float64 (decolle_brian.network.packed): exact round trip, clear errors."""

import numpy as np
import pytest
from brian2 import Network, NeuronGroup, StateMonitor, defaultclock, ms, prefs, set_device

from decolle_brian.network.packed import WORD_BITS, PackedInput


@pytest.fixture
def runtime_numpy():
    """Brian's runtime device with the numpy target, whatever earlier tests left (every Simulator sets its own)."""
    target = prefs.codegen.target
    set_device("runtime")
    prefs.codegen.target = "numpy"
    yield
    prefs.codegen.target = target


@pytest.mark.parametrize("bits", [1, 8, 12])
def test_pack_then_decode_in_brian_is_exact(bits, runtime_numpy):
    defaultclock.dt = 1 * ms
    steps, n = 6, 2 * (WORD_BITS // bits) + 3  # a partly filled last word
    packed = PackedInput("packed_in", steps, n, bits, prefix="count")
    values = np.random.default_rng(bits).integers(0, 2 ** bits, (steps, n))
    values[0] = 2 ** bits - 1  # the largest value in every position
    words = packed.pack(values, "counts")
    assert words.shape == (steps, packed.n_words) and np.all(words < 2.0 ** WORD_BITS)
    packed.array.values[:] = words
    group = NeuronGroup(n, packed.equations() + "v : 1", namespace={"packed_in": packed.array})
    packed.attach(group)
    group.run_regularly(f"v = {packed.expression()}")
    monitor = StateMonitor(group, "v", record=True)
    Network(group, monitor).run(steps * ms)
    np.testing.assert_array_equal(monitor.v[:].T, values)


@pytest.mark.parametrize(("change", "message"), [
    (lambda v: v.__setitem__((1, 2), 256), "integers in 0..255"),
    (lambda v: v.__setitem__((1, 2), -1), "integers in 0..255"),
    (lambda v: v.__setitem__((1, 2), 1.5), "not integers"),
    (lambda v: v.__setitem__((1, 2), np.nan), "NaN"),
])
def test_bad_counts_are_named(change, message):
    packed = PackedInput("counts_in", 4, 10, 8, prefix="count")
    values = np.ones((4, 10))
    change(values)
    with pytest.raises(ValueError, match=f"'counts_in'.*{message}"):  # the input's name, then what is wrong
        packed.pack(values, "counts_in")


def test_wrong_shape_is_named():
    packed = PackedInput("counts_in", 4, 10, 8, prefix="count")
    with pytest.raises(ValueError, match=r"counts_in.*\(4, 10\)"):
        packed.pack(np.zeros((4, 11)), "counts_in")


@pytest.mark.parametrize("bits", [1, 2, 3, 7, 8, 9, 12, 16, 17, 24, 32, 33, 48])
def test_words_are_the_digits_in_base_2_to_the_bits(bits):
    # word = sum_k digit_k base^k, written here as the plain formula (floats: every term and sum below 2^48 is exact)
    rng = np.random.default_rng(bits)
    for n in (1, WORD_BITS // bits, 2 * (WORD_BITS // bits) + 1, 101):
        packed = PackedInput("packed_in", 5, n, bits, prefix="count")
        values = rng.integers(0, 2 ** bits, (5, n))
        values[0] = 2 ** bits - 1
        digits = np.zeros((5, packed.n_words * packed.per_word))
        digits[:, :n] = values
        expected = digits.reshape(5, packed.n_words, packed.per_word) @ (2.0 ** bits) ** np.arange(packed.per_word)
        for given in (values, values.astype(float), values.astype(bool) if bits == 1 else values.astype(np.uint64)):
            words = packed.pack(given, "x")
            assert words.dtype == np.float64
            np.testing.assert_array_equal(words, expected)


@pytest.mark.parametrize(("bits", "value", "message"), [
    (1, 2, "integers in 0..1"), (1, -1, "integers in 0..1"), (1, 0.5, "not integers"), (8, np.inf, "infinite"),
    (12, 4096, "integers in 0..4095"), (12, -0.5, "not integers"), (48, 2.0 ** 48, "integers in 0..")])
def test_every_kind_of_bad_value_is_refused(bits, value, message):
    packed = PackedInput("masks", 3, 50, bits, prefix="mask")
    values = np.zeros((3, 50))
    values[2, 49] = value
    with pytest.raises(ValueError, match=f"'masks'.*{message}"):
        packed.pack(values, "masks")
