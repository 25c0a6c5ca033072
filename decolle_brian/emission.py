r"""Brian2 code of a derived DECOLLE rule: the statements each object of a network runs to learn.

:mod:`decolle_brian.derivation` gives the rule as sympy expressions (:class:`~decolle_brian.derivation.DerivedRule`);
this module writes them as Brian2 code, in small typed records (:class:`ExactCode`, :class:`EventCode`,
:class:`ConvCode`) that the network builder reads:

- the readout (:class:`ReadoutCode`): class sums, the local error ``err``, the back-projection ``bp``;
- the layer neurons: learning signal :math:`E_i`, postsynaptic factor, bias step;
- the forward synapses (dense) or the shared kernel and bias groups (conv): weight step.

Every learned parameter (weight, bias, kernel element, channel bias; exact and event modes) is stepped by
ONE emitter per optimiser (:data:`OPTIMIZER_EMITTERS`, see :class:`Parameter`):

.. math::

    \text{sgd:}\quad p \leftarrow p - \eta\,g \qquad
    \text{adamax } (\beta_1 = 0):\quad v \leftarrow \max(\beta_2 v, |g| + \epsilon),\quad
    p \leftarrow p - \eta\,g / v

with the step size :math:`\eta` of the step (``lr``, 0 = no learning) and the constants ``beta2``, ``eps``
from the network's namespace. Modes (:data:`MODE_EMITTERS`): ``"exact"`` runs the weight step on every
synapse every step; ``"event"`` works on presynaptic events and flushes (docs/event_driven.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import sympy as sp
from brian2.parsing.sympytools import sympy_to_str

from decolle_brian.derivation import DELTA_POST, MODES, OPTIMIZERS, DerivationError, DerivedRule, suffixed
from decolle_brian.names import ADAMAX_EVENT_BATCH_REASON

#: the layer's shared step size, set every step (declared by every group that learns)
LR_EQUATION = "lr : 1 (shared)  # step size of this step; 0 during burn-in and evaluation"


# ---- typed results ------------------------------------------------------------------------------------------
class Reduction(NamedTuple):
    """A class sum: every readout unit receives ``<name>_post`` = the sum over the readout units of ``summand``.

    ``summand`` is in the readout's ``_pre`` variables (readout -> readout all-to-all synapses, summed); a
    (name, summand) pair, as the rule's ``reductions``.
    """

    name: str
    summand: str


@dataclass(frozen=True)
class ReadoutCode:
    """The readout's part of the rule (the same in every mode and for every optimiser).

    Attributes
    ----------
    reductions : tuple of Reduction
        Class sums needed by ``err``, in the order they must be computed.
    err : str
        Statement of the readout's local error (run after the resets).
    backprojection : str
        Summand of ``bp_pre`` over the readout synapses.
    """

    reductions: tuple[Reduction, ...]
    err: str
    backprojection: str


@dataclass(frozen=True)
class LearnCode:
    """What one learning object gets: extra model lines and the statements it runs once per step."""

    equations: str
    statements: str


@dataclass(frozen=True)
class ExactCode:
    """Brian2 code of the rule in mode ``"exact"`` (every synapse every step).

    Attributes
    ----------
    readout : ReadoutCode
    neuron : LearnCode
        Layer neurons (run_regularly after the resets): learning signal ``delta``, postsynaptic factor,
        bias step.
    synapse : LearnCode
        Forward synapses (run_regularly after the learning signal): weight step.
    """

    readout: ReadoutCode
    neuron: LearnCode
    synapse: LearnCode


@dataclass(frozen=True)
class FrameCode:
    r"""The trace modes of mode ``"event"``: presynaptic coefficients, postsynaptic accumulators, frames.

    Attributes
    ----------
    pre_equations : str
        Presynaptic model lines: ``pc<m>`` (coefficient of mode m), ``dpc<m>`` (its change at the last
        event), ``fx<m>`` (shared frame factor :math:`\lambda_m^{t - T_0}`).
    pre_frame : str
        Every step, first: the frame factors.
    pre_event : str
        On an event of the presynaptic neuron, after the jump of its trace: the new coefficients.
    pre_anchor, post_anchor : str
        End of every step: the frame restarts where ``anchor(t)`` is 1 (coefficients rescaled,
        accumulators 0).
    mode_decays : tuple of str
        Brian expressions of the per-step decays :math:`\lambda_m`.
    """

    pre_equations: str
    pre_frame: str
    pre_event: str
    pre_anchor: str
    post_anchor: str
    mode_decays: tuple[str, ...]


@dataclass(frozen=True)
class EventSynapseCode:
    """Forward synapses of mode ``"event"``.

    Attributes
    ----------
    equations : str
        Extra model lines (optimiser state).
    w_now : str
        Expression of the weight in use (``forward_event.eq``'s ``w_now``).
    on_event : str
        Run on a presynaptic event, before the forward jump of ``forward_event.eq``.
    on_flush : str
        Run on a flush.
    """

    equations: str
    w_now: str
    on_event: str
    on_flush: str


@dataclass(frozen=True)
class EventCode:
    """Brian2 code of the rule in mode ``"event"`` (see :func:`event_code`)."""

    readout: ReadoutCode
    neuron: LearnCode
    synapse: EventSynapseCode
    frame: FrameCode


@dataclass(frozen=True)
class ConvCode:
    """Brian2 code of the rule for a conv layer (see :func:`conv_code`).

    Attributes
    ----------
    pool_neuron : str
        Pooled group: learning signal.
    full_neuron : str
        Full-resolution group: routed learning signal.
    kernel_gradient : str
        Summand of ``gw_pre`` over the conv synapses.
    bias_gradient : str
        Summand of ``gw_post`` over the full unit -> channel bias synapses.
    shared : LearnCode
        Shared-parameter groups (kernel elements, channel biases): the optimiser step on the summed ``gw``.
    """

    pool_neuron: str
    full_neuron: str
    kernel_gradient: str
    bias_gradient: str
    shared: LearnCode


# ---- the optimisers -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """One learned parameter as an optimiser steps it.

    Attributes
    ----------
    name : str
        The Brian variable stepped (``w``, ``b``).
    gradient : str
        Brian expression of its gradient at this step.
    what : str
        What the gradient is, for the comment of the optimiser's state (``"weight gradient"``).
    lr : str or None
        The step-size variable (``lr``, ``lr_post``); None: already folded into ``gradient``.
    summed : bool
        True: ``gradient`` is a variable holding the summed gradient (``gw``), written bare; False: an
        expression, written in parentheses where it is a factor.
    when : str
        A condition of the step besides ``lr > 0`` (a Brian expression, 1 or 0); empty: every step.
    """

    name: str
    gradient: str
    what: str = ""
    lr: str | None = "lr"
    summed: bool = False
    when: str = ""

    @property
    def factor(self) -> str:
        """The gradient as a factor of a product."""
        return self.gradient if self.summed else f"({self.gradient})"

    @property
    def gate(self) -> str:
        """1 where this step learns, else 0."""
        return f"{self.when} * int({self.lr} > 0)" if self.when else f"int({self.lr} > 0)"

    @property
    def scale(self) -> str:
        """Prefix of the step: the gate where the step has a condition (lr > 0 alone needs none)."""
        return f"{self.gate} * " if self.when else ""


class OptimizerEmitter(Protocol):
    """Writes the step of one learned parameter (:class:`Parameter`) and declares the state it keeps."""

    #: the step is linear in the gradient (see :attr:`Sgd.linear`)
    linear: bool

    def state_equations(self, param: Parameter) -> list[str]:
        """Brian2 equation lines of the state the optimiser keeps per parameter (none for SGD)."""
        ...

    def step(self, param: Parameter) -> str:
        """Brian2 code of one step of ``param`` from its gradient."""
        ...


class Sgd:
    """Plain gradient descent, ``p -= lr * g``: no state."""

    #: the step is lr times the gradient: lr folds into the postsynaptic factor, and the event mode can
    #: keep a pending sum of steps (docs/event_driven.md)
    linear = True

    def state_equations(self, param: Parameter) -> list[str]:
        """No state: an empty list."""
        return []

    def step(self, param: Parameter) -> str:
        """``p -= lr * g`` (``p -= g`` when the learning rate is already in the gradient)."""
        if param.lr is None:
            return f"{param.name} -= {param.gradient}"
        return f"{param.name} -= {param.scale}{param.lr} * {param.factor}"


class Adamax:
    """Adamax with beta1 = 0, stepped only where the gate is 1: ``v = max(beta2 v, |g| + eps); p -= lr g / v``.

    ``max(a, b)`` is ``clip(a, b, inf)`` in Brian; ``v >= eps`` once stepped, so ``clip(v, eps, inf) = v`` there.
    """

    #: the step depends on every past gradient: no folding, no pending sum
    linear = False

    @staticmethod
    def state(param: Parameter) -> str:
        """Name of the parameter's infinity-norm estimate, ``v_<name>``."""
        return f"v_{param.name}"

    def state_equations(self, param: Parameter) -> list[str]:
        """One state variable per parameter: the infinity-norm estimate ``v``."""
        return [f"{self.state(param)} : 1  # Adamax infinity-norm estimate of the {param.what}"]

    def step(self, param: Parameter) -> str:
        """Update ``v`` where the gate is 1, then ``p -= lr * g / v``."""
        if param.lr is None:
            raise DerivationError("Adamax cannot step a gradient with the step size folded in")
        v = self.state(param)
        return (f"{v} = {v} + {param.gate} * (clip(beta2 * {v}, abs({param.gradient}) + eps, inf) - {v})\n"
                f"{param.name} -= {param.scale}{param.lr} * {param.factor} / clip({v}, eps, inf)")


#: one step emitter per optimiser name (the names: derivation.OPTIMIZERS)
OPTIMIZER_EMITTERS: dict[str, OptimizerEmitter] = {"sgd": Sgd(), "adamax": Adamax()}


def optimizer_emitter(optimizer: str) -> OptimizerEmitter:
    """The step emitter of an optimiser name, or a DerivationError naming the choices."""
    if optimizer not in OPTIMIZER_EMITTERS:
        raise DerivationError(f"Unknown optimiser '{optimizer}'; choose one of {list(OPTIMIZERS)}")
    return OPTIMIZER_EMITTERS[optimizer]


# ---- dense layers ------------------------------------------------------------------------------------------
def readout_code(rule: DerivedRule) -> ReadoutCode:
    """Class sums, local error and back-projection of a rule (the same in every mode)."""
    return ReadoutCode(
        reductions=tuple(Reduction(sym.name, to_brian(suffixed(summand, "_pre"))) for sym, summand in rule.reductions),
        err=f"err = {to_brian(rule.err)}",
        backprojection=to_brian(rule.backprojection),
    )


def exact_code(rule: DerivedRule, optimizer: str = "sgd") -> ExactCode:
    """Brian2 code of the rule in mode ``"exact"``: the weight step on every synapse every step."""
    opt = optimizer_emitter(optimizer)
    bias = Parameter("b", to_brian(rule.grad_b), "bias gradient")
    equations, signal = [LR_EQUATION], [f"delta = {to_brian(rule.delta)}"]
    if opt.linear:
        # the per-synapse work is one multiply-add: lr and E_i are folded into fac_post
        equations.append("fac : 1  # lr * E_i, computed once per neuron for the weight step")
        signal.append("fac = lr * delta")
        weight = Parameter("w", to_brian(rule.grad_w.subs(DELTA_POST, sp.Symbol("fac_post", real=True))), lr=None)
    else:
        weight = Parameter("w", to_brian(rule.grad_w), "weight gradient", lr="lr_post")
    return ExactCode(
        readout=readout_code(rule),
        neuron=LearnCode("\n".join(equations + opt.state_equations(bias)), "\n".join(signal + [opt.step(bias)])),
        synapse=LearnCode("\n".join(opt.state_equations(weight)), opt.step(weight)),
    )


def event_code(rule: DerivedRule, optimizer: str = "sgd") -> EventCode:
    r"""Brian2 code of the rule for the event-driven mode (``NetworkSpec.mode = "event"``).

    Between two events of presynaptic neuron j its trace is a sum of the modes of ``trace.eq`` (derived
    from Brian's own state update, :class:`~decolle_brian.derivation.EventForm`):
    :math:`P_j[t] = \sum_m C_{mj} \lambda_m^{t - t_0}`. The weight gradient is linear in :math:`P_j`,
    :math:`g_{ij}[t] = F_i[t] P_j[t]` (F: the postsynaptic factor, ``lr * delta`` for SGD), so its sum over
    the steps of a frame starting at :math:`T_0` factorises per mode into a presynaptic coefficient and a
    postsynaptic accumulator:

    .. math::

        \sum_{t=T_0}^{t_1} F_i[t] P_j[t] = \sum_m c_{mj}\,acc_{mi}[t_1],\quad
        c_{mj} = C_{mj} \lambda_m^{-(t_0 - T_0)},\quad
        acc_{mi}[t_1] = \sum_{t=T_0}^{t_1} \lambda_m^{t - T_0} F_i[t]

    as long as j has no event in :math:`(t_0, t_1]`. At an event of j the coefficients change by
    :math:`dc_{mj}`; the synapse adds :math:`\sum_m dc_{mj} acc_{mi}` to what it stores, which keeps
    the pending sum exact (the difference :math:`acc_{mi}[t_1] - acc_{mi}[t_0 - 1]` of the accumulator
    snapshot, folded into the stored value). A flush adds the whole pending sum; afterwards the frame
    restarts (accumulators 0, coefficients rescaled by :math:`\lambda_m^{T_0' - T_0}`).

    Names: presynaptic ``pc<m>`` (coefficient c), ``dpc<m>`` (its change at this event), ``fx<m>``
    (shared frame factor :math:`\lambda_m^{t - T_0}`); postsynaptic ``acc<m>``. Per-step inputs used by
    the code (TimedArrays of the network): ``since_flush(t)`` (:math:`t - T_0`), ``anchor(t)`` (1: the
    frame restarts after this step), ``sample_end(t)`` (1 at the last step of a sample).

    A linear optimiser (SGD): the stored weight ``w`` is :math:`W_{ij}` plus the pending sum, the weight in
    use is ``w_now = w - pending``; events and flushes keep it exact. (``w_now`` is an expression, not a
    Brian subexpression: Brian evaluates a subexpression of an event code block with the values read at the
    block's start, before the lazy update of ``w``.) Adamax cannot be lazy (its step depends on every past
    gradient): the gradient is summed lazily over the sample in ``gw`` (and ``gsum_b``) and one Adamax step
    is made at the sample end (the reference's non-online option); the weight in use is ``w``.
    """
    opt = optimizer_emitter(optimizer)
    if rule.event is None:
        raise DerivationError("This rule was derived without the event-driven model files; use derive()")
    form, n_modes = rule.event, len(rule.event.decays)
    pre, post = (lambda name: sp.Symbol(f"{name}_pre", real=True)), (lambda n: sp.Symbol(f"{n}_post", real=True))
    pending = to_brian(sum(pre(f"pc{m}") * post(f"acc{m}") for m in range(n_modes)))
    change = to_brian(sum(pre(f"dpc{m}") * post(f"acc{m}") for m in range(n_modes)))
    # the accumulated postsynaptic factor: F = dgrad/dP_j with the learning signal replaced by fac
    factor = _unsuffixed(form.post_factor.subs(DELTA_POST, post("fac")), "_post")
    frame = FrameCode(
        pre_equations="\n".join(
            f"pc{m} : 1  # coefficient of mode {m} of P in the current frame\n"
            f"dpc{m} : 1  # its change at this neuron's last event\n"
            f"fx{m} : 1 (shared)  # frame factor lambda_{m}^(t - T0)" for m in range(n_modes)),
        pre_frame="\n".join(f"fx{m} = ({to_brian(d)})**since_flush(t)" for m, d in enumerate(form.decays)),
        pre_event="\n".join(f"dpc{m} = ({to_brian(c)}) / fx{m} - pc{m}\npc{m} = pc{m} + dpc{m}"
                            for m, c in enumerate(form.coefficients)),
        pre_anchor="\n".join(f"pc{m} = pc{m} * (1 + anchor(t) * (fx{m} * ({to_brian(d)}) - 1))"
                             for m, d in enumerate(form.decays)),
        post_anchor="\n".join(f"acc{m} = acc{m} * (1 - anchor(t))" for m in range(n_modes)),
        mode_decays=tuple(to_brian(decay) for decay in form.decays),
    )
    accumulate = [f"acc{m} += fx{m} * ({to_brian(factor)})" for m in range(n_modes)]
    equations = [LR_EQUATION, "fac : 1  # postsynaptic factor F of the weight gradient of this step"]
    equations += [f"acc{m} : 1  # sum over the frame of lambda_{m}^(t - T0) * F" for m in range(n_modes)]
    signal = [f"delta = {to_brian(rule.delta)}"]
    if opt.linear:
        # lazy weights: w holds W plus the pending sum of steps (lr is in fac); a flush applies the sum
        bias = Parameter("b", to_brian(rule.grad_b), "bias gradient")
        signal += ["fac = lr * delta", opt.step(bias)]
        neuron = LearnCode("\n".join(equations + opt.state_equations(bias)), "\n".join(signal + accumulate))
        synapse = EventSynapseCode(equations="", w_now=f"w - ({pending})",
                                   # the pending sum stays exact when the presynaptic coefficients change
                                   on_event=f"w += {change}", on_flush=opt.step(Parameter("w", pending, lr=None)))
    else:
        # one step per sample on the gradient (unit step size) summed over the learning steps of the sample
        at_sample_end = "int(sample_end(t) > 0)"
        bias = Parameter("b", "gsum_b", "(per-sample) bias gradient", summed=True, when=at_sample_end)
        weight = Parameter("w", "gw", "(per-sample) weight gradient", lr="lr_post", summed=True, when=at_sample_end)
        grad_b = to_brian(rule.grad_b.subs(sp.Symbol("delta", real=True), sp.Symbol("fac", real=True)))
        signal += ["fac = int(lr > 0) * delta", f"gsum_b += {grad_b}"]
        equations.append("gsum_b : 1  # bias gradient summed over the sample")
        neuron = LearnCode("\n".join(equations + opt.state_equations(bias)),
                           "\n".join(signal + accumulate + [opt.step(bias), f"gsum_b = gsum_b * (1 - {bias.gate})"]))
        synapse = EventSynapseCode(
            equations="\n".join(["gw : 1  # weight gradient summed over the sample, minus the pending part"]
                                + opt.state_equations(weight)),
            w_now="w",  # constant within a sample
            on_event=f"gw -= {change}",
            on_flush="\n".join([f"gw += {pending}", opt.step(weight), f"gw = gw * (1 - {weight.gate})"]),
        )
    return EventCode(readout=readout_code(rule), neuron=neuron, synapse=synapse, frame=frame)


def sample_name(name: str, sample: int) -> str:
    """Name of sample ``sample``'s copy of a per-neuron variable in the batch columns (``pc0`` -> ``pc0_b2``)."""
    return f"{name}_b{sample}"


@dataclass(frozen=True)
class EventBatchSynapseCode:
    """Forward synapses of a batched event-driven layer: one stored weight for the whole batch.

    Attributes
    ----------
    on_event : str
        Fold of every sample's coefficient changes into ``w`` (run first at an event of any sample).
    w_now : str
        Expression of the weight in use, ``w`` minus the pending sums of every sample.
    on_flush : str
        The pending sums of the whole batch applied.
    """

    on_event: str
    w_now: str
    on_flush: str


@dataclass(frozen=True)
class EventBatchCode:
    """Brian2 code of the rule in mode ``"event"`` for a batch (see :func:`event_batch_code`).

    Attributes
    ----------
    readout, frame : as :class:`EventCode` (per unit: one copy per sample)
    neuron : LearnCode
        Per unit: learning signal, ``fac`` and accumulators, as :class:`EventCode` without the bias step.
    synapse : EventBatchSynapseCode
    bias : LearnCode
        The shared bias of a neuron: its step on the gradient summed over the batch (``fac_b<b>``).
    batch_size : int
    """

    readout: ReadoutCode
    neuron: LearnCode
    synapse: EventBatchSynapseCode
    frame: FrameCode
    bias: LearnCode
    batch_size: int


def event_batch_code(rule: DerivedRule, optimizer: str = "sgd", batch_size: int = 2) -> EventBatchCode:
    r"""Brian2 code of the rule in mode ``"event"`` for B samples side by side sharing one weight (SGD).

    The SGD step of the batch-mean loss, :math:`W_{ij} \mathrel{-}= \sum_b F_{bi}[t] P_{bj}[t]` (the 1/B is in
    the readout error, so in :math:`F_{bi}`), is linear in every sample's trace, so :func:`event_code`'s lazy
    algebra holds per sample: sample b keeps its own coefficients ``pc<m>_b<b>`` and accumulators
    ``acc<m>_b<b>``, and the one stored weight folds all of them,

    .. math::

        w = W_{ij} + \sum_b \sum_m c_{mbj}\,acc_{mbi},\qquad
        \text{event of any sample at } j:\ w \mathrel{+}= \sum_b \sum_m dc_{mbj}\,acc_{mbi}

    (``dpc`` is 0 for the samples without an event), the weight in use is ``w`` minus the whole sum, and a
    flush subtracts it. The bias is shared: one step per neuron on :math:`\sum_b` (the rule's bias gradient
    with the sample's ``fac``). The per-unit statements are :func:`event_code`'s without the bias step.
    Adamax cannot be lazy at every step: :data:`decolle_brian.names.ADAMAX_EVENT_BATCH_REASON`.
    """
    opt = optimizer_emitter(optimizer)
    if not opt.linear:
        raise DerivationError(f"mode 'event' with batches needs a linear optimiser (SGD): {ADAMAX_EVENT_BATCH_REASON}")
    single = event_code(rule, optimizer)
    n_modes = len(rule.event.decays)
    own_bias_step = opt.step(Parameter("b", to_brian(rule.grad_b), "bias gradient"))
    lines = single.neuron.statements.splitlines()
    if own_bias_step not in lines:
        raise DerivationError(f"the event code's bias step {own_bias_step!r} was not found in its statements")
    neuron = LearnCode(single.neuron.equations, "\n".join(line for line in lines if line != own_bias_step))

    def per_sample(name: str, b: int, side: str) -> sp.Symbol:
        return sp.Symbol(f"{sample_name(name, b)}_{side}", real=True)

    samples = range(batch_size)
    pending = to_brian(sum(per_sample(f"pc{m}", b, "pre") * per_sample(f"acc{m}", b, "post")
                           for b in samples for m in range(n_modes)))
    change = to_brian(sum(per_sample(f"dpc{m}", b, "pre") * per_sample(f"acc{m}", b, "post")
                          for b in samples for m in range(n_modes)))
    delta = sp.Symbol("delta", real=True)
    summed_bias = to_brian(sum(rule.grad_b.subs(delta, sp.Symbol(sample_name("fac", b), real=True)) for b in samples))
    bias = LearnCode("\n".join(f"{sample_name('fac', b)} : 1  # fac of sample {b}" for b in samples),
                     opt.step(Parameter("b", summed_bias, lr=None)))
    synapse = EventBatchSynapseCode(on_event=f"w += {change}", w_now=f"w - ({pending})",
                                    on_flush=opt.step(Parameter("w", pending, lr=None)))
    return EventBatchCode(readout=single.readout, neuron=neuron, synapse=synapse, frame=single.frame, bias=bias,
                          batch_size=batch_size)


#: the Brian2 code of a dense layer per mode (the names: derivation.MODES)
MODE_EMITTERS: dict[str, Callable[[DerivedRule, str], ExactCode | EventCode]] = {
    "exact": exact_code, "event": event_code,
}


#: the Brian2 code of a batched dense layer per mode, where it is not the conv code (docs/batch.md)
BATCH_MODE_EMITTERS: dict[str, Callable[[DerivedRule, str, int], EventBatchCode]] = {"event": event_batch_code}


def dense_code(rule: DerivedRule, optimizer: str = "sgd", mode: str = "exact",
               batch_size: int = 1) -> ExactCode | EventCode | EventBatchCode:
    """Brian2 code of the rule for dense layers, in one mode (:data:`MODE_EMITTERS`; a batch of more than one
    sample in a mode of :data:`BATCH_MODE_EMITTERS`: its batched code)."""
    if mode not in MODE_EMITTERS:
        raise DerivationError(f"Unknown mode '{mode}'; choose one of {list(MODES)}")
    if batch_size > 1 and mode in BATCH_MODE_EMITTERS:
        return BATCH_MODE_EMITTERS[mode](rule, optimizer, batch_size)
    return MODE_EMITTERS[mode](rule, optimizer)


# ---- conv layers ----------------------------------------------------------------------------------------------
def conv_code(rule: DerivedRule, optimizer: str = "sgd") -> ConvCode:
    r"""Brian2 code of the rule for a conv layer (shared kernel, max-pool on U before the spike).

    The pooled unit gets the learning signal of a LIF unit, :math:`E = bp\,\sigma'(u)` with u the max;
    the full-resolution unit gets it through the derivative of the pool (``conv_unit.eq [route]``),
    :math:`E_{full} = E_{pool}\,[\text{won the max}]`; a shared parameter gets its three-factor terms
    summed over every position where it acts:

    .. math::

        g_{K[o,c,a,e]} = \sum_{y,x} E_{full}[o,y,x]\,P_{pad}[c,y+a,x+e],\qquad
        g_{b[o]} = \sum_{y,x} E_{full}[o,y,x]

    and the optimiser steps it as a dense parameter (``w`` of the shared group, ``gw`` its summed gradient).
    """
    opt = optimizer_emitter(optimizer)
    if rule.grad_kernel is None:
        raise DerivationError("This rule was derived without the conv model files; use derive()")
    shared = Parameter("w", "gw", "summed gradient", summed=True)
    return ConvCode(
        pool_neuron=f"delta = {to_brian(rule.delta_pool)}",
        full_neuron=f"delta = {to_brian(rule.delta_full)}",
        kernel_gradient=to_brian(rule.grad_kernel),
        bias_gradient=to_brian(rule.grad_shared_bias),
        shared=LearnCode("\n".join([LR_EQUATION] + opt.state_equations(shared)), opt.step(shared)),
    )


# ---- readable form ----------------------------------------------------------------------------------------------
def describe(rule: DerivedRule, optimizer: str = "sgd") -> str:
    """The rule as readable math and as the Brian2 code that will run."""
    def pp(e):
        return sp.pretty(e, use_unicode=True, wrap_line=False)
    lines = [
        f"Loss ({rule.loss_name}), per layer and time step, y = readout, target = one-hot class:",
        pp(rule.loss), "",
        "Local error of readout unit k (err = dL/dy_k):", pp(rule.err),
    ]
    for sym, summand in rule.reductions:
        lines += [f"  where {sym} = sum over classes of", "  " + pp(summand)]
    lines += [
        "", "Back-projected error at layer neuron i (bp_i = sum_k over readout synapses of):",
        pp(rule.backprojection),
        "", f"Surrogate sigma'(u) ({rule.surrogate_name}):", pp(rule.surrogate),
        "", "Per-neuron learning signal E_i = dL/dU_i (delta):", pp(rule.delta),
        "", "Three-factor weight gradient dL/dW_ij (error x surrogate x presynaptic trace):", pp(rule.grad_w),
        "Bias gradient dL/db_i:", pp(rule.grad_b), "",
    ]
    code = exact_code(rule, optimizer)
    lines.append(f"Brian2 code ({optimizer}):")
    for reduction in code.readout.reductions:
        lines.append(f"  [readout -> readout, summed]  {reduction.name}_post = {reduction.summand}")
    lines.append(f"  [readout, after_resets]       {code.readout.err}")
    lines.append(f"  [readout synapse, summed]     bp_pre = {code.readout.backprojection}")
    for stmt in code.neuron.statements.splitlines():
        lines.append(f"  [layer neuron]                {stmt}")
    for stmt in code.synapse.statements.splitlines():
        lines.append(f"  [forward synapse]             {stmt}")
    if rule.grad_kernel is not None:
        conv = conv_code(rule, optimizer)
        lines += ["", f"Conv layers (shared kernel, max-pool on U), Brian2 code ({optimizer}):",
                  f"  [pooled unit]                 {conv.pool_neuron}",
                  f"  [full-resolution unit]        {conv.full_neuron}",
                  f"  [conv synapse, summed]        gw_pre = {conv.kernel_gradient}",
                  f"  [full unit -> bias, summed]   gw_post = {conv.bias_gradient}"]
        lines += [f"  [kernel and bias groups]      {stmt}" for stmt in conv.shared.statements.splitlines()]
    if rule.event is not None:
        event = event_code(rule, optimizer)
        lines += ["", 'Event-driven mode (network.mode = "event"): between two events of a presynaptic neuron',
                  "P[t0 + n] = sum_m C_m lambda_m^n (modes of trace.eq), gradient = F_i P_j with F_i:",
                  "  " + pp(rule.event.post_factor)]
        lines += [f"  mode {m}: lambda = {decay}, C = {coef}"
                  for m, (decay, coef) in enumerate(zip(rule.event.decays, rule.event.coefficients, strict=True))]
        lines.append(f"Brian2 code ({optimizer}, event-driven):")
        for where, text in (("[presynaptic event]", event.frame.pre_event), ("[layer neuron]", event.neuron.statements),
                            ("[forward synapse, event]", event.synapse.on_event),
                            ("[forward synapse, flush]", event.synapse.on_flush)):
            lines += [f"  {where:<30}{stmt}" for stmt in text.splitlines()]
        lines.append(f"  {'[forward synapse, weight]':<30}w_now = {event.synapse.w_now}")
    return "\n".join(lines)


# ---- sympy -> Brian ----------------------------------------------------------------------------------------------
def to_brian(expr: sp.Expr) -> str:
    """Brian2 code for a sympy expression (Piecewise becomes int(condition) arithmetic).

    Brian2 has no Max, Min or Heaviside (from ``max``, ``clip`` of a user's expression or a derivative):
    they are written with ``abs`` and ``sign``, ``Max(a, b) = (a + b + |a - b|)/2``,
    ``Heaviside(x) = (1 + sign(x))/2`` (1/2 at 0, sympy's value).
    """
    expr = sp.piecewise_fold(_without_max_min_step(expr))

    def lower(e):
        if isinstance(e, sp.Piecewise):
            result = sp.Integer(0)
            guard = sp.true
            for value, cond in e.args:
                result += lower(value) * _indicator(sp.And(guard, cond))
                guard = sp.And(guard, sp.Not(cond))
            return result
        if not e.args:
            return e
        return e.func(*[lower(a) for a in e.args])

    return sympy_to_str(lower(expr))


def _without_max_min_step(expr: sp.Expr) -> sp.Expr:
    def pairwise(sign):
        def fold(first, *rest):
            for other in rest:
                first = (first + other + sign * sp.Abs(first - other)) / 2
            return first
        return fold

    def step(x, at_zero=sp.S.Half):
        return (1 + sp.sign(x)) / 2 + (at_zero - sp.S.Half) * (1 - sp.Abs(sp.sign(x)))

    if not expr.has(sp.Max, sp.Min, sp.Heaviside):
        return expr  # the built-in rules: unchanged
    return expr.replace(sp.Max, pairwise(1)).replace(sp.Min, pairwise(-1)).replace(sp.Heaviside, step)


def _indicator(cond) -> sp.Expr:
    cond = sp.simplify_logic(cond) if not isinstance(cond, sp.core.relational.Relational) else cond
    if cond == sp.true:
        return sp.Integer(1)
    if cond == sp.false:
        return sp.Integer(0)
    return sp.Function("int")(cond)


def _unsuffixed(expr: sp.Expr, suffix: str) -> sp.Expr:
    return expr.subs({s: sp.Symbol(s.name.removesuffix(suffix), real=True) for s in expr.free_symbols
                      if isinstance(s, sp.Symbol) and s.name.endswith(suffix)})
