"""Benchmarks of taskservice against the plain alternative (bare Celery) on the production stack.

Not part of the installed package: run from the source tree, e.g. `.venv/bin/python bench/bench_core.py`.
"""
