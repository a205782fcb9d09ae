"""Bearer tokens on the REST API. Outside dev mode every /v1 call carries `Authorization: Bearer <token>`; a
read-only token may only read. Health, metrics and the OpenAPI document stay open for probes and tooling."""
from __future__ import annotations

from flask import Flask, Response, current_app, g, request

from taskservice.errors import Forbidden, Unauthorized

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def register_api_auth(app: Flask) -> None:
    @app.before_request
    def _require_token() -> None:
        if not request.path.startswith("/v1/") and request.path != "/v1":
            return
        services = current_app.extensions["taskservice"]
        if not services.settings.auth:
            return
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthorized("this API needs a token: send 'Authorization: Bearer <token>' (create one with "
                               "`taskservice tokens create NAME`; the CLI reads TASKSERVICE_TOKEN)")
        token = services.tokens.authenticate(secret.strip())
        if token is None:
            raise Unauthorized("the token is unknown or has been revoked")
        if request.method not in READ_METHODS and not token.can_change:
            raise Forbidden(f"token {token.name!r} is read-only: it may look but not change anything")
        g.token = token

    @app.after_request
    def _challenge(response: Response) -> Response:
        if response.status_code == 401 and request.path.startswith("/v1"):
            response.headers["WWW-Authenticate"] = 'Bearer realm="taskservice"'
        return response
