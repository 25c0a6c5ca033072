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

Losses are written in a small language over the readout ``y`` and ``target`` of one class (the safe
grammar of :mod:`decolle_brian.expressions`: text is parsed, never evaluated), with class reductions
``sum(...)`` and ``mean(...)``; an expression with a bare ``y`` outside any reduction is an
element-wise loss, averaged over the classes (PyTorch's default reduction). Reductions become extra
summed variables over the readout units when :mod:`decolle_brian.emission` writes the rule as Brian2 code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp
from brian2 import Equations
from brian2.parsing.sympytools import str_to_sympy
from brian2.stateupdaters.exponential_euler import exponential_euler

from decolle_brian.equations_io import load_model, statements
from decolle_brian.errors import DerivationError
from decolle_brian.expressions import FUNCTIONS, ExpressionError, Function
from decolle_brian.expressions import parse as parse_expression

# the built-in names and texts live in a leaf module, so that configuration and spec need no sympy
from decolle_brian.names import LOSSES, MODES, OPTIMIZERS, SURROGATES  # noqa: F401 - re-exported

# Brian's own symbols are real; sympy compares symbols by name AND assumptions.
Y, TARGET, U = (sp.Symbol(name, real=True) for name in ("y", "target", "u"))
N_CLASSES = sp.Symbol("n_classes", positive=True, integer=True)
#: the learning signal of the postsynaptic neuron, as a synapse reads it (a factor of every weight gradient)
DELTA_POST = sp.Symbol("delta_post", real=True)


class ClassSum(sp.Function):
    """Sum of its argument over the readout classes (``y``, ``target`` inside are the summed class)."""

    nargs = 1


#: Functions of a loss: the mathematical ones and the class reductions over the readout units.
LOSS_FUNCTIONS = {
    **FUNCTIONS,
    "sum": Function(ClassSum),
    "mean": Function(lambda e: ClassSum(e) / N_CLASSES),
}


def _parse(text: str, allowed: dict[str, sp.Basic], what: str, functions=FUNCTIONS) -> sp.Expr:
    """Parse user text with the safe grammar of :mod:`decolle_brian.expressions` (never evaluated)."""
    try:
        return parse_expression(text, allowed, functions, what)
    except ExpressionError as exc:
        raise DerivationError(str(exc)) from None


def parse_loss(loss: str) -> tuple[str, sp.Expr]:
    """Return ``(name, sympy expression)`` for a built-in loss name or a user expression of y, target."""
    text = LOSSES.get(loss, loss)
    if loss not in LOSSES and not any(c in loss for c in "()+-*/") and loss.isidentifier() and loss != "y":
        raise DerivationError(f"Unknown loss '{loss}'; built-in: {sorted(LOSSES)}, or an expression of y, target")
    expr = _parse(text, {"y": Y, "target": TARGET, "n_classes": N_CLASSES}, "loss", LOSS_FUNCTIONS)
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


def suffixed(expr: sp.Expr, suffix: str) -> sp.Expr:
    """``expr`` with every variable renamed ``<name><suffix>`` (as a synapse reads it: ``_pre``, ``_post``)."""
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
    """The plasticity rule derived for one loss and surrogate, as sympy expressions.

    :mod:`decolle_brian.emission` writes it as Brian2 code (``dense_code``, ``conv_code``, ``describe``).

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
    # conv layers (see emission.conv_code); None only for a rule built by hand without them
    delta_pool: sp.Expr | None = None
    delta_full: sp.Expr | None = None
    grad_kernel: sp.Expr | None = None
    grad_shared_bias: sp.Expr | None = None
    # event-driven mode (see emission.event_code); None only for a rule built by hand without it
    event: EventForm | None = None


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
    if err.has(sp.DiracDelta):
        raise DerivationError(f"The loss '{loss}' has a Dirac delta in its derivative ({err}): a step (sign, "
                              "a jump) gives no learning signal; use a continuous loss")
    reductions = [(renamed[sym], reds.summands[sym].subs(renamed)) for sym in reds.summands if sym in used]

    # dy/dS_i through the readout equations; y_syn is summed over the readout synapses
    y_expr = str_to_sympy(readout["y"].expr.code)
    y_syn = sp.Symbol("y_syn", real=True)
    dy_ds = sp.diff(y_expr, y_syn) * sp.diff(_summed(readout_syn, "y_syn_post"), sp.Symbol("s_pre", real=True))
    backprojection = suffixed(sp.diff(y_expr, y_syn), "_post") * dy_ds * sp.Symbol("err_post", real=True)

    # E_i = dL/dU_i = bp_i dS/dU with dS/dU := sigma'(spike_arg)
    u_expr = str_to_sympy(lif["u"].expr.code)
    bp = sp.Symbol("bp", real=True)
    delta = bp * sur_expr.subs(U, spike_arg) * sp.diff(spike_arg, U)

    u_syn = sp.Symbol("u_syn", real=True)
    grad_w = (DELTA_POST * suffixed(sp.diff(u_expr, u_syn), "_post")
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
    grad_kernel = (DELTA_POST * suffixed(sp.diff(u_expr, sp.Symbol("u_syn", real=True)), "_post")
                   * sp.diff(_summed(conv, "u_syn_post"), sp.Symbol("w_pre", real=True)))
    # a channel bias: summed over the full-resolution units of its channel (they are presynaptic to it)
    grad_shared_bias = (sp.Symbol("delta_pre", real=True)
                        * suffixed(sp.diff(u_expr, sp.Symbol("b", real=True)), "_pre"))
    return {"delta_pool": delta_pool, "delta_full": delta_full, "grad_kernel": grad_kernel,
            "grad_shared_bias": grad_shared_bias}


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
    # ... and conv_forward.eq's: a tap adds K p_in, so events scattered through the kernel (w_now = K) are it too
    conv_sum = _summed(Equations(load_model("conv_forward")["equations"]), "u_syn_post")
    if sp.simplify(conv_sum - sp.Symbol("w_pre", real=True) * sp.Symbol("p_in", real=True)) != 0:
        raise DerivationError("conv_forward.eq's forward sum is not sum K p_in: the conv event form does not apply")
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
