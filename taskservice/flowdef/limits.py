"""The documented limits of flows (design §7), in one place so the parser, the engine and the docs agree.

The parser enforces the definition-time ones; the engine enforces MAX_FOREACH_ITEMS, MAX_HISTORY_EVENTS and
MAX_STEP_IO_BYTES at run time.
"""
from __future__ import annotations

MAX_FOREACH_ITEMS = 10_000
MAX_HISTORY_EVENTS = 25_000
MAX_STEP_IO_BYTES = 256 * 1024
MAX_TIMEOUT_S = 604_800  # 7 days: timeoutSeconds and a wait's duration

MAX_DEFINITION_BYTES = 256 * 1024
MAX_STEPS = 1_000  # in total, counting the steps of every branch and foreach body
MAX_NESTING_DEPTH = 8  # step lists on the way down: the top level is 1, a parallel branch inside it is 2
MAX_BRANCHES = 100
MAX_CONCURRENCY = 1_000
DEFAULT_MAX_CONCURRENCY = 100
MAX_CONDITION_CHARS = 1_000
MAX_CONDITION_DEPTH = 32
MAX_CAUSE_CHARS = 4_096
MAX_LITERAL_NODES = 100_000  # values in mapping literals, in total: YAML aliases cannot multiply them unseen
MAX_LITERAL_DEPTH = 32
MAX_RETRY_INTERVAL_S = 86_400
MAX_RETRY_ATTEMPTS = 100
MAX_RETRY_MULTIPLIER = 10
