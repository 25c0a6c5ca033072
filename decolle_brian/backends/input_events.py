r"""The input counts of a C++ standalone run as an event list: a small file, scattered by generated code.

Every run of a network gets the event counts of its input neurons, (steps, n) small integers. The generic way
(:mod:`decolle_brian.network.packed`) is a TimedArray of 8-bit digits packed into float64 words: dense, so a
batch of 72 samples of 2048 inputs and 300 steps is 59 MB written, read by the binary (and the same again for
the TimedArray's initial values at every start), although inputs are sparse (2 % of the counts non-zero in the
benchmarks). On C++ standalone the counts go instead as an **event list**, one entry per event: a run of the
batch above is 3.5 MB. The input group gets a variable ``count_in`` (the neuron's count at this step); the
code object that runs the group's per-step input statements (``input_events`` of the modes) is generated from
``templates/input_events_scatter.cpp``: at step t it sets ``count_in`` of the neurons listed for step t-1 back
to 0, adds 1 to ``count_in`` of each entry listed for step t, then runs Brian's own statements for every
neuron. The counts so rebuilt are the same integers, so the run is the same to the bit.

The file, ``counts_in.events`` in the run's own results folder (written by the backend after clearing the
folder, read once by the binary), little-endian::

    8 bytes    magic  b"DCLEVT01"
    3 x int64  steps, neurons, entries
    int64      offsets[steps + 1]   entries of step t: offsets[t] .. offsets[t + 1] - 1 (offsets[0] = 0,
                                    offsets[steps] = entries, non-decreasing)
    int32      neuron[entries]      a neuron with count c at step t is listed c times in step t

The binary checks all of it (size, magic, shape, offsets, neuron indices) at the first step, before it uses
any event, and stops with
a message naming the file and what is wrong; :meth:`CppStandaloneBackend.run
<decolle_brian.backends.cpp_standalone.CppStandaloneBackend.run>` raises it as a
:class:`~decolle_brian.errors.DeviceError`.
"""

from __future__ import annotations

import numpy as np
from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

from decolle_brian.backends.templating import package_templater
from decolle_brian.network.chunks import EventCounts
from decolle_brian.network.packed import COUNT_BITS, refuse_counts

#: first bytes of an event-list file (format version 1)
MAGIC = b"DCLEVT01"
#: bytes before the offsets: magic and three int64
HEADER_BYTES = len(MAGIC) + 3 * 8


def encode_events(counts: np.ndarray, what: str, max_count: int = 2 ** COUNT_BITS - 1) -> bytes:
    """Dense per-step counts (steps, n) -> the event-list file's bytes (the module docstring's format).

    Only the non-zero counts are read after one comparison over the whole array (an
    :class:`~decolle_brian.network.chunks.EventCounts` gives them as they are); they must be integers in
    1..``max_count`` (the dense packing's limit, so every device accepts the same inputs), else ValueError naming
    ``what``. Entries are in step order (dense counts: within a step by neuron).
    """
    if isinstance(counts, EventCounts):
        (steps, n), step, neuron, values = counts.shape, counts.step, counts.unit, counts.value
    else:
        counts = np.asarray(counts)
        if counts.ndim != 2:
            raise ValueError(f"Input '{what}' must be (steps, neurons), got shape {counts.shape}")
        steps, n = counts.shape
        flat = np.flatnonzero(counts != 0)  # NaN is != 0: found and refused below with the negative and fractional
        values = counts.reshape(-1)[flat]
        step = flat // n
        neuron = flat - step * n
    with np.errstate(invalid="ignore"):  # NaN and infinities cast to anything: the comparison finds them
        whole = values.astype(np.int64)
    if not (np.array_equal(whole, values) and (whole.size == 0 or (whole.min() >= 1 and whole.max() <= max_count))):
        refuse_counts(np.asarray(counts), what, max_count + 1)
    neuron = neuron.astype(np.int32)
    if whole.size and whole.max() > 1:  # a count c is c entries
        neuron, step = np.repeat(neuron, whole), np.repeat(step, whole)
    offsets = np.zeros(steps + 1, dtype="<i8")
    np.cumsum(np.bincount(step, minlength=steps), out=offsets[1:])
    header = np.array([steps, n, neuron.size], dtype="<i8")
    return b"".join((MAGIC, header.tobytes(), offsets.tobytes(), neuron.astype("<i4", copy=False).tobytes()))


def decode_events(data: bytes) -> np.ndarray:
    """The dense counts (steps, n) of an event-list file's bytes (for tests and inspection; ValueError if malformed)."""
    if len(data) < HEADER_BYTES or data[:len(MAGIC)] != MAGIC:
        raise ValueError("not an event-list file (no DCLEVT01 header)")
    steps, n, entries = (int(v) for v in np.frombuffer(data, "<i8", 3, len(MAGIC)))
    if len(data) != HEADER_BYTES + 8 * (steps + 1) + 4 * entries:
        raise ValueError(f"event-list file of {len(data)} bytes; its header says {steps} steps, {entries} entries")
    offsets = np.frombuffer(data, "<i8", steps + 1, HEADER_BYTES)
    neuron = np.frombuffer(data, "<i4", entries, HEADER_BYTES + 8 * (steps + 1))
    counts = np.zeros((steps, n))
    np.add.at(counts, (np.repeat(np.arange(steps), np.diff(offsets)), neuron), 1)
    return counts


class InputEventsCodeObject(CPPStandaloneCodeObject):
    """C++ standalone code object that also finds this package's templates."""

    templater = package_templater()


class EventListInput:
    """The input counts of a C++ standalone network as a per-run event list (module docstring).

    The same interface as :class:`~decolle_brian.network.packed.PackedInput` for the input group: declarations,
    per-neuron constants (none), the expression of the step's count, the code object that reads it, and the
    values of one run.

    Parameters
    ----------
    name : str
        Name of the input (``counts_in``); the run's file is ``<name>.events``.
    steps, n : int
        Steps per run and input neurons.
    """

    #: no TimedArray: the counts come from the run's file
    array = None

    def __init__(self, name: str, steps: int, n: int):
        if n > np.iinfo(np.int32).max:  # the file lists neurons as int32
            raise ValueError(f"Input '{name}' has {n} neurons; an event list holds at most {np.iinfo(np.int32).max}")
        self.name, self.steps, self.n = name, steps, n
        self.file_name = f"{name}.events"
        self.variable = "count_in"

    def equations(self) -> str:
        """The input group's count variable."""
        return f"{self.variable} : 1  # events of this neuron at this step (from the run's event list)\n"

    def namespace(self) -> dict:
        """Nothing: the counts are a group variable."""
        return {}

    def attach(self, group) -> None:
        """Nothing to set at build (no per-neuron constants)."""

    def expression(self) -> str:
        """Brian expression of the neuron's count at this step."""
        return self.variable

    def reader(self, runner) -> None:
        """Let ``runner`` (the group's per-step input statements) scatter the step's events first.

        Brian does not know that the template writes ``count_in``: read on the Python side after a run, the
        variable keeps its build-time zeros (nothing reads it; the counts are the run's inputs)."""
        runner.template = "input_events_scatter"
        runner.codeobj_class = InputEventsCodeObject
        runner.template_kwds = {**(runner.template_kwds or {}), "count_var": self.variable,
                                "events_file": self.file_name, "steps": self.steps,
                                "magic": MAGIC.decode("ascii"), "header_bytes": HEADER_BYTES}
        runner.needed_variables = [*runner.needed_variables, self.variable, "t_in_timesteps"]

    def run_values(self, counts: np.ndarray, what: str) -> tuple[dict, dict]:
        """``({}, {file name: bytes})``: the run's event list (ValueError for a wrong shape or bad counts)."""
        counts = counts if isinstance(counts, EventCounts) else np.asarray(counts)
        if counts.shape != (self.steps, self.n):
            raise ValueError(f"Input '{what}' has shape {counts.shape}; this network needs {(self.steps, self.n)}")
        return {}, {self.file_name: encode_events(counts, what)}
