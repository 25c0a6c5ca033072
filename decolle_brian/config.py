"""Experiment configurations (TOML): schema, validation, ``--set`` overrides, and the network they describe.

Every parameter has a name, a type and a default; unknown keys, wrong types and impossible values are
rejected with the key named, before anything is compiled. A resolved configuration (defaults filled in)
is what a run stores and what ``--resume`` reads back.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decolle_brian.derivation import LOSSES, MODES, OPTIMIZERS, SURROGATES
from decolle_brian.errors import ConfigError
from decolle_brian.network.spec import (
    ConvLayerSpec,
    DenseLayerSpec,
    LearningSpec,
    NetworkSpec,
    NeuronParams,
    SpecError,
)


@dataclass(frozen=True)
class Field:
    """One configuration key: accepted types, default and a one-line description."""

    types: tuple
    default: Any
    doc: str
    choices: tuple | None = None
    minimum: float | None = None


def _f(types, default, doc, choices=None, minimum=None) -> Field:
    return Field(types if isinstance(types, tuple) else (types,), default, doc, choices, minimum)


NUMBER = (int, float)
PRECHECK_SHAPE = (2, 128, 128)  # stands in for the data set's input shape when a file is first checked
SCHEMA: dict[str, Any] = {
    "name": _f(str, "run", "run name: outputs go to <out>/<name>/<timestamp>/"),
    "seed": _f(int, 0, "seed of parameters, sample order and dropout masks", minimum=0),
    "data": {
        "dataset": _f(str, "digits", "data set", choices=("digits", "mnist", "nmnist", "dvsgesture")),
        "root": _f(str, "", "data folder ('' = searched: $DECOLLE_DATA, ../shared/data, ~/.decolle-brian/data)"),
        "params": _f(dict, {}, "preprocessing options of the data set (n_steps, crop, encoder, ...)"),
        "train_samples": _f(int, 0, "use only this many training samples, class-balanced (0 = all)", minimum=0),
        "test_samples": _f(int, 0, "use only this many test samples, class-balanced (0 = all)", minimum=0),
        "augment_shift": _f(int, 0, "training samples translated by a random (dy, dx) in [-n, n] pixels, redrawn "
                            "every time a sample is seen (0 = off)", minimum=0),
    },
    "network": {
        "layers": _f(list, [128, 128], "hidden layers: sizes of dense layers, or tables {kind='conv', ...}"),
        "mode": _f(str, "exact", "'exact': every synapse every step; 'event': work driven by spikes, dense layers, "
                   "Adamax per sample (docs/event_driven.md)", choices=MODES),
    },
    "neuron": {
        "alpha": _f(NUMBER, 0.97, "membrane trace decay per 1 ms step, exp(-dt/tau_mem) (tau_mem 32.8 ms)"),
        "beta": _f(NUMBER, 0.92, "synaptic trace decay per step, exp(-dt/tau_syn) (tau_syn 12.0 ms)"),
        "alpharp": _f(NUMBER, 0.65, "refractory decay per step, exp(-dt/tau_ref) (tau_ref 2.3 ms)"),
        "wrp": _f(NUMBER, 1.0, "refractory jump size"),
    },
    "learning": {
        "loss": _f(str, "smoothl1", f"local loss: {sorted(LOSSES)} or an expression of y and target"),
        "surrogate": _f(str, "fast_sigmoid", f"surrogate gradient: {sorted(SURROGATES)} or an expression of u"),
        "surrogate_params": _f(dict, {}, "surrogate parameters (slope, width)"),
        "optimizer": _f(str, "adamax", "optimiser", choices=OPTIMIZERS),
        "lr": _f(NUMBER, 1e-3, "learning rate", minimum=0),
        "lr_drop_factor": _f(NUMBER, 2.0, "divide lr by this every lr_drop_interval epochs", minimum=1),
        "lr_drop_interval": _f(int, 20, "epochs between lr drops", minimum=1),
        "beta2": _f(NUMBER, 0.95, "Adamax infinity-norm decay"),
        "eps": _f(NUMBER, 1e-8, "Adamax epsilon"),
        "dropout": _f(NUMBER, 0.5, "dropout probability on the readout path (training only)"),
        "lc_ampl": _f(NUMBER, 0.5, "readout init amplitude: G, g ~ U(+-lc_ampl/sqrt(fan_in))"),
        "burnin": _f(int, 0, "steps per sample simulated without learning", minimum=0),
    },
    "training": {
        "epochs": _f(int, 1, "passes over the training set", minimum=1),
        "chunk_samples": _f(int, 16, "samples per run of the compiled network", minimum=1),
        "eval_every": _f(int, 1, "evaluate on the test split every this many epochs", minimum=1),
        "checkpoint_every": _f(int, 256, "write a checkpoint every this many training samples", minimum=1),
        "progress": _f(bool, True, "show tqdm progress bars"),
    },
    "device": {
        "name": _f(str, "cpp_standalone", "device", choices=("runtime", "cpp_standalone", "cuda_standalone")),
        "threads": _f(int, 1, "OpenMP threads (cpp_standalone)", minimum=1),
        "build_dir": _f(str, "", "standalone build folder ('' = one per network structure in the temp folder)"),
        "runtime_target": _f(str, "cython", "code generation of the runtime device", choices=("cython", "numpy")),
    },
    "recording": {
        "variables": _f(list, [], "what to record (empty = nothing): u, p, q, r, s, y, delta, bp, sigma, dw, W, b, "
                        "opt, or 'all' (docs/recording.md)"),
        "layers": _f(list, [], "layers to record (1-based; empty = all)"),
        "neurons": _f((int, list, str), 16, "neurons per layer whose traces are stored: a count (random subset "
                      "drawn with the run seed), a list of indices, or 'all'"),
        "synapses": _f(int, 4, "synapses per dense layer whose three factors and weight change are stored (dw)",
                       minimum=1),
        "train_every": _f(int, 0, "record every this many training samples, during learning (0 = none)", minimum=0),
        "test_samples": _f(str, "first_of_class", "test samples recorded at every evaluation: 'first_of_class', "
                           "'every:<N>' or 'none'"),
        "every_steps": _f(int, 1, "store traces every this many time steps (spikes and input: every step)",
                          minimum=1),
        "weights_every": _f(int, 0, "weight snapshots every this many training samples (0 = at start and end only)",
                            minimum=0),
        "weights": _f(str, "auto", "weight matrices in snapshots: 'all', 'subset' (recorded neurons x recorded "
                      "presynaptic neurons) or 'auto' (all up to 262144 weights per layer)",
                      choices=("auto", "all", "subset")),
        "max_mb": _f(NUMBER, 512, "refuse (before compiling) recordings whose estimated size exceeds this (MB)",
                     minimum=0),
    },
}


def _check_value(key: str, field: Field, value: Any) -> Any:
    if isinstance(value, bool) and bool not in field.types:
        raise ConfigError(f"{key}: expected {_type_names(field.types)}, got the boolean {value}")
    if not isinstance(value, field.types):
        raise ConfigError(f"{key}: expected {_type_names(field.types)}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    if field.choices is not None and value not in field.choices:
        raise ConfigError(f"{key}: {value!r} is not one of {list(field.choices)}")
    if field.minimum is not None and isinstance(value, int | float) and value < field.minimum:
        raise ConfigError(f"{key}: must be >= {field.minimum}, got {value}")
    if field.types == NUMBER:
        value = float(value)
    return value


def _type_names(types) -> str:
    return " or ".join({"int": "integer", "float": "number", "str": "string", "dict": "table",
                        "list": "array", "bool": "boolean"}[t.__name__] for t in types)


def resolve(raw: dict, schema: dict | None = None, prefix: str = "") -> dict:
    """Validate ``raw`` against the schema and fill in defaults; raise ConfigError naming a bad key."""
    schema = SCHEMA if schema is None else schema
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'configuration'}: expected a table")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(f"unknown key(s) {[prefix + k for k in unknown]}; "
                          f"valid keys{' in [' + prefix.rstrip('.') + ']' if prefix else ''}: {sorted(schema)}")
    resolved = {}
    for key, field in schema.items():
        if isinstance(field, dict):
            resolved[key] = resolve(raw.get(key, {}), field, f"{prefix}{key}.")
        elif key in raw:
            resolved[key] = _check_value(prefix + key, field, raw[key])
        else:
            resolved[key] = copy.deepcopy(field.default)
    return resolved


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read, override (``key.path=value``) and resolve a TOML configuration file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    for item in overrides:
        apply_override(raw, item)
    config = resolve(raw)
    precheck(config)
    return config


def precheck(config: dict) -> None:
    """Fail on impossible values now, before any data is read or anything compiled.

    The data set's input shape (checked against conv layers) is only known once the data set is opened
    (``Experiment.from_config``); ``PRECHECK_SHAPE`` stands in for it here.
    """
    network_spec(config, n_inputs=PRECHECK_SHAPE[0] * PRECHECK_SHAPE[1] * PRECHECK_SHAPE[2], n_classes=2,
                 input_shape=PRECHECK_SHAPE)


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``--set key.path=value`` (value parsed as TOML, else taken as a string)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. learning.lr=1e-4")
    key, text = (part.strip() for part in item.split("=", 1))
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    *parents, leaf = key.split(".")
    node = raw
    for parent in parents:
        node = node.setdefault(parent, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {parent} is not a table")
    node[leaf] = value


def network_spec(config: dict, n_inputs: int, n_classes: int, input_shape: tuple | None = None) -> NetworkSpec:
    """The :class:`NetworkSpec` of a resolved configuration (SpecError -> ConfigError naming the key)."""
    learning = config["learning"]
    layers, shape = [], tuple(input_shape) if input_shape is not None else None
    for index, layer in enumerate(config["network"]["layers"]):
        where = f"network.layers[{index}]"
        kind = layer.get("kind", "dense") if isinstance(layer, dict) else "dense"
        if isinstance(layer, bool) or not isinstance(layer, int | dict):
            raise ConfigError(f"{where}: expected a layer size or a table with kind 'dense' or 'conv', got {layer!r}")
        if kind == "dense":
            if isinstance(layer, dict):
                extra = sorted(set(layer) - {"kind", "n"})
                if extra:
                    raise ConfigError(f"{where}: unknown key(s) {extra} for a dense layer (n)")
                layer = layer.get("n")
            layers.append(DenseLayerSpec(layer))
            shape = None
        elif kind == "conv":
            keys = {"kind", "channels", "kernel", "padding", "pool"}
            extra = sorted(set(layer) - keys)
            if extra or not {"channels", "kernel"} <= set(layer):
                raise ConfigError(f"{where}: a conv layer takes {sorted(keys - {'kind'})} (channels and kernel "
                                  f"required); got {sorted(layer)}")
            if shape is None:
                raise ConfigError(f"{where}: a conv layer needs an image-shaped input (channels, height, width): "
                                  "the data set's input or another conv layer, not a dense layer")
            conv = ConvLayerSpec(channels=layer["channels"], kernel=layer["kernel"], in_shape=shape,
                                 padding=layer.get("padding", 0), pool=layer.get("pool", 1))
            try:
                conv.validate(where)
            except SpecError as exc:
                raise ConfigError(str(exc)) from None
            layers.append(conv)
            shape = conv.out_shape
        else:
            raise ConfigError(f"{where}: unknown layer kind {kind!r}; choose 'dense' or 'conv'")
    try:
        spec = NetworkSpec(
            n_inputs=n_inputs, layers=tuple(layers), n_classes=n_classes,
            neuron=NeuronParams(**config["neuron"]),
            learning=LearningSpec(
                loss=learning["loss"], surrogate=learning["surrogate"],
                surrogate_params=tuple(sorted(learning["surrogate_params"].items())),
                optimizer=learning["optimizer"], lr=learning["lr"], beta2=learning["beta2"], eps=learning["eps"],
                dropout=learning["dropout"], lc_ampl=learning["lc_ampl"], burnin=learning["burnin"],
            ),
            input_shape=tuple(input_shape) if input_shape is not None else None,
            mode=config["network"]["mode"],
        )
        spec.validate()
    except SpecError as exc:
        raise ConfigError(str(exc).replace("neuron.", "neuron.", 1)) from None
    # the derivation checks loss and surrogate expressions: a bad one fails here, not in the compiler
    from decolle_brian.derivation import DerivationError, derive  # noqa: PLC0415

    try:
        derive(learning["loss"], learning["surrogate"], **learning["surrogate_params"])
    except DerivationError as exc:
        raise ConfigError(f"learning: {exc}") from None
    return spec


def to_toml(config: dict) -> str:
    """A resolved configuration as TOML text."""
    import tomli_w  # noqa: PLC0415

    return tomli_w.dumps(config)
