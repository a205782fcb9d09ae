"""Parsing and validating a flow definition (FDL, design §7): YAML or JSON text, or an already-parsed object.

Everything is checked here, once, so the engine never meets a malformed step: an error raises
InvalidFlowDefinition and nothing is half-parsed. Error paths are a step path, then the field within the step:

    encode.retry[0].maxAttempts              a top-level step named "encode"
    fanout/1/thumb.resourceArn               step "thumb" in branch 1 of the parallel step "fanout"
    transcode/*/encode.inputMappings[0].source   step "encode" in the body of the foreach step "transcode"
    transcode.steps[2].name                  a step with no usable name: the field path from the nearest step
    timeoutSeconds, steps                    top-level fields
"""
from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import yaml

from taskservice.errors import InvalidFlowDefinition
from taskservice.flowdef import limits
from taskservice.flowdef.conditions import compile_condition
from taskservice.flowdef.graph import first_endless
from taskservice.flowdef.mappings import check_path, check_target
from taskservice.flowdef.model import CatchRule, Choice, FlowDefinition, Mapping, RetryRule, Step, StepType

STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")  # as taskservice.specs checks function names
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ERROR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")  # FnF.ALL, Timeout, a.b.MyError
_TOP_KEYS = ("version", "type", "timeoutSeconds", "steps")
_COMMON_KEYS = ("name", "type", "inputMappings", "outputMappings")
_FLOW_KEYS = ("goto", "end")
_TYPE_KEYS: dict[StepType, tuple[str, ...]] = {
    StepType.TASK: ("resourceArn", "retry", "catch", *_FLOW_KEYS),
    StepType.PASS: _FLOW_KEYS,
    StepType.WAIT: ("duration", "until", *_FLOW_KEYS),
    StepType.CHOICE: ("choices", "default"),
    StepType.PARALLEL: ("branches", *_FLOW_KEYS),
    StepType.FOREACH: ("iterationMapping", "maxConcurrency", "steps", *_FLOW_KEYS),
    StepType.SUCCEED: ("end",),
    StepType.FAIL: ("error", "cause", "end"),
}


def parse_definition(source: str | AbcMapping[str, Any]) -> FlowDefinition:
    """A validated FlowDefinition from YAML/JSON text or a parsed object; InvalidFlowDefinition otherwise."""
    if isinstance(source, str):
        if len(source.encode("utf-8", errors="surrogatepass")) > limits.MAX_DEFINITION_BYTES:
            raise InvalidFlowDefinition("", f"a definition is at most {limits.MAX_DEFINITION_BYTES // 1024} KiB")
        source = _load_text(source)
    elif isinstance(source, AbcMapping):
        try:
            size = len(json.dumps(source, default=str))
        except (RecursionError, ValueError):  # nested too deep, or a structure that contains itself
            raise InvalidFlowDefinition("", "a definition must be plain JSON, not nested without end") from None
        if size > limits.MAX_DEFINITION_BYTES:
            raise InvalidFlowDefinition("", f"a definition is at most {limits.MAX_DEFINITION_BYTES // 1024} KiB")
    if not isinstance(source, AbcMapping):
        raise InvalidFlowDefinition("", "a definition must be a mapping (an object) at the top, with version, type "
                                        f"and steps; got {_kind(source)}")
    _check_keys(source, _TOP_KEYS, "", "the definition")
    if source.get("version") != "v1":
        raise InvalidFlowDefinition("version", f"must be 'v1', not {source.get('version')!r}")
    if source.get("type") != "flow":
        raise InvalidFlowDefinition("type", f"must be 'flow', not {source.get('type')!r}")
    timeout = source.get("timeoutSeconds")
    if timeout is not None:
        timeout = int(_number(timeout, "timeoutSeconds", 1, limits.MAX_TIMEOUT_S, integer=True))
    steps = _Parser().steps(source.get("steps"), prefix="", field="steps", depth=1)
    return FlowDefinition(version="v1", timeout_s=timeout, steps=steps)


def _load_text(text: str) -> Any:
    try:
        return _load(text)
    except RecursionError:
        raise InvalidFlowDefinition("", "the definition nests too deep to read") from None


def _load(text: str) -> Any:
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            raise InvalidFlowDefinition("", f"invalid JSON at {where}: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidFlowDefinition("", f"invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InvalidFlowDefinition("", f"invalid YAML: {exc}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise InvalidFlowDefinition("", f"invalid JSON: the key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "nothing", bool: "a boolean"}.get(
        type(value), type(value).__name__)


def _check_keys(raw: AbcMapping[str, Any], allowed: tuple[str, ...], path: str, what: str) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidFlowDefinition(_join(path, str(key)), f"unknown field for {what}{hint} "
                                                                f"(allowed: {', '.join(allowed)})")


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _object(value: Any, path: str) -> AbcMapping[str, Any]:
    if not isinstance(value, AbcMapping):
        raise InvalidFlowDefinition(path, f"must be a mapping (an object), not {_kind(value)}")
    return value


def _list(value: Any, path: str, *, low: int = 0, high: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidFlowDefinition(path, f"must be a list, not {_kind(value)}")
    if len(value) < low:
        raise InvalidFlowDefinition(path, "must not be empty" if low == 1 else f"needs at least {low} entries")
    if high is not None and len(value) > high:
        raise InvalidFlowDefinition(path, f"may have at most {high} entries, not {len(value)}")
    return value


def _number(value: Any, path: str, low: float, high: float, *, integer: bool = False) -> float:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InvalidFlowDefinition(path, f"must be {'an integer' if integer else 'a number'}, not {value!r}")
    if not low <= value <= high:
        raise InvalidFlowDefinition(path, f"must be between {low:g} and {high:g}, not {value!r}")
    return value


def _string(value: Any, path: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidFlowDefinition(path, f"{what} {value!r} must match {pattern.pattern}")
    return value


@dataclass
class _Parser:
    """One parse: counts the steps across every nested list against MAX_STEPS."""

    count: int = 0
    literal_nodes: int = 0

    def jsonable(self, value: Any, path: str, depth: int = 0) -> Any:
        """A literal as JSON holds it: YAML's dates become ISO-8601 strings; anything else non-JSON is refused.

        Counted and depth-limited because YAML aliases can make a small text into a huge or self-containing value.
        """
        self.literal_nodes += 1
        if self.literal_nodes > limits.MAX_LITERAL_NODES or depth > limits.MAX_LITERAL_DEPTH:
            raise InvalidFlowDefinition(path, f"literals hold at most {limits.MAX_LITERAL_NODES} values in all, "
                                              f"nested at most {limits.MAX_LITERAL_DEPTH} deep")
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidFlowDefinition(path, f"a number literal must be finite, not {value!r}")
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.jsonable(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        if isinstance(value, AbcMapping) and all(isinstance(k, str) for k in value):
            return {k: self.jsonable(v, f"{path}.{k}", depth + 1) for k, v in value.items()}
        raise InvalidFlowDefinition(path, f"a literal must be JSON (null, boolean, number, string, list, object "
                                          f"with string keys), not {type(value).__name__}")

    def steps(self, raw: Any, *, prefix: str, field: str, depth: int) -> tuple[Step, ...]:
        if depth > limits.MAX_NESTING_DEPTH:
            raise InvalidFlowDefinition(field, f"steps nest at most {limits.MAX_NESTING_DEPTH} deep "
                                               "(parallel and foreach steps inside one another)")
        items = _list(raw, field, low=1)
        first_at: dict[str, int] = {}
        parsed: list[Step] = []
        for index, item in enumerate(items):
            where = f"{field}[{index}]"
            item = _object(item, where)
            name = _string(item.get("name"), f"{where}.name", STEP_NAME, "step name")
            if name in first_at:
                raise InvalidFlowDefinition(f"{where}.name", f"duplicate step name {name!r} (first at "
                                                             f"{field}[{first_at[name]}])")
            first_at[name] = index
            self.count += 1
            if self.count > limits.MAX_STEPS:
                raise InvalidFlowDefinition(where, f"a definition has at most {limits.MAX_STEPS} steps in total")
            parsed.append(self.step(item, prefix + name, depth))
        self._check_gotos(parsed, prefix)
        endless = first_endless(parsed)
        if endless is not None:
            raise InvalidFlowDefinition(prefix + endless.name, "this step can never reach an end: every way on "
                                        "from it loops through gotos; give the loop an exit (a choice that leaves "
                                        "it, end: true, a succeed or fail step)")
        return tuple(parsed)

    @staticmethod
    def _check_gotos(steps: list[Step], prefix: str) -> None:
        names = [s.name for s in steps]
        for step in steps:
            path = prefix + step.name
            targets: list[tuple[str, str | None]] = [(f"{path}.goto", step.goto)]
            targets += [(f"{path}.choices[{i}].goto", c.goto) for i, c in enumerate(step.choices)]
            targets += [(f"{path}.catch[{i}].goto", c.goto) for i, c in enumerate(step.catch)]
            targets.append((f"{path}.default.goto", step.default_goto))
            for where, target in targets:
                if target is not None and target not in names:
                    raise InvalidFlowDefinition(where, f"goto target {target!r} is not a step in the same list "
                                                       f"(steps there: {', '.join(names)})")

    def step(self, raw: AbcMapping[str, Any], path: str, depth: int) -> Step:
        kind = raw.get("type")
        valid = ", ".join(t.value for t in StepType)
        if kind is None:
            raise InvalidFlowDefinition(f"{path}.type", f"required: one of {valid}")
        if kind not in {t.value for t in StepType}:
            raise InvalidFlowDefinition(f"{path}.type", f"unknown step type {kind!r}; expected one of {valid}")
        step_type = StepType(kind)
        _check_keys(raw, (*_COMMON_KEYS, *_TYPE_KEYS[step_type]), path, f"a {step_type.value} step")
        end = raw.get("end", False)
        if not isinstance(end, bool):
            raise InvalidFlowDefinition(f"{path}.end", f"must be true or false, not {end!r}")
        goto = raw.get("goto")
        if goto is not None:
            _string(goto, f"{path}.goto", STEP_NAME, "goto target")
            if end:
                raise InvalidFlowDefinition(f"{path}.goto", "a step with end: true cannot also goto")
        fields: dict[str, Any] = {
            "name": raw["name"], "type": step_type, "end": end, "goto": goto,
            "input_mappings": self._mappings(raw.get("inputMappings"), f"{path}.inputMappings"),
            "output_mappings": self._mappings(raw.get("outputMappings"), f"{path}.outputMappings"),
        }
        if step_type is StepType.TASK:
            fields.update(self._task(raw, path))
        elif step_type is StepType.WAIT:
            fields.update(self._wait(raw, path))
        elif step_type is StepType.CHOICE:
            fields.update(self._choice(raw, path))
        elif step_type is StepType.PARALLEL:
            branches = _list(raw.get("branches"), f"{path}.branches", low=1, high=limits.MAX_BRANCHES)
            fields["branches"] = tuple(self._branch(b, f"{path}.branches[{i}]", f"{path}/{i}/", depth)
                                       for i, b in enumerate(branches))
        elif step_type is StepType.FOREACH:
            fields.update(self._foreach(raw, path, depth))
        elif step_type is StepType.FAIL:
            fields["error"] = _string(raw.get("error", "Failed"), f"{path}.error", ERROR_NAME, "error name")
            cause = raw.get("cause")
            if cause is not None and (not isinstance(cause, str) or len(cause) > limits.MAX_CAUSE_CHARS):
                raise InvalidFlowDefinition(f"{path}.cause", f"must be a string of at most "
                                                             f"{limits.MAX_CAUSE_CHARS} characters")
            fields["cause"] = cause
        return Step(**fields)

    def _mappings(self, raw: Any, path: str) -> tuple[Mapping, ...]:
        if raw is None:
            return ()
        out = []
        for i, item in enumerate(_list(raw, path)):
            where = f"{path}[{i}]"
            item = _object(item, where)
            _check_keys(item, ("target", "source"), where, "a mapping")
            if "target" not in item or "source" not in item:
                raise InvalidFlowDefinition(where, "a mapping needs both target and source")
            check_target(item["target"], path=f"{where}.target")
            source = item["source"]
            if isinstance(source, str) and source.startswith("$"):
                check_path(source, path=f"{where}.source")
            out.append(Mapping(item["target"], self.jsonable(source, f"{where}.source")))
        return tuple(out)

    @staticmethod
    def _errors(raw: Any, path: str) -> tuple[str, ...]:
        items = _list(raw, path, low=1)
        return tuple(_string(e, f"{path}[{i}]", ERROR_NAME, "error name") for i, e in enumerate(items))

    def _task(self, raw: AbcMapping[str, Any], path: str) -> dict[str, Any]:
        arn = raw.get("resourceArn")
        if not isinstance(arn, str) or not arn.startswith("function:"):
            raise InvalidFlowDefinition(f"{path}.resourceArn", f"must be 'function:<name>', not {arn!r}")
        function = _string(arn.removeprefix("function:"), f"{path}.resourceArn", FUNCTION_NAME, "function name")
        retry = []
        for i, rule in enumerate(_list(raw.get("retry", []), f"{path}.retry")):
            where = f"{path}.retry[{i}]"
            rule = _object(rule, where)
            _check_keys(rule, ("errors", "intervalSeconds", "maxAttempts", "multiplier"), where, "a retry rule")
            retry.append(RetryRule(
                errors=self._errors(rule.get("errors"), f"{where}.errors"),
                interval_s=float(_number(rule.get("intervalSeconds", 1), f"{where}.intervalSeconds", 0,
                                         limits.MAX_RETRY_INTERVAL_S)),
                max_attempts=int(_number(rule.get("maxAttempts", 3), f"{where}.maxAttempts", 1,
                                         limits.MAX_RETRY_ATTEMPTS, integer=True)),
                multiplier=float(_number(rule.get("multiplier", 2), f"{where}.multiplier", 1,
                                         limits.MAX_RETRY_MULTIPLIER))))
        catch = []
        for i, rule in enumerate(_list(raw.get("catch", []), f"{path}.catch")):
            where = f"{path}.catch[{i}]"
            rule = _object(rule, where)
            _check_keys(rule, ("errors", "goto"), where, "a catch rule")
            catch.append(CatchRule(errors=self._errors(rule.get("errors"), f"{where}.errors"),
                                   goto=_string(rule.get("goto"), f"{where}.goto", STEP_NAME, "goto target")))
        return {"function": function, "retry": tuple(retry), "catch": tuple(catch)}

    @staticmethod
    def _wait(raw: AbcMapping[str, Any], path: str) -> dict[str, Any]:
        if ("duration" in raw) == ("until" in raw):
            raise InvalidFlowDefinition(path, "a wait step needs exactly one of duration and until")
        if "duration" in raw:
            duration = raw["duration"]
            if isinstance(duration, str):
                check_path(duration, path=f"{path}.duration")
                return {"duration_s": duration}
            return {"duration_s": float(_number(duration, f"{path}.duration", 0, limits.MAX_TIMEOUT_S))}
        until = raw["until"]
        if isinstance(until, datetime):  # YAML reads an unquoted timestamp as one
            if until.tzinfo is None:
                raise InvalidFlowDefinition(f"{path}.until", "the time needs a zone (Z or +hh:mm)")
            return {"until": until.isoformat()}
        if isinstance(until, str) and until.startswith("$"):
            check_path(until, path=f"{path}.until")
            return {"until": until}
        try:
            moment = datetime.fromisoformat(until) if isinstance(until, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise InvalidFlowDefinition(f"{path}.until", f"must be an ISO-8601 time with a zone or a $ path, not "
                                                         f"{until!r}")
        return {"until": until}

    @staticmethod
    def _choice(raw: AbcMapping[str, Any], path: str) -> dict[str, Any]:
        choices = []
        for i, item in enumerate(_list(raw.get("choices"), f"{path}.choices", low=1)):
            where = f"{path}.choices[{i}]"
            item = _object(item, where)
            _check_keys(item, ("condition", "goto"), where, "a choice")
            condition = compile_condition(item.get("condition", ""), path=f"{where}.condition")
            choices.append(Choice(condition, _string(item.get("goto"), f"{where}.goto", STEP_NAME, "goto target")))
        default = raw.get("default")
        if default is not None:
            default = _object(default, f"{path}.default")
            _check_keys(default, ("goto",), f"{path}.default", "default")
            default = _string(default.get("goto"), f"{path}.default.goto", STEP_NAME, "goto target")
        return {"choices": tuple(choices), "default_goto": default}

    def _branch(self, raw: Any, where: str, prefix: str, depth: int) -> tuple[Step, ...]:
        branch = _object(raw, where)
        _check_keys(branch, ("steps",), where, "a branch")
        return self.steps(branch.get("steps"), prefix=prefix, field=f"{where}.steps", depth=depth + 1)

    def _foreach(self, raw: AbcMapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        where = f"{path}.iterationMapping"
        mapping = _object(raw.get("iterationMapping"), where)
        _check_keys(mapping, ("collection", "item", "index"), where, "iterationMapping")
        if "collection" not in mapping:
            raise InvalidFlowDefinition(f"{where}.collection", "required: the path of the list to iterate")
        check_path(mapping["collection"], path=f"{where}.collection")
        item = _string(mapping.get("item", "item"), f"{where}.item", IDENTIFIER, "item name")
        index = _string(mapping.get("index", "index"), f"{where}.index", IDENTIFIER, "index name")
        if item == index:
            raise InvalidFlowDefinition(f"{where}.index", f"the item and index names must differ (both {item!r})")
        concurrency = _number(raw.get("maxConcurrency", limits.DEFAULT_MAX_CONCURRENCY), f"{path}.maxConcurrency",
                              1, limits.MAX_CONCURRENCY, integer=True)
        steps = self.steps(raw.get("steps"), prefix=f"{path}/*/", field=f"{path}.steps", depth=depth + 1)
        return {"collection": mapping["collection"], "item_name": item, "index_name": index,
                "max_concurrency": int(concurrency), "steps": steps}
