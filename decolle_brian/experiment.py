"""An experiment: data + network + device from a configuration, trained online with checkpoints.

``train`` runs epochs over the training set through ONE compiled network, evaluates on the test split by
majority vote per layer, writes the run store (see :mod:`decolle_brian.store`) and checkpoints atomically
every ``training.checkpoint_every`` samples and at the end. SIGINT/SIGTERM finish by writing a checkpoint
(the chunk in flight is dropped and redone on resume); ``resume`` continues bit-exactly: parameters,
optimiser state, RNG state, sample order and position in the epoch all come from the checkpoint.
"""

from __future__ import annotations

import signal
import time
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from decolle_brian.config import ConfigError, load_config, network_spec, to_toml
from decolle_brian.data import load_dataset
from decolle_brian.devices import Simulator, check_toolchain
from decolle_brian.network.params import expected_shapes, init_params
from decolle_brian.recording import Recorder, RecordingPlan
from decolle_brian.store import (
    StoreError,
    atomic_write_text,
    new_run_dir,
    read_checkpoint,
    read_metrics,
    write_checkpoint,
    write_json,
    write_meta,
    write_metrics,
)
from decolle_brian.training import SampleResult, iter_chunks, summarize


class Interrupted(RuntimeError):
    """Training stopped by a signal after writing a checkpoint; ``code`` is the exit status to use."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class Experiment:
    """Everything a run needs, built from a resolved configuration (validated before any compile)."""

    config: dict
    train_set: object
    test_set: object
    spec: object
    chunk_steps: int

    @classmethod
    def from_config(cls, config: dict, data_root: str | None = None) -> Experiment:
        data = config["data"]
        root = data_root or data["root"] or None
        params = dict(data["params"])
        train_set = load_dataset(data["dataset"], "train", root, **params,
                                 **_limit(data["train_samples"], data["dataset"]))
        test_set = load_dataset(data["dataset"], "test", root, **params,
                                **_limit(data["test_samples"], data["dataset"]))
        shape = tuple(train_set.input_shape)
        spec = network_spec(config, int(np.prod(shape)), train_set.n_classes, shape)
        if data["augment_shift"] and len(shape) < 2:
            raise ConfigError(f"data.augment_shift: {data['dataset']} samples have input shape {shape}, "
                              "not images; set it to 0")
        if config["learning"]["burnin"] >= train_set.n_steps:
            raise ConfigError(f"learning.burnin: {config['learning']['burnin']} steps leave nothing to learn from "
                              f"samples of {train_set.n_steps} steps")
        chunk_steps = max(config["training"]["chunk_samples"] * train_set.n_steps, test_set.n_steps)
        return cls(config, train_set, test_set, spec, chunk_steps)

    def simulator(self, device: str | None = None, threads: int | None = None, probes=()) -> Simulator:
        dev = self.config["device"]
        return Simulator(self.spec, self.chunk_steps, device=device or dev["name"],
                         build_dir=dev["build_dir"] or None, threads=threads or dev["threads"],
                         runtime_target=dev["runtime_target"], probes=probes)


def _limit(n: int, dataset: str) -> dict:
    return {"max_samples": n} if n else {}


@dataclass
class EpochStats:
    """Running per-layer training statistics of the current epoch (checkpointed for exact resume)."""

    n: int = 0
    correct: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    spikes: list = field(default_factory=list)
    steps: int = 0

    def add(self, results: list[SampleResult]) -> None:
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


def learning_rate(config: dict, epoch: int) -> float:
    """Step schedule as the reference: lr / lr_drop_factor ** (epoch // lr_drop_interval)."""
    learning = config["learning"]
    return learning["lr"] / learning["lr_drop_factor"] ** (epoch // learning["lr_drop_interval"])


@contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM set a flag instead of killing: the loop checkpoints and stops cleanly."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def evaluate(sim: Simulator, dataset, params: dict, progress: bool = False, desc: str = "eval"):
    """Per-layer test metrics (majority vote) of ``params`` on ``dataset``, with a progress bar."""
    results: list[SampleResult] = []
    with tqdm(total=len(dataset), desc=desc, unit="sample", disable=not progress, leave=False) as bar:
        for _, _, chunk_results in iter_chunks(sim, dataset, np.arange(len(dataset)), params, learn=False):
            results += chunk_results
            bar.update(len(chunk_results))
    return summarize(results, sim)


def metrics_row(epoch: int, samples_seen: int, split: str, lr: float, wall: float, accuracy, loss, rate=None,
                synops=None) -> dict:
    row = {"epoch": epoch, "samples_seen": samples_seen, "split": split, "lr": lr, "wall_s": round(wall, 3)}
    for k in range(len(accuracy)):
        row[f"loss_L{k + 1}"] = loss[k]
        row[f"acc_L{k + 1}"] = accuracy[k]
        if rate is not None:
            row[f"rate_hz_L{k + 1}"] = rate[k]
        if synops is not None:
            row[f"synops_L{k + 1}"] = synops[k]
    return row


def train(config: dict, out_root: str | Path = "runs/out", *, resume: str | Path | None = None,
          device: str | None = None, threads: int | None = None, data_root: str | None = None,
          log=print, stop_after_samples: int | None = None) -> Path:
    """Train a configuration (or resume a run folder) and return the run folder.

    ``stop_after_samples`` stops (as a signal would) after that many training samples in this call:
    for tests of interruption and resume.
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.toml").is_file():
            raise StoreError(f"{run_dir} is not a run folder (config.toml missing)")
        stored = load_config(run_dir / "config.toml")
        if config is not None and config != stored:
            raise StoreError(f"The configuration given differs from the one stored in {run_dir}/config.toml; "
                             "resume without a configuration (or with that file)")
        config = stored
    experiment = Experiment.from_config(config, data_root)
    spec, tcfg = experiment.spec, config["training"]
    plan = RecordingPlan.from_config(config, experiment)  # a too large request fails here, before compiling
    if plan is not None:
        log(plan.describe())
    structure = spec.structure_key()
    if resume is not None:
        params, state = read_checkpoint(run_dir, expected_shapes(spec), structure)
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        rows = read_metrics(run_dir)[: state["n_metric_rows"]]
        log(f"Resuming {run_dir} at epoch {state['epoch'] + 1}, sample {state['position']}")
    else:
        check_toolchain(device or config["device"]["name"])  # an unusable device fails before the run folder
        run_dir = new_run_dir(Path(out_root), config["name"])
        atomic_write_text(run_dir / "config.toml", to_toml(config))
        write_meta(run_dir, device=device or config["device"]["name"], seed=config["seed"], structure_key=structure,
                   dataset=experiment.train_set.describe())
        rng = np.random.default_rng(config["seed"])
        params = init_params(spec, rng)
        state = {"epoch": 0, "position": 0, "samples_seen": 0, "permutation": None, "wall_s": 0.0,
                 "epoch_stats": EpochStats().__dict__}
        rows = []
        write_metrics(run_dir, rows)

    sim = experiment.simulator(device, threads, probes=(plan and plan.probes()) or ())
    recorder = plan and Recorder(plan, run_dir, sim.rule, config, resume=state if resume is not None else None, log=log)
    if recorder and resume is None:
        recorder.snapshot(params, 0, 0, "start")
    progress = tcfg["progress"]

    def checkpoint():
        state["rng"] = rng.bit_generator.state
        state["n_metric_rows"] = len(rows)
        state["structure_key"] = structure
        if recorder:
            recorder.flush()  # the recordings up to the checkpoint are on disk before it
        write_checkpoint(run_dir, params, state)

    started, done_here, evaluation = time.time(), 0, None
    wall_before = state["wall_s"]
    train_set, test_set = experiment.train_set, experiment.test_set
    with _stop_on_signals() as received, (closing(recorder) if recorder else nullcontext()):
        while state["epoch"] < tcfg["epochs"]:
            epoch = state["epoch"]
            train_set.set_epoch(epoch)
            if state["permutation"] is None:
                state["permutation"] = rng.permutation(len(train_set)).tolist()
            order = state["permutation"]
            lr = learning_rate(config, epoch)
            stats = EpochStats(**state["epoch_stats"])
            since_checkpoint = 0
            with tqdm(total=len(order), initial=state["position"], desc=f"epoch {epoch + 1}/{tcfg['epochs']}",
                      unit="sample", disable=not progress) as bar:
                start = state["position"]
                chunks = iter_chunks(sim, train_set, order[start:], params, learn=True, lr=lr, rng=rng,
                                     augment_shift=config["data"]["augment_shift"],
                                     observer=recorder.train_observer(state) if recorder else None)
                while True:
                    rng_before = rng.bit_generator.state
                    try:
                        done, new_params, results = next(chunks)
                    except StopIteration:
                        break
                    except RuntimeError:
                        if received:  # the signal also reached the simulator process: drop this chunk
                            rng.bit_generator.state = rng_before
                            break
                        raise
                    params = new_params
                    stats.add(results)
                    state.update(position=start + done, samples_seen=state["samples_seen"] + len(results),
                                 epoch_stats=stats.__dict__, wall_s=wall_before + time.time() - started)
                    if recorder:
                        recorder.after_chunk(params, state["samples_seen"], epoch + 1)
                    done_here += len(results)
                    since_checkpoint += len(results)
                    bar.update(len(results))
                    bar.set_postfix(loss=",".join(f"{v:.3f}" for v in stats.mean_loss()),
                                    acc=",".join(f"{v:.2f}" for v in stats.accuracy()),
                                    sps=f"{done_here / (time.time() - started):.1f}")
                    if since_checkpoint >= tcfg["checkpoint_every"]:
                        checkpoint()
                        since_checkpoint = 0
                    if received or (stop_after_samples is not None and done_here >= stop_after_samples):
                        break
            if received or (stop_after_samples is not None and done_here >= stop_after_samples
                            and state["position"] < len(order)):
                checkpoint()
                signum = received[0] if received else signal.SIGINT
                raise Interrupted(f"Stopped by {signal.Signals(signum).name}; checkpoint written to {run_dir}. "
                                  f"Continue with: decolle-brian train --resume {run_dir}", 128 + signum)
            # end of epoch: training row, evaluation, checkpoint
            wall = wall_before + time.time() - started
            rows.append(metrics_row(epoch + 1, state["samples_seen"], "train", lr, wall, stats.accuracy(),
                                    stats.mean_loss(), [1000.0 * s / (n.n * stats.steps) for s, n in
                                                        zip(stats.spikes, spec.layers, strict=True)]))
            evaluation = None
            if (epoch + 1) % tcfg["eval_every"] == 0 or epoch + 1 == tcfg["epochs"]:
                evaluation = evaluate(sim, test_set, params, progress, desc=f"test after epoch {epoch + 1}")
                if recorder:
                    recorder.record_test(sim, test_set, params, epoch + 1, state["samples_seen"])
                rows.append(metrics_row(epoch + 1, state["samples_seen"], "test", lr, wall, evaluation.accuracy,
                                        evaluation.loss, evaluation.rate_hz, evaluation.synops_per_sample))
                log(f"epoch {epoch + 1}: test accuracy per layer "
                    + ", ".join(f"L{k + 1} {a:.2%}" for k, a in enumerate(evaluation.accuracy)))
            write_metrics(run_dir, rows)
            state.update(epoch=epoch + 1, position=0, permutation=None, epoch_stats=EpochStats().__dict__,
                         wall_s=wall_before + time.time() - started)
            checkpoint()
            if stop_after_samples is not None and done_here >= stop_after_samples and state["epoch"] < tcfg["epochs"]:
                raise Interrupted(f"Stopped after {done_here} samples; checkpoint written to {run_dir}", 130)
        if recorder:
            recorder.snapshot(params, state["samples_seen"], state["epoch"], "end")
    if evaluation is None:  # nothing left to train (resumed a finished run): evaluate what is stored
        evaluation = evaluate(sim, test_set, params, progress, desc="final test")
    summary = final_summary(config, spec, run_dir, state, evaluation)
    write_json(run_dir / "summary.json", summary)
    log("test accuracy per layer: " + ", ".join(f"L{k + 1} {a:.2%}" for k, a in enumerate(summary["test_accuracy"])))
    log(f"run stored in {run_dir}")
    return run_dir


def final_summary(config, spec, run_dir, state, evaluation) -> dict:
    return {
        "name": config["name"], "run_dir": str(run_dir), "epochs": state["epoch"],
        "samples_seen": state["samples_seen"], "train_wall_s": state["wall_s"],
        "train_samples_per_s": state["samples_seen"] / state["wall_s"] if state["wall_s"] else None,
        "test_accuracy": evaluation.accuracy, "test_loss": evaluation.loss, "rate_hz": evaluation.rate_hz,
        "synops_per_sample": evaluation.synops_per_sample,
        "confusion": [m.tolist() for m in evaluation.confusion],
        "layers": [layer.n for layer in spec.layers], "structure_key": spec.structure_key(),
    }


def evaluate_run(run_dir: str | Path, data_root: str | None = None, device: str | None = None,
                 split: str = "test", log=print) -> dict:
    """Evaluate the parameters of a stored run's checkpoint on a split; writes eval_<split>.json."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise StoreError(f"{run_dir} is not a run folder (config.toml missing)")
    config = load_config(run_dir / "config.toml")
    experiment = Experiment.from_config(config, data_root)
    params, _ = read_checkpoint(run_dir, expected_shapes(experiment.spec), experiment.spec.structure_key())
    dataset = experiment.test_set if split == "test" else experiment.train_set
    result = evaluate(experiment.simulator(device), dataset, params, config["training"]["progress"], desc=split)
    out = {"split": split, "n_samples": len(dataset), "accuracy": result.accuracy, "loss": result.loss,
           "rate_hz": result.rate_hz, "synops_per_sample": result.synops_per_sample,
           "confusion": [m.tolist() for m in result.confusion]}
    write_json(run_dir / f"eval_{split}.json", out)
    log(f"{split} accuracy per layer: " + ", ".join(f"L{k + 1} {a:.2%}" for k, a in enumerate(result.accuracy)))
    return out
