"""Data paths — `$`, `$.a.b`, `$.items[0].x`, `$input.x`, `$local.x`, `$context.x` — shared by conditions and mappings.

A path only ever walks JSON: dict keys and list indices, never attributes, so `$.__class__` is just a key that is
usually missing. A missing step of the way yields None rather than an error: flows branch on optional fields.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskservice.errors import InvalidFlowDefinition

ROOTS = ("", "input", "local", "context")  # "" is `$`, the state
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d{1,9})\]")
_MAX_PATH_CHARS = 1_000


@dataclass(frozen=True)
class DataPath:
    """A parsed path: its root ("" for the state) and the keys (str) and indices (int) below it."""

    root: str
    segments: tuple[str | int, ...]

    def resolve(self, *, state: Any, input: Any, local: Any, context: Mapping[str, Any] | None) -> Any:
        value: Any = {"": state, "input": input, "local": local, "context": context}[self.root]
        for segment in self.segments:
            if isinstance(segment, int):
                if not isinstance(value, list) or segment >= len(value):
                    return None
                value = value[segment]
            else:
                if not isinstance(value, Mapping) or segment not in value:
                    return None
                value = value[segment]
        return value


def scan_path(text: str, start: int, *, path: str) -> tuple[DataPath, int]:
    """Read the path that begins with the `$` at `start`; return it and the index just after it.

    Conditions use this mid-expression; `parse_path` insists the whole text is one path.
    """
    assert text[start] == "$"
    pos = start + 1
    root = ""
    word = IDENTIFIER.match(text, pos)
    if word:
        root = word.group()
        if root not in ROOTS:
            raise InvalidFlowDefinition(path, f"unknown path root '${root}' at {start}: use $, $input, $local or "
                                              "$context")
        pos = word.end()
    segments: list[str | int] = []
    while pos < len(text) and text[pos] in ".[":
        match = _SEGMENT.match(text, pos)
        if not match:
            raise InvalidFlowDefinition(path, f"malformed path at {pos} in {text!r}: expected '.name' or '[index]'")
        segments.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return DataPath(root, tuple(segments)), pos


def parse_path(text: Any, *, path: str) -> DataPath:
    """The whole of `text` as one path, or InvalidFlowDefinition naming `path` (the definition field)."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise InvalidFlowDefinition(path, f"a path must be a string starting with '$', not {text!r}")
    if len(text) > _MAX_PATH_CHARS:
        raise InvalidFlowDefinition(path, f"a path is at most {_MAX_PATH_CHARS} characters")
    parsed, end = scan_path(text, 0, path=path)
    if end != len(text):
        raise InvalidFlowDefinition(path, f"malformed path {text!r}: unexpected {text[end:]!r} at {end}")
    return parsed
