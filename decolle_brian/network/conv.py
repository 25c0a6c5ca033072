r"""Convolutional DECOLLE layers in Brian2: one shared kernel, max-pool on U before the spike.

Brian2 has no weight sharing. A conv layer (:class:`~decolle_brian.network.spec.ConvLayerSpec`) is built
from these objects (the model text comes from ``equations/``, the plasticity from
:func:`decolle_brian.emission.conv_code`; ``docs/conv.md`` explains the construction)::

    layer<l>_kernel   NeuronGroup, one neuron per kernel element K[o, c, a, e]    shared_param.eq (w, gw)
    layer<l>_bias     NeuronGroup, one neuron per output channel b[o]          shared_param.eq (w, gw)
    layer<l>_full     NeuronGroup, one LIF unit per (o, y, x), full resolution  lif.eq + conv_unit.eq
    layer<l>          NeuronGroup, one pooled unit per (o, Y, X): the output    trace.eq + pool.eq
    forward<l>        Synapses kernel -> full, one per tap inside the input     conv_forward.eq
                      (or none: the device runs the convolution as loops, CodeGeneration.convolution)
    layer<l>_bias_gradient   Synapses full -> bias, one per full unit          (derived summand)

The equations, per step (stride 1, zero padding, C order (channel, row, col) everywhere):

.. math::

    U_{full}[o,y,x] = \sum_{c,a,e} K[o,c,a,e]\,P_{pad}[c,y+a,x+e] + b[o] + R[o,y,x],\qquad
    u[o,Y,X] = \max_{k \in \text{window}} U_{full}[k],\qquad S = H(u)

    E = bp\,\sigma'(u),\qquad E_{full} = E\,[\text{won the max}],\qquad
    g_K[o,c,a,e] = \sum_{y,x} E_{full}[o,y,x]\,P_{pad}[c,y+a,x+e],\qquad g_b[o] = \sum_{y,x} E_{full}[o,y,x]

Every conv synapse is one multiply-add of the forward sum and one of the kernel gradient; it stores no
weight, only the index of the input it reads (``in_idx``), so the learned state is the kernel and the biases.
The C++ standalone backend creates no synapse at all: it runs both summed variables as loops over the
convolution (:mod:`decolle_brian.backends.conv_loops`), skipping the gradient where :func:`gradient_gates`
proves it unused. In mode "event" (:mod:`decolle_brian.network.conv_event`) the forward sum is replaced by
events scattered into postsynaptic filters; the gradients stay as here.

Batches (``NetworkSpec.batch_size = B > 1``, docs/batch.md): the kernel and bias groups are stored once; every
other group holds B copies of its units, the sample innermost (full unit (o, y, x) of sample b at
``((o H_full + y) W_full + x) B + b``, pooled units and the input likewise: the unit layout of
:mod:`decolle_brian.network.batch`), so each sample has its own state, pooling, masks and readout while the
kernel gradient ``g_K = sum_b sum_{y,x} E_full_b P_pad_b`` and ``g_b = sum_b sum_{y,x} E_full_b`` sum over the
batch (mode "exact" only). The explicit synapse list has one synapse per tap, position and sample; the C++
loops put the sample innermost (``templates/conv_*_sum_batch.cpp``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from brian2 import Equations, NeuronGroup, StateMonitor, Synapses, linked_var
from brian2.utils.stringtools import word_substitute

from decolle_brian.emission import ConvCode, conv_code
from decolle_brian.equations_io import load_model
from decolle_brian.errors import SpecError
from decolle_brian.network.hooks import LayerBuilder
from decolle_brian.network.objects import LayerObjects
from decolle_brian.network.proofs import at_zero
from decolle_brian.network.registry import layer_builder
from decolle_brian.network.schedule import FORWARD_SUM_ORDER, LEARNING_VARIABLES, METHOD, ORDER, reschedule, tau
from decolle_brian.network.spec import ConvLayerSpec

#: schedule of the conv parts (see schedule.ORDER): 'groups' slot, then 'after_resets' slot
CONV_ORDER = {
    "store": FORWARD_SUM_ORDER + 1,            # after the forward sum (groups, 2): u_now = u
    "max": 4,                                  # then the pooled unit takes the max
    "route": ORDER["weights"],                 # after the pooled learning signal (ORDER["learn"])
    "gradients": ORDER["learning_probes"] + 1,  # summed kernel and bias gradients
    "step": ORDER["learning_probes"] + 2,      # optimiser step of the shared parameters
}


#: output channels cycled innermost in the synapse order (see :func:`conv_connectivity`)
CHANNEL_GROUP = 8
#: synapses per connect call (bounds the copies Brian makes of the index arrays while building)
CONNECT_BLOCK = 1 << 25


#: the most synapses one Brian Synapses object can index (int32)
MAX_SYNAPSES = 2**31 - 1


@dataclass
class ConvLayerObjects(LayerObjects):
    """Brian objects of a conv layer; ``group`` is the pooled output, ``forward`` the conv synapses."""

    full: NeuronGroup | None = None
    kernel: NeuronGroup | None = None
    bias: NeuronGroup | None = None
    bias_synapses: Synapses | None = None
    events: Synapses | None = None  # mode "event": the pathway that scatters presynaptic events (conv_event.py)
    full_monitors: list = field(default_factory=list)

    def learned_state(self) -> dict[str, int]:
        """Number of learned values stored in Brian, per variable (kernel and bias groups' ``w``)."""
        return {f"{self.kernel.name}.w": len(self.kernel.variables["w"].get_value()),
                f"{self.bias.name}.w": len(self.bias.variables["w"].get_value())}


@layer_builder("exact", "conv")
class ConvLayerBuilder(LayerBuilder):
    """A conv LIF layer with shared kernel and max-pool, from the previous layer's P traces (``source``)."""

    #: full-unit state cleared at a new sample (the forward sum ``u_syn`` is recomputed every step)
    sample_state = ("r", "s")

    @property
    def samples(self) -> int:
        """Samples side by side in every unit group (sample innermost), sharing the kernel: the batch size."""
        return self.net.spec.batch_size

    def _batched(self, unit: str) -> str:
        """Index expression ``unit`` of one sample's unit (over ``i``) in the batched layout: ``unit B + i % B``.

        Batch 1: ``unit`` itself (the online network's code, unchanged)."""
        return unit if self.samples == 1 else f"({unit}) * {self.samples} + i % {self.samples}"

    def build(self) -> ConvLayerObjects:
        net, layer, name = self.net, self.layer, f"layer{self.index}"
        code = conv_code(net.rule, net.spec.learning.optimizer)
        self.gates = gradient_gates(code)  # what burn-in and evaluation may skip, proven on the derived code
        kernel = self._shared_group(layer.kernel_shape, f"{name}_kernel", code, "K")
        bias = self._shared_group((layer.channels,), f"{name}_bias", code, "b")
        full = self._full_group(name, code, bias)
        pooled = self._pooled_group(name, code, full)
        forward = self._conv_synapses(code, kernel, full)
        bias_syn = Synapses(full, bias, f"gw_post = {code.bias_gradient} : 1 (summed)",
                            name=f"{name}_bias_gradient")
        bias_syn.connect(j="oc_pre")  # each full unit -> the bias of its channel
        reschedule(bias_syn.summed_updaters["gw_post"], "after_resets", CONV_ORDER["gradients"])
        if self.gates.gate:  # proven: with lr = 0 the optimiser step ignores it (its only reader)
            net.codegen.gated(bias_syn.summed_updaters["gw_post"], "lr_post")
        monitors = self._full_monitors(full, name)
        net.objects += [kernel, bias, full, bias_syn] + monitors
        return ConvLayerObjects(group=pooled, forward=forward, full=full, kernel=kernel, bias=bias,
                                bias_synapses=bias_syn, full_monitors=monitors)

    # ---- parts -------------------------------------------------------------------------------------------------
    def _shared_group(self, shape: tuple, name: str, code: ConvCode, key: str) -> NeuronGroup:
        """Shared learned parameters (kernel elements or channel biases) with their optimiser step."""
        net, n = self.net, int(np.prod(shape))
        eqs = load_model("shared_param")["equations"] + "\n" + code.shared.equations
        group = NeuronGroup(n, eqs, name=name, namespace=net.namespace)
        group.run_regularly("lr = eta(t)", when="start", order=1, name=f"{name}_step_inputs")
        step = group.run_regularly(code.shared.statements, when="after_resets", order=CONV_ORDER["step"],
                                   name=f"{name}_learn")
        if self.gates.gate:  # proven: with lr = 0 the step leaves every variable unchanged
            net.codegen.gated(step, "lr")
        prefix = f"layer{self.index}"
        net.bind(f"{prefix}.{key}", group, "w", lambda a: np.asarray(a).ravel(), lambda v: v.reshape(shape))
        if net.spec.learning.optimizer == "adamax":
            net.bind(f"{prefix}.v_{key}", group, "v_w", lambda a: np.asarray(a).ravel(), lambda v: v.reshape(shape))
        return group

    def _full_group(self, name: str, code: ConvCode, bias: NeuronGroup) -> NeuronGroup:
        """Full-resolution LIF units: lif.eq with the channel's shared bias; their own spikes drive R."""
        net, layer = self.net, self.layer
        c_out, hf, wf = layer.full_shape
        _, hp, wp = layer.out_shape
        pool, batch = layer.pool, self.samples
        own = "i" if batch == 1 else f"(i // {batch})"  # the unit's index within its sample
        lif = load_model("lif")
        unit = load_model("conv_unit")
        unit_eqs = Equations(unit["equations"])
        # conv_unit.eq replaces lif.eq's variables of the same name (b becomes the channel's shared bias)
        lif_eqs = Equations([eq for eq in Equations(lif["equations"]).ordered if eq.varname not in unit_eqs.names])
        extra = Equations(
            "oc : integer (constant)  # output channel o\n"
            "oy : integer (constant)  # row y\n"
            "ox : integer (constant)  # column x\n"
            + ("ob : integer (constant)  # sample b of the batch\n" if batch > 1 else "") +
            "tau_ref : second (shared, constant)\n"
            "decay_ref : 1 (shared, constant)  # exp(-dt/tau_ref), used by the refractory jump\n"
            "w_rp : 1 (shared, constant)  # refractory jump size\n"
        )
        group = NeuronGroup(layer.n_full * batch, self._forward_input(lif_eqs) + unit_eqs + extra,
                            threshold=lif["threshold"], reset=lif["reset"], method=METHOD, name=f"{name}_full",
                            namespace=net.namespace)
        group.oc = f"{own} // {hf * wf}"
        group.oy = f"({own} // {wf}) % {hf}"
        group.ox = f"{own} % {wf}"
        if batch > 1:
            group.ob = f"i % {batch}"
        # units of a floor-mode remainder lie in no window: slot -1 never wins (pool_idx 0 is only a valid index)
        inside = f"int(oy < {hp * pool} and ox < {wp * pool})"
        group.slot = f"{inside} * ((oy % {pool}) * {pool} + ox % {pool} + 1) - 1"
        group.pool_idx = f"{inside} * ({self._batched(f'oc * {hp * wp} + (oy // {pool}) * {wp} + ox // {pool}')})"
        group.b = linked_var(bias, "w", index="oc")
        group.run_regularly("\n".join(f"{v} = {v} * (1 - new_sample(t))" for v in self.sample_state), when="start",
                            order=0, name=f"{name}_full_sample_reset")
        group.run_regularly(lif["after_decay"], when="groups", order=1, name=f"{name}_full_after_decay")
        group.run_regularly(unit["store"], when="groups", order=CONV_ORDER["store"], name=f"{name}_full_store")
        group.run_regularly(code.full_neuron, when="after_resets", order=CONV_ORDER["route"],
                            name=f"{name}_full_learn")
        net.bind_constant(group, "tau_ref", lambda p: tau(p.alpharp))
        net.bind_constant(group, "decay_ref", lambda p: p.alpharp)
        net.bind_constant(group, "w_rp", lambda p: p.wrp)
        return group

    def _forward_input(self, lif_eqs: Equations) -> Equations:
        """lif.eq's equations as the forward pass feeds them: here ``u_syn``, the summed variable below."""
        return lif_eqs

    def _pooled_group(self, name: str, code: ConvCode, full: NeuronGroup) -> NeuronGroup:
        """Pooled units (the layer's output): max of U over the window, spike, traces for the next layer."""
        net, layer = self.net, self.layer
        _, hf, wf = layer.full_shape
        _, hp, wp = layer.out_shape
        pool, batch = layer.pool, self.samples
        unit = "i" if batch == 1 else f"(i // {batch})"  # the pooled unit's index within its sample
        model = load_model("pool")
        window = range(pool * pool)
        links = "".join(f"\nidx{k} : integer (constant)  # full unit of window element {k}"
                        f"\nu_in{k} : 1 (linked)  # its U" for k in window)
        reset = model["reset"] + "\n" + word_substitute(load_model("trace")["on_event"], {"n_events": "1"})
        n = layer.n * batch
        group = net.trace_group(n, name, model["equations"] + links + "\n" + net.mask_equations(name, n),
                                threshold=model["threshold"], reset=reset)
        for k in window:
            # pooled (o, Y, X), window element k = (a, e) -> full (o, Y pool + a, X pool + e)
            setattr(group, f"idx{k}", self._batched(f"({unit} // {hp * wp}) * {hf * wf} + (({unit} // {wp}) % {hp} * "
                                                    f"{pool} + {k // pool}) * {wf} + ({unit} % {wp}) * {pool} + "
                                                    f"{k % pool}"))
            setattr(group, f"u_in{k}", linked_var(full, "u_now", index=f"idx{k}"))
        pool_code = "\n".join([model["max_first"]] + [word_substitute(model["max_next"], {"u_in": f"u_in{k}",
                                                                                          "k": str(k)})
                                                      for k in window if k > 0])
        group.run_regularly(model["after_decay"], when="groups", order=1, name=f"{name}_after_decay")
        group.run_regularly(pool_code, when="groups", order=CONV_ORDER["max"], name=f"{name}_max")
        mask_step = net.mask_step(group)
        if mask_step:
            group.run_regularly(mask_step, when="start", order=1, name=f"{name}_step_inputs")
        group.run_regularly(code.pool_neuron, when="after_resets", order=ORDER["learn"], name=f"{name}_learn")
        full.win_pool = linked_var(group, "win", index="pool_idx")
        full.delta_pool = linked_var(group, "delta", index="pool_idx")
        return group

    def _conv_synapses(self, code: ConvCode, kernel: NeuronGroup, full: NeuronGroup) -> Synapses:
        """Kernel elements -> full units: the forward sum and the kernel gradient (summed variables).

        The device backend decides how they run (``net.codegen.convolution``): over an explicit list of one
        synapse per kernel element and output position whose tap lies inside the input (``connect`` below,
        Brian's generic code), or in loops over the convolution with no synapse at all.
        """
        layer = self.layer
        _, c_in, k, _ = layer.kernel_shape
        _, h, w = layer.in_shape
        pad = layer.padding
        syn = Synapses(kernel, full, model=self._conv_model(code), name=f"forward{self.index}")
        syn.p_in = linked_var(self.source, "p", index="in_idx")

        def connect():
            synapses = layer.n_synapses * self.samples
            if synapses > MAX_SYNAPSES:  # before the list is made: Brian indexes synapses with int32
                raise SpecError(f"network.layers[{self.index - 1}]: the explicit synapse list of this conv layer "
                                f"(used by the {self.net.codegen.__class__.__name__} code generation) would hold "
                                f"{synapses:,} synapses ({layer.n_synapses:,} taps x batch {self.samples}), more than "
                                f"Brian's int32 index allows ({MAX_SYNAPSES:,}); use the cpp_standalone device "
                                "(no synapse list) or a smaller training.batch_size")
            pre, post = conv_connectivity(layer, batch=self.samples)
            with self.net.codegen.connecting(syn):  # a standalone device keeps no Python copies of the indices
                for start in range(0, len(pre), CONNECT_BLOCK):  # blocks: Brian copies each block several times
                    syn.connect(i=pre[start:start + CONNECT_BLOCK], j=post[start:start + CONNECT_BLOCK])
            # kernel element i = ((o c_in + c) k + a) k + e reads input (c, y + a - pad, x + e - pad) of its sample
            in_idx = (f"((i // {k * k}) % {c_in}) * {h * w} + (oy_post + (i // {k}) % {k} - {pad}) * {w}"
                      f" + (ox_post + i % {k} - {pad})")
            syn.in_idx = in_idx if self.samples == 1 else f"({in_idx}) * {self.samples} + ob_post"

        self.net.codegen.convolution(syn, layer, connect, self.gates, **self._batch_argument())
        if "u_syn_post" in syn.summed_updaters:
            reschedule(syn.summed_updaters["u_syn_post"], "groups", FORWARD_SUM_ORDER)
        reschedule(syn.summed_updaters["gw_pre"], "after_resets", CONV_ORDER["gradients"])
        return syn

    def _batch_argument(self) -> dict:
        """The code generation's ``batch`` argument; batch 1 passes none (the online call, unchanged)."""
        return {} if self.samples == 1 else {"batch": self.samples}

    def _conv_model(self, code: ConvCode) -> str:
        """Model of the conv synapses: conv_forward.eq (forward sum) and the derived kernel gradient."""
        return load_model("conv_forward")["equations"] + f"\ngw_pre = {code.kernel_gradient} : 1 (summed)"

    def _full_monitors(self, full: NeuronGroup, name: str) -> list:
        """Probes of the full-resolution units (same variables and slots as the layer probes)."""
        # u is a subexpression over the linked bias, which Brian cannot record: record its stored copy u_now
        probes = [{"u": "u_now"}.get(v, v) for v in getattr(self.net, "probes", ()) if v in full.variables]
        monitors = []
        state = [v for v in probes if v not in LEARNING_VARIABLES]
        learning = [v for v in probes if v in LEARNING_VARIABLES]
        for variables, slot in ((state, "probes"), (learning, "learning_probes")):
            if variables:
                monitors.append(StateMonitor(full, variables, record=True, when="after_resets", order=ORDER[slot],
                                             name=f"{name}_full_{slot}"))
        return monitors


@dataclass(frozen=True)
class GradientGates:
    """Where the kernel gradient ``gradient`` (a summed variable of the conv synapses) is known to be useless.

    Attributes
    ----------
    gradient : str
        The summed variable onto the kernel elements (``gw_pre``).
    skip_zero : str or None
        Postsynaptic variable whose value 0 makes the summand 0 (``delta_post``: a unit that lost its
        pooling window, or has no learning signal, adds nothing); None: not proven, sum every unit.
    gate : str or None
        Presynaptic shared variable whose value 0 makes the optimiser step of the kernel group leave every
        variable unchanged whatever the gradient (``lr_pre``: burn-in and evaluation); None: not proven.
    zero_input : str or None
        The input read at ``in_idx`` (``p_in``) whose value 0 makes the summand 0: a tap on the zero padding
        then adds nothing, so a device may sum over a zero-padded input instead of bounding every tap;
        None: not proven.
    """

    gradient: str
    skip_zero: str | None
    gate: str | None
    zero_input: str | None = None


def gradient_gates(code: ConvCode, gradient: str = "gw_pre", skip_zero: str = "delta_post",
                   gate: str = "lr", zero_input: str = "p_in") -> GradientGates:
    """The skips of the kernel gradient that are exact for this derived ``code``, proven with sympy.

    ``skip_zero`` and ``zero_input`` are each kept if the derived summand ``code.kernel_gradient`` is 0 when
    that variable is 0; ``gate`` (a variable of the kernel group, ``<gate>_pre`` seen from the synapses) if
    every statement of the optimiser step ``code.shared.statements`` leaves its variable unchanged when it is 0.
    """
    summand_zero = at_zero(code.kernel_gradient, skip_zero) == 0
    input_zero = at_zero(code.kernel_gradient, zero_input) == 0
    step_idle = True
    for line in code.shared.statements.splitlines():
        target, op, expression = line.split(None, 2)
        value = at_zero(expression, gate)
        unchanged = (value.is_Symbol and value.name == target) if op == "=" else (op in "+=-=" and value == 0)
        step_idle = step_idle and bool(unchanged)
    return GradientGates(gradient, skip_zero if summand_zero else None, f"{gate}_pre" if step_idle else None,
                         zero_input if input_zero else None)


def conv_connectivity(layer: ConvLayerSpec, group: int = CHANNEL_GROUP,
                      batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Synapses of a conv layer: (kernel element, full unit) index pairs, int32, in the order they are stored.

    One synapse per output channel o, kernel tap (c, a, e) and output position (y, x) whose input
    (c, y + a - padding, x + e - padding) lies inside the input (taps on the zero padding are left out).
    ``batch`` > 1: that list once per sample b, outermost, onto full unit ``u B + b`` (the batched layout).

    Order, outermost first: tap (c, a, e); block of ``group`` output channels; step t; channel o of the
    block, at position number ``(t + o) % m`` of the tap's m valid positions. Brian's summed variables are
    loops ``target[index[s]] += value[s]`` over the synapses in this order. Cycling through a few channels
    innermost, consecutive synapses add neither into the same unit (forward sum) nor into the same kernel
    element (gradient sum), so neither loop waits on the previous addition; pre-major order (what a
    generator ``connect`` gives) makes the gradient loop 2.5-3.5x slower. Few channels at a time keep the
    memory streams few and sequential (all channels innermost is about 1.8x slower); the skew ``t + o`` keeps
    units touched together off power-of-two strides (channel planes are 2^n units apart in DvsGesture).
    """
    c_out, c_in, k, _ = layer.kernel_shape
    _, hf, wf = layer.full_shape
    rows, cols = ([np.arange(r.start, r.stop) for r in ranges] for ranges in layer.tap_positions())
    total = layer.n_synapses
    pre, post = np.empty(total, dtype=np.int32), np.empty(total, dtype=np.int32)
    channel = np.arange(c_out, dtype=np.int64)
    start = 0
    for c in range(c_in):
        for a in range(k):
            for e in range(k):
                positions = (rows[a][:, None] * wf + cols[e][None, :]).ravel()
                m = positions.size
                skewed = positions[(np.arange(m)[:, None] + channel[None, :]) % m]  # (t, o) -> position
                units = skewed + channel[None, :] * (hf * wf)                          # (t, o) -> full unit
                elements = np.broadcast_to(channel * (c_in * k * k) + (c * k + a) * k + e, (m, c_out))
                for first in range(0, c_out, group):
                    block = slice(first, first + group)
                    stop = start + units[:, block].size
                    pre[start:stop] = elements[:, block].ravel()
                    post[start:stop] = units[:, block].ravel()
                    start = stop
    if batch > 1:  # sample outermost: each sample's part keeps the order above
        pre = np.tile(pre, batch)
        post = (post[None, :] * batch + np.arange(batch, dtype=np.int32)[:, None]).ravel()
    return pre, post


def full_probes(layer: LayerObjects) -> dict[str, np.ndarray]:
    """Recorded full-resolution probes of a conv layer after a run, ``{variable: (n_steps, n_full)}``."""
    out = {}
    for mon in getattr(layer, "full_monitors", []):
        out.update({{"u_now": "u"}.get(var, var): np.asarray(getattr(mon, var)[:]).T.copy()
                    for var in mon.record_variables})
    return out

