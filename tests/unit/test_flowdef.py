"""Flow definitions: valid flows parse and round-trip; each invalid one names the step path and the field."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskservice.errors import InvalidFlowDefinition
from taskservice.flowdef import (
    FlowDefinition,
    Mapping,
    Step,
    StepType,
    apply_input_mappings,
    apply_output_mappings,
    check_path,
    next_step,
    parse_definition,
    resolve,
)
from taskservice.flowdef.limits import MAX_DEFINITION_BYTES

MEDIA = """
version: v1
type: flow
timeoutSeconds: 3600
steps:
  - name: split
    type: task
    resourceArn: function:split
    retry:
      - errors: [Timeout, Unhandled]
        maxAttempts: 5
    outputMappings:
      - {target: chunks, source: $local.chunks}
  - name: transcode
    type: foreach
    iterationMapping: {collection: $.chunks, item: chunk}
    maxConcurrency: 8
    steps:
      - name: encode
        type: task
        resourceArn: function:encode
        inputMappings:
          - {target: chunk, source: $context.chunk}
          - {target: format, source: h264}
  - name: merge
    type: task
    resourceArn: function:merge
    catch:
      - errors: [FnF.ALL]
        goto: failed
    end: true
  - name: failed
    type: fail
    error: MergeFailed
    cause: the merge did not finish
"""

PARALLEL = {
    "version": "v1", "type": "flow",
    "steps": [
        {"name": "fanout", "type": "parallel", "branches": [
            {"steps": [{"name": "hls", "type": "task", "resourceArn": "function:encode-hls"}]},
            {"steps": [{"name": "thumb", "type": "task", "resourceArn": "function:thumbnail"},
                       {"name": "inner", "type": "foreach", "iterationMapping": {"collection": "$input.sizes"},
                        "steps": [{"name": "resize", "type": "pass"}]}]},
        ]},
        {"name": "done", "type": "succeed"},
    ],
}

LOOP = """
version: v1
type: flow
steps:
  - name: poll
    type: task
    resourceArn: function:check_job
  - name: ready
    type: choice
    choices:
      - condition: $.status == "done" && $.attempts < 10
        goto: finish
    default: {goto: pause}
  - name: pause
    type: wait
    duration: 30
    goto: poll
  - name: finish
    type: succeed
"""


def minimal(**step: Any) -> dict[str, Any]:
    return {"version": "v1", "type": "flow", "steps": [{"name": "only", "type": "pass", **step}]}


def flow(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": "v1", "type": "flow", "steps": list(steps), **top}


def task(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "task", "resourceArn": f"function:{name}", **extra}


def error_of(source: Any) -> str:
    with pytest.raises(InvalidFlowDefinition) as caught:
        parse_definition(source)
    return str(caught.value)


@pytest.mark.parametrize("source", [MEDIA, PARALLEL, LOOP], ids=["media", "parallel", "loop"])
def test_valid_flows_round_trip(source: Any) -> None:
    definition = parse_definition(source)
    assert parse_definition(definition.to_json()) == definition
    assert parse_definition(json.dumps(definition.to_json())) == definition


def test_media_flow_fields() -> None:
    definition = parse_definition(MEDIA)
    assert definition.timeout_s == 3600
    split, transcode, merge, failed = definition.steps
    assert split.type is StepType.TASK and split.function == "split"
    assert split.retry[0].errors == ("Timeout", "Unhandled")
    assert (split.retry[0].interval_s, split.retry[0].max_attempts, split.retry[0].multiplier) == (1.0, 5, 2.0)
    assert split.output_mappings == (Mapping("chunks", "$local.chunks"),)
    assert transcode.collection == "$.chunks" and transcode.item_name == "chunk" and transcode.index_name == "index"
    assert transcode.max_concurrency == 8
    assert merge.catch[0].goto == "failed" and merge.end
    assert (failed.error, failed.cause) == ("MergeFailed", "the merge did not finish")


def test_step_at_follows_step_paths() -> None:
    media, parallel = parse_definition(MEDIA), parse_definition(PARALLEL)
    assert media.step_at("merge").name == "merge"
    assert media.step_at("transcode/*/encode").function == "encode"
    assert media.step_at("transcode/17/encode").function == "encode"
    assert parallel.step_at("fanout/1/thumb").function == "thumbnail"
    assert parallel.step_at("fanout/1/inner/*/resize").type is StepType.PASS
    for missing in ("nope", "fanout/2/hls", "fanout/*/hls", "fanout/0", "merge/0/x", "transcode/x/encode"):
        with pytest.raises(KeyError):
            (parallel if missing.startswith("fanout") else media).step_at(missing)


def test_next_step_honours_goto_end_and_the_last_step() -> None:
    loop = parse_definition(LOOP)
    poll, ready, pause, finish = loop.steps
    assert next_step(loop.steps, poll) is ready
    assert next_step(loop.steps, pause) is poll
    assert next_step(loop.steps, ready) is None  # a choice: the engine evaluates it
    assert next_step(loop.steps, finish) is None
    media = parse_definition(MEDIA)
    assert next_step(media.steps, media.steps[2]) is None  # end: true
    only = parse_definition(minimal())
    assert next_step(only.steps, only.steps[0]) is None


def test_defaults() -> None:
    definition = parse_definition(flow(task("t", retry=[{"errors": ["Timeout"]}]),
                                       {"name": "each", "type": "foreach", "iterationMapping": {"collection": "$"},
                                        "steps": [{"name": "p", "type": "pass"}]},
                                       {"name": "f", "type": "fail"}))
    rule = definition.steps[0].retry[0]
    assert (rule.interval_s, rule.max_attempts, rule.multiplier) == (1.0, 3, 2.0)
    each = definition.steps[1]
    assert (each.item_name, each.index_name, each.max_concurrency) == ("item", "index", 100)
    assert definition.steps[2].error == "Failed" and definition.timeout_s is None


def test_wait_accepts_seconds_paths_and_zoned_times() -> None:
    assert parse_definition(minimal(type="wait", duration=0)).steps[0].duration_s == 0.0
    assert parse_definition(minimal(type="wait", duration="$input.delay")).steps[0].duration_s == "$input.delay"
    assert parse_definition(minimal(type="wait", until="2026-12-02T01:00:00+00:00")).steps[0].until
    assert parse_definition(minimal(type="wait", until="$.deadline")).steps[0].until == "$.deadline"
    unquoted = parse_definition("version: v1\ntype: flow\nsteps:\n- {name: w, type: wait, until: 2026-12-02T01:00:00Z}")
    assert unquoted.steps[0].until == "2026-12-02T01:00:00+00:00"


BAD: list[tuple[str, Any, str]] = [
    ("unknown top key", {**minimal(), "timeoutSecond": 5}, "timeoutSecond: unknown field for the definition; did "
                                                          "you mean 'timeoutSeconds'?"),
    ("version", {**minimal(), "version": "v2"}, "version: must be 'v1'"),
    ("type", {**minimal(), "type": "workflow"}, "type: must be 'flow'"),
    ("timeout too long", {**minimal(), "timeoutSeconds": 604801}, "timeoutSeconds: must be between 1 and 604800"),
    ("timeout not int", {**minimal(), "timeoutSeconds": 1.5}, "timeoutSeconds: must be an integer"),
    ("timeout bool", {**minimal(), "timeoutSeconds": True}, "timeoutSeconds: must be an integer"),
    ("no steps", flow(), "steps: must not be empty"),
    ("steps missing", {"version": "v1", "type": "flow"}, "steps: must be a list, not nothing"),
    ("step not a mapping", flow("encode"), "steps[0]: must be a mapping (an object), not a string"),
    ("steps not a list", {"version": "v1", "type": "flow", "steps": {"a": 1}}, "steps: must be a list"),
    ("bad name", flow({"name": "1st", "type": "pass"}), "steps[0].name: step name '1st' must match"),
    ("no name", flow({"type": "pass"}), "steps[0].name: step name None must match"),
    ("duplicate", flow(task("a"), task("a")), "steps[1].name: duplicate step name 'a' (first at steps[0])"),
    ("unknown type", minimal(type="lambda"), "only.type: unknown step type 'lambda'; expected one of task, pass, "
                                             "wait, choice, parallel, foreach, succeed, fail"),
    ("missing type", flow({"name": "x"}), "x.type: required"),
    ("unknown step key", flow(task("encode", resurceArn="x")), "encode.resurceArn: unknown field for a task step; "
                                                               "did you mean 'resourceArn'?"),
    ("key of another type", minimal(resourceArn="function:f"), "only.resourceArn: unknown field for a pass step"),
    ("end not bool", minimal(end="yes"), "only.end: must be true or false"),
    ("arn", flow({"name": "t", "type": "task", "resourceArn": "lambda:f"}), "t.resourceArn: must be 'function:<name>'"),
    ("arn name", flow({"name": "t", "type": "task", "resourceArn": "function:a b"}), "t.resourceArn: function name"),
    ("retry attempts", flow(task("encode", retry=[{"errors": ["Timeout"], "maxAttempts": 0}])),
     "encode.retry[0].maxAttempts: must be between 1 and 100"),
    ("retry interval", flow(task("encode", retry=[{"errors": ["Timeout"], "intervalSeconds": 86401}])),
     "encode.retry[0].intervalSeconds: must be between 0 and 86400"),
    ("retry multiplier", flow(task("encode", retry=[{"errors": ["Timeout"], "multiplier": 0.5}])),
     "encode.retry[0].multiplier: must be between 1 and 10"),
    ("retry errors empty", flow(task("encode", retry=[{"errors": []}])), "encode.retry[0].errors: must not "
                                                                         "be empty"),
    ("retry error name", flow(task("encode", retry=[{"errors": ["no such"]}])),
     "encode.retry[0].errors[0]: error name 'no such' must match"),
    ("retry unknown key", flow(task("encode", retry=[{"errors": ["Timeout"], "backoff": 2}])),
     "encode.retry[0].backoff: unknown field for a retry rule"),
    ("catch target", flow(task("encode", catch=[{"errors": ["FnF.ALL"], "goto": "cleanup"}])),
     "encode.catch[0].goto: goto target 'cleanup' is not a step in the same list (steps there: encode)"),
    ("goto target", flow(task("a", goto="zzz"), task("b")), "a.goto: goto target 'zzz' is not a step"),
    ("goto and end", flow(task("a", goto="a", end=True)), "a.goto: a step with end: true cannot also goto"),
    ("choice empty", flow({"name": "c", "type": "choice", "choices": []}), "c.choices: must not be empty"),
    ("choice target", flow({"name": "c", "type": "choice", "choices": [{"condition": "$.a", "goto": "x"}]}),
     "c.choices[0].goto: goto target 'x' is not a step"),
    ("default target", flow({"name": "c", "type": "choice", "choices": [{"condition": "$.a", "goto": "c"}],
                             "default": {"goto": "gone"}}), "c.default.goto: goto target 'gone'"),
    ("bad condition", flow({"name": "c", "type": "choice", "choices": [{"condition": "$.a ==", "goto": "c"}]}),
     "c.choices[0].condition: expected a path"),
    ("choice end", flow({"name": "c", "type": "choice", "end": True, "choices": [{"condition": "$", "goto": "c"}]}),
     "c.end: unknown field for a choice step"),
    ("endless goto loop", flow(task("a"), task("b", goto="a"), {"name": "z", "type": "succeed"}),
     "a: this step can never reach an end"),
    ("endless choice loop", flow({"name": "c", "type": "choice", "choices": [{"condition": "$.x", "goto": "w"}]},
                                 {"name": "w", "type": "wait", "duration": 1, "goto": "c"}),
     "c: this step can never reach an end"),
    ("foreach collection missing", flow({"name": "f", "type": "foreach", "iterationMapping": {},
                                         "steps": [task("t")]}), "f.iterationMapping.collection: required"),
    ("foreach collection path", flow({"name": "f", "type": "foreach", "iterationMapping": {"collection": "items"},
                                      "steps": [task("t")]}), "f.iterationMapping.collection: a path must be a string "
                                                              "starting with '$'"),
    ("foreach item", flow({"name": "f", "type": "foreach", "iterationMapping": {"collection": "$.a", "item": "a-b"},
                           "steps": [task("t")]}), "f.iterationMapping.item: item name 'a-b' must match"),
    ("foreach concurrency", flow({"name": "f", "type": "foreach", "iterationMapping": {"collection": "$.a"},
                                  "maxConcurrency": 1001, "steps": [task("t")]}),
     "f.maxConcurrency: must be between 1 and 1000"),
    ("foreach empty", flow({"name": "f", "type": "foreach", "iterationMapping": {"collection": "$.a"}, "steps": []}),
     "f.steps: must not be empty"),
    ("foreach body", flow({"name": "transcode", "type": "foreach", "iterationMapping": {"collection": "$.a"},
                           "steps": [task("encode", inputMappings=[{"target": "x", "source": "$.a[b]"}])]}),
     "transcode/*/encode.inputMappings[0].source: malformed path"),
    ("parallel empty", flow({"name": "p", "type": "parallel", "branches": []}), "p.branches: must not be "
                                                                                 "empty"),
    ("parallel too many", flow({"name": "p", "type": "parallel", "branches": [{"steps": [task("t")]}] * 101}),
     "p.branches: may have at most 100 entries"),
    ("parallel branch key", flow({"name": "p", "type": "parallel", "branches": [{"step": []}]}),
     "p.branches[0].step: unknown field for a branch; did you mean 'steps'?"),
    ("parallel inner", flow({"name": "fanout", "type": "parallel", "branches": [
        {"steps": [task("a")]}, {"steps": [task("thumb", resourceArn="function:")]}]}),
     "fanout/1/thumb.resourceArn: function name '' must match"),
    ("parallel inner unnamed", flow({"name": "fanout", "type": "parallel",
                                     "branches": [{"steps": [{"type": "pass"}]}]}),
     "fanout.branches[0].steps[0].name: step name None"),
    ("parallel inner goto", flow({"name": "fanout", "type": "parallel",
                                  "branches": [{"steps": [task("a", goto="after")]}]}, task("after")),
     "fanout/0/a.goto: goto target 'after' is not a step in the same list (steps there: a)"),
    ("wait both", minimal(type="wait", duration=1, until="2026-01-01T00:00:00Z"),
     "only: a wait step needs exactly one of duration and until"),
    ("wait neither", minimal(type="wait"), "only: a wait step needs exactly one of duration and until"),
    ("wait too long", minimal(type="wait", duration=604801), "only.duration: must be between 0 and 604800"),
    ("wait negative", minimal(type="wait", duration=-1), "only.duration: must be between 0 and 604800"),
    ("wait bad path", minimal(type="wait", duration="30s"), "only.duration: a path must be a string starting"),
    ("until no zone", minimal(type="wait", until="2026-01-01T00:00:00"), "only.until: must be an ISO-8601 time with "
                                                                         "a zone"),
    ("until garbage", minimal(type="wait", until="tomorrow"), "only.until: must be an ISO-8601 time"),
    ("fail error", flow({"name": "f", "type": "fail", "error": "bad error"}), "f.error: error name 'bad error'"),
    ("fail cause", flow({"name": "f", "type": "fail", "cause": "x" * 4097}), "f.cause: must be a string of at most "
                                                                              "4096 characters"),
    ("mapping target", minimal(inputMappings=[{"target": "a..b", "source": 1}]),
     "only.inputMappings[0].target: a target must be a dotted name"),
    ("mapping target path", minimal(outputMappings=[{"target": "$.a", "source": 1}]),
     "only.outputMappings[0].target: a target must be a dotted name"),
    ("mapping source root", minimal(outputMappings=[{"target": "a", "source": "$output.x"}]),
     "only.outputMappings[0].source: unknown path root '$output'"),
    ("mapping no source", minimal(outputMappings=[{"target": "a"}]), "only.outputMappings[0]: a mapping needs both"),
    ("mapping key", minimal(outputMappings=[{"target": "a", "source": 1, "from": 2}]),
     "only.outputMappings[0].from: unknown field for a mapping"),
    ("top not a mapping", "- a\n- b\n", "a definition must be a mapping (an object) at the top"),
    ("top a string", "just words", "a definition must be a mapping (an object) at the top"),
    ("yaml syntax", "version: v1\ntype: flow\nsteps:\n  - name: a\n   type: pass\n", "invalid YAML at line 5"),
    ("json syntax", '{\n  "version": "v1",\n  "type": "flow"\n  "steps": []\n}', "invalid JSON at line 4"),
    ("json duplicate", '{"version": "v1", "type": "flow", "type": "flow", "steps": []}',
     "the key 'type' appears twice"),
]


@pytest.mark.parametrize(("source", "message"), [(s, m) for _, s, m in BAD], ids=[i for i, _, _ in BAD])
def test_invalid_definitions_name_the_path_and_field(source: Any, message: str) -> None:
    assert message in error_of(source)


def test_the_error_carries_its_path() -> None:
    with pytest.raises(InvalidFlowDefinition) as caught:
        parse_definition(flow(task("encode", retry=[{"errors": ["Timeout"], "maxAttempts": 101}])))
    assert caught.value.path == "encode.retry[0].maxAttempts"


def test_a_loop_with_an_exit_is_fine() -> None:
    assert parse_definition(LOOP).steps[1].default_goto == "pause"
    caught_loop = flow(task("a", catch=[{"errors": ["FnF.ALL"], "goto": "out"}], goto="a"), {"name": "out",
                                                                                           "type": "succeed"})
    assert parse_definition(caught_loop).steps[0].goto == "a"


def test_limits() -> None:
    assert "at most 256 KiB" in error_of("#" * (MAX_DEFINITION_BYTES + 1))
    many = flow(*[{"name": f"s{i}", "type": "pass"} for i in range(1001)])
    assert "steps[1000]: a definition has at most 1000 steps in total" in error_of(many)
    nested: dict[str, Any] = {"name": "leaf", "type": "pass"}
    for level in range(8):
        nested = {"name": f"n{level}", "type": "foreach", "iterationMapping": {"collection": "$"}, "steps": [nested]}
    message = error_of(flow(nested))
    assert "n7/*/n6/*/n5/*/n4/*/n3/*/n2/*/n1/*/n0.steps: steps nest at most 8 deep" in message
    assert parse_definition(flow(nested["steps"][0])).step_at("n6/*/n5/*/n4/*/n3/*/n2/*/n1/*/n0/*/leaf")


def test_check_path_and_resolve() -> None:
    for good in ("$", "$.a", "$.items[0].x", "$input", "$local.x.y", "$context.index", "$[3]"):
        check_path(good, path="f")
    for bad in ("a", "$.", "$..a", "$.a[", "$.a[-1]", "$.a b", "$x", "$.1a", "$.a()"):
        with pytest.raises(InvalidFlowDefinition):
            check_path(bad, path="f")
    state = {"items": [{"x": 1}], "__class__": "inert"}
    assert resolve("$.items[0].x", state=state, input=None, local=None, context={}) == 1
    assert resolve("$.items[5].x", state=state, input=None, local=None, context={}) is None
    assert resolve("$.items.x", state=state, input=None, local=None, context={}) is None
    assert resolve("$.__class__", state={}, input=None, local=None, context={}) is None
    assert resolve("$local.a", state=None, input=None, local={"a": [1]}, context={}) == [1]
    assert resolve("$context.index", state=None, input=None, local=None, context={"index": 3}) == 3


def test_input_mappings() -> None:
    state = {"video": {"key": "in.mp4"}, "n": 2}
    assert apply_input_mappings((), state=state, context={}) is state
    mapped = apply_input_mappings((Mapping("src.key", "$input.video.key"), Mapping("fmt", "h264"),
                                   Mapping("i", "$context.index"), Mapping("gone", "$.missing")),
                                  state=state, context={"index": 4})
    assert mapped == {"src": {"key": "in.mp4"}, "fmt": "h264", "i": 4, "gone": None}


def test_output_mappings_never_mutate_the_state() -> None:
    state = {"a": {"b": 1}, "keep": True}
    assert apply_output_mappings((), state=state, local={"c": 2}, context={}) == {"a": {"b": 1}, "keep": True,
                                                                                  "c": 2}
    assert apply_output_mappings((), state=state, local=[1, 2], context={}) == state
    new = apply_output_mappings((Mapping("a.c", "$local.x"), Mapping("copy", "$input.keep")), state=state,
                                local={"x": 9}, context={})
    assert new == {"a": {"b": 1, "c": 9}, "keep": True, "copy": True}
    assert state == {"a": {"b": 1}, "keep": True}


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    steps: list[dict[str, Any]] = []
    for name in names:
        kind = draw(st.sampled_from(["task", "pass", "wait", "fail", "succeed"]))
        step: dict[str, Any] = {"name": name, "type": kind}
        if kind == "task":
            step["resourceArn"] = f"function:{name}"
            step["retry"] = draw(st.lists(st.fixed_dictionaries({
                "errors": st.lists(st.sampled_from(["Timeout", "Unhandled", "FnF.ALL", "ValueError"]), min_size=1),
                "maxAttempts": st.integers(1, 100), "intervalSeconds": st.floats(0, 86400),
                "multiplier": st.floats(1, 10)}), max_size=2))
        elif kind == "wait":
            step["duration"] = draw(st.integers(0, 604800) | st.just("$.delay"))
        elif kind == "fail":
            step["cause"] = draw(st.text(max_size=20))
        if kind not in ("fail", "succeed") and draw(st.booleans()):
            step["outputMappings"] = [{"target": draw(NAMES), "source": draw(st.sampled_from(
                ["$local.x", "$input", 3, None, "literal", {"nested": [1, "$not.a.path.here"]}]))}]
        steps.append(step)
    return flow(*steps, **({"timeoutSeconds": draw(st.integers(1, 604800))} if draw(st.booleans()) else {}))


@settings(max_examples=60, deadline=None)
@given(definitions())
def test_to_json_round_trips(raw: dict[str, Any]) -> None:
    definition = parse_definition(raw)
    assert isinstance(definition, FlowDefinition) and all(isinstance(s, Step) for s in definition.steps)
    assert parse_definition(definition.to_json()) == definition
    assert parse_definition(json.dumps(definition.to_json())) == definition


def test_hostile_yaml_is_refused_quickly() -> None:
    laughs = ["version: v1", "type: flow", "x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 9)]
    in_place = "\n".join([*laughs[:2], "steps:", "  - name: a", "    type: pass", "    inputMappings:",
                          "      - target: boom", "        source:",
                          *("          " + f"- {line.split(': ', 1)[1]}" for line in laughs[2:])])
    assert "literals hold at most 100000 values" in error_of(in_place)
    self_containing = ("version: v1\ntype: flow\nsteps:\n"
                       "- {name: a, type: pass, inputMappings: [{target: t, source: &s [*s]}]}")
    assert "nested at most 32 deep" in error_of(self_containing)
    self_steps = ("version: v1\ntype: flow\nsteps: &s\n- {name: a, type: foreach, iterationMapping: {collection: $},"
                  " steps: *s}")
    assert "steps nest at most 8 deep" in error_of(self_steps)
    assert "nests too deep to read" in error_of("[" * 100_000 + "]" * 100_000)
    assert "a number literal must be finite" in error_of('{"version": "v1", "type": "flow", "steps": [{"name": "a", '
                                                         '"type": "pass", "inputMappings": [{"target": "t", '
                                                         '"source": NaN}]}]}')
