"""`python -m taskservice.cli`: how `taskservice dev` starts its worker with the same interpreter."""
from __future__ import annotations

from taskservice.cli import main

main()
