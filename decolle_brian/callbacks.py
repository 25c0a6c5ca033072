"""The standard callbacks of a training run: metrics, progress bar, checkpoints (and, in
:mod:`decolle_brian.recording.recorder`, the recorder).

Each implements a part of the :class:`~decolle_brian.loop.Callback` protocol and nothing else;
:func:`decolle_brian.experiment.train` lists them as recorder, metrics, progress, (the caller's own), and
checkpoint last.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from decolle_brian.loop import Callback, EpochReport, TrainingLoop
from decolle_brian.store import write_checkpoint, write_metrics

logger = logging.getLogger(__name__)


def metrics_row(epoch: int, samples_seen: int, split: str, lr: float, wall: float, accuracy, loss, rate=None,
                synops=None) -> dict:
    """One row of ``metrics.csv``: per-layer loss and accuracy (and firing rate, synaptic operations)."""
    row = {"epoch": epoch, "samples_seen": samples_seen, "split": split, "lr": lr, "wall_s": round(wall, 3)}
    for k in range(len(accuracy)):
        row[f"loss_L{k + 1}"] = loss[k]
        row[f"acc_L{k + 1}"] = accuracy[k]
        if rate is not None:
            row[f"rate_hz_L{k + 1}"] = rate[k]
        if synops is not None:
            row[f"synops_L{k + 1}"] = synops[k]
    return row


def accuracy_line(accuracy) -> str:
    """Per-layer accuracies as one line, e.g. ``L1 90.56%, L2 91.67%``."""
    return ", ".join(f"L{k + 1} {a:.2%}" for k, a in enumerate(accuracy))


class MetricsWriter(Callback):
    """After every epoch: a training row (and a test row when evaluated) in ``loop.state.metrics``, the whole
    ``metrics.csv`` rewritten atomically, and the test accuracy logged."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, loop: TrainingLoop, report: EpochReport) -> None:
        state, stats, layers = loop.state, report.stats, loop.sim.spec.layers
        rate = [1000.0 * s / (layer.n * stats.steps) for s, layer in zip(stats.spikes, layers, strict=True)]
        state.metrics.append(metrics_row(report.epoch, state.samples_seen, "train", report.lr, report.wall_s,
                                         stats.accuracy(), stats.mean_loss(), rate))
        evaluation = report.evaluation
        if evaluation is not None:
            state.metrics.append(metrics_row(report.epoch, state.samples_seen, "test", report.lr, report.wall_s,
                                             evaluation.accuracy, evaluation.loss, evaluation.rate_hz,
                                             evaluation.synops_per_sample))
            logger.info("epoch %d: test accuracy per layer %s", report.epoch, accuracy_line(evaluation.accuracy))
        write_metrics(self.run_dir, state.metrics)


class ProgressBar(Callback):
    """A tqdm bar per epoch: samples learned, running loss and accuracy per layer, samples per second."""

    def __init__(self):
        self.bar = None

    def on_epoch_begin(self, loop: TrainingLoop) -> None:
        state = loop.state
        self.close()
        self.bar = tqdm(total=len(state.permutation), initial=state.position, unit="sample",
                        desc=f"epoch {state.epoch + 1}/{loop.epochs}")
        self._started, self._learned = time.time(), 0

    def on_chunk_end(self, loop: TrainingLoop, results) -> None:
        stats = loop.state.epoch_stats
        self._learned += len(results)
        self.bar.update(len(results))
        self.bar.set_postfix(loss=",".join(f"{v:.3f}" for v in stats.mean_loss()),
                             acc=",".join(f"{v:.2f}" for v in stats.accuracy()),
                             sps=f"{self._learned / (time.time() - self._started):.1f}")
        if loop.state.position == len(loop.state.permutation):
            self.close()  # learned: the evaluation's messages come after the finished bar

    def on_stop(self, loop: TrainingLoop, reason: str) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CheckpointWriter(Callback):
    """Writes ``checkpoint.h5`` (atomically) every ``every`` samples, after every epoch and when stopped.

    The counter restarts with every epoch (an epoch's end is itself a checkpoint). Goes last in the callback
    list: what the callbacks before it wrote is what the checkpoint counts.
    """

    def __init__(self, run_dir: str | Path, every: int, structure_key: str):
        self.run_dir, self.every, self.structure_key = Path(run_dir), every, structure_key
        self.since = 0

    def write(self, loop: TrainingLoop) -> None:
        write_checkpoint(self.run_dir, loop.params, loop.state.to_json(loop.rng, self.structure_key))
        self.since = 0

    def on_epoch_begin(self, loop: TrainingLoop) -> None:
        self.since = 0

    def on_chunk_end(self, loop: TrainingLoop, results) -> None:
        self.since += len(results)
        if self.since >= self.every:
            self.write(loop)

    def on_epoch_end(self, loop: TrainingLoop, report: EpochReport) -> None:
        self.write(loop)

    def on_stop(self, loop: TrainingLoop, reason: str) -> None:
        self.write(loop)
