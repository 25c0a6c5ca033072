"""The input counts of a C++ standalone run as an event list (decolle_brian.backends.input_events): the file round
trips, bad counts are refused as the packed input refuses them, the binary rebuilds the same counts as the generic
packed input (with counts > 1), and a truncated or corrupt file stops the binary with a clear error."""

import numpy as np
import pytest

from decolle_brian.backends import cpp_standalone
from decolle_brian.backends.input_events import HEADER_BYTES, MAGIC, EventListInput, decode_events, encode_events
from decolle_brian.devices import DeviceError, Simulator
from decolle_brian.network.batch import pack_batch, to_units
from decolle_brian.network.builder import Probes
from decolle_brian.network.chunks import DropoutMasks, EventCounts, pack_chunk
from decolle_brian.network.hooks import CodeGeneration
from decolle_brian.network.packed import COUNT_BITS, PackedInput
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec

STEPS, N_IN = 30, 12


def _counts(seed=0, high=4):
    """Sparse counts with some > 1 (each becomes that many entries), an empty first step and an empty last one."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, high, (STEPS, N_IN)) * (rng.random((STEPS, N_IN)) < 0.3)
    counts[0] = counts[-1] = 0
    counts[5, 3] = 2 ** COUNT_BITS - 1  # the largest count the packed input takes
    return counts.astype(np.float32)


def test_round_trip_is_exact():
    counts = _counts()
    data = encode_events(counts, "counts_in")
    assert data[:len(MAGIC)] == MAGIC
    entries = int(counts.sum())  # one entry per event
    assert len(data) == HEADER_BYTES + 8 * (STEPS + 1) + 4 * entries
    np.testing.assert_array_equal(decode_events(data), counts)
    empty = encode_events(np.zeros((STEPS, N_IN)), "counts_in")
    np.testing.assert_array_equal(decode_events(empty), np.zeros((STEPS, N_IN)))


@pytest.mark.parametrize(("value", "message"), [(256, "integers in 0..255"), (-1, "integers in 0..255"),
                                                (0.5, "not integers"), (np.nan, "NaN or infinite"),
                                                (np.inf, "NaN or infinite")])
def test_bad_counts_are_refused_as_the_packed_input_refuses_them(value, message):
    counts = _counts()
    counts[7, 2] = value
    with pytest.raises(ValueError, match=f"'counts_in'.*{message}") as events:
        encode_events(counts, "counts_in")
    with pytest.raises(ValueError, match=f"'counts_in'.*{message}") as packed:
        PackedInput("counts_in", STEPS, N_IN, COUNT_BITS, prefix="count").pack(counts, "counts_in")
    assert str(events.value) == str(packed.value)


def test_wrong_shape_names_the_input():
    with pytest.raises(ValueError, match=r"counts_in.*\(30, 12\)"):
        EventListInput("counts_in", STEPS, N_IN).run_values(np.zeros((STEPS, N_IN + 1)), "counts_in")


def test_malformed_file_is_refused_by_the_decoder():
    data = encode_events(_counts(), "counts_in")
    with pytest.raises(ValueError, match="header"):
        decode_events(b"XXXXXXXX" + data[8:])
    with pytest.raises(ValueError, match="bytes"):
        decode_events(data[:-4])


SPEC = NetworkSpec(n_inputs=N_IN, layers=(DenseLayerSpec(10),), n_classes=3,
                   learning=LearningSpec(optimizer="sgd", lr=0.05, dropout=0.0))


def _edge_counts():
    """Counts with events (some > 1) on the first and the last step too."""
    counts = _counts(1).astype(float)
    counts[0, 2], counts[-1, 4] = 3, 2
    return counts


def _inputs(counts=None):
    """One sample's chunk (by default of :func:`_edge_counts`)."""
    counts = _edge_counts() if counts is None else counts
    inputs, _ = pack_chunk([(counts, 1)], STEPS, 3, lr=0.05, burnin=0, learn=True, dropout=0.0, layer_sizes=[10])
    return inputs


PROBES = Probes(input_variables=("p",))


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """A small network on C++ standalone (its input counts as an event list), compiled once for this module's
    tests; the test that builds another network runs last (Brian has one device per process). Released after
    the module, so that later networks of the session keep their names."""
    sim = Simulator(SPEC, STEPS, build_dir=tmp_path_factory.mktemp("events") / "build", probes=PROBES)
    assert isinstance(sim.net.counts, EventListInput)
    yield sim
    del sim


@pytest.mark.standalone
@pytest.mark.parametrize(("spoil", "message"), [
    (lambda d: d[:-4], "does not match its header"),                       # truncated
    (lambda d: b"XXXXXXXX" + d[8:], "is not an event list"),             # not our format
    (lambda d: d[:8] + np.int64(STEPS + 1).tobytes() + d[16:], "another network"),  # another run length
    (lambda d: d[:-4] + np.int32(N_IN).tobytes(), "outside the input group"),  # a neuron index too large
    (lambda d: d[:HEADER_BYTES + 8] + np.int64(10 ** 6).tobytes() + d[HEADER_BYTES + 16:], "offsets"),
    # entries 2^62 + the true number: 4 x entries would wrap to the file's size in int64
    (lambda d: d[:24] + np.int64(2 ** 62 + np.frombuffer(d, "<i8", 1, 24)[0]).tobytes() + d[32:],
     "does not match its header"),
])
def test_a_corrupt_events_file_stops_the_binary_with_a_clear_error(standalone, monkeypatch, spoil, message):
    """A file the binary cannot use (written by something else, or damaged) stops the run before its first step,
    with a DeviceError that names the file and what is wrong; a good file afterwards runs again."""
    written = cpp_standalone.Path.write_bytes

    def write_spoiled(path, data):
        return written(path, spoil(data) if path.name.endswith(".events") else data)

    params = init_params(SPEC, np.random.default_rng(0))
    monkeypatch.setattr(cpp_standalone.Path, "write_bytes", write_spoiled)
    with pytest.raises(DeviceError, match=rf"Input events file '.*counts_in\.events' .*{message}"):
        standalone.run_chunk(_inputs(), params)
    monkeypatch.undo()
    standalone.run_chunk(_inputs(), params)


@pytest.mark.standalone
def test_a_run_without_events_and_the_event_file_s_removal(standalone):
    """A run whose event list is empty runs (the input traces stay 0); no run leaves its event list behind."""
    params = init_params(SPEC, np.random.default_rng(0))
    quiet = standalone.run_chunk(_inputs(np.zeros((STEPS, N_IN))), params)
    assert not np.any(quiet.input_probes["p"])
    assert not list(cpp_standalone.Path(standalone.build_dir).glob("results-*/*.events"))


def test_event_counts_refuse_entries_out_of_step_order_or_shape():
    with pytest.raises(ValueError, match="step order"):
        EventCounts((4, 3), np.array([2, 0]), np.array([0, 1]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="outside the shape"):
        EventCounts((4, 3), np.array([0, 4]), np.array([0, 1]), np.array([1.0, 1.0]))
    twice = EventCounts((4, 3), np.array([1, 1]), np.array([2, 2]), np.array([1.0, 2.0]))
    assert np.asarray(twice)[1, 2] == 3 == decode_events(encode_events(twice, "counts_in"))[1, 2]


def test_a_batch_s_counts_are_its_samples_side_by_side():
    """pack_batch's EventCounts: densely, every sample's counts in the unit layout (input i of sample b at
    i B + b) and padding after T; as an event list, the same counts as that dense array's."""
    rng = np.random.default_rng(3)
    batch, length, steps = 3, 8, 10
    counts = (rng.integers(0, 3, (batch, length, N_IN)) * (rng.random((batch, length, N_IN)) < 0.4)).astype(np.float32)
    inputs = pack_batch([(counts[b], b) for b in range(batch)], steps, 3, lr=0.1, burnin=0, learn=False,
                        dropout=0.0, layer_sizes=[4])
    assert isinstance(inputs.counts, EventCounts) and inputs.counts.shape == (steps, N_IN * batch)
    dense = np.asarray(inputs.counts)
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense[:length], to_units(counts.transpose(1, 0, 2)))
    assert not dense[length:].any()
    np.testing.assert_array_equal(decode_events(encode_events(inputs.counts, "counts_in")), dense)


@pytest.mark.parametrize("value", [256, -1, 0.5, np.nan])
def test_bad_counts_in_a_batch_are_refused_as_dense_ones(value):
    counts = [_counts(seed) for seed in range(2)]
    counts[1][4, 6] = value
    inputs = pack_batch([(c, 0) for c in counts], STEPS, 3, lr=0.1, burnin=0, learn=False, dropout=0.0,
                        layer_sizes=[4])
    with pytest.raises(ValueError) as batched:
        encode_events(inputs.counts, "counts_in")
    with pytest.raises(ValueError) as dense:
        encode_events(np.asarray(inputs.counts), "counts_in")
    assert str(batched.value) == str(dense.value)


@pytest.mark.standalone
def test_the_binary_rebuilds_the_counts_of_the_packed_input(standalone, tmp_path, monkeypatch):
    """The same chunk on C++ standalone with the event list and with the generic packed TimedArray (the runtime and
    CUDA devices' way, swapped in here): the input traces (which jump by the counts, some > 1) and the learned
    weights are the same to the bit. (Last in the module: it replaces the module's network.)"""
    params = init_params(SPEC, np.random.default_rng(0))
    events = standalone.run_chunk(_inputs(), params)
    # the first step's events are used (a scatter that skipped step 0 would fail here; the last step's events
    # only reach the traces after the last recorded and learning step, so no output can show them)
    without = _edge_counts()
    without[0] = 0
    other = standalone.run_chunk(_inputs(without), params)
    assert not np.array_equal(other.input_probes["p"], events.input_probes["p"])
    monkeypatch.setattr(cpp_standalone.CppStandaloneBackend, "input_counts", CodeGeneration.input_counts)
    packed = Simulator(SPEC, STEPS, build_dir=tmp_path / "packed", probes=PROBES)
    assert isinstance(packed.net.counts, PackedInput)
    generic = packed.run_chunk(_inputs(), params)
    np.testing.assert_array_equal(events.input_probes["p"], generic.input_probes["p"])
    np.testing.assert_array_equal(events.params["layer1.W"], generic.params["layer1.W"])
    assert np.any(events.input_probes["p"] != 0)


def test_a_chunk_s_counts_are_its_samples_end_to_end():
    """pack_chunk's EventCounts: densely, the samples laid end to end (each from its slot's start) and zeros in
    the padding; a window of steps (a slice, what the recorder takes) is the dense array's rows."""
    rng = np.random.default_rng(4)
    lengths, steps = (5, 3, 6), 16
    samples = [((rng.integers(0, 3, (n, N_IN)) * (rng.random((n, N_IN)) < 0.4)).astype(np.float32), k)
               for k, n in enumerate(lengths)]
    inputs, slots = pack_chunk(samples, steps, 3, lr=0.1, burnin=0, learn=False, dropout=0.0, layer_sizes=[4])
    dense = np.zeros((steps, N_IN), dtype=np.float32)
    for (counts, _), slot in zip(samples, slots, strict=True):
        dense[slot.start:slot.start + slot.n_steps] = counts
    assert isinstance(inputs.counts, EventCounts) and np.asarray(inputs.counts).dtype == np.float32
    np.testing.assert_array_equal(np.asarray(inputs.counts), dense)
    for window in (slice(5, 8), slice(0, 16), slice(14, 99), slice(9, 9)):
        np.testing.assert_array_equal(inputs.counts[window], dense[window])
    np.testing.assert_array_equal(decode_events(encode_events(inputs.counts, "counts_in")), dense)


def test_dropout_masks_are_the_multipliers_of_their_draws():
    """pack_chunk's DropoutMasks: the same draws as ``rng.random(...) >= p``, multipliers 0 or 1/(1-p) to the bit;
    DropoutMasks.of checks user-given multipliers and refuses a bad gain."""
    p, steps = 0.3, 12
    inputs, _ = pack_chunk([(np.zeros((steps, N_IN)), 0)], steps, 3, lr=0.1, burnin=0, learn=True, dropout=p,
                           layer_sizes=[5, 4], rng=np.random.default_rng(7))
    draws = np.random.default_rng(7)
    for mask, n in zip(inputs.masks, (5, 4), strict=True):
        expected = (draws.random((steps, n)) >= p) / (1.0 - p)
        np.testing.assert_array_equal(np.asarray(mask), expected)
        np.testing.assert_array_equal(mask[3], expected[3])
    again = DropoutMasks.of(np.asarray(inputs.masks[0]), "layer1")
    assert again.gain == 1 / (1 - p) and np.array_equal(again.kept, inputs.masks[0].kept)
    with pytest.raises(ValueError, match="layer1 must be 0 or one gain"):
        DropoutMasks.of(np.asarray(inputs.masks[0]) * np.linspace(1, 2, 5), "layer1")
    with pytest.raises(ValueError, match="gain must be finite"):
        DropoutMasks(np.ones((2, 2), dtype=bool), float("nan"))
