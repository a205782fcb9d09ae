"""Input and output mappings: how a step's input is built from the state and its output folded back (design §7).

A mapping's source is a path string (`$input.x`, `$local.x`, `$context.x`, `$.x` for the state) or a literal; a
string that does not start with `$` is a literal. Targets are dotted names ("a", "a.b"), nested dicts created on
the way; the state passed in is never mutated, so the engine can keep the old state for history and redrive.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskservice.errors import InvalidFlowDefinition
from taskservice.flowdef.paths import DataPath, parse_path

if TYPE_CHECKING:
    from taskservice.flowdef.model import Mapping

TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}){0,31}")


def check_path(text: str, *, path: str) -> None:
    """InvalidFlowDefinition naming `path` (the definition field) when `text` is not a well-formed path."""
    parse_path(text, path=path)


def check_target(text: Any, *, path: str) -> None:
    if not isinstance(text, str) or not TARGET.fullmatch(text):
        raise InvalidFlowDefinition(path, f"a target must be a dotted name like 'a' or 'a.b', not {text!r}")


def resolve(path: str, *, state: Any, input: Any, local: Any, context: AbcMapping[str, Any] | None) -> Any:
    """The value at `path`, None when any part of the way is missing (a malformed path still raises)."""
    return _parsed(path).resolve(state=state, input=input, local=local, context=context)


@functools.lru_cache(maxsize=1024)
def _parsed(path: str) -> DataPath:
    """Paths are parsed at definition time already; the engine resolves the same few again and again."""
    return parse_path(path, path="")


def _source_value(source: Any, *, state: Any, input: Any, local: Any, context: AbcMapping[str, Any] | None) -> Any:
    if isinstance(source, str) and source.startswith("$"):
        return resolve(source, state=state, input=input, local=local, context=context)
    return source


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` in `target`, copying each dict on the way so that nothing shared with the caller changes."""
    *parents, last = dotted.split(".")
    node = target
    for key in parents:
        child = node.get(key)
        node[key] = dict(child) if isinstance(child, dict) else {}
        node = node[key]
    node[last] = value


def apply_input_mappings(mappings: Sequence[Mapping], *, state: Any, context: AbcMapping[str, Any] | None) -> Any:
    """The step's input: the state itself without mappings, else a new dict of the targets ($input = the state)."""
    if not mappings:
        return state
    built: dict[str, Any] = {}
    for mapping in mappings:
        _set(built, mapping.target, _source_value(mapping.source, state=state, input=state, local=None,
                                                  context=context))
    return built


def apply_output_mappings(mappings: Sequence[Mapping], *, state: Any, local: Any,
                          context: AbcMapping[str, Any] | None) -> dict[str, Any]:
    """The new state after a step whose raw output is `local`.

    Without mappings an object output is merged into the state (shallow) and any other output leaves the state as
    it was; with mappings only the mapped targets are set, from `$input` (the state) and `$local` (the output).
    """
    new_state: dict[str, Any] = dict(state) if isinstance(state, AbcMapping) else {}
    if not mappings:
        if isinstance(local, AbcMapping):
            new_state.update(local)
        return new_state
    for mapping in mappings:
        _set(new_state, mapping.target, _source_value(mapping.source, state=state, input=state, local=local,
                                                      context=context))
    return new_state
