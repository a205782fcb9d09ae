"""Jinja filters of the console: times both relative and absolute, durations, counts and JSON for people."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from taskservice.clock import utcnow

#: JSON longer than this (characters, once indented) or than FOLD_LINES lines is shown folded in a <details>.
FOLD_CHARS = 2000
FOLD_LINES = 40
#: Beyond this a document is cut for display (the API still serves it whole).
SHOW_MAX_CHARS = 200_000


def reltime(value: datetime | None, now: datetime | None = None) -> str:
    """'12 s ago', '3 min ago', 'in 4 s': what a person reads first; the absolute time goes in the title."""
    if value is None:
        return "—"
    seconds = ((now or utcnow()) - value).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        return "just now"
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds // 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds // 3600:.0f} h"
    else:
        text = f"{seconds // 86400:.0f} d"
    return f"in {text}" if ahead else f"{text} ago"


def abstime(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def isotime(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def capped(count: int, cap: int) -> str:
    """A capped count: '1,234', or '10,000+' when the count stopped at the cap."""
    return f"{cap:,}+" if count > cap else f"{count:,}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def pretty_json(text: str | None) -> str:
    """Indented JSON for reading; text that is not JSON is shown as it is. Cut beyond SHOW_MAX_CHARS."""
    if text is None:
        return ""
    try:
        shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        shown = text
    if len(shown) > SHOW_MAX_CHARS:
        shown = shown[:SHOW_MAX_CHARS] + f"\n… cut here for display: {len(shown):,} characters in all"
    return shown


def is_large(text: str) -> bool:
    return len(text) > FOLD_CHARS or text.count("\n") > FOLD_LINES


def size(text: str | None) -> str:
    n = len((text or "").encode())
    return f"{n:,} bytes" if n < 10_000 else f"{n / 1024:,.1f} KiB"


def compact_json(value: Any) -> str:
    """One line of JSON for a table cell (a history event's detail); nothing for an empty object."""
    if value in (None, {}):
        return ""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= SHOW_MAX_CHARS else text[:SHOW_MAX_CHARS] + " …"


FILTERS = {"reltime": reltime, "abstime": abstime, "isotime": isotime, "duration": duration, "capped": capped,
           "percent": percent, "pretty_json": pretty_json, "is_large": is_large, "size": size,
           "compact_json": compact_json}
