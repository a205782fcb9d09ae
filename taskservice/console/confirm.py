"""Confirmation before anything that changes state. The page's dialog (static/console.js) sets `confirmed=1`; when
no script ran, the server asks on a page of its own, so nothing is ever stopped or replayed on a single click."""
from __future__ import annotations

from flask import render_template, request


def ask_first(title: str, question: str, target: str, back: str) -> str | None:
    """None when the request is confirmed; otherwise the confirmation page, which posts the same form again."""
    if request.form.get("confirmed") == "1":
        return None
    fields = {k: v for k, v in request.form.items() if k not in ("csrf_token", "confirmed")}
    return render_template("confirm.html", title=title, question=question, target=target, back=back, fields=fields)
