"""The dead-letters page: every failure record, and its replay (as recorded, or with an edited payload)."""
from __future__ import annotations

import json
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from taskservice.api.dead_letters import dead_letter_filter
from taskservice.console.auth import require_change
from taskservice.console.blueprint import console, services
from taskservice.console.confirm import ask_first
from taskservice.errors import DuplicateInvocation, TaskServiceError
from taskservice.ledger.records import DeadLetter
from taskservice.statuses import FAILURE_CONDITIONS

PAGE_SIZE = 50


@console.get("/dead-letters")
def dead_letters() -> str:
    args = request.args
    function, condition = dead_letter_filter(args)
    cursor = args.get("older") or None
    items, older = services().ledger.list_dead_letters(function=function, condition=condition, limit=PAGE_SIZE,
                                                       cursor=cursor)
    return render_template("dead_letters.html", items=items, older=older, paged=cursor is not None,
                           function=function, condition=condition, conditions=FAILURE_CONDITIONS,
                           functions=[f.name for f in services().ledger.list_functions()])


def _original_payload(dead: DeadLetter) -> Any:
    raw = json.loads(dead.record).get("requestPayload")
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw


@console.get("/dead-letters/<int:dead_letter_id>")
def dead_letter(dead_letter_id: int) -> str:
    dead = services().dead_letters.get(dead_letter_id)
    payload_text = json.dumps(_original_payload(dead), indent=2, ensure_ascii=False)
    return render_template("dead_letter.html", dead=dead, payload_text=payload_text, error=None)


@console.post("/dead-letters/<int:dead_letter_id>/replay")
def replay(dead_letter_id: int) -> Response | str | tuple[str, int]:
    """Replay one failure. A payload field that differs from the recorded one replays with the edited payload;
    `force` replays a failure that was replayed before (a fresh invocation id instead of a 409)."""
    require_change()
    dead = services().dead_letters.get(dead_letter_id)
    here = url_for("console.dead_letter", dead_letter_id=dead.id)
    asked = ask_first("Replay", f"Replay the failed request of {dead.function} / {dead.invocation_id}?",
                      url_for("console.replay", dead_letter_id=dead.id), here)
    if asked is not None:
        return asked
    kwargs: dict[str, Any] = {}
    edited = request.form.get("payload")
    if edited is not None and edited.strip():
        try:
            payload = json.loads(edited)
        except ValueError as exc:
            return render_template("dead_letter.html", dead=dead, payload_text=edited,
                                   error=f"The payload is not valid JSON ({exc}); nothing was replayed."), 400
        if payload != _original_payload(dead):
            kwargs["payload"] = payload
    try:
        inv = services().replayer.replay_dead_letter(dead.id, force=request.form.get("force") == "1", **kwargs)
    except DuplicateInvocation as exc:
        flash(f"Already replayed: {exc.message}. Tick “replay again” to run it once more.", "error")
        return redirect(here, code=303)
    except TaskServiceError as exc:
        flash(f"Could not replay it: {exc.message}", "error")
        return redirect(here, code=303)
    flash("Replayed" + (" with the edited payload" if kwargs else "") + f" as {inv.invocation_id}.", "ok")
    return redirect(url_for("console.invocation", function=inv.function, invocation_id=inv.invocation_id),
                    code=303)
