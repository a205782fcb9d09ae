"""The task ledger: the source of truth for every invocation and every status it went through."""
from __future__ import annotations

from taskservice.ledger.manager import Ledger
from taskservice.ledger.states import TERMINAL, Status

__all__ = ["Ledger", "Status", "TERMINAL"]
