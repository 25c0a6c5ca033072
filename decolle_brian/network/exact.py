"""The exact mode (``NetworkSpec.mode = "exact"``): every synapse works at every step.

Inputs are trace.eq groups whose traces jump by the step's event counts; a dense layer's forward
synapses sum ``W P`` into U and take the derived weight step at every step (schedule:
:mod:`decolle_brian.network.schedule`). Conv layers of this mode are in :mod:`decolle_brian.network.conv`.
"""

from __future__ import annotations

import numpy as np
from brian2 import NeuronGroup, Synapses
from brian2.utils.stringtools import word_substitute

from decolle_brian.equations_io import load_model
from decolle_brian.network.hooks import LayerBuilder, NetworkMode
from decolle_brian.network.objects import LayerObjects
from decolle_brian.network.registry import layer_builder, network_mode
from decolle_brian.network.schedule import FORWARD_SUM_ORDER, ORDER, reschedule


@network_mode("exact")
class ExactMode(NetworkMode):
    """Inputs as traces jumped by the step's counts; LIF layers as lif.eq says; no per-run arrays of its own."""

    def input_group(self) -> NeuronGroup:
        net = self.net
        group = net.trace_group(net.counts.n, "input", extra=net.counts.equations())  # n_inputs x batch
        net.counts.attach(group)
        on_event = word_substitute(load_model("trace")["on_event"], {"n_events": net.counts.expression()})
        net.counts.reader(group.run_regularly(on_event, when="after_groups", name="input_events"))
        return group


@layer_builder("exact", "dense")
class DenseLayerBuilder(LayerBuilder):
    """Fully connected LIF layer: all-to-all synapses from the previous layer's P traces."""

    def build(self) -> LayerObjects:
        net, index, n = self.net, self.index, self.layer.n
        group = net.lif_group(n, f"layer{index}")
        code = net.rule_code
        forward = Synapses(
            self.source, group,
            model=load_model("forward")["equations"] + "\n" + code.synapse.equations,
            name=f"forward{index}",
        )
        n_in = len(self.source)
        # explicit pre-major order: synapse k = (i = k // n, j = k % n), so w = W.T.ravel()
        forward.connect(i=np.repeat(np.arange(n_in), n), j=np.tile(np.arange(n), n_in))
        reschedule(forward.summed_updaters["u_syn_post"], "groups", FORWARD_SUM_ORDER)
        forward.run_regularly(code.synapse.statements, when="after_resets", order=ORDER["weights"],
                              name=f"forward{index}_learn")
        prefix = f"layer{index}"
        net.bind(f"{prefix}.W", forward, "w", lambda a: a.T.ravel(), lambda v: v.reshape(n_in, n).T)
        if net.spec.learning.optimizer == "adamax":
            net.bind(f"{prefix}.v_W", forward, "v_w", lambda a: a.T.ravel(), lambda v: v.reshape(n_in, n).T)
        return LayerObjects(group=group, forward=forward)
