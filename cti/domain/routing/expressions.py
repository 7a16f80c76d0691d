"""A small, safe expression language for rule conditions and agent expressions. No eval.

Syntax is a subset of Python expressions, parsed with `ast` and compiled to closures over a
whitelist: literals (str, int, float, bool, None, lists/tuples), names and dotted names
(`language`, `crm.segment`, `agent.skills.billing`), `and`/`or`/`not`, comparisons
(== != < <= > >= in, not in), and the string methods `startswith`/`endswith`/`lower`/`upper`.
A missing name is None; an ordering comparison with None or mismatched types is false
rather than an error, so a rule never crashes on a call without that attribute.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Evaluator = Callable[[Mapping[str, Any]], Any]

_ORDER_OPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_YAML_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_STR_METHODS = {"startswith", "endswith", "lower", "upper"}


class ExpressionError(ValueError):
    """A bad expression; `column` is 1-based within the expression text."""

    def __init__(self, message: str, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass(frozen=True, slots=True)
class Expression:
    text: str
    names: frozenset[str]  # the dotted names it reads, e.g. {"crm.segment", "language"}
    _fn: Evaluator = field(repr=False, compare=False)
    # For `name == literal`: the name and the literal, so a router can index many such
    # conditions in one dict instead of testing them one by one.
    equality: tuple[str, Any] | None = field(default=None, compare=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return self._fn(context)

    def test(self, context: Mapping[str, Any]) -> bool:
        return bool(self._fn(context))

    def __str__(self) -> str:
        return self.text


def compile_expression(text: str) -> Expression:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", exc.offset or 1) from None
    names: set[str] = set()
    body = tree.body
    fn = _compile(body, names)
    equality: tuple[str, Any] | None = None
    if (
        isinstance(body, ast.Compare)
        and len(body.ops) == 1
        and isinstance(body.ops[0], ast.Eq)
        and isinstance(body.comparators[0], ast.Constant)
        and len(names) == 1
        and isinstance(body.left, ast.Name | ast.Attribute)
    ):
        equality = (next(iter(names)), body.comparators[0].value)
    return Expression(text, frozenset(names), fn, equality)


def lookup(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = context
    for part in path:
        if isinstance(node, Mapping):
            node = node.get(part)
        else:
            return None
        if node is None:
            return None
    return node


def _dotted(node: ast.expr) -> tuple[str, ...] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return None


def _fail(node: ast.AST, what: str) -> ExpressionError:
    return ExpressionError(what, getattr(node, "col_offset", 0) + 1)


def _compile(node: ast.expr, names: set[str]) -> Evaluator:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise _fail(node, f"unsupported literal {node.value!r}")
        value = node.value
        return lambda _c: value
    if isinstance(node, ast.Name | ast.Attribute):
        path = _dotted(node)
        if path is None:
            raise _fail(node, "only names and dotted names can be read")
        if node_is_keyword(path):
            raise _fail(node, f"'{'.'.join(path)}' is not allowed")
        joined = ".".join(path)
        if joined in _YAML_CONSTANTS:  # admins write YAML-style true/false/null
            const = _YAML_CONSTANTS[joined]
            return lambda _c: const
        names.add(joined)
        if len(path) == 1:
            return lambda c: c.get(joined)
        # A flat key "crm.segment" wins over nested lookup, so both attribute shapes work.
        return lambda c: c[joined] if joined in c else lookup(c, path)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        items = [_compile(e, names) for e in node.elts]
        return lambda c: tuple(i(c) for i in items)
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v, names) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda c: all(p(c) for p in parts)
        return lambda c: any(p(c) for p in parts)
    if isinstance(node, ast.UnaryOp):
        inner = _compile(node.operand, names)
        if isinstance(node.op, ast.Not):
            return lambda c: not inner(c)
        if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return lambda c: -inner(c)
        raise _fail(node, "unsupported operator")
    if isinstance(node, ast.Compare):
        left = _compile(node.left, names)
        ops = [
            (_compare_op(op, node), _compile(r, names))
            for op, r in zip(node.ops, node.comparators, strict=True)
        ]

        def compare(c: Mapping[str, Any]) -> bool:
            a = left(c)
            for op, right in ops:
                b = right(c)
                if not op(a, b):
                    return False
                a = b
            return True

        return compare
    if isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Attribute) or func.attr not in _STR_METHODS or node.keywords:
            raise _fail(
                node, "only the string methods startswith, endswith, lower, upper can be called"
            )
        target = _compile(func.value, names)
        args = [_compile(a, names) for a in node.args]
        method = func.attr

        def call(c: Mapping[str, Any]) -> Any:
            value = target(c)
            if not isinstance(value, str):
                return None if method in ("lower", "upper") else False
            values = [a(c) for a in args]
            try:
                return getattr(value, method)(*values)
            except TypeError:
                return False

        return call
    raise _fail(node, f"unsupported syntax: {type(node).__name__}")


def node_is_keyword(path: tuple[str, ...]) -> bool:
    return any(p.startswith("__") for p in path)


def _safe_order(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def op(a: Any, b: Any) -> bool:
        try:
            return bool(fn(a, b))
        except TypeError:
            return False

    return op


def _contains(a: Any, b: Any) -> bool:
    if b is None:
        return False
    try:
        return a in b
    except TypeError:
        return False


def _compare_op(op: ast.cmpop, node: ast.AST) -> Callable[[Any, Any], bool]:
    if isinstance(op, ast.Eq):
        return lambda a, b: bool(a == b)
    if isinstance(op, ast.NotEq):
        return lambda a, b: bool(a != b)
    if isinstance(op, ast.In):
        return _contains
    if isinstance(op, ast.NotIn):
        return lambda a, b: not _contains(a, b)
    order = _ORDER_OPS.get(type(op))
    if order is None:
        raise _fail(node, "unsupported comparison")
    return _safe_order(order)
