"""What a run records: a plan checked and sized before anything is compiled.

Built from the ``[recording]`` table of a configuration (docs/recording.md). The plan also says what the
network must monitor (:meth:`RecordingPlan.probes`), so the recorded samples run through the same compiled
network as all the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from decolle_brian.errors import ConfigError
from decolle_brian.network.builder import Probes

#: layer variables read by StateMonitors (LIF layers; a conv layer's pooled units have no r)
TRACE_VARIABLES = ("u", "p", "q", "r", "delta", "bp")
#: everything that can be asked for; 'all' selects every one
VARIABLES = TRACE_VARIABLES + ("sigma", "s", "y", "dw", "W", "b", "opt")
SNAPSHOT_VARIABLES = ("W", "b", "opt")
#: 'auto' stores a whole weight matrix up to this many weights, else the subset
AUTO_FULL_MAX = 262144
HIST_BINS = 40
#: bytes of HDF5 bookkeeping per dataset (header, attributes, index entry), added to the size estimate
DATASET_OVERHEAD = 1200
_SELECTION_SEED = 0x5EC0  # neuron choice has its own generator: recording never changes the training draws


@dataclass
class RecordingPlan:
    """What a run records; built by :meth:`from_config` before the network is compiled.

    Attributes
    ----------
    variables : tuple of str
        Requested variables (see ``VARIABLES``).
    layers : tuple of int
        Recorded layers, 1-based.
    neurons : dict
        Layer (0 = input) -> sorted indices of the neurons whose traces are stored (and the rows and
        columns of subset weight snapshots).
    synapses : dict
        Dense layer -> ``(n, 2)`` array of ``(post, pre)`` synapses whose three factors are stored (``dw``).
    test_indices : numpy.ndarray
        Test samples recorded after every evaluation.
    estimate : dict
        Estimated bytes per part (uncompressed, an upper bound of what is written).
    """

    variables: tuple[str, ...]
    layers: tuple[int, ...]
    neurons: dict[int, np.ndarray]
    synapses: dict[int, np.ndarray]
    train_every: int
    test_indices: np.ndarray
    every_steps: int
    weights_every: int
    weights_full: dict[int, bool]
    max_mb: float
    layer_sizes: list[int]
    layer_kinds: list[str]
    n_classes: int
    burnin: int
    estimate: dict[str, float] = field(default_factory=dict)

    # ---- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict, experiment) -> RecordingPlan | None:
        """The plan of a resolved configuration, or None when nothing is to be recorded.

        Raises
        ------
        ConfigError
            For an impossible request, or one whose estimated size exceeds ``recording.max_mb`` (the
            message gives the estimate): before anything is compiled or written.
        """
        rec = config["recording"]
        variables = _variables(rec["variables"])
        if not variables:
            return None
        spec = experiment.spec
        n_layers = len(spec.layers)
        layers = tuple(sorted(set(rec["layers"]))) or tuple(range(1, n_layers + 1))
        bad = [k for k in layers if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_layers]
        if bad:
            raise ConfigError(f"recording.layers: {bad} are not layers of this network (1 .. {n_layers})")
        sizes = spec.layer_sizes()
        rng = np.random.default_rng([config["seed"], _SELECTION_SEED])
        neurons = {k: _choose(rec["neurons"], sizes[k], rng, f"layer {k}") for k in range(1, n_layers + 1)}
        neurons[0] = _choose(rec["neurons"], sizes[0], rng, "input", candidates=_active_inputs(experiment.train_set))
        kinds = [layer.kind for layer in spec.layers]
        synapses = {}
        if "dw" in variables:
            for k in layers:
                if kinds[k - 1] != "dense":
                    continue  # a conv kernel element acts at many positions: no single synapse to follow
                post, pre = neurons[k], neurons[k - 1]
                chosen = rng.choice(len(post) * len(pre), min(rec["synapses"], len(post) * len(pre)), replace=False)
                synapses[k] = np.stack([post[chosen // len(pre)], pre[chosen % len(pre)]], axis=1)
        test_indices = _test_indices(rec["test_samples"], experiment.test_set)
        sample_variables = set(variables) - set(SNAPSHOT_VARIABLES)
        if sample_variables and rec["train_every"] == 0 and len(test_indices) == 0:
            raise ConfigError(f"recording.variables {sorted(sample_variables)} need recorded samples: set "
                              "recording.train_every > 0 or recording.test_samples")
        weights_full = {}
        for k in range(1, n_layers + 1):
            dense = kinds[k - 1] == "dense"
            n_weights = sizes[k] * sizes[k - 1] if dense else math.prod(spec.layers[k - 1].kernel_shape)
            weights_full[k] = kinds[k - 1] != "dense" or rec["weights"] == "all" or (
                rec["weights"] == "auto" and n_weights <= AUTO_FULL_MAX)
        plan = cls(variables, layers, neurons, synapses, rec["train_every"], test_indices, rec["every_steps"],
                   rec["weights_every"], weights_full, rec["max_mb"], sizes, kinds, spec.n_classes,
                   config["learning"]["burnin"])
        plan.estimate = plan._estimate(config, experiment, spec)
        if plan.mb > plan.max_mb:
            raise ConfigError(
                f"recording: this request needs about {plan.mb:.1f} MB ({plan.describe_estimate()}), more than "
                f"recording.max_mb = {plan.max_mb:g}. Record fewer samples (train_every, test_samples), neurons, "
                "variables or steps (every_steps), or raise max_mb.")
        return plan

    def _estimate(self, config: dict, experiment, spec) -> dict[str, float]:
        tcfg = config["training"]
        epochs, n_train = tcfg["epochs"], len(experiment.train_set)
        total = epochs * n_train
        n_evals = sum(1 for e in range(1, epochs + 1) if e % tcfg["eval_every"] == 0 or e == epochs)
        out = {}
        if set(self.variables) - set(SNAPSHOT_VARIABLES):
            n_train_rec = math.ceil(total / self.train_every) if self.train_every else 0
            out["training samples"] = n_train_rec * self.sample_bytes(experiment.train_set.n_steps)
            out["test samples"] = n_evals * len(self.test_indices) * self.sample_bytes(experiment.test_set.n_steps)
        if set(self.variables) & set(SNAPSHOT_VARIABLES):
            n_snap = 2 + (total // self.weights_every if self.weights_every else 0)
            out["weight snapshots"] = n_snap * self.snapshot_bytes(spec)
        return out

    def sample_bytes(self, n_steps: int) -> int:
        """Uncompressed bytes of one recorded sample of ``n_steps`` steps."""
        m = math.ceil(n_steps / self.every_steps)
        c = self.n_classes
        total = 8 * m * (2 + c) + 2 * n_steps * self.layer_sizes[0]   # t_ms, eta, target, input counts
        n_datasets = 4
        traces = [v for v in self.variables if v in TRACE_VARIABLES or v == "sigma"]
        if self.records_input():
            inputs = len({"p", "q"} & set(self.variables))
            total += 8 * m * len(self.neurons[0]) * inputs
            n_datasets += inputs
        for k in self.layers:
            total += 8 * m * len(self.neurons[k]) * len(traces)
            total += n_steps * self.layer_sizes[k] * ("s" in self.variables)
            total += 8 * m * c * ("y" in self.variables)
            total += 8 * m * 5 * len(self.synapses.get(k, ()))
            n_datasets += len(traces) + ("s" in self.variables) + ("y" in self.variables) + 5 * (k in self.synapses)
        return total + DATASET_OVERHEAD * (n_datasets + 1)

    def snapshot_bytes(self, spec) -> int:
        """Uncompressed bytes of one weight snapshot."""
        total = 8 * 2
        for k in self.layers:
            layer = spec.layers[k - 1]
            if layer.kind == "dense":
                weights = (self.layer_sizes[k] * self.layer_sizes[k - 1] if self.weights_full[k]
                           else len(self.neurons[k]) * len(self.neurons[k - 1]))
                n_bias = layer.n
            else:
                weights, n_bias = math.prod(layer.kernel_shape), layer.channels
            per = 8 * weights * ("W" in self.variables) + 8 * n_bias * ("b" in self.variables)
            total += per * (1 + ("opt" in self.variables)) + 8 * (2 * HIST_BINS + 1) * ("W" in self.variables)
        return total

    @property
    def mb(self) -> float:
        return sum(self.estimate.values()) / 1e6

    def describe_estimate(self) -> str:
        return ", ".join(f"{name} {value / 1e6:.1f} MB" for name, value in self.estimate.items() if value)

    def describe(self) -> str:
        """One line for the log before the run."""
        return (f"recording {', '.join(self.variables)} of layers {list(self.layers)}: about {self.mb:.1f} MB "
                f"uncompressed ({self.describe_estimate() or 'nothing'}; cap recording.max_mb = {self.max_mb:g})")

    # ---- what the network must monitor ---------------------------------------------------------------------
    def monitored(self) -> dict[int, np.ndarray]:
        """Layer (0 = input) -> neurons the monitors record: the recorded ones and the presynaptic
        neurons of recorded synapses."""
        out = {k: (self.neurons[k] if k in self.layers else np.zeros(0, dtype=int))
               for k in range(len(self.layer_sizes))}
        out[0] = self.neurons[0] if self.records_input() else np.zeros(0, dtype=int)
        for k, pairs in self.synapses.items():
            out[k - 1] = np.union1d(out[k - 1], pairs[:, 1]).astype(int)
        return out

    def records_input(self) -> bool:
        return 1 in self.layers and bool({"p", "q"} & set(self.variables))

    def probes(self) -> Probes | None:
        """Probes of the recording network, or None when the plain network records everything needed."""
        wanted = set(self.variables)
        probed = {v for v in TRACE_VARIABLES if v in wanted}
        probed |= {"u"} if "sigma" in wanted else set()
        probed |= {"u", "bp", "p"} if self.synapses else set()
        input_vars = ({"p", "q"} & wanted) if self.records_input() else set()
        input_vars |= {"p"} if 1 in self.synapses else set()
        if not probed and not input_vars and "s" not in wanted:
            return None
        monitored = self.monitored()
        n_layers = len(self.layer_sizes) - 1
        return Probes(
            variables=tuple(v for v in TRACE_VARIABLES if v in probed),
            neurons=tuple(tuple(int(i) for i in monitored[k]) for k in range(1, n_layers + 1)),
            input_variables=tuple(v for v in ("q", "p") if v in input_vars),
            input_neurons=tuple(int(i) for i in monitored[0]),
            synapses=tuple(tuple(map(tuple, self.synapses[k].tolist())) if k in self.synapses else ()
                           for k in range(1, n_layers + 1)),
            spikes="s" in wanted,
        )


def _variables(requested: list) -> tuple[str, ...]:
    if any(not isinstance(v, str) for v in requested):
        raise ConfigError(f"recording.variables: expected names (strings), got {requested!r}")
    if "all" in requested:
        return VARIABLES
    unknown = sorted(set(requested) - set(VARIABLES))
    if unknown:
        raise ConfigError(f"recording.variables: unknown {unknown}; choose from {list(VARIABLES)} or 'all'")
    return tuple(v for v in VARIABLES if v in requested)


def _choose(neurons, n: int, rng: np.random.Generator, what: str, candidates: np.ndarray | None = None) -> np.ndarray:
    """Recorded neuron indices: 'all', a list (checked), or a count drawn from ``candidates`` (default all)."""
    if isinstance(neurons, str):
        if neurons != "all":
            raise ConfigError(f"recording.neurons: expected a count, a list of indices or 'all', got {neurons!r}")
        return np.arange(n)
    if isinstance(neurons, list) and what != "input":
        bad = [i for i in neurons if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n]
        if bad or not neurons:
            raise ConfigError(f"recording.neurons: {bad or 'an empty list'} are not neurons of {what} (0 .. {n - 1})")
        return np.unique(np.asarray(neurons, dtype=int))
    count = len(neurons) if isinstance(neurons, list) else neurons
    if count < 1:
        raise ConfigError(f"recording.neurons: must be >= 1, got {count}")
    pool = np.arange(n) if candidates is None or len(candidates) == 0 else candidates
    return np.sort(rng.choice(pool, min(count, len(pool)), replace=False)).astype(int)


def _active_inputs(train_set, n_samples: int = 8) -> np.ndarray:
    """Input neurons with events in the first training samples: recorded input traces are rarely all zero."""
    activity = None
    for i in range(min(n_samples, len(train_set))):
        counts = np.asarray(train_set[i][0]).reshape(train_set.n_steps, -1).sum(axis=0)
        activity = counts if activity is None else activity + counts
    return np.zeros(0, dtype=int) if activity is None else np.flatnonzero(activity)


def _test_indices(text: str, test_set) -> np.ndarray:
    if text == "none":
        return np.zeros(0, dtype=int)
    labels = np.asarray(test_set.labels)
    if text == "first_of_class":
        return np.array(sorted(int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)), dtype=int)
    if text.startswith("every:"):
        try:
            step = int(text.split(":", 1)[1])
        except ValueError:
            step = 0
        if step >= 1:
            return np.arange(0, len(labels), step)
    raise ConfigError(f"recording.test_samples: expected 'first_of_class', 'every:<N>' (N >= 1) or 'none', "
                      f"got {text!r}")

