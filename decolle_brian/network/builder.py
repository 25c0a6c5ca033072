"""Build the Brian2 objects of a DECOLLE network from ``equations/`` and a derived rule.

The builder only assembles: the dynamics come from the ``.eq`` files, the plasticity from
:mod:`decolle_brian.derivation`. Each (mode, layer kind) has a builder class (registered in
:mod:`decolle_brian.network.registry`) that creates the layer's neurons and its forward synapses from the
previous layer's traces; the fixed readout, its error and the learning signal are the same for every kind
and are built here. The mode (:class:`~decolle_brian.network.hooks.NetworkMode`, ``NetworkSpec.mode``)
feeds the inputs and adds its own per-step statements; the schedule of one step is in
:mod:`decolle_brian.network.schedule`.

``NetworkSpec.mode = "event"`` swaps in the event-driven input group and dense layers of
:mod:`decolle_brian.network.event` (its docstring and docs/event_driven.md give their extra schedule).
"""

from __future__ import annotations

import numpy as np
from brian2 import (
    EventMonitor,
    NeuronGroup,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    TimedArray,
    defaultclock,
)
from brian2.utils.stringtools import word_substitute

from decolle_brian.derivation import DerivedRule
from decolle_brian.emission import dense_code
from decolle_brian.equations_io import load_model
from decolle_brian.names import DEFAULT_PRECISION
from decolle_brian.network import catalog  # noqa: F401 - every layer builder and mode registers
from decolle_brian.network.batch import BATCHED_DENSE
from decolle_brian.network.hooks import CodeGeneration
from decolle_brian.network.objects import LayerObjects, ParamBinding, Probes
from decolle_brian.network.packed import PackedInput
from decolle_brian.network.proofs import vanishes_at_zero
from decolle_brian.network.registry import layer_builder_for, network_mode_for
from decolle_brian.network.schedule import DT, LEARNING_VARIABLES, METHOD, ORDER, reschedule, tau
from decolle_brian.network.spec import NetworkSpec

__all__ = ["BrianNetwork", "LayerObjects", "ParamBinding", "Probes"]

#: layer kind -> the kind whose builder makes it batched (NetworkSpec.batch_size > 1; the spec refuses others);
#: the conv builder batches its own units (network/conv.py)
BATCHED_KINDS = {"dense": BATCHED_DENSE, "conv": "conv"}


def row_skips(synapses, variable: str = "s_pre") -> dict[str, str]:
    """Summed variables of ``synapses`` whose summand is proven 0 where presynaptic ``variable`` is 0.

    A readout ``y_syn_post = G mask_pre s_pre`` of the step's spikes: a device may skip the rows of the units
    that did not spike (:meth:`~decolle_brian.network.hooks.CodeGeneration.all_to_all_sums`)."""
    return {name: variable for name, updater in synapses.summed_updaters.items()
            if vanishes_at_zero(updater.expression.code, variable)}


def _eqs(*names_sections: tuple[str, str]) -> str:
    return "\n".join(load_model(name)[section] for name, section in names_sections)


class BrianNetwork:
    """All Brian objects of one DECOLLE network for chunks of ``chunk_steps`` steps.

    Parameters
    ----------
    spec : NetworkSpec
    rule : DerivedRule
        The derived plasticity (from :func:`decolle_brian.derivation.derive`).
    chunk_steps : int
        Steps per run; every run gets its own inputs (event counts per step, targets, learning rate per
        step, sample starts, dropout masks) through TimedArrays of this length.
    probes : tuple of str or Probes
        Layer variables recorded for every neuron at every step (e.g. ``("u", "s", "delta")``), after the
        spikes and readout of the step and before its learning step (so ``u`` is U[t]); the learning
        variables (LEARNING_VARIABLES) after the learning step. A :class:`Probes` chooses neurons, input
        traces, synapse weights and spike monitors.
    codegen : CodeGeneration, optional
        The device's code generation hooks (a backend of :mod:`decolle_brian.backends`); default: Brian's
        generic code.
    """

    def __init__(self, spec: NetworkSpec, rule: DerivedRule, chunk_steps: int,
                 probes: tuple[str, ...] | Probes = (), codegen: CodeGeneration | None = None):
        spec.validate()
        if chunk_steps <= 0:
            raise ValueError(f"chunk_steps must be positive, got {chunk_steps}")
        defaultclock.dt = DT
        self.spec, self.rule, self.chunk_steps = spec, rule, chunk_steps
        self.codegen = codegen or CodeGeneration()
        self.probe_spec = Probes.of(probes)
        # layer builders may probe their own groups (conv: full resolution)
        self.probes = self.probe_spec.variables if self.probe_spec.conv_full else ()
        self.rule_code = dense_code(rule, spec.learning.optimizer, mode=spec.mode, batch_size=spec.batch_size)
        self.bindings: dict[str, ParamBinding] = {}
        self.constant_bindings: list = []
        self.objects: list = []
        self.with_dropout = spec.learning.dropout > 0
        n_classes = spec.n_classes
        # batch_size > 1: every group holds batch_size copies of its units, unit i of sample b at i * B + b
        # (network/batch.py); inputs, targets and masks come in that layout
        self.batch_size = batch = spec.batch_size
        self.namespace = {
            "n_classes": float(n_classes), "beta2": spec.learning.beta2, "eps": spec.learning.eps,
        }
        if spec.precision != DEFAULT_PRECISION:
            # compiled-in constants of the spec's type (Brian gives a Python float a double): float32 code
            # then computes in float32 (float64 builds keep their Python floats, code unchanged)
            real = np.dtype(spec.precision).type
            self.namespace = {name: real(value) for name, value in self.namespace.items()}
        # per-chunk inputs
        # the input counts as the device sends them (generic: a packed TimedArray, network/packed.py)
        self.counts = self.codegen.input_counts("counts_in", chunk_steps, spec.n_inputs * batch)
        self.masks: dict[str, PackedInput] = {}  # per group with dropout: its mask bits
        self.targets = TimedArray(np.zeros((chunk_steps, n_classes * batch)), dt=DT, name="targets")
        self.eta = TimedArray(np.zeros(chunk_steps), dt=DT, name="eta")
        self.new_sample = TimedArray(np.zeros(chunk_steps), dt=DT, name="new_sample")
        self.namespace.update(self.counts.namespace())
        self.namespace.update(targets=self.targets, eta=self.eta, new_sample=self.new_sample)

        self.mode = network_mode_for(spec.mode)(self)  # its per-run arrays, input group and group hooks
        self.input = self.mode.input_group()

        self.layers: list[LayerObjects] = []
        source = self.input
        for index, layer in enumerate(spec.layers, start=1):
            kind = layer.kind if batch == 1 else BATCHED_KINDS[layer.kind]
            builder = layer_builder_for(spec.mode, kind)(self, index, layer, source)
            objects = builder.build()
            self.build_readout(index, objects)
            self.layers.append(objects)
            self.objects += [objects.forward]
            source = objects.group
        self.y_monitors = [StateMonitor(lo.readout, "y", record=True, when="after_resets", order=ORDER["monitors"],
                                        name=f"readout{k}_y") for k, lo in enumerate(self.layers, start=1)]
        self.count_monitors = [StateMonitor(lo.counter, "n_spikes", record=0 if batch == 1 else True,
                                            when="after_resets",
                                            order=ORDER["monitors"],
                                            name=f"layer{k}_count") for k, lo in enumerate(self.layers, start=1)]
        self.probe_monitors = []
        self.build_probes(self.probe_spec)
        self.objects += self.y_monitors + self.count_monitors + self.probe_monitors

    def build_probes(self, probes: Probes) -> None:
        """StateMonitors of layer and input variables and synapse weights, SpikeMonitors (see Probes)."""
        unknown = [v for v in probes.variables if not any(v in lo.group.variables for lo in self.layers)]
        if unknown:
            raise ValueError(f"Probes: no layer has the variable(s) {unknown}")
        for k, lo in enumerate(self.layers, start=1):
            record = probes.layer_neurons(k)
            if record is not True and len(record) == 0:
                continue
            present = [v for v in probes.variables if v in lo.group.variables]  # a conv layer has no r
            state = [v for v in present if v not in LEARNING_VARIABLES]
            learning = [v for v in present if v in LEARNING_VARIABLES]
            for variables, slot in ((state, "probes"), (learning, "learning_probes")):
                if variables:
                    self.probe_monitors.append(StateMonitor(lo.group, variables, record=record, when="after_resets",
                                                            order=ORDER[slot], name=f"layer{k}_{slot}"))
        self.input_monitor = None
        if probes.input_variables:
            record = True if probes.input_neurons is None else np.asarray(probes.input_neurons, dtype=int)
            self.input_monitor = StateMonitor(self.input, list(probes.input_variables), record=record,
                                              when="after_resets", order=ORDER["probes"], name="input_probes")
            self.objects.append(self.input_monitor)
        self.synapse_monitors = [None] * len(self.layers)
        for k, pairs in enumerate(probes.synapses, start=1):
            if not len(pairs):
                continue
            if self.spec.layers[k - 1].kind != "dense" or self.batch_size > 1:
                raise ValueError(f"Probes: synapse weights can be recorded in dense layers of batch 1 only (layer {k})")
            post, pre = np.asarray(pairs, dtype=int).reshape(-1, 2).T
            index = pre * self.spec.layers[k - 1].n + post  # pre-major order of DenseLayerBuilder
            # after the weight step of the step: w[t] - w[t-1] is the change made at step t
            mon = StateMonitor(self.layers[k - 1].forward, "w", record=index, when=self.mode.synapse_probe_slot,
                               order=ORDER["learning_probes"], name=f"forward{k}_w")
            self.mode.probe_synapses(k, pre, post)
            self.synapse_monitors[k - 1] = mon
            self.objects.append(mon)
        self.spike_monitors = []
        if probes.spikes:
            self.spike_monitors = [SpikeMonitor(lo.group, name=f"layer{k}_spikes")
                                   for k, lo in enumerate(self.layers, start=1)]
            self.objects += self.spike_monitors

    # ---- groups --------------------------------------------------------------------------------------------
    def trace_group(self, n: int, name: str, extra: str, **kwargs) -> NeuronGroup:
        """A group with the presynaptic traces of trace.eq (+ extra equations) and shared constants."""
        constants = (
            "tau_mem : second (shared, constant)\n"
            "tau_syn : second (shared, constant)\n"
            "decay_syn : 1 (shared, constant)  # exp(-dt/tau_syn), used by the event jump\n"
        )
        group = NeuronGroup(n, _eqs(("trace", "equations")) + "\n" + extra + "\n" + constants,
                            method=METHOD, name=name, namespace=self.namespace, **kwargs)
        state = [v for v in ("q", "p", "r", "s") if v in group.variables]
        group.run_regularly("\n".join(f"{v} = {v} * (1 - new_sample(t))" for v in state),
                            when="start", order=0, name=f"{name}_sample_reset")
        self.objects.append(group)
        self.bind_constant(group, "tau_mem", lambda p: tau(p.alpha))
        self.bind_constant(group, "tau_syn", lambda p: tau(p.beta))
        self.bind_constant(group, "decay_syn", lambda p: p.beta)
        return group

    def mask_equations(self, name: str, n: int) -> str:
        """Dropout: declarations of group ``name``'s per-step mask bits (packed.py) and their gain 1/(1-p)."""
        if not self.with_dropout:
            return ""
        self.masks[name] = PackedInput(f"{name}_masks", self.chunk_steps, n, bits=1, prefix="mask")
        self.namespace[f"{name}_masks"] = self.masks[name].array
        return self.masks[name].equations() + "mask_gain : 1 (shared)  # 1 / (1 - dropout) while learning, else 1\n"

    def mask_step(self, group: NeuronGroup) -> str:
        """Code that sets ``mask`` for this step (after :meth:`mask_equations` declared it); no dropout: 1."""
        packed = self.masks.get(group.name)
        if packed is None:
            group.mask = 1
            return ""
        packed.attach(group)
        return f"mask = mask_gain * {packed.expression()}"

    def lif_group(self, n: int, name: str) -> NeuronGroup:
        """A DECOLLE LIF layer: trace.eq + lif.eq + the derived learning variables."""
        lif_equations, mode_reset, mode_kwargs = self.mode.lif_parts(_eqs(("lif", "equations")))
        extra = (lif_equations + "\n" + self.rule_code.neuron.equations + "\n"
                 "tau_ref : second (shared, constant)\n"
                 "decay_ref : 1 (shared, constant)  # exp(-dt/tau_ref), used by the refractory jump\n"
                 "w_rp : 1 (shared, constant)  # refractory jump size\n" + self.mask_equations(name, n))
        lif = load_model("lif")
        reset = lif["reset"] + "\n" + word_substitute(load_model("trace")["on_event"], {"n_events": "1"})
        if mode_reset:
            reset += "\n" + mode_reset
        group = self.trace_group(n, name, extra, threshold=lif["threshold"], reset=reset, **mode_kwargs)
        self.mode.lif_group_built(group)
        group.run_regularly(lif["after_decay"], when="groups", order=1, name=f"{name}_after_decay")
        group.run_regularly("lr = eta(t)\n" + self.mask_step(group), when="start", order=1,
                            name=f"{name}_step_inputs")
        group.run_regularly(self.rule_code.neuron.statements, when="after_resets", order=ORDER["learn"],
                            name=f"{name}_learn")
        self.bind(f"{name}.b", group, "b", lambda a: a, lambda v: v)
        if self.spec.learning.optimizer == "adamax":
            self.bind(f"{name}.v_b", group, "v_b", lambda a: a, lambda v: v)
        self.bind_constant(group, "tau_ref", lambda p: tau(p.alpharp))
        self.bind_constant(group, "decay_ref", lambda p: p.alpharp)
        self.bind_constant(group, "w_rp", lambda p: p.wrp)
        return group

    def build_readout(self, index: int, layer: LayerObjects) -> None:
        """Fixed random readout of a layer, its local error (derived) and the error back-projection."""
        n_classes, group, code, batch = self.spec.n_classes, layer.group, self.rule_code, self.batch_size
        reductions = code.readout.reductions
        declared = "".join(f"\n{name} : 1  # class sum needed by the derived error" for name, _ in reductions)
        readout = NeuronGroup(n_classes * batch, load_model("readout")["equations"] + declared,
                              name=f"readout{index}", namespace=self.namespace)
        readout.run_regularly("target = targets(t, i)", when="start", order=1, name=f"readout{index}_target")
        ro_model = (load_model("readout_synapse")["equations"]
                    + f"\nbp_pre = {code.readout.backprojection} : 1 (summed)")
        ro_syn = Synapses(group, readout, model=ro_model, name=f"readout_synapses{index}")
        n = len(group) // batch
        if batch == 1:
            ro_syn.connect(i=np.repeat(np.arange(n), n_classes), j=np.tile(np.arange(n_classes), n))
            self.codegen.all_to_all_sums(ro_syn, skip_rows=row_skips(ro_syn))
        else:
            # unit (i, b) -> class (k, b): each sample's readout reads its own units (unit i of sample b is i B + b)
            units = np.arange(n * batch)
            ro_syn.connect(i=np.repeat(units, n_classes),
                           j=(np.arange(n_classes)[None, :] * batch + (units % batch)[:, None]).ravel())
            self.codegen.all_to_all_sums(ro_syn, batch=batch, skip_rows=row_skips(ro_syn))
        reschedule(ro_syn.summed_updaters["y_syn_post"], "after_resets", ORDER["readout"])
        reschedule(ro_syn.summed_updaters["bp_pre"], "after_resets", ORDER["backprojection"])
        for k, (name, summand) in enumerate(reductions):
            # a class sum: every readout unit receives sum_j summand(y_j, target_j) (readout -> readout)
            red_syn = Synapses(readout, readout, f"{name}_post = {summand} : 1 (summed)",
                               name=f"readout{index}_{name}", namespace=self.namespace)
            if batch == 1:
                red_syn.connect()
            else:
                red_syn.connect(condition=f"i % {batch} == j % {batch}")  # class sums within each sample
            reschedule(red_syn.summed_updaters[f"{name}_post"], "after_resets", ORDER["reductions"] + k)
            layer.reduction_synapses.append(red_syn)
        # the batch-mean loss (1/B) sum_b loss_b: each sample's dL/dy is its own over B (docs/batch.md)
        err = code.readout.err if batch == 1 else f"{code.readout.err}\nerr = err / {batch}"
        readout.run_regularly(err, when="after_resets", order=ORDER["err"], name=f"readout{index}_err")
        counter = NeuronGroup(batch, "n_spikes : 1", name=f"layer{index}_counter")  # one per sample
        counter_syn = Synapses(group, counter, "n_spikes_post = s_pre : 1 (summed)", name=f"counter{index}")
        if batch == 1:
            counter_syn.connect()
            self.codegen.all_to_all_sums(counter_syn, skip_rows=row_skips(counter_syn))
        else:
            counter_syn.connect(i=np.arange(len(group)), j=np.arange(len(group)) % batch)  # unit i B + b -> b
        reschedule(counter_syn.summed_updaters["n_spikes_post"], "after_resets", ORDER["readout"])
        layer.readout, layer.readout_synapses, layer.counter = readout, ro_syn, counter
        layer.counter_synapses = counter_syn
        self.objects += [readout, ro_syn, counter, counter_syn] + layer.reduction_synapses
        layer.mask_array = self.masks.get(layer.group.name)
        if batch == 1:
            self.bind(f"layer{index}.G", ro_syn, "G", lambda a: a.T.ravel(), lambda v: v.reshape(n, n_classes).T)
            self.bind(f"layer{index}.g", readout, "g", lambda a: a, lambda v: v)
        else:  # the fixed readout is stored once per sample (n x n_classes x B values: small)
            self.bind(f"layer{index}.G", ro_syn, "G", lambda a: np.repeat(np.asarray(a).T, batch, axis=0).ravel(),
                      lambda v: v.reshape(n, batch, n_classes)[:, 0].T)
            self.bind(f"layer{index}.g", readout, "g", lambda a: np.repeat(a, batch),
                      lambda v: v.reshape(n_classes, batch)[:, 0])

    # ---- parameter bindings --------------------------------------------------------------------------------
    def bind(self, key: str, owner, variable: str, to_brian, from_brian) -> None:
        self.bindings[key] = ParamBinding(owner, variable, to_brian, from_brian)

    def bind_constant(self, owner, variable: str, getter) -> None:
        """A run-time neuron constant: ``getter(NeuronParams)`` gives its value."""
        self.constant_bindings.append((owner, variable, getter))

    def all_objects(self) -> list:
        return list(self.objects)

    def read_back(self) -> list[tuple[object, str]]:
        """The ``(owner, variable name)`` pairs read after a run; a standalone binary writes only their arrays.

        Every parameter binding (:meth:`Simulator.run_chunk <decolle_brian.devices.Simulator.run_chunk>` reads the
        learned ones back), the recorded variables of every monitor of the network (a monitor exists to be
        read: readouts, spike counts, probes, synapse weights and the event mode's pending sums behind them,
        spikes as ``i`` and ``t``, a conv layer's full-resolution probes) and the number of synapses ``N`` of
        every synapse group, known once the binary has run (``len(synapses)``; one integer each). Reading any
        other array of a standalone network after a run raises an error naming it
        (:mod:`decolle_brian.backends.read_back`).
        """
        pairs = [(binding.view_owner, binding.variable) for binding in self.bindings.values()]
        for obj in self.objects:
            if isinstance(obj, StateMonitor | EventMonitor):  # a SpikeMonitor records i and t
                pairs += [(obj, variable) for variable in sorted(obj.record_variables)]
            elif isinstance(obj, Synapses):
                pairs.append((obj, "N"))
        return pairs
