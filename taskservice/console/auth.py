"""Console sign-in: outside dev mode every page needs a session signed in with an access token.

The session keeps the token's id, never its secret, and the token is looked up again on every request, so revoking
it (`taskservice tokens revoke NAME`) signs out every session that used it. Read-only tokens see everything but get
no Stop, Retry or Replay button, and such POSTs are refused server-side (403) whatever the form says.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from taskservice.console.blueprint import LIVE_ENDPOINTS, console, services
from taskservice.errors import Forbidden, Unauthorized

PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a signed-in token, or nobody in particular in dev's open mode."""

    name: str | None
    role: str
    can_change: bool
    open_mode: bool


OPEN = Viewer(name=None, role="admin", can_change=True, open_mode=True)


@console.before_request
def _sign_in_and_csrf() -> Response | None:
    """Runs before every console view: who is this, is the form genuine, may they see the page at all."""
    g.viewer = _viewer()
    if request.method == "POST":
        current_app.extensions["csrf"].protect()
    if g.viewer is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.endpoint in LIVE_ENDPOINTS:
            raise Unauthorized("sign in again: this session has ended")
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    return None


def _viewer() -> Viewer | None:
    if not services().settings.auth:
        return OPEN
    token_id = session.get("token_id")
    if not isinstance(token_id, int):
        return None
    token = services().tokens.by_id(token_id)
    if token is None:  # revoked (or deleted) since sign-in
        session.clear()
        flash("Your access token has been revoked; sign in with another one.", "error")
        return None
    return Viewer(name=token.name, role=token.role, can_change=token.can_change, open_mode=False)


def require_change() -> None:
    """Refuse a state-changing action to a read-only viewer."""
    if not g.viewer.can_change:
        raise Forbidden(f"you are signed in as {g.viewer.name!r}, a read-only token: you may look but not stop, "
                        "retry, redrive or replay anything")


def _safe_next(target: str | None) -> str:
    """Only a path on this site, so the sign-in form cannot be used to bounce people elsewhere."""
    # Browsers read "/\\host" like "//host": refuse backslashes as well as a second slash or a netloc.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target \
            and not urlsplit(target).netloc:
        return target
    return url_for("console.invocations")


@console.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    if not services().settings.auth:
        return redirect(url_for("console.invocations"))
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next_url=next_url)
    token = services().tokens.authenticate(request.form.get("token", "").strip())
    if token is None:
        return render_template("login.html", next_url=next_url,
                               error="That token is unknown or has been revoked."), 401
    session.clear()
    session["token_id"] = token.id
    flash(f"Signed in as {token.name} ({token.role}).", "ok")
    return redirect(next_url, code=303)


@console.post("/logout")
def logout() -> Response:
    session.clear()
    flash("Signed out.", "ok")
    return redirect(url_for("console.login"), code=303)
