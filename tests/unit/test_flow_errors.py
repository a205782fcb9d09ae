"""FDL error matching for retry and catch (taskservice/flows/interpreter.py: errors_match)."""
from __future__ import annotations

from taskservice.flows.interpreter import errors_match


def test_unhandled_matches_the_handlers_own_exceptions_but_not_system_errors() -> None:
    assert errors_match(("Unhandled",), "RuntimeError")
    assert not errors_match(("Unhandled",), "Timeout")
    assert errors_match(("Timeout",), "Timeout") and errors_match(("FnF.ALL",), "Timeout")


def test_an_invalid_invocation_is_not_retried_by_unhandled_only_by_its_name_invalid_or_all() -> None:
    """A bad event fails the same way every time: a retry rule on Unhandled must not run it again."""
    assert not errors_match(("Unhandled",), "BadEvent", invalid=True)
    assert errors_match(("BadEvent",), "BadEvent", invalid=True)
    assert errors_match(("Invalid",), "BadEvent", invalid=True)
    assert errors_match(("FnF.ALL",), "BadEvent", invalid=True)
    assert errors_match(("Unhandled",), "BadEvent")  # catch: still an exception of the handler
