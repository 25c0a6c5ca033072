r"""Event-driven DECOLLE (``NetworkSpec.mode = "event"``): work proportional to events, not to synapses x steps.

The exact mode touches every synapse at every step twice (forward sum, weight step). Here (``docs/event_driven.md``):

- Forward (``equations/forward_event.eq``): trace.eq's linear filters sit on the postsynaptic side; an event
  of count c of presynaptic neuron j adds :math:`(1 - \beta) c W_{ij}` to neuron i's copy of Q. For constant
  weights this is :math:`\sum_j W_{ij} P_j[t]` exactly. Inputs emit events (``equations/input_event.eq``).
- Learning (the derived lazy rule, :func:`decolle_brian.emission.event_code`): per presynaptic
  neuron the coefficients of its trace's modes, per postsynaptic neuron one accumulator per mode; a synapse is
  brought up to date only when its presynaptic neuron has an event, and at a flush.
- Flushes (every synapse up to date, frame restarted) run at every sample end and every ``K`` steps, with K
  the largest frame whose factors stay within :data:`MAX_AMPLIFICATION` (:func:`frame_length`); a frame
  without learning restarts without touching the synapses. The schedule is a per-chunk input computed from
  the run-time decays, so time constants stay run-time values (no recompiling in sweeps).

Objects (beyond the exact mode's readout, error and counters, which are per neuron already)::

    input      trace.eq + input_event.eq: threshold on the step's count; reset: new mode coefficients
    layer<l>   trace.eq + lif.eq with u_syn = forward_event.eq [post]; reset: spike, jump, new coefficients
    forward<l> pathway 'pre' (spikes, in 'resets' after all resets): lazy update, then the forward jump;
               pathway 'flush' (custom event of the presynaptic group, in 'after_resets' after the learning
               signal): the pending sum applied (SGD) or summed (Adamax, with its per-sample step)

Per step (on top of schedule.ORDER): 'start' frame factors and sample reset; 'end' frame restart (anchor).
"""

from __future__ import annotations

import math
import re
from dataclasses import astuple

import numpy as np
from brian2 import BrianLogger, NeuronGroup, StateMonitor, Synapses, TimedArray, ms
from brian2.utils.stringtools import word_substitute

from decolle_brian.equations_io import load_model
from decolle_brian.network.chunks import ChunkInputs
from decolle_brian.network.hooks import LayerBuilder, NetworkMode
from decolle_brian.network.objects import LayerObjects
from decolle_brian.network.registry import layer_builder, network_mode
from decolle_brian.network.schedule import DT, ORDER, reschedule
from decolle_brian.network.spec import NeuronParams, check_event_neuron

#: largest factor lambda^-(t - T0) inside a frame: the lazy differences lose up to ~log10 of it in digits
#: (1e6: K = 166 steps for beta = 0.92; measured relative error of a sample's weight change 2e-11, 1e3: 3e-13)
MAX_AMPLIFICATION = 1e6
#: per-chunk inputs of the frame schedule (TimedArray names used by the derived code)
FRAME_INPUTS = ("since_flush", "anchor", "flush_step", "sample_end")


def frame_length(neuron: NeuronParams) -> int:
    r"""Steps per frame K: the largest with :math:`\lambda_{min}^{-(K-1)} \le` MAX_AMPLIFICATION.

    The frame factors are the modes of trace.eq, ``alpha`` and ``beta`` (``decay_mem``, ``decay_syn``).
    """
    fastest = min(neuron.alpha, neuron.beta)  # the mode whose inverse powers grow fastest
    return 1 + int(math.floor(math.log(MAX_AMPLIFICATION) / -math.log(fastest) + 1e-12))


def frame_schedule(new_sample: np.ndarray, eta: np.ndarray, frame_steps: int) -> dict[str, np.ndarray]:
    """Per-step frame inputs of one chunk.

    Returns arrays (n_steps,): ``sample_end`` (1 at the last step of every sample and of the chunk),
    ``since_flush`` (t - T0, steps since the frame started), ``anchor`` (1: the frame restarts after this
    step: at every sample end and after ``frame_steps`` steps) and ``flush_step`` (1: the synapses are
    brought up to date after this step: an anchor step of a frame with learning, eta > 0).
    """
    n = len(new_sample)
    sample_end = np.zeros(n)
    sample_end[:-1] = np.asarray(new_sample[1:]) > 0
    sample_end[-1] = 1.0
    since, anchor, flush = np.zeros(n), np.zeros(n), np.zeros(n)
    start, learned = 0, False
    for t in range(n):
        since[t] = t - start
        learned = learned or eta[t] > 0
        if sample_end[t] or t - start + 1 >= frame_steps:
            anchor[t], flush[t] = 1.0, float(learned)
            start, learned = t + 1, False
    return {"since_flush": since, "anchor": anchor, "flush_step": flush, "sample_end": sample_end}


@network_mode("event")
class EventMode(NetworkMode):
    """The parts of an event-driven network besides its layers: frame inputs, input group, group hooks.

    Created by :class:`~decolle_brian.network.builder.BrianNetwork` when ``spec.mode == "event"``; its
    ``rule_code`` is then the derived event code.
    """

    #: recorded weights are read at the step's end, after flush and frame restart (the pending part too)
    synapse_probe_slot = "end"

    def __init__(self, net):
        super().__init__(net)
        self.code = net.rule_code
        # only the inputs some code reads (a standalone run refuses values for an unused TimedArray); without
        # a dense layer only the input group's frame code runs (conv layers have no lazy rule)
        running = self.code if any(layer.kind == "dense" for layer in net.spec.layers) else self.code.frame
        used = [name for name in FRAME_INPUTS
                if name == "flush_step" or f"{name}(t)" in str(astuple(running))]
        self.arrays = {name: TimedArray(np.zeros(net.chunk_steps), dt=DT, name=name) for name in used}
        net.namespace.update(self.arrays)
        self.pending: dict[int, list] = {}  # layer -> monitors of the pending sums of recorded synapses

    # ---- groups -------------------------------------------------------------------------------------------
    def input_group(self) -> NeuronGroup:
        """Input neurons that emit events of the step's counts (trace.eq + input_event.eq)."""
        net, model = self.net, load_model("input_event")
        group = net.trace_group(net.counts.n, "input",  # n_inputs x batch
                                extra=self._pre_equations(model["equations"]) + net.counts.equations(),
                                threshold=model["threshold"], reset=self.code.frame.pre_event,
                                events={"flush": "flush_step(t) > 0"})
        net.counts.attach(group)
        # the count of the step, then trace.eq's jump (the threshold and the synapses read the same count)
        net.counts.reader(group.run_regularly(f"n_events = {net.counts.expression()}\n"
                                              + load_model("trace")["on_event"], when="after_groups",
                                              name="input_events"))
        self.add_frame(group, post=False)
        return group

    def lif_group_built(self, group: NeuronGroup) -> None:
        self.add_frame(group, post=True)

    def lif_parts(self, lif_equations: str) -> tuple[str, str, dict]:
        """lif.eq's equations with ``u_syn`` made the postsynaptic trace, the extra reset, extra group kwargs."""
        if self.net.batch_size > 1:
            # batches: the forward filters are per sample in the layer's columns (network/event_batch.py), which
            # write each unit's u_syn; the flush is an event of the columns
            return self._pre_equations(lif_equations), self.code.frame.pre_event, {}
        lines = lif_equations.splitlines()
        kept = [line for line in lines if not re.match(r"\s*u_syn\s*:", line)]
        if len(kept) != len(lines) - 1:
            raise ValueError("lif.eq must declare 'u_syn : 1' once (mode 'event' replaces it by a trace)")
        equations = "\n".join(kept) + "\n" + load_model("forward_event")["post"]
        return (self._pre_equations(equations), self.code.frame.pre_event,
                {"events": {"flush": "flush_step(t) > 0"}})

    def _pre_equations(self, equations: str) -> str:
        return (equations + "\n" + self.code.frame.pre_equations + "\n"
                "decay_mem : 1 (shared, constant)  # exp(-dt/tau_mem), the decay of a trace mode\n")

    def add_frame(self, group: NeuronGroup, post: bool) -> None:
        """Frame factors and sample reset ('start'), frame restart ('end') of one group."""
        # scalar statements first (Brian runs them once per step); a new sample: P = 0, so every mode is 0
        start = self.code.frame.pre_frame.splitlines()
        start += [f"{v} = {v} * (1 - new_sample(t))" for v in group.variables if re.fullmatch(r"pc\d+", v)]
        end = self.code.frame.pre_anchor
        if post:
            start += [f"{v} = {v} * (1 - new_sample(t))" for v in ("q_syn", "u_syn") if v in group.variables]
            end += "\n" + self.code.frame.post_anchor
        group.run_regularly("\n".join(start), when="start", order=0, name=f"{group.name}_frame")
        group.run_regularly(end, when="end", order=0, name=f"{group.name}_anchor")
        self.net.bind_constant(group, "decay_mem", lambda p: p.alpha)

    # ---- probes ---------------------------------------------------------------------------------------------
    def probe_synapses(self, layer: int, pre: np.ndarray, post: np.ndarray) -> None:
        """Monitors of the pending sum of recorded synapses (SGD): w_now = w - sum_m pc_m[pre] acc_m[post].

        (Brian cannot monitor a synapse subexpression of pre- and postsynaptic variables in standalone mode.)
        """
        net = self.net
        n_pre, n_post = net.spec.layer_sizes()[layer - 1: layer + 1]
        if np.any((pre < 0) | (pre >= n_pre) | (post < 0) | (post >= n_post)):
            raise ValueError(f"Probes: synapses of layer {layer} must have 0 <= post < {n_post}, 0 <= pre < {n_pre}")
        # the synapses are generated (all-to-all), so Brian cannot check the recorded indices: checked here
        BrianLogger.suppress_name("cannot_check_statemonitor_indices")
        if net.spec.learning.optimizer != "sgd":
            return  # Adamax: the pending sum is a gradient (gw); the weight in use is w
        n_modes = len(self.code.frame.mode_decays)
        source = net.input if layer == 1 else net.layers[layer - 2].group
        monitors = []
        for group, names, indices, side in ((source, "pc", pre, "pre"), (net.layers[layer - 1].group, "acc", post,
                                                                         "post")):
            unique, inverse = np.unique(indices, return_inverse=True)
            mon = StateMonitor(group, [f"{names}{m}" for m in range(n_modes)], record=unique, when="end",
                               order=ORDER["learning_probes"], name=f"forward{layer}_pending_{side}")
            monitors.append((mon, inverse))
        self.pending[layer] = monitors
        net.objects += [mon for mon, _ in monitors]

    def weights_in_use(self, stored: list) -> list:
        """Recorded weights (steps, synapses) per layer with the pending sums of :meth:`probe_synapses` applied."""
        result = list(stored)
        for layer, ((pre_mon, pre_inv), (post_mon, post_inv)) in self.pending.items():
            n_modes = len(self.code.frame.mode_decays)
            pending = sum(getattr(pre_mon, f"pc{m}")[:].T[:, pre_inv] * getattr(post_mon, f"acc{m}")[:].T[:, post_inv]
                          for m in range(n_modes))
            result[layer - 1] = stored[layer - 1] - np.asarray(pending)
        return result

    # ---- per-chunk inputs ---------------------------------------------------------------------------------
    def chunk_arrays(self, inputs: ChunkInputs, neuron: NeuronParams) -> dict:
        """Frame schedule of a chunk (from its sample starts, learning rates and the run-time decays)."""
        check_event_neuron(neuron)
        schedule = frame_schedule(inputs.new_sample, inputs.eta, frame_length(neuron))
        return {self.arrays[name]: values for name, values in schedule.items() if name in self.arrays}


@layer_builder("event", "dense")
class EventDenseLayerBuilder(LayerBuilder):
    """Fully connected LIF layer, event-driven: all-to-all synapses that work only on events and flushes."""

    def build(self) -> LayerObjects:
        net, index, n = self.net, self.index, self.layer.n
        group = net.lif_group(n, f"layer{index}")
        code, model = net.rule_code, load_model("forward_event")
        # an input event carries its count; a spike of a layer neuron counts 1 (lif.eq's reset)
        count = "n_events_pre" if "n_events" in self.source.variables else "1"
        on_event = word_substitute(model["on_event"], {"n_events": count, "w_now": f"({code.synapse.w_now})"})
        forward = Synapses(
            self.source, group, model=model["equations"] + "\n" + code.synapse.equations,
            on_pre={"pre": code.synapse.on_event + "\n" + on_event, "flush": code.synapse.on_flush},
            on_event={"pre": "spike", "flush": "flush"}, namespace=net.namespace, name=f"forward{index}",
            # zero delays given here are one shared value per pathway, not a per-synapse array (8 bytes per synapse
            # and pathway that every run of a standalone binary allocated and wrote back with its results)
            delay={"pre": 0 * ms, "flush": 0 * ms},
        )
        n_in = len(self.source)
        # all-to-all, generated in pre-major order: synapse k = (i = k // n, j = k % n), so w = W.T.ravel()
        # (no index arrays: they would cost 16 bytes per synapse in the standalone binary)
        net.codegen.all_to_all_connect(forward)
        for pathway in (forward.pre, forward.flush):
            net.codegen.all_to_all_pathway(pathway)  # C++ standalone: contiguous, vectorised rows
        # after every reset (the presynaptic coefficients of this step's events are new) ...
        reschedule(forward.pre, "resets", 1)
        # ... and the flush after the learning signal and accumulators of the step
        reschedule(forward.flush, "after_resets", ORDER["weights"])
        prefix = f"layer{index}"
        net.bind(f"{prefix}.W", forward, "w", lambda a: a.T.ravel(), lambda v: v.reshape(n_in, n).T)
        if net.spec.learning.optimizer == "adamax":
            net.bind(f"{prefix}.v_W", forward, "v_w", lambda a: a.T.ravel(), lambda v: v.reshape(n_in, n).T)
        return LayerObjects(group=group, forward=forward)

