"""What a DECOLLE network is: its structure and constants, checked before anything is compiled.

A spec is plain, frozen data. ``NetworkSpec.structure_key()`` says which parts change the compiled
code (layer shapes, loss, surrogate, optimiser, dropout on/off); everything else (time constants, learning
rate, weights, inputs) is set at run time without recompiling.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from decolle_brian.errors import SpecError
from decolle_brian.names import (
    ADAMAX_EVENT_BATCH_REASON,
    BATCHES_BUILT,
    DEFAULT_PRECISION,
    DT_MS,
    LOSSES,
    MODES,
    OPTIMIZERS,
    PRECISIONS,
    SURROGATES,
)
from decolle_brian.strict import Table, error_lines


def _check(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise SpecError(f"{field_name}: {message}")


def _finite(value, field_name: str) -> float:
    _check(isinstance(value, int | float) and not isinstance(value, bool), field_name,
           f"must be a number, got {value!r}")
    _check(math.isfinite(value), field_name, f"must be finite, got {value!r}")
    return float(value)


def check_table(table: type[Table], values: dict, prefix: str) -> None:
    """Validate ``values`` against a typed table; raise :class:`SpecError` naming every bad key."""
    try:
        table.model_validate(values)
    except ValidationError as exc:
        raise SpecError("; ".join(error_lines(exc, table, prefix))) from None


def _defaults(table: type[Table]) -> dict:
    """Defaults of a table's keys (those with a default value, not a factory)."""
    return {name: info.default for name, info in table.model_fields.items() if info.default_factory is None}


# ---- the typed tables: every default, bound and description of the network's constants ----------------------
Decay = Annotated[float, Field(gt=0, lt=1)]
PositiveInt = Annotated[int, Field(ge=1)]


class NeuronTable(Table):
    r"""``[neuron]``: per-step decay factors of the DECOLLE neuron (dt = 1 ms), as the reference names them."""

    alpha: Decay = Field(0.97, description="membrane trace decay per 1 ms step, exp(-dt/tau_mem), in (0, 1) "
                         "(0.97: tau_mem 32.8 ms)")
    beta: Decay = Field(0.92, description="synaptic trace decay per step, exp(-dt/tau_syn), in (0, 1) "
                        "(0.92: tau_syn 12.0 ms)")
    alpharp: Decay = Field(0.65, description="refractory decay per step, exp(-dt/tau_ref), in (0, 1) "
                           "(0.65: tau_ref 2.3 ms)")
    wrp: float = Field(1.0, ge=0, description="refractory jump size")


class LearningTable(Table):
    """``[learning]``: the local loss, the surrogate, the optimiser, the readout constants (what a spec carries)
    and the learning-rate schedule (the training loop's)."""

    loss: str = Field("smoothl1", min_length=1,
                      description=f"local loss: one of {sorted(LOSSES)} or an expression of y and target")
    surrogate: str = Field("fast_sigmoid", min_length=1,
                           description=f"surrogate gradient: one of {sorted(SURROGATES)} or an expression of u")
    # int stays int: the parameters are part of the structure key of a stored run
    surrogate_params: dict[str, int | float] = Field(default_factory=dict, description="surrogate parameters "
                                                     "(slope, width, or the names of an expression's parameters)")
    optimizer: Literal[OPTIMIZERS] = Field("adamax", description="optimiser")
    lr: float = Field(1e-3, ge=0, description="learning rate")
    lr_drop_factor: float = Field(2.0, ge=1, description="divide lr by this every lr_drop_interval epochs")
    lr_drop_interval: int = Field(20, ge=1, description="epochs between lr drops")
    beta2: float = Field(0.95, ge=0, lt=1, description="Adamax infinity-norm decay, in [0, 1)")
    eps: float = Field(1e-8, gt=0, description="Adamax epsilon")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout probability on the readout path (training "
                           "only), in [0, 1)")
    lc_ampl: float = Field(0.5, gt=0, description="readout init amplitude: G, g ~ U(+-lc_ampl/sqrt(fan_in))")
    burnin: int = Field(0, ge=0, description="steps per sample simulated without learning")


class DenseLayerTable(Table):
    """A dense layer given as a table (a plain integer ``n`` means the same)."""

    kind: Literal["dense"] = Field("dense", description="layer kind")
    n: PositiveInt = Field(description="number of neurons")


class ConvLayerTable(Table):
    """A convolutional layer: stride 1, zero padding, then a non-overlapping max-pool on U."""

    kind: Literal["conv"] = Field(description="layer kind")
    channels: PositiveInt = Field(description="output channels")
    kernel: PositiveInt = Field(description="square kernel size k (the kernel is c_out x c_in x k x k)")
    padding: int = Field(0, ge=0, description="zeros added on every side")
    pool: PositiveInt = Field(1, description="max-pool window (and stride) on U before the spike; 1 = none")


def decay(tau_ms: float, dt_ms: float = DT_MS) -> float:
    """Per-step decay factor ``exp(-dt/tau)`` of a time constant in ms."""
    return math.exp(-dt_ms / tau_ms)


_NEURON = _defaults(NeuronTable)


@dataclass(frozen=True)
class NeuronParams:
    r"""Per-step decay factors of the DECOLLE neuron (dt = 1 ms), as the reference names them.

    ``alpha = exp(-dt/tau_mem)``, ``beta = exp(-dt/tau_syn)``, ``alpharp = exp(-dt/tau_ref)``;
    ``wrp`` scales the refractory jump. Defaults and bounds: :class:`NeuronTable` (every published DECOLLE
    configuration).
    """

    alpha: float = _NEURON["alpha"]
    beta: float = _NEURON["beta"]
    alpharp: float = _NEURON["alpharp"]
    wrp: float = _NEURON["wrp"]

    def validate(self, prefix: str = "neuron") -> None:
        check_table(NeuronTable, asdict(self), prefix)

    @staticmethod
    def from_taus(tau_mem_ms: float, tau_syn_ms: float, tau_ref_ms: float, wrp: float = 1.0, dt_ms: float = DT_MS):
        """Decay factors from time constants in ms (each must be > 0)."""
        for name, tau in (("tau_mem", tau_mem_ms), ("tau_syn", tau_syn_ms), ("tau_ref", tau_ref_ms)):
            _check(_finite(tau, f"neuron.{name}") > 0, f"neuron.{name}", f"must be > 0 ms, got {tau}")
        return NeuronParams(decay(tau_mem_ms, dt_ms), decay(tau_syn_ms, dt_ms), decay(tau_ref_ms, dt_ms), wrp)


def check_event_neuron(neuron: NeuronParams, prefix: str = "neuron") -> None:
    """Mode "event" needs distinct trace decays: P between events is A alpha^n + B beta^n, B ~ 1/(beta - alpha)."""
    _check(abs(neuron.alpha - neuron.beta) >= 1e-6, f"{prefix}.beta",
           f"mode 'event' needs alpha != beta (tau_mem != tau_syn; |alpha - beta| >= 1e-6), got alpha = "
           f"{neuron.alpha}, beta = {neuron.beta}; change one time constant slightly or use mode 'exact'")


@dataclass(frozen=True)
class DenseLayerSpec:
    """Fully connected LIF layer of ``n`` neurons with its own fixed random readout."""

    n: int
    kind: str = "dense"

    def validate(self, prefix: str) -> None:
        check_table(DenseLayerTable, {"kind": self.kind, "n": self.n}, prefix)


@dataclass(frozen=True)
class ConvLayerSpec:
    r"""Convolutional LIF layer with one shared kernel per (in-channel, out-channel) and its own readout.

    Stride 1, ``padding`` zeros on every side, then a non-overlapping ``pool`` x ``pool`` max-pool on U
    before the spike (floor mode; ``pool = 1``: none)::

        U_full[o, y, x] = sum_{c, a, e} K[o, c, a, e] P_pad[c, y + a, x + e] + b[o] + R[o, y, x]
        u[o, Y, X] = max over the window (Y, X) of U_full,   S = Heaviside(u)

    The pooled spikes (``n`` units, C order (channel, row, col)) go to the readout and the next layer.

    Attributes
    ----------
    channels : int
        Output channels ``c_out``.
    kernel : int
        Square kernel size ``k`` (the kernel is ``(c_out, c_in, k, k)``).
    in_shape : tuple of int
        Input shape ``(c_in, H, W)``: the network's ``input_shape`` or the previous layer's ``out_shape``.
    padding, pool : int
    """

    channels: int
    kernel: int
    in_shape: tuple[int, int, int]
    padding: int = ConvLayerTable.model_fields["padding"].default
    pool: int = ConvLayerTable.model_fields["pool"].default
    kind: str = "conv"

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """``(c_out, c_in, k, k)``."""
        return (self.channels, self.in_shape[0], self.kernel, self.kernel)

    @property
    def full_shape(self) -> tuple[int, int, int]:
        """Unpooled shape ``(c_out, H + 2 padding - k + 1, W + 2 padding - k + 1)``."""
        _, h, w = self.in_shape
        return (self.channels, h + 2 * self.padding - self.kernel + 1, w + 2 * self.padding - self.kernel + 1)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Pooled shape ``(c_out, H_full // pool, W_full // pool)``."""
        c, h, w = self.full_shape
        return (c, h // self.pool, w // self.pool)

    @property
    def n(self) -> int:
        """Number of pooled output units (the readout path and the next layer's input)."""
        return math.prod(self.out_shape)

    @property
    def n_full(self) -> int:
        """Number of full-resolution units."""
        return math.prod(self.full_shape)

    def tap_positions(self) -> tuple[list[range], list[range]]:
        """Where each kernel tap reads inside the input (taps on the zero padding do not exist).

        Returns
        -------
        rows, cols : list of range
            ``rows[a]``: the output rows y with ``0 <= y + a - padding < H`` (input row inside), for each
            kernel row a; ``cols[e]`` likewise for the kernel columns and the width W.
        """
        _, h, w = self.in_shape
        _, hf, wf = self.full_shape
        pad = self.padding
        rows = [range(max(0, pad - a), min(hf, h + pad - a)) for a in range(self.kernel)]
        cols = [range(max(0, pad - e), min(wf, w + pad - e)) for e in range(self.kernel)]
        return rows, cols

    @property
    def n_synapses(self) -> int:
        """Number of conv synapses: one per output channel, input channel, and kernel tap at every output
        position where it reads inside the input (``tap_positions``)."""
        rows, cols = self.tap_positions()
        return self.channels * self.in_shape[0] * sum(map(len, rows)) * sum(map(len, cols))

    def validate(self, prefix: str) -> None:
        check_table(ConvLayerTable, {name: getattr(self, name) for name in ConvLayerTable.model_fields}, prefix)
        _check(isinstance(self.in_shape, tuple | list) and len(self.in_shape) == 3
               and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in self.in_shape),
               f"{prefix}.in_shape", f"must be a tuple (channels, height, width) of positive integers, "
               f"got {self.in_shape!r}")
        _check(min(self.full_shape[1:]) > 0, f"{prefix}.kernel",
               f"kernel {self.kernel} with padding {self.padding} does not fit the input {self.in_shape}")
        _check(min(self.out_shape[1:]) > 0, f"{prefix}.pool",
               f"pool {self.pool} is larger than the convolution output {self.full_shape[1:]}")


_LEARNING = _defaults(LearningTable)


@dataclass(frozen=True)
class LearningSpec:
    """The local loss, the surrogate, the optimiser and the readout constants.

    ``lr`` and the neuron constants are run-time values; the rest is compiled in. Defaults and bounds:
    :class:`LearningTable`.
    """

    loss: str = _LEARNING["loss"]
    surrogate: str = _LEARNING["surrogate"]
    surrogate_params: tuple[tuple[str, float], ...] = ()
    optimizer: str = _LEARNING["optimizer"]
    lr: float = _LEARNING["lr"]
    beta2: float = _LEARNING["beta2"]
    eps: float = _LEARNING["eps"]
    dropout: float = _LEARNING["dropout"]
    lc_ampl: float = _LEARNING["lc_ampl"]
    burnin: int = _LEARNING["burnin"]

    def validate(self, prefix: str = "learning") -> None:
        values = asdict(self)  # the schedule keys (not part of a spec) take their defaults
        try:
            values["surrogate_params"] = dict(self.surrogate_params)
        except (TypeError, ValueError):
            raise SpecError(f"{prefix}.surrogate_params: expected (name, value) pairs, got "
                            f"{self.surrogate_params!r}") from None
        check_table(LearningTable, values, prefix)


@dataclass(frozen=True)
class NetworkSpec:
    """A DECOLLE network: input size, layers (each with a local readout), classes, constants, learning."""

    n_inputs: int
    layers: tuple = ()
    n_classes: int = 10
    neuron: NeuronParams = field(default_factory=NeuronParams)
    learning: LearningSpec = field(default_factory=LearningSpec)
    input_shape: tuple | None = None  # (channels, height, width) of the input; needed before a conv layer
    # "exact": every synapse every step; "event": work driven by events (docs/event_driven.md, docs/conv.md)
    mode: str = "exact"
    # samples simulated side by side with shared weights, one optimiser step per step on their mean gradient
    # (docs/batch.md); 1 = online learning. Compiled in: every layer holds batch_size x n units.
    batch_size: int = 1
    # floating-point type of the compiled network's state and arithmetic: "float64" or "float32" (docs/batch.md,
    # "float32"; C++ standalone only, names.PRECISION_DEVICES). Compiled in: another build folder
    precision: str = DEFAULT_PRECISION

    def validate(self) -> NetworkSpec:
        """Check every field; raise :class:`SpecError` naming the first bad one. Returns self."""
        _check(isinstance(self.n_inputs, int) and self.n_inputs > 0, "network.n_inputs",
               f"must be a positive integer, got {self.n_inputs!r}")
        if self.input_shape is not None:
            _check(isinstance(self.input_shape, tuple | list)
                   and all(isinstance(v, int) and v > 0 for v in self.input_shape)
                   and math.prod(self.input_shape) == self.n_inputs, "network.input_shape",
                   f"must be a tuple of positive integers whose product is n_inputs = {self.n_inputs}, "
                   f"got {self.input_shape!r}")
        _check(len(self.layers) > 0, "network.layers", "a DECOLLE network needs at least one layer")
        # what the next layer receives: a shape (input_shape, a conv output) or, flat, only a size
        shape, size = self.input_shape, self.n_inputs
        for index, layer in enumerate(self.layers):
            _check(hasattr(layer, "validate"), f"network.layers[{index}]", f"not a layer spec: {layer!r}")
            layer.validate(f"network.layers[{index}]")
            if isinstance(layer, ConvLayerSpec):
                fits = (tuple(shape) == tuple(layer.in_shape) if shape is not None
                        else math.prod(layer.in_shape) == size)
                _check(fits, f"network.layers[{index}].in_shape",
                       f"{layer.in_shape} does not fit its input ({shape if shape is not None else size})")
                shape = layer.out_shape
            else:
                shape = None
            size = layer.n
        _check(isinstance(self.n_classes, int) and self.n_classes >= 2, "network.n_classes",
               f"must be an integer >= 2, got {self.n_classes!r}")
        self.neuron.validate()
        self.learning.validate()
        _check(self.mode in MODES, "network.mode", f"unknown mode {self.mode!r}; choose one of {list(MODES)}")
        if self.mode == "event":
            # a dense layer's lazy rule needs its presynaptic trace modes, which a conv layer's output lacks
            for index, (before, layer) in enumerate(zip(self.layers[:-1], self.layers[1:], strict=True), start=1):
                _check(not (before.kind == "conv" and layer.kind == "dense"), f"network.layers[{index}]",
                       "mode 'event' supports no dense layer after a conv layer (this one follows layer "
                       f"{index - 1}, a conv layer); use mode 'exact' or conv layers only")
            check_event_neuron(self.neuron)
        _check(isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool) and self.batch_size >= 1,
               "network.batch_size", f"must be an integer >= 1, got {self.batch_size!r}")
        _check(self.precision in PRECISIONS, "network.precision",
               f"unknown precision {self.precision!r}; choose one of {list(PRECISIONS)} (float32: the same model in "
               "single precision, C++ standalone only; docs/batch.md)")
        if self.precision != DEFAULT_PRECISION:
            # float32 exists where a test compares it with the float32 oracle: batched dense layers in mode exact
            kinds = sorted({layer.kind for layer in self.layers})
            _check(self.mode == "exact" and self.batch_size > 1 and kinds == ["dense"], "network.precision",
                   f"{self.precision!r} is built for batched dense networks in mode 'exact' only (batch_size > 1, "
                   "dense layers: what is tested against the float32 oracle, docs/batch.md); this network has mode "
                   f"{self.mode!r}, batch_size {self.batch_size}, {' and '.join(kinds)} layers. Use "
                   f"network.precision = {DEFAULT_PRECISION!r} for it")
        if self.batch_size > 1:
            # the batched network exists where names.BATCHES_BUILT says (docs/batch.md, docs/event_driven.md
            # 'Batches' say why not elsewhere)
            built_kinds = sorted(kind for mode, kind in BATCHES_BUILT if mode == self.mode)
            for index, layer in enumerate(self.layers):
                optimizers = BATCHES_BUILT.get((self.mode, layer.kind), ())
                _check(self.learning.optimizer in optimizers or not optimizers, "network.batch_size",
                       f"batches (batch_size = {self.batch_size}) in mode {self.mode!r} need learning.optimizer = "
                       f"{' or '.join(map(repr, optimizers))}, not {self.learning.optimizer!r}: "
                       f"{ADAMAX_EVENT_BATCH_REASON}. Use learning.optimizer = 'sgd', mode 'exact' (Adamax at every "
                       "step on the batch mean), or batch_size = 1 (mode 'event' steps Adamax once per sample)")
                _check(bool(optimizers), f"network.layers[{index}]",
                       f"batches (batch_size = {self.batch_size}) in mode {self.mode!r} are built for "
                       f"{' and '.join(built_kinds)} layers only (this one is {layer.kind!r}); use mode 'exact' "
                       "(dense and conv layers in batches) or batch_size = 1")
        return self

    def layer_sizes(self) -> list[int]:
        """Number of neurons per layer, input first."""
        return [self.n_inputs] + [layer.n for layer in self.layers]

    def structure_key(self) -> str:
        """Hash of everything that is compiled into the code (not run-time values)."""
        learning = self.learning
        structure = {
            "n_inputs": self.n_inputs, "n_classes": self.n_classes,
            **({"input_shape": list(self.input_shape)} if self.input_shape is not None else {}),
            "layers": [asdict(layer) for layer in self.layers],
            "loss": learning.loss, "surrogate": learning.surrogate,
            "surrogate_params": list(learning.surrogate_params), "optimizer": learning.optimizer,
            "beta2": learning.beta2, "eps": learning.eps, "dropout": learning.dropout > 0,
            **({"mode": self.mode} if self.mode != "exact" else {}),  # exact builds keep their names
            **({"batch_size": self.batch_size} if self.batch_size != 1 else {}),  # online builds keep theirs
            # float64 builds keep their names; a float32 build is another folder
            **({"precision": self.precision} if self.precision != DEFAULT_PRECISION else {}),
        }
        return hashlib.sha1(json.dumps(structure, sort_keys=True).encode()).hexdigest()[:12]
