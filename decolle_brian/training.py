"""Online DECOLLE learning and evaluation through a compiled network, sample by sample, chunk by chunk.

Pure loops over a dataset: the caller owns parameters, random generator and position, so an experiment
can checkpoint between any two chunks and resume bit-exactly (every sample starts from a clean state and
the weights are the only thing carried from one sample to the next).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from tqdm.auto import tqdm

from decolle_brian.devices import Simulator
from decolle_brian.network.batch import from_units, pack_batch
from decolle_brian.network.chunks import Slot, pack_chunk, plan_chunks


@dataclass
class SampleResult:
    """What one sample did, per layer."""

    label: int
    predictions: list[int]        # majority vote of the per-step argmax of y after burn-in
    losses: list[float]           # mean local loss over the steps after burn-in
    spikes: list[int]             # total spikes of the layer in the sample
    n_steps: int


def majority_vote(y: np.ndarray) -> int:
    """Most frequent per-step argmax of ``y`` (steps, classes); ties go to the smallest class index."""
    if len(y) == 0:
        raise ValueError("majority vote over zero steps: the sample is not longer than the burn-in")
    return int(np.argmax(np.bincount(np.argmax(y, axis=1), minlength=y.shape[1])))


def sample_results(outputs, slots: Sequence[Slot], burnin: int, loss_fn: Callable, n_classes: int):
    """Split the per-step outputs of a chunk into per-sample results.

    A sample's loss is the mean over its steps after burn-in of the per-step loss against its one-hot target;
    the per-step losses and winners of a layer are computed once for the whole chunk (every step against its
    own sample's target: the loss of a step depends on that step alone), then averaged and voted per sample.
    """
    windows = [slice(slot.start + burnin, slot.start + slot.n_steps) for slot in slots]
    for window in windows:
        if window.start >= window.stop:  # majority_vote's error, before any work
            majority_vote(np.zeros((0, n_classes)))
    targets = np.zeros((len(outputs.y[0]) if outputs.y else 0, n_classes))
    for slot, window in zip(slots, windows, strict=True):
        targets[window, slot.label] = 1.0
    step_losses = [np.ascontiguousarray(loss_fn(y, targets)) for y in outputs.y]
    winners = [np.argmax(y, axis=1) for y in outputs.y]
    results = []
    for slot, window in zip(slots, windows, strict=True):
        predictions = [int(np.argmax(np.bincount(won[window], minlength=n_classes))) for won in winners]
        losses = [float(np.mean(per_step[window])) for per_step in step_losses]
        spikes = [int(round(n[slot.start:slot.start + slot.n_steps].sum())) for n in outputs.n_spikes]
        results.append(SampleResult(slot.label, predictions, losses, spikes, slot.n_steps))
    return results


def flat_counts(counts: np.ndarray) -> np.ndarray:
    """``(T, *input_shape)`` event counts as (T, n_inputs), flattened in C order."""
    counts = np.asarray(counts)
    return counts.reshape(counts.shape[0], -1)


def random_shift(counts: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """A (T, ..., H, W) sample translated by a random (dy, dx), each uniform in [-max_shift, max_shift].

    Events moved off the frame are dropped; the uncovered border is empty (no wrap-around). A standard
    augmentation for event-camera digits, whose position within the sensor varies.
    """
    counts = np.asarray(counts)
    if counts.ndim < 3:
        raise ValueError(f"random shifts need (T, ..., H, W) samples, got shape {counts.shape}")
    dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
    shifted = np.zeros_like(counts)
    h, w = counts.shape[-2:]
    shifted[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        counts[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return shifted


@dataclass
class _Prepared:
    """A run's inputs, made ahead of its turn, or the error that making them raised (raised in its turn)."""

    item: object
    inputs: object = None
    extra: object = None
    error: BaseException | None = None


def _prepare(prepare: Callable, item) -> _Prepared:
    try:
        return _Prepared(item, *prepare(item))
    except Exception as error:  # raised in its turn, after the runs before it were yielded (and checkpointed)
        return _Prepared(item, error=error)


def same_state(a, b) -> bool:
    """Whether two ``bit_generator.state`` records are equal (PCG64's holds integers, MT19937's and Philox's
    arrays, which ``==`` cannot compare as a whole)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_state(a[key], b[key]) for key in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def run_ahead(sim: Simulator, items: Sequence, prepare: Callable, params: dict[str, np.ndarray], *,
              neuron=None, rng: np.random.Generator | None = None, overlap: bool = True) -> Iterator:
    """Yield ``(item, inputs, extra, outputs)`` for each of ``items`` in order, each run from the last one's params.

    ``prepare(item) -> (inputs, extra)`` makes a run's inputs (packing, dropout masks and shifts drawn from ``rng``).
    With ``overlap`` a worker thread prepares the next item while this thread runs the current one (the run waits
    on the binary, outside the GIL), so the Python work of packing hides behind the simulation; it starts when
    the simulation does (``run_chunk``'s ``on_start``), so that the run's own Python work before it does not wait
    for the worker's on the interpreter lock; the run stays on
    the caller's thread, so an interrupt (KeyboardInterrupt) still stops its binary. The results are the same to
    the bit, and so is what the caller sees of ``rng``: at each yield it is where it would be without the overlap
    (after this run's draws), and the draws made ahead are kept only if the caller drew nothing meanwhile (else
    the next item is prepared again). A run that fails or is interrupted leaves ``rng`` after its own draws; an
    item whose preparation failed raises in its turn, after the runs before it were yielded.

    ``prepare`` runs while the binary runs, and Brian's devices run the binary from the build folder (the
    process's working directory, for every thread): it must not depend on the working directory (the package's
    datasets resolve their paths when they are made).
    """
    items = list(items)
    if not items:
        return
    state = (lambda: rng.bit_generator.state) if rng is not None else (lambda: None)

    def restore(saved) -> None:
        if rng is not None:
            rng.bit_generator.state = saved

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decolle-prepare") as pool:
        current = _prepare(prepare, items[0])
        for position in range(len(items)):
            if current.error is not None:
                raise current.error
            after_current = state()
            following = items[position + 1] if position + 1 < len(items) else None
            ahead = []

            def start_ahead(following=following, ahead=ahead):
                # when the simulation starts: the run's own Python work is done and does not wait for this
                # thread's on the interpreter lock
                ahead.append(pool.submit(_prepare, prepare, following))

            try:
                outputs = sim.run_chunk(current.inputs, params, neuron,
                                        on_start=start_ahead if overlap and position + 1 < len(items) else None)
                prepared_ahead = ahead[0].result() if ahead else None
            except BaseException:
                wait(ahead)  # its draws are done before they are undone
                restore(after_current)  # as if nothing was prepared ahead
                raise
            after_ahead = state()
            params = outputs.params
            restore(after_current)
            yield current.item, current.inputs, current.extra, outputs
            if position + 1 == len(items):
                return
            if prepared_ahead is not None and same_state(state(), after_current):
                restore(after_ahead)
                current = prepared_ahead
            else:  # not prepared ahead, or the caller drew from rng: its draws come before the next item's
                current = _prepare(prepare, following)


def load_samples(dataset, indices: Sequence[int], augment_shift: int, rng) -> list[tuple[np.ndarray, int]]:
    """``(flat counts, label)`` of ``dataset[i]`` for each i in order, each shifted by :func:`random_shift` (draws
    from ``rng``, sample by sample) when ``augment_shift > 0``."""
    samples = []
    for index in indices:
        counts, label = dataset[index][:2]
        if augment_shift > 0:
            counts = random_shift(counts, augment_shift, rng)
        samples.append((flat_counts(counts), int(label)))
    return samples


def iter_chunks(
    sim: Simulator,
    dataset,
    indices: Sequence[int],
    params: dict[str, np.ndarray],
    *,
    learn: bool,
    lr: float = 0.0,
    rng: np.random.Generator | None = None,
    neuron=None,
    observer: Callable | None = None,
    augment_shift: int = 0,
    overlap: bool = True,
) -> Iterator[tuple[int, dict[str, np.ndarray], list[SampleResult]]]:
    """Run ``dataset[indices]`` through ``sim`` chunk by chunk.

    Yields ``(n_done, params, results)`` after every chunk: samples of ``indices`` done so far, the
    parameters after the chunk and the chunk's per-sample results. With ``learn`` the weights change
    online at every step after each sample's burn-in; the dropout masks come from ``rng``, and so do the
    translations of each sample (:func:`random_shift`) when ``augment_shift > 0``.
    ``observer(dataset_indices, slots, inputs, outputs, params_before)`` sees every chunk's raw outputs
    before it is yielded (recording: :mod:`decolle_brian.recording`). With ``overlap`` the next chunk is packed
    while the binary runs this one (:func:`run_ahead`: the same results and ``rng`` draws, to the bit).
    """
    spec = sim.spec
    if getattr(spec, "batch_size", 1) > 1:  # a spec-like record without the field is online
        yield from iter_batches(sim, dataset, indices, params, learn=learn, lr=lr, rng=rng, neuron=neuron,
                                observer=observer, augment_shift=augment_shift, overlap=overlap)
        return
    learning = spec.learning
    lengths = [dataset.n_steps] * len(indices) if hasattr(dataset, "n_steps") else None
    samples_by_chunk = plan_chunks(lengths or [len(dataset[i][0]) for i in indices], sim.chunk_steps)

    def prepare(chunk):
        samples = load_samples(dataset, [indices[position] for position in chunk], augment_shift if learn else 0,
                               rng)
        inputs, slots = pack_chunk(samples, sim.chunk_steps, spec.n_classes, lr=lr, burnin=learning.burnin,
                                   learn=learn, dropout=learning.dropout,
                                   layer_sizes=[layer.n for layer in spec.layers], rng=rng)
        return sim.prepare_inputs(inputs, neuron), (inputs, slots)  # checked and converted for the device too

    done = 0
    for chunk, _, (inputs, slots), outputs in run_ahead(sim, samples_by_chunk, prepare, params, neuron=neuron,
                                                        rng=rng, overlap=overlap):
        if observer is not None:
            observer([indices[position] for position in chunk], slots, inputs, outputs, params)
        params = outputs.params
        done += len(chunk)
        yield done, params, sample_results(outputs, slots, learning.burnin, sim.loss_fn, spec.n_classes)


def iter_batches(
    sim: Simulator,
    dataset,
    indices: Sequence[int],
    params: dict[str, np.ndarray],
    *,
    learn: bool,
    lr: float = 0.0,
    rng: np.random.Generator | None = None,
    neuron=None,
    observer: Callable | None = None,
    augment_shift: int = 0,
    overlap: bool = True,
) -> Iterator[tuple[int, dict[str, np.ndarray], list[SampleResult]]]:
    """:func:`iter_chunks` of a batched network (``spec.batch_size = B > 1``): one run per batch of B samples.

    The B samples of ``indices`` side by side (:func:`decolle_brian.network.batch.pack_batch`), one optimiser
    step per time step on their mean gradient. Learning, a last batch of fewer than B samples is left out (its
    mean would weigh the samples differently; the epoch's next permutation includes them again); evaluating, it
    is filled up with empty samples whose results are dropped (without learning the samples do not interact).
    Dropout masks and shifts come from ``rng``, sample by sample in batch order; ``overlap`` as for iter_chunks.
    """
    if observer is not None:
        raise ValueError("recordings read one sample per run: record with training.batch_size = 1")
    spec, batch = sim.spec, sim.spec.batch_size
    learning = spec.learning
    stop = len(indices) - len(indices) % batch if learn else len(indices)

    def prepare(start):
        samples = load_samples(dataset, indices[start:start + batch], augment_shift if learn else 0, rng)
        labels = [label for _, label in samples]
        samples += [(np.zeros_like(samples[0][0]), 0)] * (batch - len(samples))  # evaluation only (see above)
        inputs = pack_batch(samples, sim.chunk_steps, spec.n_classes, lr=lr, burnin=learning.burnin, learn=learn,
                            dropout=learning.dropout, layer_sizes=[layer.n for layer in spec.layers], rng=rng)
        return sim.prepare_inputs(inputs, neuron), (labels, samples[0][0].shape[0])

    done = 0
    for _, _, (labels, n_steps), outputs in run_ahead(sim, range(0, stop, batch), prepare, params, neuron=neuron,
                                                      rng=rng, overlap=overlap):
        params = outputs.params
        done += len(labels)
        yield done, params, batch_results(outputs, labels, n_steps, batch, learning.burnin, sim.loss_fn,
                                          spec.n_classes)


def batch_results(outputs, labels: Sequence[int], n_steps: int, batch_size: int, burnin: int, loss_fn: Callable,
                  n_classes: int) -> list[SampleResult]:
    """Per-sample results of one run of a batched network: the first ``len(labels)`` samples of the batch."""
    y = [from_units(values, batch_size) for values in outputs.y]
    results = []
    for b, label in enumerate(labels):
        one = SimpleNamespace(y=[values[:, b] for values in y], n_spikes=[n[:, b] for n in outputs.n_spikes])
        results += sample_results(one, [Slot(0, n_steps, int(label))], burnin, loss_fn, n_classes)
    return results


@dataclass
class Evaluation:
    """Per-layer test metrics."""

    accuracy: list[float]
    loss: list[float]
    rate_hz: list[float]                 # mean firing rate per neuron
    confusion: list[np.ndarray]          # (true, predicted) counts per layer
    synops_per_sample: list[float]       # spikes x fan-out: synaptic events per inference


def _fan_out(next_layer) -> int:
    """Synapses a spike of the previous layer reaches in ``next_layer`` (dense: all; conv: c_out x k x k)."""
    if next_layer.kind == "conv":
        return next_layer.channels * next_layer.kernel**2
    return next_layer.n


def summarize(results: Sequence[SampleResult], sim: Simulator) -> Evaluation:
    """Accuracy, loss, rate, confusion matrices and synaptic operations over a list of results."""
    spec = sim.spec
    n_layers, n_classes = len(spec.layers), spec.n_classes
    if not results:
        raise ValueError("No samples to summarize")
    labels = np.array([r.label for r in results])
    steps = sum(r.n_steps for r in results)
    accuracy, loss, rate, confusion, synops = [], [], [], [], []
    for k in range(n_layers):
        predictions = np.array([r.predictions[k] for r in results])
        accuracy.append(float(np.mean(predictions == labels)))
        loss.append(float(np.mean([r.losses[k] for r in results])))
        spikes = sum(r.spikes[k] for r in results)
        rate.append(1000.0 * spikes / (spec.layers[k].n * steps))
        matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(matrix, (labels, predictions), 1)
        confusion.append(matrix)
        fan_out = (_fan_out(spec.layers[k + 1]) if k + 1 < n_layers else 0) + n_classes
        synops.append(spikes * fan_out / len(results))
    return Evaluation(accuracy, loss, rate, confusion, synops)


def train_epoch(sim: Simulator, dataset, order: Sequence[int], params: dict[str, np.ndarray], *, lr: float,
                rng: np.random.Generator) -> tuple[dict[str, np.ndarray], list[SampleResult]]:
    """One online pass over ``dataset`` in ``order``; returns the new parameters and per-sample results."""
    results: list[SampleResult] = []
    for _, new_params, chunk_results in iter_chunks(sim, dataset, order, params, learn=True, lr=lr, rng=rng):
        results += chunk_results
        params = new_params
    return params, results


def evaluate_dataset(sim: Simulator, dataset, params: dict[str, np.ndarray], *, progress: bool = False,
                     desc: str = "eval") -> Evaluation:
    """Per-layer test metrics (majority vote) of ``params`` on the whole ``dataset`` (no learning, no
    dropout); with ``progress``, a tqdm bar named ``desc``."""
    results: list[SampleResult] = []
    with tqdm(total=len(dataset), desc=desc, unit="sample", disable=not progress, leave=False) as bar:
        for _, _, chunk_results in iter_chunks(sim, dataset, np.arange(len(dataset)), params, learn=False):
            results += chunk_results
            bar.update(len(chunk_results))
    return summarize(results, sim)
