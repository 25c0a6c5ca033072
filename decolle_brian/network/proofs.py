"""Proofs with sympy that a skip of work is exact: a Brian expression is 0 where some variables are 0.

Used where a device may leave out terms that are provably 0 (the conv loops' zero padding and the kernel
gradient's gates, :func:`decolle_brian.network.conv.gradient_gates`; the readout rows of silent units,
:func:`decolle_brian.network.builder.row_skips`). Exact for finite values: sympy takes ``0 * x = 0``, where
IEEE arithmetic gives ``0 * inf = NaN``.
"""

from __future__ import annotations

import sympy
from brian2.parsing.sympytools import str_to_sympy


def vanishes_at_zero(expression: str, *names: str) -> bool:
    """Whether the Brian ``expression`` is 0 whenever the variables ``names`` are all 0 (proven with sympy)."""
    return at_zero(expression, *names) == 0


def at_zero(expression: str, *names: str):
    """The Brian ``expression`` with the variables ``names`` set to 0, simplified (``int(0 > 0)`` is 0)."""
    expr = str_to_sympy(expression)
    expr = expr.subs({symbol: 0 for symbol in expr.free_symbols if symbol.name in names})
    expr = expr.replace(lambda x: getattr(x.func, "__name__", "") == "int_" and x.args[0] in (sympy.true, sympy.false),
                        lambda x: sympy.Integer(int(bool(x.args[0]))))
    return sympy.simplify(expr)
