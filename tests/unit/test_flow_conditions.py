"""Choice conditions: truth tables, precedence, null for missing paths, no exceptions at run time, no way out."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskservice.errors import InvalidFlowDefinition
from taskservice.flowdef import Condition, compile_condition


def holds(text: str, state: Any = None, **scopes: Any) -> bool:
    return compile_condition(text).evaluate(state, **scopes)


@pytest.mark.parametrize(("a", "b"), [(a, b) for a in (True, False) for b in (True, False)])
def test_truth_tables(a: bool, b: bool) -> None:
    state = {"a": a, "b": b}
    assert holds("$.a && $.b", state) is (a and b)
    assert holds("$.a || $.b", state) is (a or b)
    assert holds("!$.a", state) is (not a)
    assert holds("!($.a && $.b) == (!$.a || !$.b)", state)  # De Morgan, and == between booleans


@pytest.mark.parametrize(("text", "expected"), [
    ("true || false && false", True),  # && binds tighter than ||
    ("(true || false) && false", False),
    ("!false && false", False),  # ! binds tighter than &&
    ("!(false && false)", True),
    ("!$.zero == true", True),  # ! binds tighter than ==: (!0) == true
    ("!($.zero == true)", True),
    ("$.one == 1 && $.two == 2 || false", True),
    ("false || $.one < $.two && $.two <= 2", True),
    ("!!$.one", True),
])
def test_precedence(text: str, expected: bool) -> None:
    assert holds(text, {"zero": 0, "one": 1, "two": 2}) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("1 < 2", True), ("2 <= 2", True), ("3 > 2.5", True), ("2 >= 3", False), ("1 == 1.0", True),
    ("'a' < 'b'", True), ('"abc" == \'abc\'', True), ("'b' > 'a'", True), ("1 != 2", True),
    ("null == null", True), ("-1.5e2 < 0", True), ("0 == -0", True),
    ('"a\\"b" == $.quote', True), ("'it\\'s' == $.apostrophe", True), ('"\\u00e9" == $.accent', True),
])
def test_comparisons(text: str, expected: bool) -> None:
    assert holds(text, {"quote": 'a"b', "apostrophe": "it's", "accent": "é"}) is expected


@pytest.mark.parametrize("text", ['"a" < 3', "3 >= 'a'", "null < 1", "true > false", "$.list < $.list",
                                  "$.obj <= $.obj", "true == 1", "false == 0", "1 == '1'", "null == false",
                                  "$.list == $.other_list"])
def test_mismatched_types_are_false(text: str) -> None:
    assert holds(text, {"list": [1], "obj": {}, "other_list": [True]}) is False


def test_structures_compare_as_json() -> None:
    state = {"a": [1, {"b": "c"}], "b": [1.0, {"b": "c"}], "c": [True, {"b": "c"}]}
    assert holds("$.a == $.b", state) and holds("$.a != $.c", state) and holds("'x' != 1", state)


@pytest.mark.parametrize(("text", "expected"), [
    ("$.missing == null", True), ("$.missing", False), ("$.a.b.c.d == null", True), ("$.items[9] == null", True),
    ("$.items[0].x == 1", True), ("$.items.x == null", True), ("$.text[0] == null", True), ("!$.missing", True),
    ("$input.n == 5", True), ("$local.ok", True), ("$context.index == 2", True), ("$context.nothing == null", True),
    ("$ == $", True), ("$.items", True), ("$.empty_list", False), ("$.empty_obj", False), ("$.zero", False),
    ("$.empty_text", False), ("$.text", True), ("$", True),
])
def test_paths_and_truthiness(text: str, expected: bool) -> None:
    state = {"items": [{"x": 1}], "text": "t", "empty_list": [], "empty_obj": {}, "zero": 0, "empty_text": ""}
    assert holds(text, state, input={"n": 5}, local={"ok": True}, context={"index": 2}) is expected


def test_missing_scopes_are_null() -> None:
    assert holds("$input.x == null && $local == null && $context.y == null")


@pytest.mark.parametrize("text", [
    "__import__('os')", "$.a; drop", "__import__('os').system('id')", "$.a.__class__()", "exec('1')", "$.a + 1",
    "$.a = 1", "lambda: 1", "$.a[0:2]", "$.a['x']", "$.a[-1]", "`id`", "$.a if True else $.b", "$.a or $.b",
    "not $.a", "$.a and $.b", "${a}", "$$", "1 2", "'unterminated", "'bad \\q escape'", "(true", "true)", "", "   ",
    "== 1", "1 ==", "&& true", "!", "$.a == 1 == 1", "truex", "$.a.", "$.a..b", "$.1", "$foo.x", "$inputs.x",
    "0x10 == 16", "01 == 1", "1.e3",
])
def test_malformed_or_foreign_syntax_is_refused(text: str) -> None:
    with pytest.raises(InvalidFlowDefinition) as caught:
        compile_condition(text, path="check.choices[0].condition")
    assert caught.value.path == "check.choices[0].condition"
    assert str(caught.value).startswith("check.choices[0].condition: ")


def test_dunder_paths_are_inert() -> None:
    """A path only reads dict keys: `$.__class__` is a key that is missing, not an attribute."""
    assert holds("$.__class__ == null", {"a": 1})
    assert holds("$.__class__.__init__.__globals__ == null", {"a": 1})
    assert holds("$.__class__ == 'x'", {"__class__": "x"})
    assert holds("$.keys == null && $.items == null", {"a": 1})


def test_limits() -> None:
    assert holds("(" * 31 + "true" + ")" * 31)
    with pytest.raises(InvalidFlowDefinition, match="nests at most 32 deep"):
        compile_condition("(" * 33 + "true" + ")" * 33)
    with pytest.raises(InvalidFlowDefinition, match="nests at most 32 deep"):
        compile_condition("!" * 40 + "true")
    long = " || ".join(["$.a == 1"] * 100)
    with pytest.raises(InvalidFlowDefinition, match="at most 1000 characters"):
        compile_condition(long + " " * (1001 - len(long)))
    assert holds(" || ".join(["$.a == 1"] * 80), {"a": 1})  # long but flat: fine


def test_conditions_compare_by_source() -> None:
    assert compile_condition("$.a == 1") == compile_condition("$.a == 1")
    assert compile_condition("$.a == 1") != compile_condition("$.a==1")
    assert isinstance(compile_condition("true"), Condition)
    with pytest.raises(InvalidFlowDefinition, match="must be a string"):
        compile_condition(3)  # type: ignore[arg-type]


PATHS = st.sampled_from(["$", "$.a", "$.a.b", "$.items[0]", "$.items[2].x", "$input.n", "$local", "$context.i",
                         "$.__class__", "$.s"])
LITERALS = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
                     st.sampled_from(["true", "false", "null", "''", '"x"', "'a\\'b'", '"\\n\\u0041"']))
OPERATORS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abx"), inner,
                                                                                max_size=3), max_leaves=10)


def expressions() -> st.SearchStrategy[str]:
    atoms = PATHS | LITERALS
    comparisons = st.tuples(atoms, OPERATORS, atoms).map(" ".join)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(inner.map(lambda e: f"!{e}"), inner.map(lambda e: f"({e})"),
                         st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(" ".join))

    return st.recursive(atoms | comparisons, extend, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(text=expressions(), state=JSON, input=JSON, local=JSON, context=st.dictionaries(st.sampled_from("ix"), JSON))
def test_well_formed_expressions_never_raise_at_evaluate_time(text: str, state: Any, input: Any, local: Any,
                                                              context: dict[str, Any]) -> None:
    if len(text) > 1000:
        return
    try:
        condition = compile_condition(text)
    except InvalidFlowDefinition as exc:  # only the depth limit may refuse what the generator builds
        assert "nests at most" in str(exc)
        return
    assert condition.evaluate(state, input=input, local=local, context=context) in (True, False)
