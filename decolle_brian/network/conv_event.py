r"""Conv layers of the event-driven mode (``NetworkSpec.mode = "event"``): the forward pass scatters events.

The exact conv layer (:mod:`decolle_brian.network.conv`) sums every tap of the kernel over the previous
layer's P traces at every step. Here, as for the dense layers of this mode (``equations/forward_event.eq``),
trace.eq's two linear filters sit on the postsynaptic side: every full-resolution unit (o, y, x) keeps
``q_syn`` and ``u_syn`` (forward_event.eq [post], replacing lif.eq's ``u_syn``), and an event of count n of
presynaptic unit (c, y_i, x_i) adds

.. math::

    q_{syn}[o, y_i + pad - a, x_i + pad - e] \mathrel{+}= (1 - \beta)\, n\, K[o, c, a, e]

for every output channel o and tap (a, e) whose unit lies in the full-resolution grid: cost
events x c_out x k^2 per step. For a constant kernel this is the exact forward sum (same operations up to
the order of summation; ``decolle_brian.derivation`` checks that conv_forward.eq's sum is
:math:`K\,P_{in}` and forward_event.eq the jump of trace.eq through the weight). A kernel change reaches
a unit's membrane only with later events (the mode's documented modelling difference, docs/event_driven.md).

Learning is the exact conv layer's: the kernel and bias gradients read the presynaptic P traces (which the
sources keep), gated as in :func:`decolle_brian.network.conv.gradient_gates`.

Objects, beyond those of :class:`~decolle_brian.network.conv.ConvLayerBuilder`::

    forward<l>          kernel -> full, kernel gradient only (conv_forward.eq without its forward sum)
    forward<l>_events   previous layer -> full: ``on_pre`` = forward_event.eq [on_event] with the kernel
                        element ``w_k`` read by index ``k_idx`` (Brian's generic code: one synapse per tap
                        inside the input); C++ standalone: loops over the taps of each event, no synapse
                        (:func:`decolle_brian.backends.conv_loops.conv_event_scatter`)
"""

from __future__ import annotations

import numpy as np
from brian2 import Equations, NeuronGroup, Synapses, linked_var
from brian2.utils.stringtools import word_substitute

from decolle_brian.emission import ConvCode
from decolle_brian.equations_io import load_model
from decolle_brian.network.conv import ConvLayerBuilder, ConvLayerObjects, conv_connectivity
from decolle_brian.network.registry import layer_builder
from decolle_brian.network.schedule import reschedule, tau
from decolle_brian.network.spec import ConvLayerSpec

#: the summed forward variable of conv_forward.eq, replaced by the postsynaptic filters in this mode
FORWARD_SUM = "u_syn_post"


@layer_builder("event", "conv")
class EventConvLayerBuilder(ConvLayerBuilder):
    """A conv LIF layer whose forward pass is driven by the previous layer's events."""

    sample_state = ("r", "s", "q_syn", "u_syn")  # the postsynaptic filters start every sample at 0 (P = 0)

    def build(self) -> ConvLayerObjects:
        objects = super().build()
        net, full = self.net, objects.full
        net.bind_constant(full, "tau_mem", lambda p: tau(p.alpha))
        net.bind_constant(full, "tau_syn", lambda p: tau(p.beta))
        net.bind_constant(full, "decay_syn", lambda p: p.beta)
        objects.events = self._event_synapses(objects.kernel, full)
        net.objects.append(objects.events)
        return objects

    def _forward_input(self, lif_eqs: Equations) -> Equations:
        """lif.eq with ``u_syn`` made the postsynaptic filter pair of forward_event.eq [post]."""
        kept = [eq for eq in lif_eqs.ordered if eq.varname != "u_syn"]
        if len(kept) != len(lif_eqs.ordered) - 1:
            raise ValueError("lif.eq must declare 'u_syn : 1' once (mode 'event' replaces it by a trace)")
        constants = ("\ntau_mem : second (shared, constant)\ntau_syn : second (shared, constant)\n"
                     "decay_syn : 1 (shared, constant)  # exp(-dt/tau_syn), used by the event jump")
        return Equations(kept) + Equations(load_model("forward_event")["post"] + constants)

    def _conv_model(self, code: ConvCode) -> Equations:
        """conv_forward.eq without its forward sum (the events feed u_syn), and the derived kernel gradient."""
        eqs = Equations(load_model("conv_forward")["equations"])
        kept = [eq for eq in eqs.ordered if eq.varname != FORWARD_SUM]
        if len(kept) != len(eqs.ordered) - 1:
            raise ValueError(f"conv_forward.eq must declare the forward sum '{FORWARD_SUM}' once")
        return Equations(kept) + Equations(f"gw_pre = {code.kernel_gradient} : 1 (summed)")

    def _event_synapses(self, kernel: NeuronGroup, full: NeuronGroup) -> Synapses:
        """Previous layer -> full units: each event adds (1 - beta) n K[o, c, a, e] to q_syn (forward_event.eq)."""
        net, layer, source = self.net, self.layer, self.source
        # an input event carries its count; a spike of a pooled unit counts 1 (pool.eq's reset)
        count = "n_events_pre" if "n_events" in source.variables else "1"
        on_event = word_substitute(load_model("forward_event")["on_event"], {"n_events": count, "w_now": "w_k"})
        syn = Synapses(source, full, model="k_idx : integer (constant)  # kernel element K[o, c, a, e] of this tap\n"
                                           "w_k : 1 (linked)  # its value",
                       on_pre=on_event, name=f"forward{self.index}_events")
        syn.w_k = linked_var(kernel, "w", index="k_idx")

        def connect():
            pre, post, element = event_connectivity(layer)
            syn.connect(i=pre, j=post)
            syn.k_idx = element

        # proven: with lr = 0 the optimiser step leaves the kernel unchanged (a device may keep a copy of it)
        net.codegen.conv_events(syn.pre, layer, connect, (kernel, "lr") if self.gates.gate else None)
        # after every reset (this step's spikes), as the dense event synapses
        reschedule(syn.pre, "resets", 1)
        return syn


def event_connectivity(layer: ConvLayerSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input unit, full unit, kernel element) of every tap inside the input: the event synapses of a layer."""
    element, post = conv_connectivity(layer)
    _, c_in, k, _ = layer.kernel_shape
    _, h, w = layer.in_shape
    _, hf, wf = layer.full_shape
    element64, post64 = element.astype(np.int64), post.astype(np.int64)
    c, a, e = (element64 // (k * k)) % c_in, (element64 // k) % k, element64 % k
    y, x = (post64 // wf) % hf, post64 % wf
    pre = c * h * w + (y + a - layer.padding) * w + (x + e - layer.padding)
    return pre.astype(np.int32), post, element
