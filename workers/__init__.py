"""Celery workers: claim an invocation from the ledger, run its handler in an isolated process, persist the outcome."""
