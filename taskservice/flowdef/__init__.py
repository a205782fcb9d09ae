"""Flow definitions (design §7), the pure layer: parsing and validation, conditions and mappings — no I/O.

The engine (taskservice.flows) runs what this package has already checked; see parse.py for the error-path
notation and model.py for step paths.
"""
from __future__ import annotations

from taskservice.flowdef.conditions import Condition, compile_condition
from taskservice.flowdef.limits import MAX_FOREACH_ITEMS, MAX_HISTORY_EVENTS, MAX_STEP_IO_BYTES, MAX_TIMEOUT_S
from taskservice.flowdef.mappings import apply_input_mappings, apply_output_mappings, check_path, resolve
from taskservice.flowdef.model import (
    CatchRule,
    Choice,
    FlowDefinition,
    Mapping,
    RetryRule,
    Step,
    StepType,
    next_step,
)
from taskservice.flowdef.parse import parse_definition

__all__ = [
    "MAX_FOREACH_ITEMS", "MAX_HISTORY_EVENTS", "MAX_STEP_IO_BYTES", "MAX_TIMEOUT_S",
    "CatchRule", "Choice", "Condition", "FlowDefinition", "Mapping", "RetryRule", "Step", "StepType",
    "apply_input_mappings", "apply_output_mappings", "check_path", "compile_condition", "next_step",
    "parse_definition", "resolve",
]
