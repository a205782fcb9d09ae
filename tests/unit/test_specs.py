from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskservice.errors import InvalidFunctionConfig, InvalidInvocationId, InvalidName
from taskservice.specs import FunctionConfig, check_function_name, check_invocation_id

ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")


@pytest.mark.parametrize("value", ["a", "_", "A1", "job_2026-11-22", "x" * 128, "inv_" + "f" * 124])
def test_valid_invocation_ids(value: str) -> None:
    assert check_invocation_id(value) == value


@pytest.mark.parametrize("value", ["", "1abc", "-a", "a b", "a/b", "a.b", "x" * 129, "ä", "a\n", "../x"])
def test_invalid_invocation_ids(value: str) -> None:
    with pytest.raises(InvalidInvocationId, match="invalid invocation id"):
        check_invocation_id(value)


@given(st.text(max_size=140))
def test_invocation_id_check_is_exactly_the_documented_pattern(value: str) -> None:
    if ID_RE.fullmatch(value):
        assert check_invocation_id(value) == value
    else:
        with pytest.raises(InvalidInvocationId):
            check_invocation_id(value)


@pytest.mark.parametrize("value", ["", "9fn", "a" * 65, "a.b", "a/b"])
def test_invalid_function_names(value: str) -> None:
    with pytest.raises(InvalidName):
        check_function_name(value)


def test_defaults_follow_the_contract() -> None:
    config = FunctionConfig.parse({"handler": "pkg.mod:fn"})
    assert (config.timeout_s, config.max_retries, config.max_event_age_s) == (300, 3, 86400)
    assert config.on_success is None and config.concurrency is None


@pytest.mark.parametrize("config,field", [
    ({"handler": "pkg.mod:fn", "timeout_s": 0}, "timeout_s"),
    ({"handler": "pkg.mod:fn", "timeout_s": 86401}, "timeout_s"),
    ({"handler": "pkg.mod:fn", "max_retries": 9}, "max_retries"),
    ({"handler": "pkg.mod:fn", "max_retries": -1}, "max_retries"),
    ({"handler": "pkg.mod:fn", "max_event_age_s": 0}, "max_event_age_s"),
    ({"handler": "pkg.mod:fn", "max_event_age_s": 604801}, "max_event_age_s"),
    ({"handler": "pkg.mod.fn"}, "handler"),
    ({"handler": "pkg mod:fn"}, "handler"),
    ({"handler": ":fn"}, "handler"),
    ({}, "handler"),
    ({"handler": "pkg.mod:fn", "on_success": "ftp://x"}, "on_success"),
    ({"handler": "pkg.mod:fn", "on_failure": "queue:"}, "on_failure"),
    ({"handler": "pkg.mod:fn", "on_failure": "function:9bad"}, "on_failure"),
    ({"handler": "pkg.mod:fn", "concurrency": 0}, "concurrency"),
    ({"handler": "pkg.mod:fn", "colour": "blue"}, "colour"),
    ({"handler": "pkg.mod:fn", "timeout_s": "ten"}, "timeout_s"),
])
def test_invalid_configs_name_the_field(config: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidFunctionConfig) as info:
        FunctionConfig.parse(config)
    assert field in info.value.message
    assert any(p["field"] == field for p in info.value.details)


def test_destinations_of_every_kind_are_accepted() -> None:
    config = FunctionConfig.parse({"handler": "a.b:c", "on_success": "queue:fc-etl-processed-message",
                                   "on_failure": "kafka:dead-letters"})
    assert config.on_success == "queue:fc-etl-processed-message"
    FunctionConfig.parse({"handler": "a.b:c", "on_success": "function:next_step",
                          "on_failure": "https://hooks.example.com/x"})


def test_a_config_must_be_an_object() -> None:
    with pytest.raises(InvalidFunctionConfig, match="JSON object"):
        FunctionConfig.parse(["handler"])
