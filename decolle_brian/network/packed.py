"""Per-step inputs packed several to a float64: what a run's input files carry.

Every run gets its per-step inputs through TimedArrays (float64). Event counts are small non-negative
integers and dropout masks are 0 or one gain, so one float64 per value wastes most of the bytes: for the
2048-500-500 benchmark network a 300-step sample was 7.3 MB of files, and writing and reading them cost as
much as simulating the sample in event mode. Here each float64 word carries ``48 // bits`` values as
base-2^bits digits (48 bits: every word is an integer below 2^48, exact in a double's 53-bit mantissa). A
group reads its own digit with two per-neuron constants set at build::

    value_i[t] = floor((word(t, word_i) / scale_i) % base),   word_i = i // per_word,  scale_i = base^(i % per_word)

Divisions by powers of two, the floating-point remainder and ``floor`` are exact, so the decoded values are
the original integers on every device (runtime, C++, CUDA).
"""

from __future__ import annotations

import numpy as np
from brian2 import NeuronGroup, TimedArray
from brian2 import ms as _ms

WORD_BITS = 48
#: bits per event count and step: counts 0..255 (checked before every run)
COUNT_BITS = 8


class PackedInput:
    """A (steps, n) per-step input of integers in [0, 2^bits) stored as a (steps, words) float64 TimedArray.

    Parameters
    ----------
    name : str
        Name of the TimedArray (the run argument).
    steps, n : int
        Steps per run and values per step (neurons that read it).
    bits : int
        Bits per value (8: counts 0..255; 1: dropout mask bits).
    prefix : str
        Prefix of the two per-neuron constants the reading group gets (``<prefix>_word``, ``<prefix>_scale``).
    """

    def __init__(self, name: str, steps: int, n: int, bits: int, prefix: str):
        if not 1 <= bits <= WORD_BITS:
            raise ValueError(f"bits must be in 1..{WORD_BITS}, got {bits}")
        self.name, self.steps, self.n, self.bits, self.prefix = name, steps, n, bits, prefix
        self.per_word = WORD_BITS // bits
        self.base = 2 ** bits
        self.n_words = -(-n // self.per_word)
        self.array = TimedArray(np.zeros((steps, self.n_words)), dt=1 * _ms, name=name)

    def equations(self) -> str:
        """Declarations of the reading group's two constants."""
        return (f"{self.prefix}_word : integer (constant)  # column of {self.name} holding this neuron's value\n"
                f"{self.prefix}_scale : 1 (constant)  # base^(position of its digit in the word)\n")

    def attach(self, group: NeuronGroup) -> None:
        """Set the reading group's constants (at build)."""
        index = np.arange(self.n)
        setattr(group, f"{self.prefix}_word", index // self.per_word)
        setattr(group, f"{self.prefix}_scale", (self.base ** (index % self.per_word)).astype(float))

    def expression(self) -> str:
        """Brian expression of this neuron's value at time t."""
        # the remainder first: floor() then only sees values below base (Brian's numpy target casts it to int32)
        return f"floor(({self.name}(t, {self.prefix}_word) / {self.prefix}_scale) % {self.base})"

    def pack(self, values: np.ndarray, what: str) -> np.ndarray:
        """(steps, n) integers in [0, base) -> (steps, words) float64; ``what`` names them in errors.

        One cast to the smallest unsigned integer type that holds a digit checks every value at once (a value
        that changes in the cast is negative, too large, not an integer, NaN or infinite); the words are then
        built with integer shifts, ``word = sum_k digit_k << (bits k)``: the same integers as ``sum_k digit_k
        base^k``, so the same doubles.
        """
        values = np.asarray(values)
        if values.shape != (self.steps, self.n):
            raise ValueError(f"Input '{what}' has shape {values.shape}; this network needs {(self.steps, self.n)}")
        digit_type = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if np.iinfo(t).bits >= self.bits)
        with np.errstate(invalid="ignore", over="ignore"):  # bad values are found by the comparison below
            digits = values.astype(digit_type)
        if not np.array_equal(digits, values) or (self.bits < np.iinfo(digit_type).bits and digits.max(initial=0)
                                                  >= self.base):
            self._refuse(values, what)
        return self._words(digits)

    def _words(self, digits: np.ndarray) -> np.ndarray:
        """Valid digits (steps, n) -> the (steps, words) float64 words, ``word = sum_k digit_k << (bits k)``.

        Bits (masks) go through ``np.packbits`` and whole-byte digits (counts) through their little-endian bytes:
        either way the low ``WORD_BITS`` bits of a little-endian 64-bit word; other sizes by integer shifts.
        """
        steps, n_words, per_word = self.steps, self.n_words, self.per_word
        if self.bits == 1:
            padded = np.zeros((steps, n_words * per_word), dtype=bool)
            padded[:, :self.n] = digits
            raw = np.packbits(padded.reshape(steps, n_words, per_word), axis=-1, bitorder="little")
        elif self.bits % 8 == 0 and digits.dtype.itemsize * 8 == self.bits:
            width = self.bits // 8
            raw = np.zeros((steps, n_words * per_word * width), dtype=np.uint8)
            raw[:, :self.n * width] = digits.astype(f"<u{width}").view(np.uint8).reshape(steps, -1)
            raw = raw.reshape(steps, n_words, per_word * width)
        else:
            padded = np.zeros((steps, n_words * per_word), dtype=np.uint64)
            padded[:, :self.n] = digits
            padded = padded.reshape(steps, n_words, per_word)
            words = padded[:, :, 0].copy()
            for position in range(1, per_word):
                words |= padded[:, :, position] << np.uint64(self.bits * position)
            return words.astype(np.float64)
        word_bytes = np.zeros((steps, n_words, 8), dtype=np.uint8)
        word_bytes[:, :, :raw.shape[2]] = raw
        return word_bytes.view("<u8")[:, :, 0].astype(np.float64)  # below 2^48: exact

    def _refuse(self, values: np.ndarray, what: str) -> None:
        """The error for values that are not integers in [0, base) (only reached with bad input)."""
        refuse_counts(values, what, self.base)

    # ---- as the input group's counts (the generic way; C++ standalone: backends/input_events.py) ------------
    def namespace(self) -> dict:
        """The TimedArray under its name, for the reading group's namespace."""
        return {self.name: self.array}

    def reader(self, runner) -> None:
        """Nothing: Brian's generic code of ``runner`` reads the TimedArray."""

    def run_values(self, values: np.ndarray, what: str) -> tuple[dict, dict]:
        """``({TimedArray: words}, {})``: one run's values (no files)."""
        return {self.array: self.pack(values, what)}, {}


def refuse_counts(values: np.ndarray, what: str, base: int) -> None:
    """Raise the ValueError for per-step values that are not integers in [0, base) (only reached with bad input)."""
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"Input '{what}' contains NaN or infinite values")
    fractional = "" if np.all(values == np.round(values)) else " that are not integers"
    raise ValueError(f"Input '{what}' must hold integers in 0..{base - 1} per step (event counts); "
                     f"got values in [{values.min()}, {values.max()}]{fractional}")
