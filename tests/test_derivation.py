"""The derived rule equals the closed-form three-factor rule of docs/model.md, for every loss x surrogate.

Closed form: dL/dW_ij = [sum_k G_ki m_i dL/dy_k] sigma'(U_i) P_j, db_i likewise without P_j, with
dL/dy_k = clip(y_k - t_k, -1, 1)/C (SmoothL1), 2 (y_k - t_k)/C (MSE), softmax(y)_k - t_k (CE, sum t = 1).
The derivation never sees these formulas: it differentiates the model files and the loss expression.
"""

import math
import re

import numpy as np
import pytest
import sympy as sp

from decolle_brian import reference as ref
from decolle_brian.derivation import (
    LOSSES,
    MODES,
    OPTIMIZERS,
    SURROGATES,
    TARGET,
    DerivationError,
    Y,
    derive,
    loss_function,
    parse_surrogate,
)
from decolle_brian.emission import MODE_EMITTERS, OPTIMIZER_EMITTERS, Parameter, dense_code, to_brian

U = sp.Symbol("u", real=True)
C = sp.Symbol("n_classes", positive=True, integer=True)
RED0 = sp.Symbol("red0", real=True)
CLOSED_ERR = {
    "smoothl1": sp.Max(-1, sp.Min(1, Y - TARGET)) / C,
    "mse": 2 * (Y - TARGET) / C,
    "ce": sp.exp(Y) / RED0 - TARGET,   # red0 = sum_k exp(y_k): the softmax normaliser
}
CLOSED_SURROGATE = {
    "fast_sigmoid": 1 / (10 * sp.Abs(U) + 1) ** 2,
    "boxcar": sp.Piecewise((1, (U > -sp.Rational(1, 2)) & (U <= sp.Rational(1, 2))), (0, True)),
    "sigmoid": sp.exp(-U) / (1 + sp.exp(-U)) ** 2,
}


D = sp.Symbol("d", real=True)


def _is_zero(expr: sp.Expr) -> bool:
    """Symbolic proof that ``expr`` is 0 everywhere.

    The losses depend on y - target only, so expressions become univariate in d = y - target (or in u); a
    piecewise result is zero if every piece simplifies to zero on the part of the real line where it applies.
    """
    expr = sp.simplify(sp.nsimplify(expr.subs(Y, TARGET + D)))
    if expr == 0:
        return True
    expr = sp.piecewise_fold(expr.rewrite(sp.Piecewise))
    if not isinstance(expr, sp.Piecewise):
        return sp.simplify(expr) == 0
    (var,) = [s for s in expr.free_symbols if s in (D, U)]
    covered = sp.EmptySet
    for value, cond in expr.args:
        region = sp.Intersection(cond.as_set(), sp.Complement(sp.S.Reals, covered))
        covered = sp.Union(covered, region)
        if region == sp.EmptySet or sp.simplify(value) == 0:
            continue
        if sp.solveset(sp.simplify(value), var, region) != region:
            return False
    return True


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
def test_derived_rule_equals_closed_form(loss, surrogate):
    rule = derive(loss, surrogate)
    # per-class error dL/dy
    assert _is_zero(rule.err - CLOSED_ERR[loss]), f"err = {rule.err}"
    if loss == "ce":
        assert rule.reductions == [(RED0, sp.exp(Y))]
    else:
        assert rule.reductions == []
    # full per-synapse weight gradient, all factors substituted back in
    G, m_pre, err_post = (sp.Symbol(n, real=True) for n in ("G", "mask_pre", "err_post"))
    p_pre, bp, delta_post = (sp.Symbol(n, real=True) for n in ("p_pre", "bp", "delta_post"))
    assert sp.simplify(rule.backprojection - G * m_pre * err_post) == 0
    assert _is_zero(rule.delta - bp * CLOSED_SURROGATE[surrogate])
    assert sp.simplify(rule.grad_w - delta_post * p_pre) == 0
    assert sp.simplify(rule.grad_b - sp.Symbol("delta", real=True)) == 0


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_derived_error_matches_finite_differences_numerically(loss):
    """err evaluated as Brian will run it equals a finite difference of the numpy loss (independent path)."""
    rule = derive(loss)
    rng = np.random.default_rng(0)
    f = loss_function(loss)
    y = rng.normal(0, 1.5, 5)
    t = np.eye(5)[2]
    values = {"n_classes": 5.0, "red0": float(np.sum(np.exp(y)))}
    err_fn = sp.lambdify((Y, TARGET, C, RED0), rule.err, "numpy")
    for k in range(5):
        h = 1e-6
        yp, ym = y.copy(), y.copy()
        yp[k] += h
        ym[k] -= h
        numeric = (f(yp[None], t[None])[0] - f(ym[None], t[None])[0]) / (2 * h)
        derived = err_fn(y[k], t[k], values["n_classes"], values["red0"])
        assert derived == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_user_loss_and_surrogate_are_derived():
    rule = derive("(y - target)**4", "1/(1 + 4*abs(u))")
    assert _is_zero(rule.err - 4 * (Y - TARGET) ** 3 / C)
    assert _is_zero(rule.delta - sp.Symbol("bp", real=True) / (1 + 4 * sp.Abs(U)))
    code = dense_code(rule, "sgd")
    assert code.readout.err.startswith("err = ")
    assert "fac_post*p_pre" in code.synapse.statements.replace(" ", "")


def test_user_loss_with_class_sum_reduction():
    rule = derive("log(sum(exp(2*y))) - sum(2*target*y)")
    assert len(rule.reductions) == 1
    assert _is_zero(rule.err - (2 * sp.exp(2 * Y) / rule.reductions[0][0] - 2 * TARGET))


def test_surrogate_parameters():
    _, expr = parse_surrogate("fast_sigmoid", slope=4.0)
    assert sp.simplify(expr - 1 / (4 * sp.Abs(U) + 1) ** 2) == 0
    _, box = parse_surrogate("boxcar", width=2.0)
    assert box.subs(U, 0.99) == 1 and box.subs(U, 1.01) == 0


@pytest.mark.parametrize("loss, match", [
    ("hinge_loss", "Unknown loss 'hinge_loss'"),
    ("target**2", "does not depend on the readout y"),
    ("(y - z)**2", r"unknown name\(s\) \['z'\]"),
    ("(y - target", "Cannot parse"),
])
def test_bad_loss_is_a_clear_error(loss, match):
    with pytest.raises(DerivationError, match=match):
        derive(loss)


@pytest.mark.parametrize("surrogate, params, match", [
    ("triangle", {}, "Unknown surrogate 'triangle'"),
    ("fast_sigmoid", {"width": 1.0}, "has no parameter"),
    ("fast_sigmoid", {"slope": float("nan")}, "positive number"),
    ("3.0", {}, "does not depend on u"),
])
def test_bad_surrogate_is_a_clear_error(surrogate, params, match):
    with pytest.raises(DerivationError, match=match):
        derive("mse", surrogate, **params)


def test_piecewise_becomes_brian_int_arithmetic():
    code = to_brian(sp.Piecewise((Y, Y > 0), (0, True)))
    assert "int(" in code and "Piecewise" not in code


def test_adamax_code_uses_brian_functions_only():
    code = dense_code(derive(), "adamax").synapse.statements
    assert "max(" not in code.replace("clip(", "")
    assert "v_w" in code and "eps" in code
    with pytest.raises(DerivationError, match="Unknown optimiser"):
        dense_code(derive(), "rmsprop")


def test_cli_derive_prints_math_and_code(capsys):
    from decolle_brian.cli import main

    assert main(["derive", "--loss", "smoothl1", "--surrogate", "fast_sigmoid"]) == 0
    out = capsys.readouterr().out
    assert "Brian2 code (sgd)" in out and "w -= fac_post*p_pre" in out and "δ" in out
    assert main(["derive", "--loss", "nonsense"]) == 2


def test_proof_checker_rejects_wrong_forms():
    """The symbolic check above can fail: a wrong error or surrogate is not 'proved' equal."""
    rule = derive("smoothl1", "boxcar")
    bp = sp.Symbol("bp", real=True)
    assert not _is_zero(rule.err - CLOSED_ERR["mse"])
    assert not _is_zero(rule.err - 1.01 * CLOSED_ERR["smoothl1"])
    assert not _is_zero(rule.delta / bp - CLOSED_SURROGATE["boxcar"].subs(U, U / 2))


def test_every_optimiser_and_mode_has_an_emitter():
    assert tuple(OPTIMIZER_EMITTERS) == OPTIMIZERS and tuple(MODE_EMITTERS) == MODES
    with pytest.raises(DerivationError, match="Unknown mode 'lazy'"):
        dense_code(derive(), "sgd", mode="lazy")


def _run_statements(code: str, state: dict) -> None:
    """Run emitted Brian statements (``x = e``, ``x += e``, ``x -= e``) on scalars (our own code, not user text)."""
    functions = {"clip": lambda x, lo, hi: min(max(x, lo), hi), "abs": abs, "int": int, "inf": math.inf}
    for line in code.splitlines():
        target, op, expr = re.fullmatch(r"(\w+) ([-+]?=) (.*)", line).groups()
        value = eval(expr, {"__builtins__": {}}, {**functions, **state})  # noqa: S307
        state[target] = {"=": value, "+=": state[target] + value, "-=": state[target] - value}[op]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("when", ["", "int(sample_end > 0)"])
def test_optimiser_step_is_the_reference_step(optimizer, when):
    """The step emitter of each optimiser does the NumPy reference's step where lr > 0 (and the condition
    holds), and nothing where lr = 0 or the condition is 0."""
    emitter = OPTIMIZER_EMITTERS[optimizer]
    step = emitter.step(Parameter("w", "g", "gradient", summed=True, when=when))
    declared = [line.split(" : ")[0] for line in emitter.state_equations(Parameter("w", "g"))]
    assert declared == (["v_w"] if optimizer == "adamax" else [])
    state = {"w": 0.3, "v_w": 0.0, "beta2": 0.95, "eps": 1e-8, "sample_end": 1}
    w, v = np.array([0.3]), np.array([0.0])
    for g, lr in [(0.5, 0.1), (-2.0, 0.1), (1.0, 0.0), (0.01, 0.05)]:
        before = dict(state)
        state.update(g=g, lr=lr)
        _run_statements(step, state)
        if lr > 0:
            ref.optimizer_step(w, np.array([g]), v, optimizer, lr, 0.95, 1e-8)
        else:
            assert (state["w"], state["v_w"]) == (before["w"], before["v_w"])
        assert state["w"] == pytest.approx(w[0], rel=1e-12) and state["v_w"] == pytest.approx(v[0], rel=1e-12)
    assert state["w"] != 0.3  # it learned
    if when:
        state.update(sample_end=0, lr=0.1)
        before = dict(state)
        _run_statements(step, state)
        assert (state["w"], state["v_w"]) == (before["w"], before["v_w"])
