"""The training loop without a compiled network: callback protocol, typed state, stop and exact resume.

A NumPy stand-in for the simulator (a linear readout learned by a delta rule, with the dropout masks and
the learning rates the loop packs) is deterministic in its inputs as the compiled network is, so what the
loop does with chunks, state, callbacks and checkpoints is checked in milliseconds. The same properties on
a compiled network: tests/test_experiment.py and tests/test_recording.py.
"""

import json
import logging
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest

from decolle_brian.callbacks import CheckpointWriter, MetricsWriter
from decolle_brian.devices import ChunkOutputs
from decolle_brian.logs import LOGGER_NAME, console_logging
from decolle_brian.loop import Callback, EpochStats, Interrupted, TrainingLoop, TrainingState
from decolle_brian.store import read_checkpoint, read_metrics, write_metrics

N_STEPS, N_INPUTS, N_CLASSES, CHUNK_SAMPLES = 6, 4, 3, 4


class ToyData:
    """Ten samples of 6 steps x 4 inputs, three classes."""

    n_steps, n_classes, input_shape = N_STEPS, N_CLASSES, (N_INPUTS,)

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.counts = rng.poisson(0.8, (n, N_STEPS, N_INPUTS)).astype(float)
        self.labels = rng.integers(0, N_CLASSES, n)
        self.epochs_set: list[int] = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.counts[i], int(self.labels[i])

    def set_epoch(self, epoch: int) -> None:
        self.epochs_set.append(epoch)


class ToySimulator:
    """A one-layer linear readout y = W x learned online by the delta rule, through the dropout masks."""

    def __init__(self):
        self.spec = SimpleNamespace(n_classes=N_CLASSES, layers=[SimpleNamespace(n=N_CLASSES, kind="dense")],
                                    learning=SimpleNamespace(burnin=2, dropout=0.5))
        self.chunk_steps = CHUNK_SAMPLES * N_STEPS
        self.chunks = 0

    @staticmethod
    def loss_fn(y, target):
        return 0.5 * np.sum((y - target) ** 2, axis=-1)

    def prepare_inputs(self, inputs, neuron=None):
        return inputs  # nothing to convert

    def run_chunk(self, inputs, params, neuron=None, *, on_start=None):
        if on_start is not None:
            on_start()
        self.chunks += 1
        w = params["layer1.W"].copy()
        y = np.zeros((self.chunk_steps, N_CLASSES))
        for t in range(self.chunk_steps):
            y[t] = w @ inputs.counts[t]
            mask = inputs.masks[0][t] if inputs.masks is not None else 1.0
            w -= inputs.eta[t] * np.outer(mask * (y[t] - inputs.targets[t]), inputs.counts[t])
        return ChunkOutputs(params={"layer1.W": w}, y=[y], n_spikes=[(y > 0).sum(axis=1).astype(float)], probes=[])


def _loop(state=None, rng=None, params=None, callbacks=(), epochs=3, eval_every=2):
    rng = rng if rng is not None else np.random.default_rng(7)
    params = params if params is not None else {"layer1.W": rng.normal(0, 0.1, (N_CLASSES, N_INPUTS))}
    return TrainingLoop(ToySimulator(), ToyData(10, 1), ToyData(5, 2), params, rng, state or TrainingState(),
                        epochs=epochs, lr_schedule=lambda epoch: 0.05 / 2 ** epoch, eval_every=eval_every,
                        callbacks=callbacks)


class Spy(Callback):
    """Records every hook with the state it saw."""

    def __init__(self):
        self.events: list[tuple] = []
        self.observed: list[tuple] = []

    def on_train_begin(self, loop):
        self.events.append(("train_begin", loop.state.epoch, loop.state.position))

    def on_epoch_begin(self, loop):
        self.events.append(("epoch_begin", loop.state.epoch, loop.state.position, len(loop.state.permutation)))

    def observer(self, loop):
        def observe(indices, slots, inputs, outputs, params_before):
            self.observed.append((loop.state.samples_seen, len(indices), [s.label for s in slots]))
        return observe

    def on_chunk_end(self, loop, results):
        self.events.append(("chunk_end", loop.state.epoch, loop.state.position, loop.state.samples_seen,
                            len(results)))

    def on_epoch_end(self, loop, report):
        self.events.append(("epoch_end", report.epoch, report.evaluation is not None, loop.state.epoch,
                            loop.state.position, loop.state.permutation, report.stats.n))

    def on_stop(self, loop, reason):
        self.events.append(("stop", reason, loop.state.position))

    def on_train_end(self, loop):
        self.events.append(("train_end", loop.state.epoch))

    def close(self):
        self.events.append(("close",))


def test_callbacks_follow_the_protocol():
    spy = Spy()
    loop = _loop(callbacks=[spy], epochs=2)
    evaluation = loop.run()
    chunks = [("chunk_end", e, pos, 10 * e + pos, n) for e in (0, 1) for pos, n in ((4, 4), (8, 4), (10, 2))]
    assert spy.events == [
        ("train_begin", 0, 0),
        ("epoch_begin", 0, 0, 10), *chunks[:3], ("epoch_end", 1, False, 1, 0, None, 10),
        ("epoch_begin", 1, 0, 10), *chunks[3:], ("epoch_end", 2, True, 2, 0, None, 10),
        ("train_end", 2),
        ("close",),
    ]
    # the observer sees each chunk before the state counts it, with the samples in permutation order
    assert [(seen, n) for seen, n, _ in spy.observed] == [(0, 4), (4, 4), (8, 2), (10, 4), (14, 4), (18, 2)]
    assert evaluation is not None and len(evaluation.accuracy) == 1
    assert loop.train_set.epochs_set == [0, 1]


def test_close_runs_after_an_error():
    class Failing(Callback):
        def on_chunk_end(self, loop, results):
            raise ValueError("boom")

    spy = Spy()
    with pytest.raises(ValueError, match="boom"):
        _loop(callbacks=[spy, Failing()]).run()
    assert spy.events[-1] == ("close",)


def _run_with_store(folder, **kwargs):
    """A loop with the metrics and checkpoint writers in ``folder``; returns the loop."""
    folder.mkdir(exist_ok=True)
    write_metrics(folder, [])
    loop = _loop(callbacks=[MetricsWriter(folder), CheckpointWriter(folder, 5, "toy")], **kwargs)
    return loop


def _resume(folder):
    params, record = read_checkpoint(folder, structure_key="toy")
    state, rng = TrainingState.from_json(record, read_metrics(folder))
    return _loop(state=state, rng=rng, params=params,
                 callbacks=[MetricsWriter(folder), CheckpointWriter(folder, 5, "toy")])


def _without_wall(rows):
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


@pytest.mark.parametrize("stop_after", [1, 6, 10, 13, 20])
def test_stop_then_resume_is_exact(tmp_path, stop_after):
    """Stopped mid-epoch, at an epoch's end or after a later one: the resumed run equals the uninterrupted
    one (parameters bit for bit, metrics rows, the state)."""
    reference = _run_with_store(tmp_path / "reference")
    reference.run()
    stopped = _run_with_store(tmp_path / "stopped")
    with pytest.raises(Interrupted) as info:
        stopped.run(stop_after_samples=stop_after)
    assert info.value.code == 128 + signal.SIGINT
    _, record = read_checkpoint(tmp_path / "stopped")
    learned = record["epoch"] * 10 + record["position"]
    assert learned == record["samples_seen"] >= stop_after  # stops at the first chunk boundary after
    resumed = _resume(tmp_path / "stopped")
    resumed.run()
    np.testing.assert_array_equal(resumed.params["layer1.W"], reference.params["layer1.W"])
    assert _without_wall(read_metrics(tmp_path / "stopped")) == _without_wall(read_metrics(tmp_path / "reference"))
    assert (resumed.state.epoch, resumed.state.samples_seen) == (3, 30)


def test_a_signal_stops_at_the_chunk_boundary(tmp_path):
    class Terminate(Callback):
        def on_chunk_end(self, loop, results):
            if loop.state.samples_seen == 4:
                os.kill(os.getpid(), signal.SIGTERM)  # the loop's handler turns it into a stop

    spy = Spy()
    folder = tmp_path / "run"
    folder.mkdir()
    loop = _loop(callbacks=[spy, Terminate(), CheckpointWriter(folder, 100, "toy")])
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM") as info:
        loop.run()
    assert info.value.code == 128 + signal.SIGTERM
    assert spy.events[-2:] == [("stop", "Stopped by SIGTERM", 4), ("close",)]
    assert read_checkpoint(folder)[1]["position"] == 4
    assert signal.getsignal(signal.SIGTERM) == previous  # the handlers are restored


def test_a_chunk_the_signal_broke_is_redone_exactly(tmp_path):
    """SIGTERM also reaches the simulator, whose chunk then fails: the chunk is dropped with its random
    draws (dropout masks), and the resumed run equals the uninterrupted one."""

    class Killed(ToySimulator):
        def run_chunk(self, inputs, params, neuron=None, *, on_start=None):
            if self.chunks == 4:  # the second chunk of the second epoch
                self.chunks += 1
                os.kill(os.getpid(), signal.SIGTERM)
                raise RuntimeError("the simulation process was terminated")
            return super().run_chunk(inputs, params, neuron, on_start=on_start)

    reference = _run_with_store(tmp_path / "reference")
    reference.run()
    stopped = _run_with_store(tmp_path / "stopped")
    stopped.sim = Killed()
    with pytest.raises(Interrupted, match="SIGTERM"):
        stopped.run()
    _, record = read_checkpoint(tmp_path / "stopped")
    assert (record["epoch"], record["position"]) == (1, 4)
    resumed = _resume(tmp_path / "stopped")
    resumed.run()
    np.testing.assert_array_equal(resumed.params["layer1.W"], reference.params["layer1.W"])
    assert _without_wall(read_metrics(tmp_path / "stopped")) == _without_wall(read_metrics(tmp_path / "reference"))


@pytest.mark.parametrize("simulator_killed", [False, True])
def test_a_signal_during_the_test_pass_stops_and_resumes_exactly(tmp_path, simulator_killed):
    """SIGTERM while a test pass runs (after the second of three epochs): the run stops there (exit 128 + 15,
    checkpoint at the end of the epoch's learning) instead of going on (or, after the last epoch, ending with
    exit 0 as if no signal came), whether the simulator's evaluation chunk survived the signal or failed; the
    resumed run tests again and equals the uninterrupted one."""

    class KilledInTest(ToySimulator):
        def run_chunk(self, inputs, params, neuron=None, *, on_start=None):
            if inputs.eta.max() == 0 and not getattr(self, "killed", False):  # the first test pass
                self.killed = True
                os.kill(os.getpid(), signal.SIGTERM)
                if simulator_killed:
                    raise RuntimeError("the simulation process was terminated")
            return super().run_chunk(inputs, params, neuron, on_start=on_start)

    reference = _run_with_store(tmp_path / "reference")
    reference_evaluation = reference.run()
    stopped = _run_with_store(tmp_path / "stopped")
    stopped.sim = KilledInTest()
    with pytest.raises(Interrupted, match="SIGTERM") as info:
        stopped.run()
    assert info.value.code == 128 + signal.SIGTERM
    _, record = read_checkpoint(tmp_path / "stopped")
    assert (record["epoch"], record["position"]) == (1, 10)  # the second epoch learned, not yet tested
    resumed = _resume(tmp_path / "stopped")
    evaluation = resumed.run()
    np.testing.assert_array_equal(resumed.params["layer1.W"], reference.params["layer1.W"])
    assert evaluation.accuracy == reference_evaluation.accuracy
    assert _without_wall(read_metrics(tmp_path / "stopped")) == _without_wall(read_metrics(tmp_path / "reference"))


def test_checkpoint_writer_counts_samples_per_epoch(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(CheckpointWriter, "write", lambda self, loop: (written.append(
        (loop.state.epoch, loop.state.position)), setattr(self, "since", 0)))
    _loop(callbacks=[CheckpointWriter(tmp_path, 5, "toy")], epochs=2).run()
    # chunks end at 4, 8, 10: due at 8 (8 >= 5), then at every epoch's end (the count restarts there)
    assert written == [(0, 8), (1, 0), (1, 8), (2, 0)]


def test_state_round_trips_through_json():
    rng = np.random.default_rng(3)
    rng.random(5)
    stats = EpochStats()
    stats.n, stats.correct, stats.loss, stats.spikes, stats.steps = 2, [1, 2], [0.1 + 0.2, 1 / 3], [5, 7], 60
    state = TrainingState(epoch=1, position=4, samples_seen=14, permutation=[3, 1, 2], wall_s=1.5,
                          epoch_stats=stats, metrics=[{"epoch": 1}, {"epoch": 1}])
    record = json.loads(json.dumps(state.to_json(rng, "key")))
    assert record["n_metric_rows"] == 2 and record["structure_key"] == "key"
    restored, restored_rng = TrainingState.from_json(record, [{"epoch": 1}, {"epoch": 1}, {"epoch": 2}])
    assert restored == state  # extra stored rows (written after the checkpoint) are cut
    np.testing.assert_array_equal(restored_rng.random(4), rng.random(4))


def test_console_logging_prints_plain_lines(capsys):
    child = logging.getLogger(f"{LOGGER_NAME}.experiment")
    with console_logging():
        child.info("epoch 1: test accuracy per layer L1 50.00%")
        child.debug("not shown")
    child.info("after the block: not shown")
    out = capsys.readouterr().out
    assert out == "epoch 1: test accuracy per layer L1 50.00%\n"
    assert not logging.getLogger(LOGGER_NAME).handlers
