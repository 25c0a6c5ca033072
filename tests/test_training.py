"""Training-loop helpers that need no compiled network: random translations of samples, runs prepared ahead,
per-sample results of a chunk."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from decolle_brian.derivation import loss_function
from decolle_brian.network.chunks import Slot
from decolle_brian.training import majority_vote, random_shift, run_ahead, same_state, sample_results


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


class CountingSim:
    """A Simulator stand-in: a run adds the sum of its inputs to the parameter ``w`` (and can be made to fail)."""

    def __init__(self, fail_at=None):
        self.runs, self.fail_at = [], fail_at

    def run_chunk(self, inputs, params, neuron=None, *, on_start=None):
        if len(self.runs) == self.fail_at:
            raise RuntimeError("the binary stopped")
        if on_start is not None:
            on_start()
        self.runs.append(inputs)
        return SimpleNamespace(params={"w": params["w"] + inputs.sum()})


def _draws(rng, item):
    """A preparation that draws from ``rng`` (like dropout masks and shifts)."""
    return rng.random(3) + item, f"extra {item}"


def _sequential(items, rng, sim):
    """What run_ahead must give: prepare, run, yield, one item after the other."""
    params, out = {"w": 0.0}, []
    for item in items:
        inputs, extra = _draws(rng, item)
        params = sim.run_chunk(inputs, params).params
        out.append((item, inputs.tolist(), extra, params["w"], rng.bit_generator.state))
    return out


@pytest.mark.parametrize("overlap", [True, False])
def test_run_ahead_gives_the_sequential_results_and_draws(overlap):
    """Each item's inputs, the params threaded through the runs and the generator's state at every yield are
    those of preparing and running one item after the other, although the next item is prepared during a run."""
    items = [0, 1, 2, 3]
    expected = _sequential(items, np.random.default_rng(5), CountingSim())
    rng, got = np.random.default_rng(5), []
    for item, inputs, extra, outputs in run_ahead(CountingSim(), items, lambda i: _draws(rng, i), {"w": 0.0},
                                                  rng=rng, overlap=overlap):
        got.append((item, inputs.tolist(), extra, outputs.params["w"], rng.bit_generator.state))
    assert got == expected
    assert list(run_ahead(CountingSim(), [], lambda i: _draws(rng, i), {"w": 0.0}, rng=rng)) == []


def test_run_ahead_keeps_the_callers_draws_between_items():
    """A caller that draws from the generator between two items gets the same numbers as without the overlap,
    and the next item is prepared again after its draws."""
    def consume(rng, overlap):
        seen = []
        for item, inputs, _, _ in run_ahead(CountingSim(), [0, 1, 2], lambda i: _draws(rng, i), {"w": 0.0},
                                            rng=rng, overlap=overlap):
            seen.append((item, inputs.tolist()))
            if item == 0:
                seen.append(rng.random())
        return seen, rng.bit_generator.state

    assert consume(np.random.default_rng(2), True) == consume(np.random.default_rng(2), False)


def test_run_ahead_raises_a_failed_preparation_in_its_turn_and_a_failed_run_keeps_its_draws():
    """A preparation that fails (bad data) raises after the items before it were yielded; a run that fails leaves
    the generator after its own draws, as without the overlap."""
    rng = np.random.default_rng(0)

    def prepare(item):
        if item == 2:
            raise ValueError("sample 2 is corrupt")
        return _draws(rng, item)

    yielded = []
    with pytest.raises(ValueError, match="sample 2 is corrupt"):
        for item, *_ in run_ahead(CountingSim(), [0, 1, 2, 3], prepare, {"w": 0.0}, rng=rng):
            yielded.append(item)
    assert yielded == [0, 1]

    rng, reference = np.random.default_rng(1), np.random.default_rng(1)
    with pytest.raises(RuntimeError, match="stopped"):
        for _ in run_ahead(CountingSim(fail_at=1), [0, 1, 2], lambda i: _draws(rng, i), {"w": 0.0}, rng=rng):
            pass
    _draws(reference, 0), _draws(reference, 1)  # items 0 and 1 prepared; item 2's draws made ahead are undone
    assert rng.bit_generator.state == reference.bit_generator.state


def test_run_ahead_prepares_the_next_item_only_once_the_simulation_started():
    """The next item's preparation starts at the run's ``on_start`` (its Python work before the simulation is
    done), not before it: the two would otherwise share the interpreter lock."""
    events = []

    class OrderSim(CountingSim):
        def run_chunk(self, inputs, params, neuron=None, *, on_start=None):
            run = len(self.runs)
            time.sleep(0.05)  # the run's own Python work: a preparation started already would run meanwhile

            def started():
                events.append(f"run {run}: started")
                if on_start is not None:
                    on_start()

            return super().run_chunk(inputs, params, neuron, on_start=started)

    def prepare(item):
        events.append(f"prepare {item}")
        return np.full(3, float(item)), None

    outputs = [outputs.params["w"] for *_, outputs in run_ahead(OrderSim(), [0, 1, 2], prepare, {"w": 0.0})]
    assert outputs == [0.0, 3.0, 9.0]
    assert events == ["prepare 0", "run 0: started", "prepare 1", "run 1: started", "prepare 2", "run 2: started"]


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_run_ahead_takes_every_bit_generator_and_runs_on_the_caller_s_thread(bit_generator):
    """Generators whose state holds arrays (MT19937, Philox) compare as well as PCG64's; the runs stay on the
    caller's thread (an interrupt there stops the binary), the preparations ahead go to the worker."""
    expected = _sequential([0, 1, 2], np.random.Generator(bit_generator(3)), CountingSim())
    rng, got, threads = np.random.Generator(bit_generator(3)), [], set()

    class ThreadSim(CountingSim):
        def run_chunk(self, inputs, params, neuron=None, *, on_start=None):
            threads.add(threading.current_thread())
            return super().run_chunk(inputs, params, neuron, on_start=on_start)

    for item, inputs, extra, outputs in run_ahead(ThreadSim(), [0, 1, 2], lambda i: _draws(rng, i), {"w": 0.0},
                                                  rng=rng):
        got.append((item, inputs.tolist(), extra, outputs.params["w"], rng.bit_generator.state))
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine[:4] == theirs[:4] and same_state(mine[4], theirs[4])
    assert threads == {threading.current_thread()}


@pytest.mark.parametrize("loss", ["smoothl1", "mse", "ce"])
def test_sample_results_are_each_samples_own_votes_losses_and_spikes(loss):
    """Computed for the whole chunk at once, they equal each sample's own (to the bit): the majority vote and the
    mean loss against its target over its steps after burn-in, its spike count over all its steps."""
    rng = np.random.default_rng(5)
    n_classes, burnin = 4, 3
    slots = [Slot(0, 10, 2), Slot(10, 7, 0), Slot(17, 12, 3)]  # then 5 steps of padding
    outputs = SimpleNamespace(y=[rng.normal(size=(34, n_classes)) for _ in range(2)],
                              n_spikes=[rng.integers(0, 5, 34).astype(float) for _ in range(2)])
    loss_fn = loss_function(loss)
    results = sample_results(outputs, slots, burnin, loss_fn, n_classes)
    for slot, result in zip(slots, results, strict=True):
        window = slice(slot.start + burnin, slot.start + slot.n_steps)
        target = np.broadcast_to(np.eye(n_classes)[slot.label], (slot.n_steps - burnin, n_classes))
        assert result.label == slot.label and result.n_steps == slot.n_steps
        assert result.predictions == [majority_vote(y[window]) for y in outputs.y]
        assert result.losses == [float(np.mean(loss_fn(y[window], target))) for y in outputs.y]
        assert result.spikes == [int(n[slot.start:slot.start + slot.n_steps].sum()) for n in outputs.n_spikes]
    with pytest.raises(ValueError, match="burn-in"):
        sample_results(outputs, [Slot(0, 3, 1)], burnin, loss_fn, n_classes)
