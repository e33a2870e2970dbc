"""calculator: arithmetic on numbers, evaluated over the syntax tree, never with eval()."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from pydantic import BaseModel, Field

from agents.tools.registry import ToolError, ToolSpec, register

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1_000
MAX_MAGNITUDE = 1e300  # anything larger is refused rather than computed

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class CalculatorArgs(BaseModel):
    expression: str = Field(
        min_length=1,
        max_length=MAX_EXPRESSION_CHARS,
        description="An arithmetic expression: numbers, + - * / // % ** (or ^), parentheses.",
    )


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression; anything that is not arithmetic is a ToolError."""
    source = expression.replace("^", "**").replace("×", "*").replace("÷", "/")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise ToolError(f"Not an arithmetic expression: {expression!r}.") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> int | float:
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, int | float) and not isinstance(value, bool):  # True is no number
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        return _apply(type(node.op), left, right)
    raise ToolError(
        f"Only numbers and arithmetic operators are allowed, not {type(node).__name__}."
    )


def _apply(op: type[ast.operator], left: int | float, right: int | float) -> int | float:
    if op in (ast.Div, ast.FloorDiv, ast.Mod) and right == 0:
        raise ToolError("Division by zero.")
    if op is ast.Pow:
        if abs(right) > MAX_EXPONENT:
            raise ToolError(f"Exponent {right} is too large (limit {MAX_EXPONENT}).")
        if left != 0 and abs(right) * math.log10(abs(left)) > 300:
            raise ToolError("The result would be too large.")
    try:
        result = _BINARY[op](left, right)
    except (OverflowError, ZeroDivisionError) as exc:
        raise ToolError(f"Cannot compute: {exc}.") from None
    if isinstance(result, complex):
        raise ToolError("The result is not a real number.")
    if abs(result) > MAX_MAGNITUDE:
        raise ToolError("The result is too large.")
    return result


def format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


async def _run(args: CalculatorArgs) -> str:
    return format_number(evaluate(args.expression))


calculator = register(
    ToolSpec(
        name="calculator",
        description="Evaluate an arithmetic expression and return the number.",
        args_model=CalculatorArgs,
        run=_run,
        timeout_s=2.0,
        max_output_chars=400,
    )
)
