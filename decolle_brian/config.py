"""Experiment configurations (TOML): one typed tree, ``--set`` overrides, and the network they describe.

:class:`Config` is the only statement of the keys: their types, defaults, bounds and descriptions. The
TOML reader, ``--set``, the sweep axes (:func:`key_info`), the JSON schema for editors
(:func:`json_schema`, ``decolle-brian schema``) and :func:`network_spec` all read it. Unknown keys, wrong
types, NaN/inf and impossible values are rejected with the dotted key named, before anything is compiled.
``data.params`` is checked against the chosen data set's own constructor (keys and types).

Time constants can be given in ms instead of per-step decays: ``neuron.tau_mem_ms = 20`` means
``alpha = exp(-dt/tau_mem) = exp(-1/20)`` (dt = 1 ms); likewise ``tau_syn_ms`` (beta) and ``tau_ref_ms``
(alpharp). Giving both forms of one constant is an error. A resolved configuration (defaults filled in,
decays only) is what a run stores and what ``--resume`` reads back.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, WithJsonSchema, create_model, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from decolle_brian.data.registry import DATASETS, dataset_params
from decolle_brian.errors import ConfigError
from decolle_brian.names import (
    ADAMAX_EVENT_BATCH_REASON,
    BATCHES_BUILT,
    DEFAULT_PRECISION,
    DEFAULT_RUNTIME_TARGET,
    DEVICES,
    MODES,
    PRECISION_DEVICES,
    PRECISIONS,
    RUNTIME_TARGETS,
)
from decolle_brian.network.spec import (
    ConvLayerSpec,
    ConvLayerTable,
    DenseLayerSpec,
    DenseLayerTable,
    LearningSpec,
    LearningTable,
    NetworkSpec,
    NeuronParams,
    NeuronTable,
    SpecError,
    decay,
)
from decolle_brian.strict import Table, error_lines

PRECHECK_SHAPE = (2, 128, 128)  # stands in for the data set's input shape when a file is first checked
#: training.batch_size of online learning (one sample at a time): the default, and not written when resolved
ONLINE_BATCH = 1


class NewKeys(Table):
    """A table with keys added after run folders were written: while such a key holds the value that means "as
    before the key existed" (:attr:`unwritten`), it is not written, so a resolved configuration (and a run folder's
    config.toml) stays as it was."""

    unwritten: typing.ClassVar[dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _omit_unwritten(self, handler) -> dict:
        data = handler(self)
        for key, value in self.unwritten.items():
            if key in data and data[key] == value:
                del data[key]
        return data


def _keyed(key: str, message: str) -> PydanticCustomError:
    """A validator's error that names its own key (reported as ``key: message``)."""
    return PydanticCustomError("keyed", "{message}", {"key": key, "message": message})


# ---- data.params: keys and types from each data set's own constructor ------------------------------------------
@functools.cache
def params_table(dataset: str) -> type[Table]:
    """The typed table of ``data.params`` for a data set: the keys, defaults and types of its constructor's
    keyword parameters (:func:`~decolle_brian.data.registry.dataset_params`), described by its docstring."""
    cls = DATASETS[dataset]
    hints = typing.get_type_hints(cls.__init__)
    docs = _parameter_docs(cls.__doc__ or "")
    fields = {name: (hints.get(name, Any), Field(default, description=docs.get(name, f"see {cls.__name__}")))
              for name, default in dataset_params(dataset).items()}
    return create_model(f"{cls.__name__}Params", __base__=Table, __doc__=f"[data.params] of {dataset!r}", **fields)


def _parameter_docs(doc: str) -> dict[str, str]:
    """``name -> first line of its description`` from a numpydoc Parameters section."""
    out, names = {}, []
    for line in inspect.cleandoc(doc).splitlines():
        head = re.match(r"^(\w+(?:, \w+)*) :", line)
        if head:
            names = head.group(1).split(", ")
        elif names and line.startswith("    ") and line.strip():
            out.update({name: line.strip() for name in names if name not in out})
            names = []
    return out


# ---- the tree --------------------------------------------------------------------------------------------------
class DataTable(NewKeys):
    """``[data]``: the data set and how much of it."""

    unwritten = {"test_params": {}}

    dataset: Literal[tuple(DATASETS)] = Field("digits", description="data set")
    root: str = Field("", description="data folder ('' = searched: $DECOLLE_DATA, ../shared/data, "
                      "~/.decolle-brian/data)")
    params: dict[str, Any] = Field(default_factory=dict, description="preprocessing options of the data set "
                                   "(n_steps, crop, encoder, ...): the keyword parameters of its class")
    test_params: dict[str, Any] = Field(default_factory=dict, description="data.params of the test split only, "
                                        "over data.params (e.g. n_steps: test samples presented longer than "
                                        "training samples); the input shape must stay the same")
    train_samples: int = Field(0, ge=0, description="use only this many training samples, class-balanced (0 = all)")
    test_samples: int = Field(0, ge=0, description="use only this many test samples, class-balanced (0 = all)")
    augment_shift: int = Field(0, ge=0, description="training samples translated by a random (dy, dx) in [-n, n] "
                               "pixels, redrawn every time a sample is seen (0 = off)")

    @model_validator(mode="after")
    def _check_params(self) -> DataTable:
        table = params_table(self.dataset)
        for name, params in (("params", self.params), ("test_params", self.test_params)):
            try:
                table.model_validate(params)
            except ValidationError as exc:
                lines = error_lines(exc, table, f"data.{name}")
                key = re.match(r"(unknown key\(s\) \['|)([\w.\[\]]+)", lines[0]).group(2)
                raise _keyed(key, f"{'; '.join(lines)} (data set {self.dataset!r})") from None
            limits = (self.train_samples or self.test_samples) if name == "params" else self.test_samples
            if "max_samples" in params and limits:
                raise _keyed(f"data.{name}.max_samples", f"data.{name}.max_samples and data.train_samples / "
                             "test_samples both limit the samples: keep train_samples / test_samples")
        self._check_split_keys()
        return self

    def _check_split_keys(self) -> None:
        """No test sample may be a training sample: the keys that choose a split's samples (the data set's
        ``split_keys``) are the same for both splits, or list each split's own, sharing nothing."""
        for key, kind in DATASETS[self.dataset].split_keys.items():
            if kind == "one" and key in self.test_params:
                raise _keyed(f"data.test_params.{key}", f"data.test_params.{key}: the train / test split is drawn "
                             f"once for both halves; set {key} in data.params")
            if kind == "each" and (key in self.params or key in self.test_params):
                if key not in self.params or key not in self.test_params:
                    raise _keyed(f"data.params.{key}", f"data.params.{key} / data.test_params.{key}: {key} chooses "
                                 f"the samples of both splits, so alone it makes the test split the training split; "
                                 f"give the training {key} in data.params and the test {key} in data.test_params")
                shared = sorted(set(self.params[key] or ()) & set(self.test_params[key] or ()))
                if shared:
                    raise _keyed(f"data.test_params.{key}", f"data.test_params.{key}: {shared} also in "
                                 f"data.params.{key}: a test split must share no {key} with the training split")


_LAYER_SCHEMA = {"type": "array", "items": {"anyOf": [
    {"type": "integer", "minimum": 1, "description": "a dense layer of this many neurons"},
    DenseLayerTable.model_json_schema(), ConvLayerTable.model_json_schema()]}}


class NetworkTable(NewKeys):
    """``[network]``: layers and how they run."""

    unwritten = {"precision": DEFAULT_PRECISION}

    # checked layer by layer in network_spec, where the input shape is known; the schema says what a layer is
    layers: typing.Annotated[list[int | dict[str, Any]], WithJsonSchema(_LAYER_SCHEMA)] = Field(
        default_factory=lambda: [128, 128],
        description="hidden layers: sizes of dense layers, or tables {kind='conv', channels, kernel, padding, pool}")
    mode: Literal[MODES] = Field("exact", description="'exact': every synapse every step; 'event': work driven by "
                                 "spikes, dense layers, Adamax per sample (docs/event_driven.md)")
    precision: Literal[PRECISIONS] = Field(DEFAULT_PRECISION, description="floating-point type of the compiled "
                                           "network's state and arithmetic: 'float64', or 'float32' (the same model "
                                           "in single precision, about 1e-5 relative from float64; batched "
                                           "dense networks in mode 'exact' on device cpp_standalone only; "
                                           "docs/batch.md)")


_TAUS = {"tau_mem_ms": "alpha", "tau_syn_ms": "beta", "tau_ref_ms": "alpharp"}


class NeuronSection(NeuronTable):
    """``[neuron]``: per-step decays (alpha, beta, alpharp) or their time constants in ms, and wrp."""

    tau_mem_ms: float | None = Field(None, gt=0, exclude=True, description="membrane time constant (ms), "
                                     "instead of alpha: alpha = exp(-dt/tau_mem_ms), dt = 1 ms")
    tau_syn_ms: float | None = Field(None, gt=0, exclude=True, description="synaptic time constant (ms), "
                                     "instead of beta: beta = exp(-dt/tau_syn_ms)")
    tau_ref_ms: float | None = Field(None, gt=0, exclude=True, description="refractory time constant (ms), "
                                     "instead of alpharp: alpharp = exp(-dt/tau_ref_ms)")

    @model_validator(mode="after")
    def _decays_from_taus(self) -> NeuronSection:
        for tau_key, decay_key in _TAUS.items():
            tau = getattr(self, tau_key)
            if tau is None:
                continue
            if decay_key in self.model_fields_set:
                raise _keyed(f"neuron.{decay_key}", f"neuron.{decay_key} and neuron.{tau_key} both given; they "
                             f"are the same constant (alpha = exp(-dt/tau)): keep one")
            value = decay(tau)
            if not 0 < value < 1:
                raise _keyed(f"neuron.{tau_key}", f"neuron.{tau_key}: {tau} ms gives {decay_key} = {value}, "
                             "outside (0, 1); use a longer time constant")
            setattr(self, decay_key, value)
        return self


class TrainingTable(NewKeys):
    """``[training]``: epochs, chunking, evaluation and checkpoints."""

    unwritten = {"batch_size": ONLINE_BATCH}

    epochs: int = Field(1, ge=1, description="passes over the training set")
    batch_size: int = Field(ONLINE_BATCH, ge=1, description="samples simulated side by side, one optimiser step "
                            "per time step on their mean gradient (docs/batch.md); 1 = online learning; above 1: "
                            "dense and conv layers in mode 'exact', or dense layers with SGD in mode 'event'; "
                            "without recording")
    chunk_samples: int = Field(16, ge=1, description="samples per run of the compiled network")
    eval_every: int = Field(1, ge=1, description="evaluate on the test split every this many epochs")
    checkpoint_every: int = Field(256, ge=1, description="write a checkpoint every this many training samples")
    progress: bool = Field(True, description="show tqdm progress bars")


class DeviceTable(Table):
    """``[device]``: where the network runs."""

    name: Literal[DEVICES] = Field("cpp_standalone", description="Brian2 device")
    threads: int = Field(1, ge=1, description="OpenMP threads (cpp_standalone)")
    build_dir: str = Field("", description="standalone build folder ('' = one per network structure in the temp "
                           "folder)")
    runtime_target: Literal[RUNTIME_TARGETS] = Field(DEFAULT_RUNTIME_TARGET,
                                                     description="code generation of the runtime device")


class RecordingTable(Table):
    """``[recording]``: traces, factors and weights stored while training and testing (docs/recording.md)."""

    variables: list[str] = Field(default_factory=list, description="what to record (empty = nothing): u, p, q, r, "
                                 "s, y, delta, bp, sigma, dw, W, b, opt, or 'all' (docs/recording.md)")
    layers: list[int] = Field(default_factory=list, description="layers to record (1-based; empty = all)")
    neurons: int | list[int] | str = Field(16, description="neurons per layer whose traces are stored: a count "
                                           "(random subset drawn with the run seed), a list of indices, or 'all'")
    synapses: int = Field(4, ge=1, description="synapses per dense layer whose three factors and weight change are "
                          "stored (dw)")
    train_every: int = Field(0, ge=0, description="record every this many training samples, during learning "
                             "(0 = none)")
    test_samples: str = Field("first_of_class", description="test samples recorded at every evaluation: "
                              "'first_of_class', 'every:<N>' or 'none'")
    every_steps: int = Field(1, ge=1, description="store traces every this many time steps (spikes and input: every "
                             "step)")
    weights_every: int = Field(0, ge=0, description="weight snapshots every this many training samples (0 = at "
                               "start and end only)")
    weights: Literal["auto", "all", "subset"] = Field("auto", description="weight matrices in snapshots: 'all', "
                                                      "'subset' (recorded neurons x recorded presynaptic neurons) "
                                                      "or 'auto' (all up to 262144 weights per layer)")
    max_mb: float = Field(512.0, ge=0, description="refuse (before compiling) recordings whose estimated size exceeds "
                          "this (MB)")


class Config(Table):
    """A DECOLLE experiment: data, network, neuron, learning rule, training, device and recording."""

    # one path component: a name like "../x" or "/tmp/x" would put the run folder outside <out>
    name: str = Field("run", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}$",
                      description="run name: outputs go to <out>/<name>/<timestamp>/ (letters, digits, _ . + -)")
    seed: int = Field(0, ge=0, description="seed of parameters, sample order and dropout masks")
    data: DataTable = Field(default_factory=DataTable, description="the data set")
    network: NetworkTable = Field(default_factory=NetworkTable, description="layers and mode")
    neuron: NeuronSection = Field(default_factory=NeuronSection, description="neuron constants")
    learning: LearningTable = Field(default_factory=LearningTable, description="learning rule and lr schedule")
    training: TrainingTable = Field(default_factory=TrainingTable, description="training loop")
    device: DeviceTable = Field(default_factory=DeviceTable, description="Brian2 device")
    recording: RecordingTable = Field(default_factory=RecordingTable, description="recordings")

    @model_validator(mode="after")
    def _precision_where_built(self) -> Config:
        # names.PRECISION_DEVICES: which devices build which precision
        precision, device = self.network.precision, self.device.name
        if device not in PRECISION_DEVICES[precision]:
            raise _keyed("network.precision", f"network.precision = {precision!r} is not built on device.name = "
                         f"{device!r} (only on {' or '.join(map(repr, PRECISION_DEVICES[precision]))}); set "
                         f"network.precision = {DEFAULT_PRECISION!r} or device.name = "
                         f"{PRECISION_DEVICES[precision][0]!r}")
        return self

    @model_validator(mode="after")
    def _batches_where_built(self) -> Config:
        # the compiled batched network exists where names.BATCHES_BUILT says (docs/batch.md, docs/event_driven.md
        # 'Batches'); say why not elsewhere
        batch = self.training.batch_size
        if batch == ONLINE_BATCH:
            return self
        mode, optimizer = self.network.mode, self.learning.optimizer
        kinds = {layer.get("kind", "dense") if isinstance(layer, dict) else "dense" for layer in self.network.layers}
        built = {kind: BATCHES_BUILT.get((mode, kind)) for kind in kinds}  # names.BATCHES_BUILT: where batches exist
        unbuilt = sorted(kind for kind, optimizers in built.items() if optimizers is None)
        event_adamax = any(optimizers and optimizer not in optimizers for optimizers in built.values())
        reasons = [why for refused, why in (
            (event_adamax, f"network.mode = 'event' with learning.optimizer = {self.learning.optimizer!r}: "
             f"{ADAMAX_EVENT_BATCH_REASON}; use learning.optimizer = 'sgd' or network.mode = 'exact'"),
            (unbuilt, f"{' and '.join(unbuilt)} layers in network.mode = {mode!r}: {' and '.join(unbuilt)} "
             "layers in batches are built in mode 'exact' only (docs/batch.md); use network.mode = 'exact'"),
            (bool(self.recording.variables), "recording.variables: recordings read one sample per run"),
        ) if refused]
        if reasons:
            raise _keyed("training.batch_size", f"training.batch_size = {batch} is not built for this configuration: "
                         f"{'; '.join(reasons)}. Set training.batch_size = 1 (online learning, one optimiser step "
                         "per time step on one sample), or use mode 'exact' (dense and conv layers; or mode 'event' "
                         "with SGD and dense layers) without recording")
        return self


# ---- reading, overriding, resolving ----------------------------------------------------------------------------
def resolve(raw: dict) -> dict:
    """Validate ``raw`` against :class:`Config` and fill in defaults; raise ConfigError naming every bad key.

    Returns the resolved configuration as plain TOML-able data (time constants in ms become decays).
    """
    if not isinstance(raw, dict):
        raise ConfigError("configuration: expected a table")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("; ".join(error_lines(exc, Config))) from None
    return config.model_dump()


def read_toml(path: str | Path, what: str = "configuration file", error: type[ConfigError] = ConfigError) -> dict:
    """A TOML file as a dict; ``error`` (naming the file) when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: malformed TOML: {exc}") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read, override (``key.path=value``) and resolve a TOML configuration file."""
    raw = read_toml(path)
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


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML (``1e-4``, ``[64, 32]``, ``"abc"``, ``true``), else the text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_path(raw: dict, key: str, value: Any, error: type[ConfigError] = ConfigError) -> None:
    """Set a dotted key in a raw (unresolved) configuration, creating tables on the way."""
    *parents, leaf = key.split(".")
    node = raw
    for parent in parents:
        node = node.setdefault(parent, {})
        if not isinstance(node, dict):
            raise error(f"{key}: {parent} is not a table in the configuration")
    node[leaf] = value


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``--set key.path=value`` (value parsed as TOML, else taken as a string)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. learning.lr=1e-4")
    key, text = (part.strip() for part in item.split("=", 1))
    try:
        set_path(raw, key, parse_value(text))
    except ConfigError as exc:
        raise ConfigError(f"--set {item!r}: {exc}") from None


# ---- keys (sweep axes) -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyInfo:
    """What a dotted key names in the tree.

    Attributes
    ----------
    key : str
    annotation : type
        The key's type (a free-form table for keys inside ``data.params`` and ``learning.surrogate_params``).
    integer : bool
        The key holds an integer (random sweep draws are rounded).
    """

    key: str
    annotation: Any
    integer: bool


def key_info(key: str) -> KeyInfo:
    """The tree's entry for a dotted key; ConfigError naming the key when it is not one (or is a table)."""
    node: Any = Config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not (isinstance(node, type) and issubclass(node, Table)):
            if typing.get_origin(node) is dict:  # free-form tables (data.params, learning.surrogate_params)
                return KeyInfo(key, node, False)
            raise ConfigError(f"{'.'.join(parts[:depth])} is a value, not a table; {key!r} is not a configuration key")
        if part not in node.model_fields:
            inside = ".".join(parts[:depth])
            raise ConfigError(f"{key!r} is not a configuration key; valid keys"
                              f"{' in [' + inside + ']' if inside else ''}: {sorted(node.model_fields)}")
        node = node.model_fields[part].annotation
    if isinstance(node, type) and issubclass(node, Table):
        inside = sorted(f"{key}.{name}" for name in node.model_fields)
        raise ConfigError(f"{key!r} is a table; sweep one of its keys: {inside}")
    return KeyInfo(key, node, node is int)


def keys(model: type[Table] = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the tree (``data.params`` and ``learning.surrogate_params`` as one key each)."""
    out = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Table):
            out += keys(info.annotation, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of a configuration file, for editors; ``data.params`` per data set."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "decolle-brian configuration"
    default = DataTable.model_fields["dataset"].default
    schema["$defs"]["DataTable"]["allOf"] = [
        # an absent dataset is the default one: "properties" alone holds then, "required" says it must be there
        {"if": {"properties": {"dataset": {"const": name}}, **({} if name == default else {"required": ["dataset"]})},
         "then": {"properties": dict.fromkeys(("params", "test_params"), params_table(name).model_json_schema())}}
        for name in DATASETS]
    return schema


# ---- the network of a configuration ----------------------------------------------------------------------------
# the [learning] keys a spec carries (the rest is the training loop's learning-rate schedule)
_SPEC_LEARNING_KEYS = [f.name for f in dataclasses.fields(LearningSpec) if f.name != "surrogate_params"]


def network_spec(config: dict, n_inputs: int, n_classes: int, input_shape: tuple | None = None, *,
                 check_rule: bool = True) -> NetworkSpec:
    """The :class:`NetworkSpec` of a resolved configuration (SpecError -> ConfigError naming the key).

    ``check_rule=False`` skips deriving the learning rule (sympy, Brian2): for readers of a trained network."""
    learning = config["learning"]
    layers, shape = [], tuple(input_shape) if input_shape is not None else None
    for index, layer in enumerate(config["network"]["layers"]):
        where = f"network.layers[{index}]"
        kind = layer.get("kind", "dense") if isinstance(layer, dict) else "dense"
        if isinstance(layer, bool) or not isinstance(layer, int | dict):
            raise ConfigError(f"{where}: expected a layer size or a table with kind 'dense' or 'conv', got {layer!r}")
        if kind == "dense":
            if isinstance(layer, dict):
                extra = sorted(set(layer) - set(DenseLayerTable.model_fields))
                if extra:
                    raise ConfigError(f"{where}: unknown key(s) {extra} for a dense layer (n)")
                layer = layer.get("n")
            layers.append(DenseLayerSpec(layer))
            shape = None
        elif kind == "conv":
            keys_ = set(ConvLayerTable.model_fields)
            required = {k for k, info in ConvLayerTable.model_fields.items() if info.is_required()} - {"kind"}
            extra = sorted(set(layer) - keys_)
            if extra or not required <= set(layer):
                raise ConfigError(f"{where}: a conv layer takes {sorted(keys_ - {'kind'})} ("
                                  f"{' and '.join(sorted(required))} required); got {sorted(layer)}")
            if shape is None:
                raise ConfigError(f"{where}: a conv layer needs an image-shaped input (channels, height, width): "
                                  "the data set's input or another conv layer, not a dense layer")
            conv = ConvLayerSpec(in_shape=shape, **{k: v for k, v in layer.items() if k != "kind"})
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
            neuron=NeuronParams(**{k: config["neuron"][k] for k in NeuronTable.model_fields}),
            learning=LearningSpec(**{k: learning[k] for k in _SPEC_LEARNING_KEYS},
                                  surrogate_params=tuple(sorted(learning["surrogate_params"].items()))),
            input_shape=tuple(input_shape) if input_shape is not None else None,
            mode=config["network"]["mode"], batch_size=config["training"].get("batch_size", ONLINE_BATCH),
            precision=config["network"].get("precision", DEFAULT_PRECISION),
        )
        spec.validate()
    except SpecError as exc:
        raise ConfigError(str(exc)) from None
    if check_rule:
        _check_rule(learning["loss"], learning["surrogate"], tuple(sorted(learning["surrogate_params"].items())))
    return spec


@functools.cache
def _check_rule(loss: str, surrogate: str, surrogate_params: tuple) -> None:
    """Derive the rule once per (loss, surrogate, parameters): a bad expression fails here, not in the compiler
    (cached: a sweep checks every point's configuration)."""
    from decolle_brian.derivation import DerivationError, derive  # noqa: PLC0415 - sympy only when needed

    try:
        derive(loss, surrogate, **dict(surrogate_params))
    except DerivationError as exc:
        raise ConfigError(f"learning: {exc}") from None


def to_toml(config: dict) -> str:
    """A resolved configuration as TOML text."""
    import tomli_w  # noqa: PLC0415

    return tomli_w.dumps(config)


def main(argv: list[str] | None = None) -> int:
    """``python -m decolle_brian.config [FILE]``: write the JSON schema (to stdout without FILE)."""
    import sys  # noqa: PLC0415

    argv = sys.argv[1:] if argv is None else argv
    text = json.dumps(json_schema(), indent=2) + "\n"
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["Config", "ConfigError", "KeyInfo", "apply_override", "json_schema", "key_info", "keys", "load_config",
           "network_spec", "params_table", "precheck", "read_toml", "resolve", "set_path", "to_toml"]
