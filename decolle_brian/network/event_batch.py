r"""Batched event-driven dense layers (``NetworkSpec.mode = "event"``, ``batch_size = B > 1``, SGD).

B samples side by side share one weight ``w`` per synapse; every sample keeps its own traces, lazy
coefficients and accumulators (docs/event_driven.md, "Batches"). The derived code is
:func:`decolle_brian.emission.event_batch_code`; per synaptic event and flush it works on all B samples.

The layer's units are laid out as in every batched network (unit j of sample b at ``j * B + b``,
:mod:`decolle_brian.network.batch`), so inputs, readouts, masks and the frame code of
:mod:`decolle_brian.network.event` are those of the online event mode, one copy per sample. The shared weight
sits on all-to-all synapses between two small groups with one neuron per presynaptic and per postsynaptic
neuron, each holding its B samples as B variables (Brian's synapse code reads the pre- and postsynaptic
groups' own variables, not linked ones, so these columns hold copies, refreshed right before they are read)::

    forward<l>_columns  (n_in)   per sample: n_events_b<b>, pc<m>_b<b>, dpc<m>_b<b> (0 where no event)
                                 event 'event': any sample has an event; 'flush': flush_step(t)
    layer<l>_columns    (n)      per sample: the forward filters q_syn_b<b>, u_syn_b<b> (forward_event.eq
                                 [post]), copies of acc<m>_b<b> and fac_b<b>; the shared bias b
    forward<l>          columns -> columns, all-to-all: w; 'event': fold every sample's coefficient changes into
                        w, then each sample with an event jumps its q_syn by (1 - beta) n w_now;
                        'flush': w -= the pending sum of the whole batch

Per step (on top of the online event mode's schedule)::

    start               layer columns: new sample -> filters 0; the shared bias copied into every unit
    groups, 2           layer columns: u_syn of every unit (U = u_syn + b + r)
    resets, 1           columns: copies of counts, coefficients, accumulators (after the units' resets)
    resets, 2 / 3       'event' of the presynaptic columns / the forward pathway
    after_resets        (ORDER["weights"]) copies of acc and fac, the bias step on the summed gradient;
                        (ORDER["learning_probes"]) the flush pathway
"""

from __future__ import annotations

import numpy as np
from brian2 import Equations, NeuronGroup, Synapses, linked_var, ms
from brian2.utils.stringtools import word_substitute

from decolle_brian.emission import sample_name
from decolle_brian.equations_io import load_model
from decolle_brian.network.batch import BATCHED_DENSE
from decolle_brian.network.hooks import LayerBuilder
from decolle_brian.network.objects import LayerObjects
from decolle_brian.network.registry import layer_builder
from decolle_brian.network.schedule import FORWARD_SUM_ORDER, METHOD, ORDER, reschedule, tau

#: 'resets' slot orders: the units' own resets run at 0
COPY_ORDER, EVENT_ORDER, PATHWAY_ORDER = 1, 2, 3


def _linked(group: NeuronGroup, name: str, source: NeuronGroup, variable: str, index: np.ndarray) -> None:
    """``group.name`` linked to ``source.variable[index]``, with ``index`` one unit per column (no repeats)."""
    if len(np.unique(index)) != len(index):
        raise ValueError(f"{group.name}.{name}: a column links to one unit per sample; repeated units in its index")
    setattr(group, name, linked_var(source, variable, index=index))
    # the index hits every unit at most once, so writing through it does not depend on the order of execution
    # (Brian only knows that of index arrays it made unique itself, and warns otherwise)
    group.variables[f"_{name}_indices"].unique = True


@layer_builder("event", BATCHED_DENSE)
class EventBatchedDenseLayerBuilder(LayerBuilder):
    """A dense event-driven layer of ``batch_size`` samples side by side: one stored weight, lazy per sample."""

    def build(self) -> LayerObjects:
        net, index, n = self.net, self.index, self.layer.n
        batch, code = net.batch_size, net.rule_code
        n_in = len(self.source) // batch
        group = net.lif_group(n * batch, f"layer{index}")
        pre = self._pre_columns(n_in, batch)
        post = self._post_columns(group, n, batch)
        model = load_model("forward_event")
        jumps = [word_substitute(model["on_event"], {
            "q_syn_post": f"{sample_name('q_syn', b)}_post", "n_events": f"{sample_name('n_events', b)}_pre"})
            for b in range(batch)]
        forward = Synapses(
            pre, post, model=model["equations"],
            # w_now: a temporary, computed once per synapse after the fold, read by every sample's jump
            on_pre={"pre": "\n".join([code.synapse.on_event, f"w_now = {code.synapse.w_now}", *jumps]),
                    "flush": code.synapse.on_flush},
            on_event={"pre": "event", "flush": "flush"}, namespace=net.namespace, name=f"forward{index}",
            delay={"pre": 0 * ms, "flush": 0 * ms},
        )
        # all-to-all, pre-major: synapse k = (j = k // n, i = k % n), so w = W.T.ravel()
        net.codegen.all_to_all_connect(forward)
        for pathway in (forward.pre, forward.flush):
            net.codegen.all_to_all_pathway(pathway)
        reschedule(forward.pre, "resets", PATHWAY_ORDER)
        reschedule(forward.flush, "after_resets", ORDER["learning_probes"])  # after the copies of the step's acc
        net.bind(f"layer{index}.W", forward, "w", lambda a: a.T.ravel(), lambda v: v.reshape(n_in, n).T)
        net.bind(f"layer{index}.b", post, "b", lambda a: a, lambda v: v)  # the shared bias, not the unit copies
        net.objects += [pre, post]
        return LayerObjects(group=group, forward=forward)

    def _pre_columns(self, n_in: int, batch: int) -> NeuronGroup:
        """One neuron per presynaptic neuron j: its samples' event counts and lazy coefficients."""
        net, source, frame = self.net, self.source, self.net.rule_code.frame
        count = "n_events" if "n_events" in source.variables else "s"  # an input's count; a spike counts 1
        modes = range(len(frame.mode_decays))
        names = [(sample_name("n_events", b), count, b) for b in range(batch)]
        names += [(sample_name(f"{v}{m}", b), f"{v}{m}", b) for b in range(batch) for v in ("pc", "dpc") for m in modes]
        equations = "".join(f"{name} : 1\n{name}_unit : 1 (linked)\n" for name, _, _ in names)
        counts = [sample_name("n_events", b) for b in range(batch)]
        group = NeuronGroup(n_in, equations, name=f"forward{self.index}_columns", namespace=net.namespace,
                            events={"event": " + ".join(counts) + " > 0", "flush": "flush_step(t) > 0"})
        for name, variable, b in names:
            _linked(group, f"{name}_unit", source, variable, np.arange(n_in) * batch + b)
        # (counts first) a coefficient change counts only in the step of the sample's own event
        copies = [f"{name} = {name}_unit" + (f" * int({sample_name('n_events', b)} > 0)" if variable.startswith("dpc")
                                              else "") for name, variable, b in names]
        group.run_regularly("\n".join(copies), when="resets", order=COPY_ORDER, name=f"forward{self.index}_copies")
        reschedule(group.thresholder["event"], "resets", EVENT_ORDER)
        return group

    def _post_columns(self, units: NeuronGroup, n: int, batch: int) -> NeuronGroup:
        """One neuron per postsynaptic neuron i: its samples' forward filters and accumulators, the shared bias."""
        net, code, name = self.net, self.net.rule_code, f"layer{self.index}"
        post = load_model("forward_event")["post"]
        modes = range(len(code.frame.mode_decays))
        filters = [str(Equations(post, q_syn=sample_name("q_syn", b), u_syn=sample_name("u_syn", b)))
                   for b in range(batch)]
        copied = [(sample_name(f"acc{m}", b), f"acc{m}", b) for b in range(batch) for m in modes]
        copied += [(sample_name("fac", b), "fac", b) for b in range(batch)]
        written = [(sample_name(v, b), v, b) for b in range(batch) for v in ("u_syn", "b")]
        equations = "\n".join(filters + [code.bias.equations]
                              + [f"{c} : 1" for c, _, _ in copied if not c.startswith("fac")]
                              + [f"{c}_unit : 1 (linked)" for c, _, _ in copied + written]) + (
            "\nb : 1  # the shared bias of neuron i\n"
            "tau_mem : second (shared, constant)\ntau_syn : second (shared, constant)\n"
            "decay_syn : 1 (shared, constant)  # exp(-dt/tau_syn), used by the event jump\n")
        group = NeuronGroup(n, equations, method=METHOD, name=f"{name}_columns", namespace=net.namespace)
        for column, variable, b in copied + written:
            _linked(group, f"{column}_unit", units, variable, np.arange(n) * batch + b)
        samples = range(batch)
        start = [f"{v} = {v} * (1 - new_sample(t))" for b in samples for v in (sample_name("q_syn", b),
                                                                              sample_name("u_syn", b))]
        start += [f"{sample_name('b', b)}_unit = b" for b in samples]
        group.run_regularly("\n".join(start), when="start", order=0, name=f"{name}_columns_start")
        group.run_regularly("\n".join(f"{sample_name('u_syn', b)}_unit = {sample_name('u_syn', b)}" for b in samples),
                            when="groups", order=FORWARD_SUM_ORDER, name=f"{name}_columns_forward")
        acc = "\n".join(f"{c} = {c}_unit" for c, v, _ in copied if v != "fac")
        group.run_regularly(acc, when="resets", order=COPY_ORDER, name=f"{name}_columns_acc")
        fac = "\n".join(f"{c} = {c}_unit" for c, v, _ in copied if v == "fac")
        group.run_regularly("\n".join([acc, fac, code.bias.statements]), when="after_resets", order=ORDER["weights"],
                            name=f"{name}_columns_learn")
        net.bind_constant(group, "tau_mem", lambda p: tau(p.alpha))
        net.bind_constant(group, "tau_syn", lambda p: tau(p.beta))
        net.bind_constant(group, "decay_syn", lambda p: p.beta)
        return group
