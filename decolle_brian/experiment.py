"""An experiment: data + network + device from a configuration, trained online with checkpoints.

``train`` builds the run (data, network, run folder, parameters) from a configuration and hands it to the
:class:`~decolle_brian.loop.TrainingLoop` with the standard callbacks: the recorder when recording is on,
the metrics writer, the progress bar, the caller's own callbacks, and the checkpoint writer, which writes
``checkpoint.h5`` atomically every ``training.checkpoint_every`` samples, after every epoch and when
stopped. SIGINT/SIGTERM finish by writing a checkpoint (the chunk in flight is dropped and redone on
resume); ``resume`` continues bit-exactly: parameters, optimiser state, RNG state, sample order and
position in the epoch all come from the checkpoint. Messages go to the ``decolle_brian.experiment`` logger
(:mod:`decolle_brian.logs`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decolle_brian.callbacks import CheckpointWriter, MetricsWriter, ProgressBar, accuracy_line
from decolle_brian.config import ConfigError, load_config, network_spec, to_toml
from decolle_brian.data import DATASETS, DataError, dataset_params, load_dataset
from decolle_brian.devices import Simulator, check_runnable
from decolle_brian.errors import Interrupted, ParamError
from decolle_brian.loop import Callback, TrainingLoop, TrainingState
from decolle_brian.network.params import expected_shapes, init_params
from decolle_brian.recording.plan import RecordingPlan
from decolle_brian.recording.recorder import Recorder
from decolle_brian.store import (
    StoreError,
    atomic_write_text,
    new_run_dir,
    read_checkpoint,
    read_metrics,
    write_json,
    write_meta,
    write_metrics,
)
from decolle_brian.training import evaluate_dataset

logger = logging.getLogger(__name__)


@dataclass
class Experiment:
    """Everything a run needs, built from a resolved configuration (validated before any compile)."""

    config: dict
    train_set: object
    test_set: object
    spec: object
    chunk_steps: int

    @classmethod
    def from_config(cls, config: dict, data_root: str | None = None,
                    check: tuple[str, ...] = ("train", "test")) -> Experiment:
        """Open the data and build the network spec; every recording of the splits in ``check`` is read and
        validated now (once: the cache remembers it), so a corrupt file fails before a run folder exists."""
        data = config["data"]
        root = data_root or data["root"] or None
        params, test_params = dict(data["params"]), data.get("test_params") or {}
        train_set = _open(data["dataset"], "train", root, params, data["train_samples"], "data.params")
        test_set = _open(data["dataset"], "test", root, {**params, **test_params}, data["test_samples"],
                         "data.test_params over data.params" if test_params else "data.params")
        if tuple(test_set.input_shape) != tuple(train_set.input_shape) or test_set.n_classes != train_set.n_classes:
            raise ConfigError(f"data.test_params: test samples of shape {tuple(test_set.input_shape)} and "
                              f"{test_set.n_classes} classes, training samples of {tuple(train_set.input_shape)} and "
                              f"{train_set.n_classes}; keep the keys that change the input (crop, size, encoder) in "
                              "data.params")
        for dataset in (train_set, test_set):  # after the checks that need no recording read
            if dataset.split in check and hasattr(dataset, "prepare"):  # event files (not encoded images)
                dataset.prepare(progress=config["training"]["progress"])
                if len(dataset) == 0:
                    raise DataError(f"{dataset.name} {dataset.split}: every recording in {dataset.source} was "
                                    "skipped as bad (data.params.on_error = 'skip'); nothing to run on")
        shape = tuple(train_set.input_shape)
        spec = network_spec(config, int(np.prod(shape)), train_set.n_classes, shape)
        if data["augment_shift"] and len(shape) < 2:
            raise ConfigError(f"data.augment_shift: {data['dataset']} samples have input shape {shape}, "
                              "not images; set it to 0")
        for dataset, what in ((train_set, "learn from"), (test_set, "vote on")):
            if config["learning"]["burnin"] >= dataset.n_steps:
                raise ConfigError(f"learning.burnin: {config['learning']['burnin']} steps leave nothing to {what} in "
                                  f"{dataset.split} samples of {dataset.n_steps} steps")
        # a batch is one run: its samples side by side (training.chunk_samples is for online learning)
        per_run = config["training"]["chunk_samples"] if spec.batch_size == 1 else 1
        chunk_steps = max(per_run * train_set.n_steps, test_set.n_steps)
        return cls(config, train_set, test_set, spec, chunk_steps)

    def simulator(self, device: str | None = None, threads: int | None = None, probes=()) -> Simulator:
        dev = self.config["device"]
        return Simulator(self.spec, self.chunk_steps, device=device or dev["name"],
                         build_dir=dev["build_dir"] or None, threads=threads or dev["threads"],
                         runtime_target=dev["runtime_target"], probes=probes)


def _open(dataset: str, split: str, root: str | None, params: dict, samples: int, table: str):
    """A split of a data set; a value its class refuses (:class:`ParamError`: n_steps < 1, an unknown encoder) is
    a :class:`ConfigError` naming ``table``, not a crash: the types were checked with the configuration, the values
    only the data set knows."""
    try:
        return load_dataset(dataset, split, root, **params, **({"max_samples": samples} if samples else {}))
    except ParamError as exc:
        raise ConfigError(f"{table} ({dataset}, {split} split): {exc}") from exc


def learning_rate(config: dict, epoch: int) -> float:
    """Step schedule as the reference: lr / lr_drop_factor ** (epoch // lr_drop_interval)."""
    learning = config["learning"]
    return learning["lr"] / learning["lr_drop_factor"] ** (epoch // learning["lr_drop_interval"])


def _stored_config(run_dir: Path, config: dict | None) -> dict:
    """The configuration of a run folder to resume; a given one must be the same."""
    if not (run_dir / "config.toml").is_file():
        raise StoreError(f"{run_dir} is not a run folder (config.toml missing)")
    stored = load_config(run_dir / "config.toml")
    if config is not None and config != stored:
        raise StoreError(f"The configuration given differs from the one stored in {run_dir}/config.toml; "
                         "resume without a configuration (or with that file)")
    return stored


def train(config: dict | None, out_root: str | Path = "runs/out", *, resume: str | Path | None = None,
          device: str | None = None, threads: int | None = None, data_root: str | None = None,
          callbacks: Sequence[Callback] = (), stop_after_samples: int | None = None) -> Path:
    """Train a configuration (or resume a run folder) and return the run folder.

    Parameters
    ----------
    config : dict or None
        A resolved configuration (:func:`~decolle_brian.config.load_config`); None with ``resume``.
    out_root : path
        The run goes to ``out_root/<name>/<timestamp>/``.
    resume : path, optional
        A run folder to continue from its checkpoint (its own ``config.toml`` is used).
    device, threads, data_root : optional
        Override ``device.name``, ``device.threads`` and ``data.root``.
    callbacks : sequence of Callback
        Extra :class:`~decolle_brian.loop.Callback` objects; they run after the standard ones, before the
        checkpoint writer.
    stop_after_samples : int, optional
        Stop (as a signal would) after that many training samples in this call: for tests of
        interruption and resume.

    Raises
    ------
    Interrupted
        Stopped by SIGINT/SIGTERM (or ``stop_after_samples``) after writing a checkpoint.
    """
    run_dir = Path(resume) if resume is not None else None
    if run_dir is not None:
        config = _stored_config(run_dir, config)
    experiment = Experiment.from_config(config, data_root)
    spec, tcfg = experiment.spec, config["training"]
    plan = RecordingPlan.from_config(config, experiment)  # a too large request fails here, before compiling
    if plan is not None:
        logger.info(plan.describe())
    structure = spec.structure_key()
    if run_dir is not None:
        params, record = read_checkpoint(run_dir, expected_shapes(spec), structure)
        state, rng = TrainingState.from_json(record, read_metrics(run_dir))
        logger.info("Resuming %s at epoch %d, sample %d", run_dir, state.epoch + 1, state.position)
    else:
        check_runnable(device or config["device"]["name"])  # an unusable device fails before the run folder
        run_dir = new_run_dir(Path(out_root), config["name"])
        atomic_write_text(run_dir / "config.toml", to_toml(config))
        write_meta(run_dir, device=device or config["device"]["name"], seed=config["seed"], structure_key=structure,
                   dataset=experiment.train_set.describe())
        rng = np.random.default_rng(config["seed"])
        params = init_params(spec, rng)
        state = TrainingState()
        write_metrics(run_dir, state.metrics)

    sim = experiment.simulator(device, threads, probes=(plan and plan.probes()) or ())
    standard: list[Callback] = []
    if plan is not None:
        standard.append(Recorder(plan, run_dir, sim.rule, config, resume=state if resume is not None else None))
    standard.append(MetricsWriter(run_dir))
    if tcfg["progress"]:
        standard.append(ProgressBar())
    last = CheckpointWriter(run_dir, tcfg["checkpoint_every"], structure)  # what the others wrote is on disk
    loop = TrainingLoop(sim, experiment.train_set, experiment.test_set, params, rng, state, epochs=tcfg["epochs"],
                        lr_schedule=lambda epoch: learning_rate(config, epoch), eval_every=tcfg["eval_every"],
                        augment_shift=config["data"]["augment_shift"], eval_progress=tcfg["progress"],
                        callbacks=[*standard, *callbacks, last])
    try:
        evaluation = loop.run(stop_after_samples)
    except Interrupted as stop:
        raise Interrupted(f"{stop}; checkpoint written to {run_dir}. "
                          f"Continue with: decolle-brian train --resume {run_dir}", stop.code) from None
    if evaluation is None:  # nothing left to train (resumed a finished run): evaluate what is stored
        evaluation = evaluate_dataset(sim, experiment.test_set, loop.params, progress=tcfg["progress"],
                                      desc="final test")
    summary = final_summary(config, spec, run_dir, state, evaluation)
    write_json(run_dir / "summary.json", summary)
    logger.info("test accuracy per layer: %s", accuracy_line(summary["test_accuracy"]))
    logger.info("run stored in %s", run_dir)
    return run_dir


def final_summary(config: dict, spec, run_dir: Path, state: TrainingState, evaluation) -> dict:
    """What ``summary.json`` holds: the final per-layer test metrics and the run's totals."""
    return {
        "name": config["name"], "run_dir": str(run_dir), "epochs": state.epoch,
        "samples_seen": state.samples_seen, "train_wall_s": state.wall_s,
        "train_samples_per_s": state.samples_seen / state.wall_s if state.wall_s else None,
        "test_accuracy": evaluation.accuracy, "test_loss": evaluation.loss, "rate_hz": evaluation.rate_hz,
        "synops_per_sample": evaluation.synops_per_sample,
        "confusion": [m.tolist() for m in evaluation.confusion],
        "layers": [layer.n for layer in spec.layers], "structure_key": spec.structure_key(),
    }


#: the tables an evaluation may change (``eval --set``): the checkpoint fixes the network, neuron and learning
EVAL_TABLES = ("data", "device")


def eval_overrides(overrides: Sequence[str]) -> list[str]:
    """``eval --set`` items as ``key=value`` (spaces around ``=`` dropped), each checked to name a key of
    :data:`EVAL_TABLES`; a :class:`ConfigError` naming the key otherwise."""
    items, tables = [], " and ".join(f"{table}.*" for table in EVAL_TABLES)
    for item in overrides:
        key, sign, text = (part.strip() for part in item.partition("="))
        if sign and key.split(".")[0] not in EVAL_TABLES:
            raise ConfigError(f"--set {item!r}: an evaluation changes only {tables} keys (the checkpoint fixes the "
                              f"network, neuron and learning); train a run to change {key}")
        items.append(f"{key}={text}" if sign else item)  # no '=': load_config names the mistake
    return items


def split_choice(config: dict) -> dict:
    """What chooses which samples are training and which test samples: the data set, and each of its
    ``split_keys`` as each split sees it (``data.test_params`` over ``data.params`` over the class default)."""
    data = config["data"]
    dataset, test_params = data["dataset"], data.get("test_params") or {}
    defaults = dataset_params(dataset)
    choice = {"data.dataset": dataset}
    for key in DATASETS[dataset].split_keys:
        choice[f"data.params.{key}"] = data["params"].get(key, defaults.get(key))
        choice[f"data.test_params.{key}"] = test_params.get(key, choice[f"data.params.{key}"])
    return choice


def evaluation_file(split: str, overrides: Sequence[str]) -> str:
    """``eval_<split>.json``; with overrides ``eval_<split>_<digest>.json`` (one file per set of overrides, so an
    evaluation under other presentation settings never replaces the run's own)."""
    if not overrides:
        return f"eval_{split}.json"
    digest = hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]
    return f"eval_{split}_{digest}.json"


def evaluate_run(run_dir: str | Path, data_root: str | None = None, device: str | None = None,
                 split: str = "test", overrides: Sequence[str] = ()) -> dict:
    """Evaluate the parameters of a stored run's checkpoint on a split; writes ``eval_<split>.json``.

    ``overrides`` (``key=value``, as ``train --set``) change ``data.*`` and ``device.*`` keys of the stored
    configuration for this evaluation only, e.g. ``data.test_params.n_steps=150`` to present the test samples
    longer, or ``data.test_params.seed=1`` for other Poisson draws of them; the result goes to
    ``eval_<split>_<digest>.json`` (:func:`evaluation_file`) with the overrides in it.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise StoreError(f"{run_dir} is not a run folder (config.toml missing)")
    overrides = eval_overrides(overrides)
    keys = {item.partition("=")[0] for item in overrides}
    for flag, given, key in (("--device", device, "device.name"), ("--data", data_root, "data.root")):
        if given and key in keys:
            raise ConfigError(f"{flag} and --set {key} both given: give one")
    # --device checked as a key too (a float32 network refuses the runtime device before anything is built)
    config = load_config(run_dir / "config.toml", [*overrides, *([f'device.name="{device}"'] if device else [])])
    stored = split_choice(load_config(run_dir / "config.toml"))
    changed = [f"{key} {stored[key]!r} -> {value!r}" for key, value in split_choice(config).items()
               if stored.get(key) != value]
    if changed:
        raise ConfigError(f"--set changes which samples are test samples ({', '.join(changed)}): an evaluation keeps "
                          "the run's split, or its test samples could be samples it trained on")
    experiment = Experiment.from_config(config, data_root, check=(split,))
    params, _ = read_checkpoint(run_dir, expected_shapes(experiment.spec), experiment.spec.structure_key())
    dataset = experiment.test_set if split == "test" else experiment.train_set
    result = evaluate_dataset(experiment.simulator(device), dataset, params, progress=config["training"]["progress"],
                              desc=split)
    out = {"split": split, "device": config["device"]["name"], "n_samples": len(dataset),
           "accuracy": result.accuracy, "loss": result.loss, "rate_hz": result.rate_hz,
           "synops_per_sample": result.synops_per_sample, "confusion": [m.tolist() for m in result.confusion]}
    if overrides:
        out["overrides"] = overrides
    path = run_dir / evaluation_file(split, overrides)
    write_json(path, out)
    logger.info("%s accuracy per layer: %s (%s)", split, accuracy_line(result.accuracy), path.name)
    return out
