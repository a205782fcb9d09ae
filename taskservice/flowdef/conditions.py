"""Choice conditions: a small expression language, parsed by hand and interpreted over JSON — never Python's eval.

Grammar, loosest first (so `!` binds tighter than a comparison, which binds tighter than `&&`, then `||`):

    or      := and ("||" and)*
    and     := compare ("&&" compare)*
    compare := unary (("==" | "!=" | "<" | "<=" | ">" | ">=") unary)?     -- comparisons do not chain
    unary   := "!" unary | "(" or ")" | literal | path
    literal := integer | float | "double" or 'single' quoted string (\\ escapes) | true | false | null
    path    := $ | $.a.b | $.items[0].x | $input.x | $local.x | $context.x

Evaluation never raises for a well-formed expression: a missing path is null, a comparison of mismatched types
(`"a" < 3`, `true == 1`) is false (or true for `!=`), and a value used as a boolean has JSON truthiness
(null, false, 0, "", [] and {} are false). The interpreter only reads dict keys and list indices, so nothing in an
expression can reach Python objects.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskservice.errors import InvalidFlowDefinition
from taskservice.flowdef.limits import MAX_CONDITION_CHARS, MAX_CONDITION_DEPTH
from taskservice.flowdef.paths import DataPath, scan_path

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("||", "&&", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")")
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_KEYWORDS: dict[str, Any] = {"true": True, "false": False, "null": None}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Path:
    path: DataPath


@dataclass(frozen=True)
class _Not:
    operand: _Node


@dataclass(frozen=True)
class _BoolOp:
    op: str  # "&&" or "||"
    operands: tuple[_Node, ...]


@dataclass(frozen=True)
class _Compare:
    op: str
    left: _Node
    right: _Node


_Node = _Literal | _Path | _Not | _BoolOp | _Compare


@dataclass(frozen=True)
class Condition:
    """A compiled condition; equal to another when their source texts are equal."""

    source: str
    _tree: _Node = field(compare=False, repr=False)

    def evaluate(self, state: Any, *, input: Any = None, local: Any = None,
                 context: Mapping[str, Any] | None = None) -> bool:
        return _truthy(_value(self._tree, (state, input, local, context)))


def compile_condition(text: str, *, path: str = "") -> Condition:
    """Parse `text` once (at definition time); InvalidFlowDefinition naming `path` when it is malformed."""
    if not isinstance(text, str):
        raise InvalidFlowDefinition(path, f"a condition must be a string, not {type(text).__name__}")
    if len(text) > MAX_CONDITION_CHARS:
        raise InvalidFlowDefinition(path, f"a condition is at most {MAX_CONDITION_CHARS} characters")
    parser = _Parser(text, path)
    tree = parser.parse_or(0)
    if parser.peek() is not None:
        parser.fail(f"unexpected {parser.peek()!r}")
    return Condition(text, tree)


class _Parser:
    """Recursive descent over tokens; the depth counter bounds recursion, so no input can exhaust the stack."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.tokens = self._tokenize()
        self.pos = 0

    def fail(self, message: str) -> None:
        where = self.tokens[self.pos][1] if self.pos < len(self.tokens) else len(self.text)
        raise InvalidFlowDefinition(self.path, f"{message} at {where} in condition {self.text!r}")

    def _tokenize(self) -> list[tuple[str | _Node, int]]:
        """Tokens with their offsets: operator strings, or leaf nodes (literals and paths)."""
        text, pos = self.text, 0
        tokens: list[tuple[str | _Node, int]] = []
        while pos < len(text):
            char = text[pos]
            if char.isspace():
                pos += 1
                continue
            start = pos
            operator = next((op for op in _OPERATORS if text.startswith(op, pos)), None)
            token: str | _Node
            if operator:
                token, pos = operator, pos + len(operator)
            elif char == "$":
                parsed, pos = scan_path(text, pos, path=self.path)
                token = _Path(parsed)
            elif char in "\"'":
                value, pos = self._string(pos)
                token = _Literal(value)
            elif number := _NUMBER.match(text, pos):
                literal = number.group()
                token = _Literal(float(literal) if number.group(1) or number.group(2) else int(literal))
                pos = number.end()
            elif (word := _WORD.match(text, pos)) and word.group() in _KEYWORDS:
                token, pos = _Literal(_KEYWORDS[word.group()]), word.end()
            else:
                what = f"name {word.group()!r}" if word else f"character {char!r}"
                raise InvalidFlowDefinition(self.path, f"unexpected {what} at {pos} in condition {text!r}: "
                                                       "use paths ($...), literals and the operators "
                                                       "|| && ! == != < <= > >=")
            if isinstance(token, _Literal | _Path) and pos < len(text) and (text[pos].isalnum() or text[pos] in "_$"):
                raise InvalidFlowDefinition(self.path, f"unexpected {text[pos]!r} at {pos} in condition {text!r}")
            tokens.append((token, start))
        return tokens

    def _string(self, pos: int) -> tuple[str, int]:
        quote, pos = self.text[pos], pos + 1
        out: list[str] = []
        while pos < len(self.text):
            char = self.text[pos]
            if char == quote:
                return "".join(out), pos + 1
            if char == "\\":
                escape = self.text[pos + 1: pos + 2]
                if escape == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.text[pos + 2: pos + 6]):
                    out.append(chr(int(self.text[pos + 2: pos + 6], 16)))
                    pos += 6
                    continue
                if escape not in _ESCAPES:
                    raise InvalidFlowDefinition(self.path, f"unknown escape '\\{escape}' at {pos} in condition "
                                                           f"{self.text!r}")
                out.append(_ESCAPES[escape])
                pos += 2
                continue
            out.append(char)
            pos += 1
        raise InvalidFlowDefinition(self.path, f"unterminated string at {pos} in condition {self.text!r}")

    def peek(self) -> str | _Node | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def _descend(self, depth: int) -> int:
        if depth >= MAX_CONDITION_DEPTH:
            self.fail(f"a condition nests at most {MAX_CONDITION_DEPTH} deep")
        return depth + 1

    def parse_or(self, depth: int) -> _Node:
        return self._bool_op("||", self.parse_and, depth)

    def parse_and(self, depth: int) -> _Node:
        return self._bool_op("&&", self.parse_compare, depth)

    def _bool_op(self, op: str, operand: Any, depth: int) -> _Node:
        operands = [operand(depth)]
        while self.peek() == op:
            self.pos += 1
            operands.append(operand(depth))
        return operands[0] if len(operands) == 1 else _BoolOp(op, tuple(operands))

    def parse_compare(self, depth: int) -> _Node:
        left = self.parse_unary(depth)
        op = self.peek()
        if isinstance(op, str) and op in _COMPARISONS:
            self.pos += 1
            right = self.parse_unary(depth)
            if isinstance(self.peek(), str) and self.peek() in _COMPARISONS:
                self.fail("comparisons do not chain; use && (or parentheses)")
            return _Compare(op, left, right)
        return left

    def parse_unary(self, depth: int) -> _Node:
        token = self.peek()
        if token == "!":
            self.pos += 1
            return _Not(self.parse_unary(self._descend(depth)))
        if token == "(":
            self.pos += 1
            inner = self.parse_or(self._descend(depth))
            if self.peek() != ")":
                self.fail("expected ')'")
            self.pos += 1
            return inner
        if isinstance(token, _Literal | _Path):
            self.pos += 1
            return token
        self.fail("expected a path, a literal, '!' or '('")
        raise AssertionError("unreachable: fail raises")


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float | str | list | dict | Mapping):
        return bool(value)
    return True


def _value(node: _Node, scope: tuple[Any, Any, Any, Mapping[str, Any] | None]) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Path):
        state, input, local, context = scope
        return node.path.resolve(state=state, input=input, local=local, context=context)
    if isinstance(node, _Not):
        return not _truthy(_value(node.operand, scope))
    if isinstance(node, _BoolOp):
        if node.op == "&&":
            return all(_truthy(_value(operand, scope)) for operand in node.operands)
        return any(_truthy(_value(operand, scope)) for operand in node.operands)
    return _compare(node.op, _value(node.left, scope), _value(node.right, scope))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON sees it: `true` is not `1`, `1` is `1.0`, containers compare element by element."""
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool) or left is None or right is None:
        return left is right or (isinstance(left, bool) and isinstance(right, bool) and left == right)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return False


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return json_equal(left, right)
    if op == "!=":
        return not json_equal(left, right)
    if not ((_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str))):
        return False  # ordering only means something between two numbers or two strings
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)

