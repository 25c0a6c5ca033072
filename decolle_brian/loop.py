"""The online training loop: a typed state, and callbacks that see it at fixed points.

:class:`TrainingLoop` runs epochs over a training set through ONE compiled network, chunk by chunk
(:func:`~decolle_brian.training.iter_chunks`), evaluates on the test set every ``eval_every`` epochs and
after the last one, and tells its callbacks what happened. What it needs to continue lies in three things:
the :class:`TrainingState`, the parameters and the random generator. A checkpoint of the three resumes
bit-exactly: every sample starts from a clean network state, the weights are the only thing carried from
one sample to the next, and the generator gives the sample order, the dropout masks and the shifts.

Callback protocol (:class:`Callback`; every hook is optional), in the order the loop calls them::

    on_train_begin(loop)
    per epoch:  on_epoch_begin(loop)
                per chunk:  observer(loop)(indices, slots, inputs, outputs, params_before)   raw chunk outputs
                            on_chunk_end(loop, results)          the state counts the chunk
                on_epoch_end(loop, report)                       the state points at the next epoch
    on_stop(loop, reason)     a signal or ``stop_after_samples`` ends the run early; then Interrupted
    on_train_end(loop)        after the last epoch
    close()                   always, once, also after an error

Callbacks run in list order. A checkpoint writer goes last, so that what the others write (metrics rows,
recordings) is on disk before a checkpoint counts it.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from decolle_brian.errors import Interrupted
from decolle_brian.training import Evaluation, SampleResult, evaluate_dataset, iter_chunks

logger = logging.getLogger(__name__)

#: ``observer(dataset_indices, slots, inputs, outputs, params_before)``, see iter_chunks
ChunkObserver = Callable[..., None]


@dataclass
class EpochStats:
    """Running per-layer training statistics of the current epoch (checkpointed for exact resume)."""

    n: int = 0
    correct: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    spikes: list = field(default_factory=list)
    steps: int = 0

    def add(self, results: Sequence[SampleResult]) -> None:
        for r in results:
            if not self.correct:
                self.correct, self.loss, self.spikes = ([0] * len(r.predictions), [0.0] * len(r.predictions),
                                                         [0] * len(r.predictions))
            self.n += 1
            self.steps += r.n_steps
            for k, pred in enumerate(r.predictions):
                self.correct[k] += int(pred == r.label)
                self.loss[k] += r.losses[k]
                self.spikes[k] += r.spikes[k]

    def accuracy(self) -> list[float]:
        return [c / self.n for c in self.correct] if self.n else []

    def mean_loss(self) -> list[float]:
        return [s / self.n for s in self.loss] if self.n else []


@dataclass
class TrainingState:
    """Where a training run stands; with the parameters and the generator, all a checkpoint holds.

    Attributes
    ----------
    epoch : int
        Epochs finished.
    position : int
        Samples of the current epoch learned, in ``permutation`` order.
    samples_seen : int
        Training samples learned since the run began.
    permutation : list of int or None
        The current epoch's sample order; drawn from the generator when the epoch begins.
    wall_s : float
        Wall time spent training so far (over every resume).
    epoch_stats : EpochStats
        Running statistics of the current epoch.
    metrics : list of dict
        The rows of ``metrics.csv`` so far (a checkpoint stores their count).
    """

    epoch: int = 0
    position: int = 0
    samples_seen: int = 0
    permutation: list[int] | None = None
    wall_s: float = 0.0
    epoch_stats: EpochStats = field(default_factory=EpochStats)
    metrics: list[dict] = field(default_factory=list)

    def next_epoch(self) -> None:
        """The current epoch is done: the next one starts at its beginning, with a new order."""
        self.epoch += 1
        self.position, self.permutation, self.epoch_stats = 0, None, EpochStats()

    def to_json(self, rng: np.random.Generator, structure_key: str) -> dict:
        """The JSON-able checkpoint record (the format the run store has always written)."""
        return {"epoch": self.epoch, "position": self.position, "samples_seen": self.samples_seen,
                "permutation": self.permutation, "wall_s": self.wall_s, "epoch_stats": asdict(self.epoch_stats),
                "rng": rng.bit_generator.state, "n_metric_rows": len(self.metrics), "structure_key": structure_key}

    @classmethod
    def from_json(cls, record: dict, metrics: list[dict]) -> tuple[TrainingState, np.random.Generator]:
        """State and generator of a checkpoint record; ``metrics`` (the stored rows) is cut to its count."""
        rng = np.random.default_rng()
        rng.bit_generator.state = record["rng"]
        state = cls(epoch=record["epoch"], position=record["position"], samples_seen=record["samples_seen"],
                    permutation=record["permutation"], wall_s=record["wall_s"],
                    epoch_stats=EpochStats(**record["epoch_stats"]), metrics=metrics[: record["n_metric_rows"]])
        return state, rng


@dataclass(frozen=True)
class EpochReport:
    """What a finished epoch did: its 1-based number, learning rate, statistics, and test metrics if evaluated."""

    epoch: int
    lr: float
    stats: EpochStats
    wall_s: float                    # training wall time when the epoch's learning ended (before evaluation)
    evaluation: Evaluation | None


class Callback:
    """A hook of :class:`TrainingLoop` at every point of the protocol (module docstring); all do nothing."""

    def on_train_begin(self, loop: TrainingLoop) -> None:
        """Before the first epoch of this call (also when resuming)."""

    def on_epoch_begin(self, loop: TrainingLoop) -> None:
        """An epoch begins or continues: ``loop.state.permutation`` is drawn, ``position`` where it resumes."""

    def observer(self, loop: TrainingLoop) -> ChunkObserver | None:
        """A function that sees every training chunk of this epoch before it is summarised, or None.

        It reads ``loop.state`` as it was before the chunk (``samples_seen`` counts the samples learned
        before the chunk's first one).
        """
        return None

    def on_chunk_end(self, loop: TrainingLoop, results: list[SampleResult]) -> None:
        """A chunk was learned: ``loop.params`` and ``loop.state`` include it."""

    def on_epoch_end(self, loop: TrainingLoop, report: EpochReport) -> None:
        """An epoch was learned (and evaluated when due); ``loop.state`` already points at the next one."""

    def on_stop(self, loop: TrainingLoop, reason: str) -> None:
        """The run ends early; ``loop.state`` is where a resume continues. :class:`Interrupted` follows."""

    def on_train_end(self, loop: TrainingLoop) -> None:
        """Every epoch is done."""

    def close(self) -> None:
        """Release files; called once when :meth:`TrainingLoop.run` returns or raises."""


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """SIGINT/SIGTERM append to the yielded list instead of killing: the loop stops at a chunk boundary."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class TrainingLoop:
    """Epochs of online learning with evaluation, driving callbacks (see the module docstring).

    Parameters
    ----------
    sim : Simulator
        The compiled network (anything with ``spec``, ``chunk_steps``, ``loss_fn``, ``prepare_inputs`` and
        ``run_chunk``).
    train_set, test_set : EventDataset
    params : dict of numpy.ndarray
        Parameters to start from (the loop replaces ``loop.params`` after every chunk).
    rng : numpy.random.Generator
        Source of sample orders, dropout masks and shifts.
    state : TrainingState
        Where to start (a fresh one, or one read from a checkpoint).
    epochs : int
        Train until ``state.epoch == epochs``.
    lr_schedule : callable
        ``lr_schedule(epoch)`` (0-based) is the learning rate of that epoch.
    eval_every : int
        Evaluate on ``test_set`` after every ``eval_every``-th epoch, and after the last.
    augment_shift : int
        Random translations of the training samples (:func:`~decolle_brian.training.random_shift`).
    callbacks : sequence of Callback
    eval_progress : bool
        A tqdm bar while evaluating.
    """

    def __init__(self, sim, train_set, test_set, params: dict[str, np.ndarray], rng: np.random.Generator,
                 state: TrainingState, *, epochs: int, lr_schedule: Callable[[int], float], eval_every: int = 1,
                 augment_shift: int = 0, callbacks: Sequence[Callback] = (), eval_progress: bool = False):
        self.sim, self.train_set, self.test_set = sim, train_set, test_set
        self.params, self.rng, self.state = params, rng, state
        self.epochs, self.lr_schedule, self.eval_every = epochs, lr_schedule, eval_every
        self.augment_shift, self.callbacks, self.eval_progress = augment_shift, list(callbacks), eval_progress

    def _emit(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def run(self, stop_after_samples: int | None = None) -> Evaluation | None:
        """Train until ``epochs`` are done; return the last evaluation (None when no epoch was left).

        ``stop_after_samples`` ends the run (as a signal would) once this call has learned that many
        samples: for tests of interruption and resume.

        Raises
        ------
        Interrupted
            SIGINT/SIGTERM (the chunk in flight is dropped, and redone on resume) or the sample budget,
            after ``on_stop``.
        """
        state = self.state
        started, wall_before, learned = time.time(), state.wall_s, 0
        evaluation = None

        def wall() -> float:
            return wall_before + time.time() - started

        def budget_spent() -> bool:
            return stop_after_samples is not None and learned >= stop_after_samples

        with ExitStack() as stack:
            for callback in self.callbacks:
                stack.callback(callback.close)
            received = stack.enter_context(stop_on_signals())
            self._emit("on_train_begin")
            while state.epoch < self.epochs:
                epoch = state.epoch
                self.train_set.set_epoch(epoch)
                if state.permutation is None:
                    state.permutation = self.rng.permutation(len(self.train_set)).tolist()
                lr = self.lr_schedule(epoch)
                self._emit("on_epoch_begin")
                for results in self._chunks(lr, received):
                    state.epoch_stats.add(results)
                    state.position += len(results)
                    state.samples_seen += len(results)
                    state.wall_s = wall()
                    learned += len(results)
                    self._emit("on_chunk_end", results)
                    if received or budget_spent():
                        break
                if received or (budget_spent() and state.position < len(state.permutation)):
                    signum = received[0] if received else signal.SIGINT
                    self._stop(f"Stopped by {signal.Signals(signum).name}", 128 + signum)
                learned_wall = wall()
                evaluation = None
                if (epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs:
                    try:
                        evaluation = evaluate_dataset(self.sim, self.test_set, self.params,
                                                      progress=self.eval_progress, desc=f"test after epoch {epoch + 1}")
                    except RuntimeError:
                        if not received:  # the simulator failed on its own
                            raise
                    if received:  # a signal during the test pass: stop before the epoch closes; a resume re-tests
                        self._stop(f"Stopped by {signal.Signals(received[0]).name}", 128 + received[0])
                stats = state.epoch_stats
                state.next_epoch()
                state.wall_s = wall()
                self._emit("on_epoch_end", EpochReport(epoch + 1, lr, stats, learned_wall, evaluation))
                if budget_spent() and state.epoch < self.epochs:
                    self._stop(f"Stopped after {learned} samples", 128 + signal.SIGINT)
            self._emit("on_train_end")
        return evaluation

    def _chunks(self, lr: float, received: list[int]) -> Iterator[list[SampleResult]]:
        """The current epoch's remaining chunks, learned one by one; ``loop.params`` follows each.

        A chunk that fails because a signal also reached the simulator is dropped with the random draws it
        made, so that a resume redoes it exactly.
        """
        observers = [o for o in (callback.observer(self) for callback in self.callbacks) if o is not None]

        def observe(*args) -> None:
            for o in observers:
                o(*args)

        chunks = iter_chunks(self.sim, self.train_set, self.state.permutation[self.state.position:], self.params,
                             learn=True, lr=lr, rng=self.rng, augment_shift=self.augment_shift,
                             observer=observe if observers else None)
        while True:
            rng_before = self.rng.bit_generator.state
            try:
                _, self.params, results = next(chunks)
            except StopIteration:
                return
            except RuntimeError:
                if received:
                    self.rng.bit_generator.state = rng_before
                    return
                raise
            yield results

    def _stop(self, reason: str, code: int) -> None:
        self._emit("on_stop", reason)
        raise Interrupted(reason, code)
