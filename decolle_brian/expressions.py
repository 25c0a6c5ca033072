"""A safe parser for the expressions users write (losses, surrogates): text is data, never code.

``parse`` reads the text with Python's own parser into a syntax tree (:func:`ast.parse`, which does not
run anything), walks that tree and builds the sympy expression from an explicit grammar:

- numbers (``2``, ``0.5``, ``1e-3``), and the names the caller allows (``y``, ``target``, ``u``, parameters);
- ``+ - * / **``, unary ``-`` and ``+``, parentheses;
- comparisons ``< <= > >= == !=`` (a chain ``a < b < c`` means ``(a < b) & (b < c)``) joined by ``&``,
  ``|`` and negated by ``~``, where a function takes a condition (``where``);
- calls, with positional arguments only, of the functions the caller lists, each mapped straight to a
  sympy object (:data:`FUNCTIONS`).

Everything else is refused with an :class:`ExpressionError` quoting the offending part: attributes,
subscripts, strings, lambdas, comprehensions, keyword or starred arguments, ``and``/``or``/``if``, unknown
names or functions, names with a leading underscore, a constant exponent beyond :data:`MAX_EXPONENT` or a
constant power beyond :data:`MAX_CONSTANT_BITS`, and texts longer than :data:`MAX_CHARS` characters,
:data:`MAX_NODES` syntax nodes or :data:`MAX_DEPTH` levels of nesting. Nothing is looked up by name
outside the two tables the caller passes, so no text can reach Python's builtins, modules or attributes.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import sympy as sp

from decolle_brian.errors import ExpressionError

#: Longest accepted text (characters); the built-in losses and surrogates are under 100.
MAX_CHARS = 1000
#: Most syntax nodes (names, numbers, operators, calls) in one expression.
MAX_NODES = 500
#: Deepest nesting of the syntax tree.
MAX_DEPTH = 100
#: Largest absolute exponent of a power whose exponent is a constant (``x**2``, ``u**0.5``; not ``2**10**10``).
MAX_EXPONENT = 100
#: Largest constant power (``2**1000``), in bits of its numerator or denominator.
MAX_CONSTANT_BITS = 1024


def _where(cond, a, b):
    return sp.Piecewise((a, cond), (b, True))


def _clip(x, lo, hi):
    return sp.Max(lo, sp.Min(hi, x))


def _heaviside(x):
    return sp.Piecewise((1, x > 0), (0, True))  # the spike's step: 1 above 0; derivative 0, not a Dirac delta


class Function(NamedTuple):
    """A function of the grammar: the sympy callable it builds, its arity, which arguments are conditions."""

    sympy: Callable
    n_args: int | None = 1  # None: two or more
    conditions: tuple[int, ...] = ()


#: Mathematical functions of every expression (callers add their own, e.g. the class sums of a loss).
FUNCTIONS: dict[str, Function] = {
    "abs": Function(sp.Abs), "exp": Function(sp.exp), "log": Function(sp.log), "sqrt": Function(sp.sqrt),
    "tanh": Function(sp.tanh), "sign": Function(sp.sign), "heaviside": Function(_heaviside),
    "Heaviside": Function(_heaviside), "where": Function(_where, 3, conditions=(0,)),
    "clip": Function(_clip, 3), "max": Function(sp.Max, None), "min": Function(sp.Min, None),
    "maximum": Function(sp.Max, 2), "minimum": Function(sp.Min, 2),
}

_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_LOGIC = {ast.BitAnd: sp.And, ast.BitOr: sp.Or}
_COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge, ast.Eq: sp.Eq, ast.NotEq: sp.Ne}
_REFUSED = {  # node type -> what to call it in the message
    ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Slice: "slice",
    ast.Lambda: "lambda", ast.ListComp: "comprehension", ast.SetComp: "comprehension",
    ast.DictComp: "comprehension", ast.GeneratorExp: "comprehension", ast.List: "list", ast.Tuple: "tuple",
    ast.Set: "set", ast.Dict: "dict", ast.Starred: "starred argument", ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string", ast.NamedExpr: "assignment (:=)", ast.IfExp: "conditional (use where)",
    ast.BoolOp: "'and'/'or' (use & and | between comparisons)", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def parse(text: str, names: Mapping[str, sp.Basic], functions: Mapping[str, Function] = FUNCTIONS,
          what: str = "expression") -> sp.Expr:
    """The sympy expression of ``text``, built from its syntax tree (never evaluated as Python).

    Parameters
    ----------
    text : str
        The expression, e.g. ``"mean((y - target)**2)"``.
    names : mapping
        Allowed variable names and the sympy objects they stand for (symbols or numbers).
    functions : mapping
        Allowed function names -> :class:`Function` (default :data:`FUNCTIONS`).
    what : str
        What the text is (``"loss"``, ``"surrogate"``), for messages.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ExpressionError
        The text is not in the grammar; the message quotes the part at fault.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"The {what} must be a string, got {type(text).__name__}")
    text = text.strip()
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"The {what} expression is {len(text)} characters long (limit {MAX_CHARS}): "
                              f"{_quote(text)}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:  # also null bytes; nothing has run
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"Cannot parse the {what} expression {_quote(text)}: {exc.msg}{where}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"Cannot parse the {what} expression {_quote(text)}: nested too deeply") from None
    _check_size(tree, text, what)
    builder = _Builder(text, names, functions, what)
    expr = builder.build(tree.body)
    if not isinstance(expr, sp.Expr):
        raise ExpressionError(f"The {what} expression {_quote(text)} is a condition, not a number; "
                              "use it inside where(condition, a, b)")
    return expr


def _quote(part: str, limit: int = 120) -> str:
    """``part`` quoted; a long one keeps its two ends (where a payload's head and its tail show)."""
    return repr(part if len(part) <= limit else part[: limit // 2] + " ... " + part[-limit // 2:])


def _check_size(tree: ast.AST, text: str, what: str) -> None:
    count, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ExpressionError(f"The {what} expression {_quote(text)} is nested more than {MAX_DEPTH} levels deep")
        stack += [(child, depth + 1) for child in ast.iter_child_nodes(node)]
    if count > MAX_NODES:
        raise ExpressionError(f"The {what} expression {_quote(text)} has {count} syntax nodes (limit {MAX_NODES})")


class _Builder:
    """Walks the syntax tree of one expression, building sympy objects node by node."""

    def __init__(self, text: str, names: Mapping, functions: Mapping, what: str):
        self.text, self.names, self.functions, self.what = text, names, functions, what

    def refuse(self, node: ast.AST, reason: str):
        part = ast.get_source_segment(self.text, node) or self.text
        raise ExpressionError(
            f"The {self.what} expression {_quote(self.text)} is refused: {reason}: {_quote(part)}. Allowed: numbers, "
            f"the names {sorted(self.names)}, + - * / ** and parentheses, comparisons joined by & and |, and "
            f"calls of {sorted(self.functions)}"
        )

    def build(self, node: ast.AST):
        builders = {ast.Constant: self._Constant, ast.Name: self._Name, ast.BinOp: self._BinOp,
                    ast.UnaryOp: self._UnaryOp, ast.Compare: self._Compare, ast.Call: self._Call}
        if type(node) not in builders:  # the grammar: these node types and nothing else
            self.refuse(node, _REFUSED.get(type(node), f"{type(node).__name__} is not part of the grammar"))
        return builders[type(node)](node)

    def number(self, node: ast.AST, role: str) -> sp.Expr:
        value = self.build(node)
        if not isinstance(value, sp.Expr):
            self.refuse(node, f"a condition used as {role}")
        return value

    def condition(self, node: ast.AST):
        value = self.build(node)
        if not isinstance(value, sp.logic.boolalg.Boolean) or isinstance(value, sp.Expr):  # a Symbol is both
            self.refuse(node, "a number used as a condition (compare it, e.g. u > 0)")
        return value

    # ---- leaves ----
    def _Constant(self, node: ast.Constant) -> sp.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = {str: "string", bytes: "bytes"}.get(type(value), f"constant {value!r}")
            self.refuse(node, kind)
        if isinstance(value, int):
            return sp.Integer(value)
        if not math.isfinite(value):
            self.refuse(node, "a number too large for a float")
        return sp.Float(repr(value))

    def _Name(self, node: ast.Name) -> sp.Basic:
        if node.id.startswith("_"):
            self.refuse(node, "names starting with '_' (dunder names)")
        if node.id in self.functions:
            self.refuse(node, f"the function '{node.id}' used without a call")
        if node.id not in self.names:
            self.refuse(node, f"unknown name(s) {[node.id]}")
        return self.names[node.id]

    # ---- operators ----
    def _BinOp(self, node: ast.BinOp):
        op = type(node.op)
        if op in _LOGIC:
            return _LOGIC[op](self.condition(node.left), self.condition(node.right))
        if op not in _ARITHMETIC:
            self.refuse(node, f"the operator {type(node.op).__name__}")
        left = self.number(node.left, f"an operand of {_ARITHMETIC[op]}")
        right = self.number(node.right, f"an operand of {_ARITHMETIC[op]}")
        if op is ast.Pow:
            self.check_power(node, left, right)
            return left**right
        return {ast.Add: left.__add__, ast.Sub: left.__sub__, ast.Mult: left.__mul__,
                ast.Div: left.__truediv__}[op](right)

    def check_power(self, node: ast.AST, base: sp.Expr, exponent: sp.Expr) -> None:
        if not exponent.is_number:
            return
        try:
            size = abs(float(exponent))
        except (TypeError, ValueError, OverflowError):  # complex or beyond a float
            size = math.inf
        if not size <= MAX_EXPONENT:
            self.refuse(node, f"a constant exponent outside [-{MAX_EXPONENT}, {MAX_EXPONENT}]")
        if isinstance(base, sp.Rational) and base != 0:
            bits = max(abs(base.p).bit_length(), abs(base.q).bit_length()) * size
            if bits > MAX_CONSTANT_BITS:
                self.refuse(node, f"a constant power larger than 2**{MAX_CONSTANT_BITS}")

    def _UnaryOp(self, node: ast.UnaryOp):
        if isinstance(node.op, ast.Invert):
            return sp.Not(self.condition(node.operand))
        if isinstance(node.op, ast.USub):
            return -self.number(node.operand, "the operand of unary -")
        if isinstance(node.op, ast.UAdd):
            return self.number(node.operand, "the operand of unary +")
        return self.refuse(node, "'not' (use ~ on a comparison)")

    def _Compare(self, node: ast.Compare):
        if any(type(op) not in _COMPARE for op in node.ops):
            self.refuse(node, "the comparisons 'in', 'not in', 'is' and 'is not'")
        operands = [self.number(n, "an operand of a comparison") for n in (node.left, *node.comparators)]
        pairs = [_COMPARE[type(op)](a, b) for op, a, b in zip(node.ops, operands, operands[1:], strict=False)]
        return pairs[0] if len(pairs) == 1 else sp.And(*pairs)

    def _Call(self, node: ast.Call):
        if not isinstance(node.func, ast.Name):
            self.refuse(node.func, _REFUSED.get(type(node.func), "a call of something that is not a function name"))
        name = node.func.id
        if name.startswith("_"):
            self.refuse(node.func, "names starting with '_' (dunder names)")
        if name not in self.functions:
            self.refuse(node.func, "unknown function")
        if node.keywords:
            self.refuse(node.keywords[0], "keyword arguments")
        starred = [a for a in node.args if isinstance(a, ast.Starred)]
        if starred:
            self.refuse(starred[0], "starred arguments")
        function = self.functions[name]
        arity = function.n_args
        if (arity is None and len(node.args) < 2) or (arity is not None and len(node.args) != arity):
            self.refuse(node, f"{name} takes {'two or more' if arity is None else arity} argument(s), "
                              f"got {len(node.args)}")
        args = [self.condition(a) if k in function.conditions else self.number(a, f"an argument of {name}")
                for k, a in enumerate(node.args)]
        return function.sympy(*args)
