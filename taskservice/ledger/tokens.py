"""TokenStore: access tokens for the API (bearer) and the console (sign-in), kept as SHA-256 digests only.

Tokens are 256-bit random strings, so a plain digest is enough: there is nothing to brute-force that a slow hash
would protect. The token itself is shown once, by `create`, and never stored.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from taskservice.clock import utcnow
from taskservice.errors import Conflict, InvalidName, NotFound
from taskservice.ledger.models import API_TOKENS
from taskservice.specs import ADMIN, FUNCTION_NAME, ROLES

TOKEN_PREFIX = "tsk_"
#: last_used_at is written at most this often per token, so every API call is not also a ledger write.
TOUCH_EVERY = timedelta(seconds=60)
#: How long an API process trusts what it last read about a token: a revoke (by any process) takes effect within it.
CACHE_S = 0.5
CACHE_ENTRIES = 1024


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def can_change(self) -> bool:
        """Whether this token may stop, retry, replay, deploy: everything but reading."""
        return self.role == ADMIN


class TokenNotFound(NotFound):
    code = "TokenNotFound"


class TokenStore:
    def __init__(self, engine: Engine, *, cache_s: float = CACHE_S) -> None:
        self.engine = engine
        self.cache_s = cache_s
        # digest -> (valid until, monotonic; the live token or None). Unknown and revoked secrets are cached too, so
        # a client hammering with a bad token costs no more lookups than a good one.
        self._cache: dict[str, tuple[float, Token | None]] = {}
        self._cache_lock = threading.Lock()

    def create(self, name: str, role: str) -> tuple[Token, str]:
        """A new token; returns it and its secret, which is not kept anywhere and cannot be shown again."""
        if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
            raise InvalidName(f"token name {name!r} must match {FUNCTION_NAME.pattern}")
        if role not in ROLES:
            raise InvalidName(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(API_TOKENS).values(name=name, role=role, token_hash=digest(secret),
                                                       created_at=now))
        except IntegrityError:
            raise Conflict(f"a token named {name!r} already exists; revoke it or pick another name") from None
        return self.get(name), secret

    def get(self, name: str) -> Token:
        with self.engine.connect() as conn:
            row = conn.execute(select(API_TOKENS).where(API_TOKENS.c.name == name)).first()
        if row is None:
            raise TokenNotFound(f"there is no token named {name!r}")
        return _token(row)

    def list(self) -> list[Token]:
        with self.engine.connect() as conn:
            return [_token(r) for r in conn.execute(select(API_TOKENS).order_by(API_TOKENS.c.name))]

    def revoke(self, name: str) -> Token:
        """Revoke a token: every request carrying it, and every console session signed in with it, is refused."""
        with self.engine.begin() as conn:
            changed = conn.execute(update(API_TOKENS).where(API_TOKENS.c.name == name,
                                                            API_TOKENS.c.revoked_at.is_(None))
                                   .values(revoked_at=utcnow())).rowcount
        token = self.get(name)
        with self._cache_lock:  # this process at once; every other one within cache_s
            self._cache.clear()
        if not changed:
            raise Conflict(f"token {name!r} was already revoked")
        return token

    def authenticate(self, secret: str) -> Token | None:
        """The live token with this secret, or None (unknown, revoked or malformed).

        Every API call asks, so the answer is kept for `cache_s` (0.5 s) per process: one indexed lookup per token
        and half second instead of one per request, and a revoke — from the CLI, the console or another API
        machine, all of which write only the ledger — is honoured everywhere within that time."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
            return None
        wanted = digest(secret)
        now_s = time.monotonic()
        cached = self._cache.get(wanted)
        if cached is not None and cached[0] > now_s:
            return cached[1]
        token = self._lookup(wanted)
        with self._cache_lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[wanted] = (now_s + self.cache_s, token)
        return token

    def _lookup(self, wanted: str) -> Token | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(API_TOKENS).where(API_TOKENS.c.token_hash == wanted)).first()
        if row is None or row.revoked_at is not None:
            return None
        token = _token(row)
        now = utcnow()
        if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(API_TOKENS).where(API_TOKENS.c.id == token.id).values(last_used_at=now))
        return token

    def by_id(self, token_id: int) -> Token | None:
        """The live token with this id (console sessions remember the id, not the secret)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(API_TOKENS).where(API_TOKENS.c.id == token_id)).first()
        return None if row is None or row.revoked_at is not None else _token(row)


def _token(row: object) -> Token:
    m = row._mapping  # type: ignore[attr-defined]
    return Token(id=m["id"], name=m["name"], role=m["role"], created_at=m["created_at"],
                 last_used_at=m["last_used_at"], revoked_at=m["revoked_at"])
