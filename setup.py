"""Everything about the package is in setup.cfg except the package list, which setup.cfg cannot express: the
top-level migrations/ directory (where the layout requires it) travels in the wheel as taskservice._migrations, so an
installed `taskservice migrate` finds its Alembic scripts (see taskservice/migrate.py)."""
from __future__ import annotations

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["taskservice", "taskservice.*", "workers", "workers.*"]),
              "taskservice._migrations", "taskservice._migrations.versions"],
    package_dir={"taskservice._migrations": "migrations"},  # its package data (script.py.mako) is in setup.cfg
)
