"""The recorder: a training-loop callback that writes a run's recordings while it learns.

A chunk that holds a recorded sample is cut into per-sample arrays here and appended to the HDF5 file at
once; nothing accumulates in RAM over a run. Training samples are recorded while they are learned
(``train_every``), test samples in a short extra pass through the same network after every evaluation
(``test_samples``). A second network only for the recorded samples is not an option: Brian2 has one
standalone device per process, and switching networks means regenerating and recompiling code every time.

Weight snapshots (W or conv kernels K, biases, optimiser state, a histogram of every weight) are written at
the start, every ``weights_every`` training samples (at the first chunk boundary after each multiple) and at
the end of training.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sympy as sp

from decolle_brian.derivation import parse_surrogate
from decolle_brian.loop import Callback, EpochReport, TrainingLoop, TrainingState
from decolle_brian.recording.file import FILENAME, RecordingFile
from decolle_brian.recording.plan import HIST_BINS, SNAPSHOT_VARIABLES, TRACE_VARIABLES, RecordingPlan
from decolle_brian.store import writing
from decolle_brian.training import iter_chunks, majority_vote

logger = logging.getLogger(__name__)


def surrogate_function(expr: sp.Expr) -> Callable[[np.ndarray], np.ndarray]:
    """NumPy function sigma'(u) of a derived rule's surrogate (``rule.surrogate``) or its text.

    Text is read with the safe grammar of :mod:`decolle_brian.expressions` (an expression of ``u``, as
    ``learning.surrogate``), never evaluated.
    """
    if isinstance(expr, str):
        expr = parse_surrogate(expr)[1]
    (symbol,) = [s for s in expr.free_symbols if s.name == "u"] or [sp.Symbol("u", real=True)]
    function = sp.lambdify(symbol, expr, modules="numpy")

    def sigma(u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        return np.broadcast_to(np.asarray(function(u), dtype=float), u.shape).copy()

    return sigma


class Recorder(Callback):
    """Writes a run's recordings while it trains (see the module docstring); a training-loop callback.

    Hooks: the start snapshot (``on_train_begin``, a new run only), training samples (``observer``),
    periodic snapshots (``on_chunk_end``), test samples after every evaluation (``on_epoch_end``), the end
    snapshot (``on_train_end``). Before the checkpoint writer's turn in every hook, what was recorded is
    flushed to the file, so a checkpoint never counts recordings that are not on disk.

    Parameters
    ----------
    plan : RecordingPlan
    run_dir : path
    rule : DerivedRule
        The run's rule (``Simulator.rule``): its surrogate gives ``sigma``.
    config : dict
        The resolved configuration (stored as an attribute).
    resume : TrainingState, optional
        The checkpoint state when resuming: recordings made after it are dropped (they are made again).
    """

    def __init__(self, plan: RecordingPlan, run_dir: str | Path, rule, config: dict,
                 resume: TrainingState | None = None):
        self.plan, self.resumed, self.unflushed = plan, resume is not None, False
        self.sigma = surrogate_function(rule.surrogate)
        self.monitored = plan.monitored()
        path = Path(run_dir) / FILENAME
        self.file = None
        if resume is not None and path.is_file():
            try:
                self.file = RecordingFile(path, "a")
                dropped = self.file.truncate(resume.samples_seen, resume.epoch)
                if dropped:
                    logger.info("recordings: dropped %d entries made after the checkpoint (recorded again)",
                                dropped)
            except (OSError, KeyError, ValueError) as exc:
                moved = path.with_name(f"{FILENAME}.unreadable-{int(time.time())}")
                with writing(moved):
                    path.rename(moved)
                logger.warning("recordings: %s could not be reopened (%s); moved to %s, starting a new file",
                               path, exc, moved.name)
                self.file = None
        if self.file is None:
            self.file = RecordingFile(path, "w")
            self.file.init_layout({
                "dt_ms": 1.0, "time_unit": "ms", "every_steps": plan.every_steps, "burnin": plan.burnin,
                "variables": json.dumps(list(plan.variables)), "layers": json.dumps(list(plan.layers)),
                "layer_sizes": json.dumps(plan.layer_sizes), "layer_kinds": json.dumps(plan.layer_kinds),
                "n_classes": plan.n_classes, "surrogate": str(rule.surrogate),
                "surrogate_name": rule.surrogate_name, "loss": rule.loss_name,
                "optimizer": config["learning"]["optimizer"], "seed": config["seed"],
                "recording_config": json.dumps(config["recording"]),
            }, {k: v for k, v in plan.neurons.items() if k in plan.layers or k == 0}, plan.synapses)
        weights = self.file.weights()
        seen = weights.get("samples_seen", np.zeros(0))
        self._last_snapshot = int(seen[-1]) if len(seen) else None

    # ---- the training loop's hooks -------------------------------------------------------------------------
    def on_train_begin(self, loop: TrainingLoop) -> None:
        if not self.resumed:
            self.snapshot(loop.params, 0, 0, "start")

    def observer(self, loop: TrainingLoop) -> Callable | None:
        return self.train_observer(loop.state)

    def on_chunk_end(self, loop: TrainingLoop, results) -> None:
        self.after_chunk(loop.params, loop.state.samples_seen, loop.state.epoch + 1)
        if self.unflushed:  # the chunk's samples are on disk before a checkpoint can count them
            self.flush()

    def on_epoch_end(self, loop: TrainingLoop, report: EpochReport) -> None:
        if report.evaluation is not None:
            self.record_test(loop.sim, loop.test_set, loop.params, report.epoch, loop.state.samples_seen)

    def on_stop(self, loop: TrainingLoop, reason: str) -> None:
        self.flush()

    def on_train_end(self, loop: TrainingLoop) -> None:
        self.snapshot(loop.params, loop.state.samples_seen, loop.state.epoch, "end")

    # ---- samples -------------------------------------------------------------------------------------------
    def train_observer(self, state: TrainingState) -> Callable | None:
        """Observer for :func:`~decolle_brian.training.iter_chunks` during training (reads the loop ``state``:
        ``epoch`` and ``samples_seen`` before the chunk); None when no training sample is recorded."""
        every = self.plan.train_every
        if not every or not (set(self.plan.variables) - set(SNAPSHOT_VARIABLES)):
            return None

        def observe(indices, slots, inputs, outputs, params_before):
            for k, (index, slot) in enumerate(zip(indices, slots, strict=True)):
                number = state.samples_seen + k  # samples learned before this one
                if number % every == 0:
                    self._record(dict(name=f"train-{number:09d}", split="train", epoch=state.epoch + 1,
                                      samples_seen=number, dataset_index=int(index), label=slot.label),
                                 slot, inputs, outputs, params_before)
        return observe

    def record_test(self, sim, dataset, params: dict, epoch: int, samples_seen: int) -> None:
        """Run the recorded test samples through ``sim`` (no learning) and store them."""
        if not len(self.plan.test_indices) or not (set(self.plan.variables) - set(SNAPSHOT_VARIABLES)):
            return

        def observe(indices, slots, inputs, outputs, params_before):
            for index, slot in zip(indices, slots, strict=True):
                self._record(dict(name=f"test-e{epoch:04d}-{int(index):07d}", split="test", epoch=epoch,
                                  samples_seen=samples_seen, dataset_index=int(index), label=slot.label),
                             slot, inputs, outputs, params_before)

        for _ in iter_chunks(sim, dataset, self.plan.test_indices, params, learn=False, observer=observe):
            pass
        self.flush()

    def _record(self, meta: dict, slot, inputs, outputs, params_before: dict) -> None:
        plan, wanted = self.plan, set(self.plan.variables)
        n = slot.n_steps
        window = np.arange(slot.start, slot.start + n)
        rec = window[::plan.every_steps]
        arrays = {"t_ms": (rec - slot.start).astype(float), "eta": inputs.eta[rec], "target": inputs.targets[rec],
                  "input": _as_counts(inputs.counts[slot.start:slot.start + n])}
        if plan.records_input():
            chosen = _positions(self.monitored[0], plan.neurons[0])
            for v in ("p", "q"):
                if v in wanted:
                    arrays[f"L0/{v}"] = outputs.input_probes[v][rec][:, chosen]
        for k in plan.layers:
            probes = outputs.probes[k - 1] if outputs.probes else {}
            chosen = _positions(self.monitored[k], plan.neurons[k])
            for v in TRACE_VARIABLES:
                if v in wanted and v in probes:
                    arrays[f"L{k}/{v}"] = probes[v][rec][:, chosen]
            if "sigma" in wanted and "u" in probes:
                arrays[f"L{k}/sigma"] = self.sigma(probes["u"][rec][:, chosen])
            if "s" in wanted:
                steps, neurons = outputs.spikes[k - 1]
                inside = (steps >= slot.start) & (steps < slot.start + n)
                spikes = np.zeros((n, plan.layer_sizes[k]), dtype=np.uint8)
                np.add.at(spikes, (steps[inside] - slot.start, neurons[inside]), 1)
                arrays[f"L{k}/s"] = spikes
            y = outputs.y[k - 1]
            if "y" in wanted:
                arrays[f"L{k}/y"] = y[rec]
            if k in plan.synapses:
                arrays.update(self._synapse_factors(k, probes, outputs, slot, rec, params_before))
        burnin = min(plan.burnin, n - 1)
        predictions = [majority_vote(y[slot.start + burnin:slot.start + n]) for y in outputs.y]
        self.file.add_sample({**meta, "n_steps": n, "predictions": predictions}, arrays)
        self.unflushed = True

    def _synapse_factors(self, k: int, probes: dict, outputs, slot, rec: np.ndarray, params_before: dict) -> dict:
        """The three factors of the recorded synapses of layer k and the weight change they cause."""
        post, pre = self.plan.synapses[k].T
        at_post = _positions(self.monitored[k], post)
        u, bp = probes["u"][:, at_post], probes["bp"][:, at_post]
        p_pre = (outputs.input_probes["p"] if k == 1 else outputs.probes[k - 2]["p"])[:, _positions(
            self.monitored[k - 1], pre)]
        w = outputs.synapse_w[k - 1]
        start, stop = slot.start, slot.start + slot.n_steps
        before = w[start - 1] if start > 0 else params_before[f"layer{k}.W"][post, pre]
        dw = np.diff(np.concatenate([before[None], w[start:stop]]), axis=0)
        return {f"L{k}/syn_bp": bp[rec], f"L{k}/syn_sigma": self.sigma(u[rec]), f"L{k}/syn_p": p_pre[rec],
                f"L{k}/syn_w": w[rec], f"L{k}/syn_dw": dw[rec - start]}

    # ---- weights -------------------------------------------------------------------------------------------
    def snapshot(self, params: dict, samples_seen: int, epoch: int, tag: str) -> None:
        """Store a weight snapshot (when weights are recorded); one per point of training."""
        wanted = set(self.plan.variables) & set(SNAPSHOT_VARIABLES)
        if not wanted or (self._last_snapshot == samples_seen and tag != "end"):
            return
        arrays = {}
        for k in self.plan.layers:
            key = "K" if f"layer{k}.K" in params else "W"
            full = self.plan.weights_full[k]
            rows, cols = self.plan.neurons[k], self.plan.neurons[k - 1]

            def subset(a, key=key, full=full, rows=rows, cols=cols):
                return a if full or key == "K" else a[np.ix_(rows, cols)]

            weights = np.asarray(params[f"layer{k}.{key}"])
            if "W" in wanted:
                arrays[f"L{k}/{key}"] = subset(weights)
                if key == "W" and not full:
                    arrays[f"L{k}/W_rows"], arrays[f"L{k}/W_cols"] = rows, cols
                counts, edges = np.histogram(weights, bins=HIST_BINS)
                arrays[f"L{k}/W_hist"], arrays[f"L{k}/W_hist_edges"] = counts, edges
            if "b" in wanted:
                arrays[f"L{k}/b"] = params[f"layer{k}.b"]
            if "opt" in wanted and f"layer{k}.v_{key}" in params:
                if "W" in wanted:
                    arrays[f"L{k}/v_{key}"] = subset(np.asarray(params[f"layer{k}.v_{key}"]))
                if "b" in wanted:
                    arrays[f"L{k}/v_b"] = params[f"layer{k}.v_b"]
        self.file.add_snapshot(samples_seen, epoch, tag, arrays)
        self._last_snapshot = samples_seen
        self.flush()

    def after_chunk(self, params: dict, samples_seen: int, epoch: int) -> None:
        """Periodic snapshot at the first chunk boundary at or after each multiple of ``weights_every``."""
        every = self.plan.weights_every
        if every and (self._last_snapshot is None or samples_seen // every > self._last_snapshot // every):
            self.snapshot(params, samples_seen, epoch, "periodic")

    def flush(self) -> None:
        self.file.flush()
        self.unflushed = False

    def close(self) -> None:
        self.file.close()


def _positions(monitored: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Columns of the monitored neurons (sorted) that hold ``wanted``."""
    pos = np.searchsorted(monitored, wanted)
    if np.any(pos >= len(monitored)) or np.any(monitored[np.minimum(pos, len(monitored) - 1)] != wanted):
        raise ValueError("recorded neurons are not all monitored (a plan and network that do not match)")
    return pos


def _as_counts(counts: np.ndarray) -> np.ndarray:
    """Event counts as the smallest unsigned integer type that holds them (exact: counts are integers)."""
    top = counts.max(initial=0)
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
    return np.rint(counts).astype(dtype)

