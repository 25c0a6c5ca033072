r"""Symbolic derivation of the DECOLLE plasticity rule (sympy), from the model files and a chosen loss.

Nothing here states the rule. It is obtained by the chain rule through the model of ``equations/``:

.. math::

    y_k = y^{syn}_k + g_k,\quad y^{syn}_k = \sum_i G_{ki} m_i S_i,\quad S_i = H(U_i),\quad
    U_i = u^{syn}_i + b_i + R_i,\quad u^{syn}_i = \sum_j W_{ij} P_j

with the Heaviside's derivative replaced by a surrogate :math:`\sigma'(U)`. Every factor below is a
sympy derivative of an expression read from the ``.eq`` files:

- ``err`` (readout unit k):  :math:`\partial L/\partial y_k`
- ``bp`` (layer neuron i, summed over the readout synapses): :math:`\sum_k err_k\,\partial y_k/\partial S_i`
- ``delta`` (layer neuron i): :math:`E_i = \partial L/\partial U_i = bp_i\,\sigma'(U_i)`
- weight gradient (synapse ij): :math:`E_i\,\partial U_i/\partial W_{ij}`;
  bias gradient :math:`E_i\,\partial U_i/\partial b_i`

Losses are written in a small language over the readout ``y`` and ``target`` of one class, with class
reductions ``sum(...)`` and ``mean(...)``; an expression with a bare ``y`` outside any reduction is an
element-wise loss, averaged over the classes (PyTorch's default reduction). Reductions become extra
summed variables over the readout units when the rule is emitted as Brian2 code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp
from brian2 import Equations
from brian2.parsing.sympytools import str_to_sympy, sympy_to_str
from brian2.stateupdaters.exponential_euler import exponential_euler

from decolle_brian.equations_io import load_model, statements

# the built-in names and texts live in a leaf module, so that configuration and spec need no sympy
from decolle_brian.names import LOSSES, MODES, OPTIMIZERS, SURROGATES  # noqa: F401 - re-exported

# Brian's own symbols are real; sympy compares symbols by name AND assumptions.
Y, TARGET, U = (sp.Symbol(name, real=True) for name in ("y", "target", "u"))
N_CLASSES = sp.Symbol("n_classes", positive=True, integer=True)


class ClassSum(sp.Function):
    """Sum of its argument over the readout classes (``y``, ``target`` inside are the summed class)."""

    nargs = 1


class DerivationError(ValueError):
    """A loss, surrogate or optimiser that cannot be turned into a plasticity rule."""


def _where(cond, a, b):
    return sp.Piecewise((a, cond), (b, True))


def _clip(x, lo, hi):
    return sp.Max(lo, sp.Min(hi, x))


def _parse(text: str, allowed: dict[str, sp.Basic], what: str) -> sp.Expr:
    functions = {
        "sum": ClassSum, "mean": lambda e: ClassSum(e) / N_CLASSES, "where": _where, "clip": _clip,
        "abs": sp.Abs, "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "tanh": sp.tanh, "sign": sp.sign,
        "max": sp.Max, "min": sp.Min,
    }
    try:
        expr = sp.parse_expr(text, local_dict={**functions, **allowed}, evaluate=True)
    except Exception as exc:  # sympy raises many kinds for bad syntax
        raise DerivationError(f"Cannot parse the {what} expression '{text}': {exc}") from None
    if not isinstance(expr, sp.Expr):
        raise DerivationError(f"The {what} expression '{text}' is not a numeric expression")
    unknown = sorted(str(s) for s in expr.free_symbols if s not in set(allowed.values()))
    if unknown:
        raise DerivationError(
            f"The {what} expression '{text}' uses unknown name(s) {unknown}; "
            f"allowed: {sorted(allowed)} and functions {sorted(functions)}"
        )
    return expr


def parse_loss(loss: str) -> tuple[str, sp.Expr]:
    """Return ``(name, sympy expression)`` for a built-in loss name or a user expression of y, target."""
    text = LOSSES.get(loss, loss)
    if loss not in LOSSES and not any(c in loss for c in "()+-*/") and loss.isidentifier() and loss != "y":
        raise DerivationError(f"Unknown loss '{loss}'; built-in: {sorted(LOSSES)}, or an expression of y, target")
    expr = _parse(text, {"y": Y, "target": TARGET, "n_classes": N_CLASSES}, "loss")
    if Y not in expr.free_symbols:
        raise DerivationError(f"The loss '{loss}' does not depend on the readout y; nothing to learn")
    if _has_bare(expr, Y) or _has_bare(expr, TARGET):
        expr = ClassSum(expr) / N_CLASSES  # element-wise loss: mean over the classes
    return (loss if loss in LOSSES else "custom", expr)


def parse_surrogate(surrogate: str, **params: float) -> tuple[str, sp.Expr]:
    """Return ``(name, sigma'(u))`` for a built-in surrogate (with its parameters) or an expression of u."""
    if surrogate in SURROGATES:
        text, defaults = SURROGATES[surrogate]
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise DerivationError(f"Surrogate '{surrogate}' has no parameter(s) {unknown}; it takes {sorted(defaults)}")
        values = {**defaults, **params}
        for key, value in values.items():
            if not math.isfinite(value) or value <= 0:
                raise DerivationError(f"Surrogate parameter '{key}' must be a positive number, got {value}")
        symbols = {key: sp.Float(value) for key, value in values.items()}
        name = surrogate
    else:
        if surrogate.isidentifier() and surrogate != "u":
            raise DerivationError(
                f"Unknown surrogate '{surrogate}'; built-in: {sorted(SURROGATES)}, or an expression of u"
            )
        text, symbols, name = surrogate, {key: sp.Float(v) for key, v in params.items()}, "custom"
    expr = _parse(text, {"u": U, **symbols}, "surrogate")
    if U not in expr.free_symbols:
        raise DerivationError(f"The surrogate '{surrogate}' does not depend on u")
    return name, expr


def _has_bare(expr: sp.Basic, symbol: sp.Symbol) -> bool:
    """True if ``symbol`` occurs in ``expr`` outside every ClassSum."""
    if isinstance(expr, ClassSum):
        return False
    if expr == symbol:
        return True
    return any(_has_bare(arg, symbol) for arg in expr.args)


@dataclass
class _Reductions:
    """Class sums as symbols ``red0, red1, ...`` with their summands (inner sums replaced)."""

    summands: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)

    def hoist(self, expr: sp.Expr) -> sp.Expr:
        """Replace every ClassSum (innermost first) by a reduction symbol."""
        def visit(e):
            if not e.args:
                return e
            e = e.func(*[visit(a) for a in e.args])
            if isinstance(e, ClassSum):
                summand = e.args[0]
                if not summand.has(Y, TARGET):
                    return N_CLASSES * summand  # a constant summed over the classes
                for sym, known in self.summands.items():
                    if sp.simplify(known - summand) == 0:
                        return sym
                sym = sp.Symbol(f"red{len(self.summands)}", real=True)
                self.summands[sym] = summand
                return sym
            return e
        return visit(expr)

    def d_dy_scalar(self, expr: sp.Expr) -> sp.Expr:
        """Derivative of a scalar (no bare y): reductions nested in a summand are summed over the classes."""
        result = sp.Integer(0)
        for sym in [s for s in expr.free_symbols if s in self.summands]:
            outer = sp.diff(expr, sym)
            summand = self.summands[sym]
            inner = sp.diff(summand, Y)
            for sub in [s for s in summand.free_symbols if s in self.summands]:
                coef = self.hoist(ClassSum(sp.diff(summand, sub)))
                inner += coef * self.d_dy_scalar(sub)
            result += outer * inner
        return result


def _summed(eqs: Equations, name: str) -> sp.Expr:
    return str_to_sympy(eqs[name].expr.code)


def _suffixed(expr: sp.Expr, suffix: str) -> sp.Expr:
    return expr.subs({s: sp.Symbol(f"{s.name}{suffix}", real=True) for s in expr.free_symbols
                      if isinstance(s, sp.Symbol) and s.name not in ("n_classes",)})


@dataclass
class EventForm:
    r"""The event-driven form of the forward sum and of the weight gradient (mode ``"event"``).

    Derived from the model files by :func:`_derive_event`: ``forward_event.eq`` moves trace.eq's linear
    filters to the postsynaptic side (checked: same equations, the same jump through the weight), so
    :math:`u^{syn}_i = \sum_j W_{ij} P_j` and the weight gradient is the one of ``forward.eq``. Between two
    events the presynaptic trace follows Brian's own (exponential Euler) update of ``trace.eq``, a linear map
    :math:`x[t+1] = D x[t]` of the state :math:`x = (Q, P)`; diagonalising D gives its modes:

    .. math::

        P[t_0 + n] = \sum_m C_m(Q[t_0], P[t_0])\,\lambda_m^n

    Attributes
    ----------
    decays : list of sympy.Expr
        :math:`\lambda_m`, the per-step decay of each mode (``decay_mem``, ``decay_syn``).
    coefficients : list of sympy.Expr
        :math:`C_m` in the neuron's ``q``, ``p`` just after its event (its jump included).
    post_factor : sympy.Expr
        :math:`\partial g_{ij} / \partial P_j`: the weight gradient is this (postsynaptic) factor times
        ``p_pre`` (``delta_post`` for the shipped model).
    """

    decays: list
    coefficients: list
    post_factor: sp.Expr


@dataclass
class DerivedRule:
    """The plasticity rule derived for one loss and surrogate, as sympy expressions and Brian2 code.

    Attributes
    ----------
    err : sympy.Expr
        dL/dy of one readout unit, in ``y``, ``target``, ``n_classes`` and the reductions ``red*``.
    reductions : list of (sympy.Symbol, sympy.Expr)
        Class sums needed by ``err``, in the order they must be computed (a summand of ``y``, ``target``
        and earlier reductions).
    backprojection : sympy.Expr
        Summand of ``bp_pre`` over the readout synapses (``G * mask_pre * err_post`` for the shipped model).
    delta : sympy.Expr
        Per-neuron learning signal E_i = dL/dU_i in neuron variables (``bp``, ``u``).
    grad_w, grad_b : sympy.Expr
        dL/dW_ij (synapse variables, ``delta_post``) and dL/db_i (neuron variables, ``delta``).
    """

    loss_name: str
    loss: sp.Expr
    surrogate_name: str
    surrogate: sp.Expr
    err: sp.Expr
    reductions: list[tuple[sp.Symbol, sp.Expr]]
    backprojection: sp.Expr
    delta: sp.Expr
    grad_w: sp.Expr
    grad_b: sp.Expr
    # conv layers (see :meth:`conv_code`); None only for a rule built by hand without them
    delta_pool: sp.Expr | None = None
    delta_full: sp.Expr | None = None
    grad_kernel: sp.Expr | None = None
    grad_shared_bias: sp.Expr | None = None
    # event-driven mode (see :meth:`event_code`); None only for a rule built by hand without it
    event: EventForm | None = None

    # ---- Brian2 code -------------------------------------------------------------------------------------
    def code(self, optimizer: str = "sgd", mode: str = "exact") -> dict[str, str]:
        """Brian2 code of the rule, per object.

        Returns a dict with keys ``reductions`` (list of summands, ``_pre`` variables over readout->readout
        all-to-all synapses), ``err`` (readout run_regularly), ``backprojection`` (readout-synapse summed
        expression), ``neuron_equations`` and ``neuron`` (layer run_regularly: learning signal and bias step),
        ``synapse_equations`` and ``synapse`` (forward-synapse run_regularly: weight step).
        Constants: ``beta2``, ``eps`` (Adamax); the layer's shared ``lr`` is the step size, 0 = no learning.
        """
        if optimizer not in OPTIMIZERS:
            raise DerivationError(f"Unknown optimiser '{optimizer}'; choose one of {list(OPTIMIZERS)}")
        if mode not in MODES:
            raise DerivationError(f"Unknown mode '{mode}'; choose one of {list(MODES)}")
        if mode == "event":
            return self.event_code(optimizer)
        red_pre = {sym: sp.Symbol(f"{sym.name}_pre", real=True) for sym, _ in self.reductions}
        reductions = [
            (sym.name, to_brian(_suffixed(summand.subs({}), "_pre").subs(
                {sp.Symbol(f"{s.name}_pre", real=True): red_pre[s] for s in red_pre})))
            for sym, summand in self.reductions
        ]
        out = {
            "reductions": reductions,
            "err": f"err = {to_brian(self.err)}",
            "backprojection": to_brian(self.backprojection),
            "neuron_equations": "lr : 1 (shared)  # step size of this step; 0 during burn-in and evaluation",
        }
        grad_b, grad_w = to_brian(self.grad_b), to_brian(self.grad_w)
        if optimizer == "sgd":
            out["neuron_equations"] += "\nfac : 1  # lr * E_i, computed once per neuron for the weight step"
            out["neuron"] = f"delta = {to_brian(self.delta)}\nfac = lr * delta\nb -= lr * ({grad_b})"
            out["synapse_equations"] = ""
            # the per-synapse work is one multiply-add: lr and E_i are folded into fac_post
            out["synapse"] = f"w -= {to_brian(self.grad_w.subs(_delta_post(), sp.Symbol('fac_post', real=True)))}"
        else:
            out["neuron_equations"] += "\nv_b : 1  # Adamax infinity-norm estimate of the bias gradient"
            out["neuron"] = (
                f"delta = {to_brian(self.delta)}\n"
                f"v_b = v_b + int(lr > 0) * (clip(beta2 * v_b, abs({grad_b}) + eps, inf) - v_b)\n"
                f"b -= lr * ({grad_b}) / clip(v_b, eps, inf)"
            )
            # Adamax with beta1 = 0, stepped only where lr > 0: v = max(beta2 v, |g| + eps); W -= lr g / v
            # (max(a, b) is clip(a, b, inf) in Brian; v >= eps once stepped, so clip(v, eps, inf) = v there)
            out["synapse_equations"] = "v_w : 1  # Adamax infinity-norm estimate of the weight gradient"
            out["synapse"] = (
                f"v_w = v_w + int(lr_post > 0) * (clip(beta2 * v_w, abs({grad_w}) + eps, inf) - v_w)\n"
                f"w -= lr_post * ({grad_w}) / clip(v_w, eps, inf)"
            )
        return out

    def conv_code(self, optimizer: str = "sgd") -> dict[str, str]:
        r"""Brian2 code of the rule for a conv layer (shared kernel, max-pool on U before the spike).

        The pooled unit gets the learning signal of a LIF unit, :math:`E = bp\,\sigma'(u)` with u the max;
        the full-resolution unit gets it through the derivative of the pool (``conv_unit.eq [route]``),
        :math:`E_{full} = E_{pool}\,[\text{won the max}]`; a shared parameter gets its three-factor terms
        summed over every position where it acts:

        .. math::

            g_{K[o,c,a,e]} = \sum_{y,x} E_{full}[o,y,x]\,P_{pad}[c,y+a,x+e],\qquad
            g_{b[o]} = \sum_{y,x} E_{full}[o,y,x]

        Returns a dict with keys ``pool_neuron`` (pooled group: learning signal), ``full_neuron``
        (full-resolution group: routed learning signal), ``kernel_gradient`` (summand of ``gw_pre`` over the
        conv synapses), ``bias_gradient`` (summand of ``gw_post`` over full unit -> channel bias synapses),
        ``shared_equations`` and ``shared`` (shared-parameter groups: the optimiser step on the summed ``gw``).
        """
        if optimizer not in OPTIMIZERS:
            raise DerivationError(f"Unknown optimiser '{optimizer}'; choose one of {list(OPTIMIZERS)}")
        if self.grad_kernel is None:
            raise DerivationError("This rule was derived without the conv model files; use derive()")
        out = {
            "pool_neuron": f"delta = {to_brian(self.delta_pool)}",
            "full_neuron": f"delta = {to_brian(self.delta_full)}",
            "kernel_gradient": to_brian(self.grad_kernel),
            "bias_gradient": to_brian(self.grad_shared_bias),
            "shared_equations": "lr : 1 (shared)  # step size of this step; 0 during burn-in and evaluation",
        }
        if optimizer == "sgd":
            out["shared"] = "w -= lr * gw"
        else:
            # as the dense rule: Adamax with beta1 = 0, stepped only where lr > 0, on the summed gradient
            out["shared_equations"] += "\nv_w : 1  # Adamax infinity-norm estimate of the summed gradient"
            out["shared"] = (
                "v_w = v_w + int(lr > 0) * (clip(beta2 * v_w, abs(gw) + eps, inf) - v_w)\n"
                "w -= lr * gw / clip(v_w, eps, inf)"
            )
        return out

    def event_code(self, optimizer: str = "sgd") -> dict:
        r"""Brian2 code of the rule for the event-driven mode (``NetworkSpec.mode = "event"``).

        Between two events of presynaptic neuron j its trace is a sum of the modes of ``trace.eq`` (derived
        from Brian's own state update, :class:`EventForm`): :math:`P_j[t] = \sum_m C_{mj} \lambda_m^{t - t_0}`.
        The weight gradient is linear in :math:`P_j`, :math:`g_{ij}[t] = F_i[t] P_j[t]` (F: the
        postsynaptic factor, ``lr * delta`` for SGD), so its sum over the steps of a frame starting at
        :math:`T_0` factorises per mode into a presynaptic coefficient and a postsynaptic accumulator:

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

        SGD: the stored weight ``w`` is :math:`W_{ij}` plus the pending sum, the weight in use is
        ``w_now = w - pending``; events and flushes keep it exact. (``w_now`` is an expression, not a Brian
        subexpression: Brian evaluates a subexpression of an event code block with the values read at the
        block's start, before the lazy update of ``w``.) Adamax cannot be lazy (its step depends on
        every past gradient): the gradient is summed lazily over the sample in ``gw`` (and ``gsum_b``) and one
        Adamax step is made at the sample end (the reference's non-online option); the weight in use is ``w``.

        Returns a dict with the keys of :meth:`code` (``reductions``, ``err``, ``backprojection``: the readout is
        unchanged; ``neuron_equations``, ``neuron``: learning signal, bias, accumulators) and
        ``synapse_equations`` (forward-synapse model: Adamax state), ``w_now`` (expression of the weight in
        use, for ``forward_event.eq``'s ``w_now``), ``synapse_event`` (run on a
        presynaptic event, before the forward jump of ``forward_event.eq``), ``synapse_flush`` (run on a
        flush), ``pre_equations``, ``pre_frame`` (every step, first), ``pre_event`` (on an event of the
        presynaptic neuron, after the jump of its trace), ``pre_anchor`` (end of every step),
        ``post_anchor`` (end of every step) and ``mode_decays`` (Brian expressions of the :math:`\lambda_m`).
        """
        if optimizer not in OPTIMIZERS:
            raise DerivationError(f"Unknown optimiser '{optimizer}'; choose one of {list(OPTIMIZERS)}")
        if self.event is None:
            raise DerivationError("This rule was derived without the event-driven model files; use derive()")
        exact = self.code(optimizer)
        form, n_modes = self.event, len(self.event.decays)
        pre, post = (lambda name: sp.Symbol(f"{name}_pre", real=True)), (lambda n: sp.Symbol(f"{n}_post", real=True))
        pending = sum(pre(f"pc{m}") * post(f"acc{m}") for m in range(n_modes))
        change = sum(pre(f"dpc{m}") * post(f"acc{m}") for m in range(n_modes))
        fac = sp.Symbol("fac", real=True)
        # the accumulated postsynaptic factor: F = dgrad/dP_j with the learning signal replaced by fac
        factor = _unsuffixed(form.post_factor.subs(_delta_post(), post("fac")), "_post")
        out = {key: exact[key] for key in ("reductions", "err", "backprojection")}
        out["mode_decays"] = [to_brian(decay) for decay in form.decays]
        out["pre_equations"] = "\n".join(
            f"pc{m} : 1  # coefficient of mode {m} of P in the current frame\n"
            f"dpc{m} : 1  # its change at this neuron's last event\n"
            f"fx{m} : 1 (shared)  # frame factor lambda_{m}^(t - T0)" for m in range(n_modes))
        out["pre_frame"] = "\n".join(f"fx{m} = ({to_brian(d)})**since_flush(t)" for m, d in enumerate(form.decays))
        out["pre_event"] = "\n".join(f"dpc{m} = ({to_brian(c)}) / fx{m} - pc{m}\npc{m} = pc{m} + dpc{m}"
                                      for m, c in enumerate(form.coefficients))
        out["pre_anchor"] = "\n".join(f"pc{m} = pc{m} * (1 + anchor(t) * (fx{m} * ({to_brian(d)}) - 1))"
                                      for m, d in enumerate(form.decays))
        out["post_anchor"] = "\n".join(f"acc{m} = acc{m} * (1 - anchor(t))" for m in range(n_modes))
        accumulate = "\n".join(f"acc{m} += fx{m} * ({to_brian(factor)})" for m in range(n_modes))
        acc_equations = "\n".join(f"acc{m} : 1  # sum over the frame of lambda_{m}^(t - T0) * F"
                                  for m in range(n_modes))
        grad_b = to_brian(self.grad_b)
        neuron_equations = (
            "lr : 1 (shared)  # step size of this step; 0 during burn-in and evaluation\n"
            "fac : 1  # postsynaptic factor F of the weight gradient of this step\n" + acc_equations)
        if optimizer == "sgd":
            out["neuron_equations"] = neuron_equations
            out["neuron"] = f"delta = {to_brian(self.delta)}\nfac = lr * delta\nb -= lr * ({grad_b})\n{accumulate}"
            out["synapse_equations"] = ""
            out["w_now"] = f"w - ({to_brian(pending)})"
            # the pending gradient stays exact when the presynaptic coefficients change; a flush applies it
            out["synapse_event"] = f"w += {to_brian(change)}"
            out["synapse_flush"] = f"w -= {to_brian(pending)}"
        else:
            step = "int(sample_end(t) > 0) * int(lr > 0)"
            grad_b_acc = to_brian(self.grad_b.subs(sp.Symbol("delta", real=True), fac))
            out["neuron_equations"] = neuron_equations + (
                "\ngsum_b : 1  # bias gradient summed over the sample"
                "\nv_b : 1  # Adamax infinity-norm estimate of the (per-sample) bias gradient")
            # Adamax per sample: the gradient (unit step size) is summed over the learning steps of the sample
            out["neuron"] = (
                f"delta = {to_brian(self.delta)}\nfac = int(lr > 0) * delta\ngsum_b += {grad_b_acc}\n{accumulate}\n"
                f"v_b = v_b + {step} * (clip(beta2 * v_b, abs(gsum_b) + eps, inf) - v_b)\n"
                f"b -= {step} * lr * gsum_b / clip(v_b, eps, inf)\n"
                f"gsum_b = gsum_b * (1 - {step})")
            out["synapse_equations"] = (
                "gw : 1  # weight gradient summed over the sample, minus the pending part\n"
                "v_w : 1  # Adamax infinity-norm estimate of the (per-sample) weight gradient")
            out["w_now"] = "w"  # constant within a sample
            out["synapse_event"] = f"gw -= {to_brian(change)}"
            step_post = step.replace("lr >", "lr_post >")
            out["synapse_flush"] = (
                f"gw += {to_brian(pending)}\n"
                f"v_w = v_w + {step_post} * (clip(beta2 * v_w, abs(gw) + eps, inf) - v_w)\n"
                f"w -= {step_post} * lr_post * gw / clip(v_w, eps, inf)\n"
                f"gw = gw * (1 - {step_post})")
        return out

    # ---- readable form ------------------------------------------------------------------------------------
    def describe(self, optimizer: str = "sgd") -> str:
        """The rule as readable math and as the Brian2 code that will run."""
        def pp(e):
            return sp.pretty(e, use_unicode=True, wrap_line=False)
        lines = [
            f"Loss ({self.loss_name}), per layer and time step, y = readout, target = one-hot class:",
            pp(self.loss), "",
            "Local error of readout unit k (err = dL/dy_k):", pp(self.err),
        ]
        for sym, summand in self.reductions:
            lines += [f"  where {sym} = sum over classes of", "  " + pp(summand)]
        lines += [
            "", "Back-projected error at layer neuron i (bp_i = sum_k over readout synapses of):",
            pp(self.backprojection),
            "", f"Surrogate sigma'(u) ({self.surrogate_name}):", pp(self.surrogate),
            "", "Per-neuron learning signal E_i = dL/dU_i (delta):", pp(self.delta),
            "", "Three-factor weight gradient dL/dW_ij (error x surrogate x presynaptic trace):", pp(self.grad_w),
            "Bias gradient dL/db_i:", pp(self.grad_b), "",
        ]
        code = self.code(optimizer)
        lines.append(f"Brian2 code ({optimizer}):")
        for name, summand in code["reductions"]:
            lines.append(f"  [readout -> readout, summed]  {name}_post = {summand}")
        lines.append(f"  [readout, after_resets]       {code['err']}")
        lines.append(f"  [readout synapse, summed]     bp_pre = {code['backprojection']}")
        for stmt in code["neuron"].splitlines():
            lines.append(f"  [layer neuron]                {stmt}")
        for stmt in code["synapse"].splitlines():
            lines.append(f"  [forward synapse]             {stmt}")
        if self.grad_kernel is not None:
            conv = self.conv_code(optimizer)
            lines += ["", f"Conv layers (shared kernel, max-pool on U), Brian2 code ({optimizer}):",
                      f"  [pooled unit]                 {conv['pool_neuron']}",
                      f"  [full-resolution unit]        {conv['full_neuron']}",
                      f"  [conv synapse, summed]        gw_pre = {conv['kernel_gradient']}",
                      f"  [full unit -> bias, summed]   gw_post = {conv['bias_gradient']}"]
            lines += [f"  [kernel and bias groups]      {stmt}" for stmt in conv["shared"].splitlines()]
        if self.event is not None:
            event = self.event_code(optimizer)
            lines += ["", 'Event-driven mode (network.mode = "event"): between two events of a presynaptic neuron',
                      "P[t0 + n] = sum_m C_m lambda_m^n (modes of trace.eq), gradient = F_i P_j with F_i:",
                      "  " + pp(self.event.post_factor)]
            lines += [f"  mode {m}: lambda = {decay}, C = {coef}"
                      for m, (decay, coef) in enumerate(zip(self.event.decays, self.event.coefficients, strict=True))]
            lines.append(f"Brian2 code ({optimizer}, event-driven):")
            for where, key in (("[presynaptic event]", "pre_event"), ("[layer neuron]", "neuron"),
                               ("[forward synapse, event]", "synapse_event"), ("[forward synapse, flush]",
                                                                              "synapse_flush")):
                lines += [f"  {where:<30}{stmt}" for stmt in event[key].splitlines()]
            lines.append(f"  {'[forward synapse, weight]':<30}w_now = {event['w_now']}")
        return "\n".join(lines)


def _delta_post() -> sp.Symbol:
    return sp.Symbol("delta_post", real=True)


def to_brian(expr: sp.Expr) -> str:
    """Brian2 code for a sympy expression (Piecewise becomes int(condition) arithmetic)."""
    expr = sp.piecewise_fold(expr)

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


def _indicator(cond) -> sp.Expr:
    cond = sp.simplify_logic(cond) if not isinstance(cond, sp.core.relational.Relational) else cond
    if cond == sp.true:
        return sp.Integer(1)
    if cond == sp.false:
        return sp.Integer(0)
    return sp.Function("int")(cond)


def derive(loss: str = "smoothl1", surrogate: str = "fast_sigmoid", **surrogate_params: float) -> DerivedRule:
    """Derive the DECOLLE rule for a loss and a surrogate from the model files.

    Parameters
    ----------
    loss : str
        ``"smoothl1"`` (default, as the reference), ``"mse"``, ``"ce"`` or an expression of ``y`` and
        ``target`` (e.g. ``"(y - target)**4"``, ``"log(sum(exp(y))) - sum(target*y)"``).
    surrogate : str
        ``"fast_sigmoid"`` (slope, default 10), ``"boxcar"`` (width), ``"sigmoid"`` (slope) or an
        expression of ``u``.
    **surrogate_params
        Parameters of the surrogate.
    """
    loss_name, loss_expr = parse_loss(loss)
    sur_name, sur_expr = parse_surrogate(surrogate, **surrogate_params)

    lif = Equations(load_model("lif")["equations"])
    readout = Equations(load_model("readout")["equations"])
    forward = Equations(load_model("forward")["equations"])
    readout_syn = Equations(load_model("readout_synapse")["equations"])
    threshold = str_to_sympy(load_model("lif")["threshold"].split("#")[0].strip())
    if not isinstance(threshold, sp.core.relational.StrictGreaterThan | sp.core.relational.GreaterThan):
        raise DerivationError(f"The threshold '{threshold}' of lif.eq is not of the form 'a > b'")
    spike_arg = threshold.lhs - threshold.rhs  # S = H(spike_arg)

    # err = dL/dy_k (the loss is a scalar over classes: reductions by the chain rule)
    reds = _Reductions()
    hoisted = reds.hoist(loss_expr)
    err = sp.piecewise_fold(reds.hoist(reds.d_dy_scalar(hoisted)))
    used = _needed(err, reds.summands)
    # number the reductions that are used red0, red1, ... in computing order
    renamed = {sym: sp.Symbol(f"red{n}", real=True) for n, sym in enumerate(s for s in reds.summands if s in used)}
    err = err.subs(renamed)
    reductions = [(renamed[sym], reds.summands[sym].subs(renamed)) for sym in reds.summands if sym in used]

    # dy/dS_i through the readout equations; y_syn is summed over the readout synapses
    y_expr = str_to_sympy(readout["y"].expr.code)
    y_syn = sp.Symbol("y_syn", real=True)
    dy_ds = sp.diff(y_expr, y_syn) * sp.diff(_summed(readout_syn, "y_syn_post"), sp.Symbol("s_pre", real=True))
    backprojection = _suffixed(sp.diff(y_expr, y_syn), "_post") * dy_ds * sp.Symbol("err_post", real=True)

    # E_i = dL/dU_i = bp_i dS/dU with dS/dU := sigma'(spike_arg)
    u_expr = str_to_sympy(lif["u"].expr.code)
    bp = sp.Symbol("bp", real=True)
    delta = bp * sur_expr.subs(U, spike_arg) * sp.diff(spike_arg, U)

    u_syn = sp.Symbol("u_syn", real=True)
    grad_w = (_delta_post() * _suffixed(sp.diff(u_expr, u_syn), "_post")
              * sp.diff(_summed(forward, "u_syn_post"), sp.Symbol("w", real=True)))
    grad_b = sp.Symbol("delta", real=True) * sp.diff(u_expr, sp.Symbol("b", real=True))
    return DerivedRule(loss_name, loss_expr, sur_name, sur_expr, err, reductions,
                       backprojection, delta, grad_w, grad_b, **_derive_conv(sur_expr, u_expr),
                       event=_derive_event(grad_w))


def _derive_conv(sur_expr: sp.Expr, u_expr: sp.Expr) -> dict[str, sp.Expr]:
    """The conv-layer factors, by the same chain rule through pool.eq, conv_unit.eq and conv_forward.eq."""
    pool = load_model("pool")
    threshold = str_to_sympy(pool["threshold"].split("#")[0].strip())
    if not isinstance(threshold, sp.core.relational.StrictGreaterThan | sp.core.relational.GreaterThan):
        raise DerivationError(f"The threshold '{threshold}' of pool.eq is not of the form 'a > b'")
    spike_arg = threshold.lhs - threshold.rhs  # S = H(spike_arg) of the pooled unit
    delta_pool = sp.Symbol("bp", real=True) * sur_expr.subs(U, spike_arg) * sp.diff(spike_arg, U)
    # full-resolution unit: dL/dU_full = dL/du_pool * du_pool/dU_full, the pool's part from this unit
    route = load_model("conv_unit")["route"].split("#")[0]
    route_expr = str_to_sympy(route.split("=", 1)[1].strip())
    delta_full = sp.Symbol("delta_pool", real=True) * sp.diff(route_expr, U)
    # a kernel element: summed over the conv synapses where it is the presynaptic (shared) weight
    conv = Equations(load_model("conv_forward")["equations"])
    grad_kernel = (_delta_post() * _suffixed(sp.diff(u_expr, sp.Symbol("u_syn", real=True)), "_post")
                   * sp.diff(_summed(conv, "u_syn_post"), sp.Symbol("w_pre", real=True)))
    # a channel bias: summed over the full-resolution units of its channel (they are presynaptic to it)
    grad_shared_bias = (sp.Symbol("delta_pre", real=True)
                        * _suffixed(sp.diff(u_expr, sp.Symbol("b", real=True)), "_pre"))
    return {"delta_pool": delta_pool, "delta_full": delta_full, "grad_kernel": grad_kernel,
            "grad_shared_bias": grad_shared_bias}


def _unsuffixed(expr: sp.Expr, suffix: str) -> sp.Expr:
    return expr.subs({s: sp.Symbol(s.name.removesuffix(suffix), real=True) for s in expr.free_symbols
                      if isinstance(s, sp.Symbol) and s.name.endswith(suffix)})


def _derive_event(grad_w: sp.Expr) -> EventForm:
    """The event-driven form (:class:`EventForm`) from trace.eq, forward.eq and forward_event.eq."""
    trace, event = load_model("trace"), load_model("forward_event")
    trace_eqs, post_eqs = Equations(trace["equations"]), Equations(event["post"])
    # 1. the postsynaptic filters are trace.eq's: the same linear equations, renamed
    rename = {"q": "q_syn", "p": "u_syn"}
    symbols = {sp.Symbol(a, real=True): sp.Symbol(b, real=True) for a, b in rename.items()}
    for name in trace_eqs.diff_eq_names:
        if rename.get(name) not in post_eqs.diff_eq_names:
            raise DerivationError(f"forward_event.eq [post] has no copy of trace.eq's variable '{name}'")
        expected = str_to_sympy(trace_eqs[name].expr.code).subs(symbols, simultaneous=True)
        if sp.simplify(str_to_sympy(post_eqs[rename[name]].expr.code) - expected) != 0:
            raise DerivationError(f"forward_event.eq [post]: d{rename[name]}/dt is not trace.eq's d{name}/dt")
    # 2. ... fed by trace.eq's jump through the weight in use: u_syn_i = sum_j w_ij p_j (linearity)
    (t_target, t_op, t_expr), = statements(trace["on_event"])
    (e_target, e_op, e_expr), = statements(event["on_event"])
    jump = str_to_sympy(t_expr) * sp.Symbol("w_now", real=True)
    if (e_target, e_op) != (rename[t_target] + "_post", t_op) or sp.simplify(str_to_sympy(e_expr) - jump) != 0:
        raise DerivationError(f"forward_event.eq [on_event] '{e_target} {e_op} {e_expr}' is not trace.eq's jump "
                              f"'{t_target} {t_op} {t_expr}' times w_now on the postsynaptic copy")
    # ... which is forward.eq's forward sum, so the weight gradient (derived from forward.eq) is unchanged
    forward_sum = _summed(Equations(load_model("forward")["equations"]), "u_syn_post")
    p_pre = sp.Symbol("p_pre", real=True)
    if sp.simplify(sp.diff(forward_sum, sp.Symbol("w", real=True)) - p_pre) != 0:
        raise DerivationError("forward.eq's forward sum is not sum_j w_ij p_j: the event form does not apply")
    # 3. modes of the trace between events, from Brian's own update of trace.eq: x[t+1] = D x[t]
    taus = {name: sp.Symbol(name, real=True) for name in ("tau_mem", "tau_syn")}
    eqs = Equations(trace["equations"] + "".join(f"\n{name} : second" for name in taus))
    env: dict = {}
    for target, _, expr in statements(exponential_euler(eqs, None)):
        env[sp.Symbol(target, real=True)] = str_to_sympy(expr).subs(env)
    state = [sp.Symbol(name, real=True) for name in sorted(eqs.diff_eq_names)]
    update = [env[s] for s in state]
    matrix = sp.Matrix([[sp.diff(f, s) for s in state] for f in update])
    if any(sp.simplify(f - sum(matrix[k, n] * s for n, s in enumerate(state))) != 0 for k, f in enumerate(update)):
        raise DerivationError("trace.eq is not linear in its state: no closed form between events")
    # per-step decays as the run-time constants decay_<x> = exp(-dt/tau_<x>)
    dt = next((s for s in matrix.free_symbols if s.name == "dt"), sp.Symbol("dt", real=True))  # Brian's own
    decay = {tau: sp.Symbol("decay_" + name.removeprefix("tau_"), positive=True) for name, tau in taus.items()}
    to_decay = {tau: -dt / sp.log(d) for tau, d in decay.items()}

    def simple(e):
        return sp.simplify(sp.powsimp(sp.expand_log(e.subs(to_decay), force=True), force=True))

    vectors, diagonal = matrix.diagonalize()
    inverse = vectors.inv()
    row = state.index(sp.Symbol("p", real=True))
    decays = [simple(diagonal[m, m]) for m in range(len(state))]
    coefficients = [simple(vectors[row, m] * (inverse[m, :] * sp.Matrix(state))[0]) for m in range(len(state))]
    if len(set(decays)) != len(decays):
        raise DerivationError(f"trace.eq's modes {decays} are not distinct")
    # 4. the gradient is linear in the presynaptic trace, with a purely postsynaptic factor
    post_factor = sp.diff(grad_w, p_pre)
    if sp.diff(post_factor, p_pre) != 0 or any(s.name.endswith("_pre") for s in post_factor.free_symbols):
        raise DerivationError(f"The weight gradient {grad_w} is not (postsynaptic factor) x p_pre")
    return EventForm(decays, coefficients, post_factor)


def _needed(expr: sp.Expr, summands: dict) -> set:
    needed, todo = set(), [s for s in expr.free_symbols if s in summands]
    while todo:
        sym = todo.pop()
        if sym not in needed:
            needed.add(sym)
            todo += [s for s in summands[sym].free_symbols if s in summands]
    return needed


def loss_function(loss: str):
    """NumPy function ``f(y, target) -> (T,)`` of a loss (rows = time steps, columns = classes).

    The same sympy expression the rule is derived from, evaluated with class sums over the last axis; used
    to report the loss the network learns on.
    """
    import numpy as np  # noqa: PLC0415 - only needed here

    _, expr = parse_loss(loss)

    def class_sum(x):
        return np.sum(x, axis=-1, keepdims=True)

    function = sp.lambdify((Y, TARGET, N_CLASSES), expr, modules=[{"ClassSum": class_sum}, "numpy"])

    def evaluate(y: np.ndarray, target: np.ndarray) -> np.ndarray:
        y, target = np.asarray(y, dtype=float), np.asarray(target, dtype=float)
        value = np.broadcast_to(function(y, target, y.shape[-1]), y.shape[:-1] + (1,))
        return np.asarray(value)[..., 0]

    return evaluate
