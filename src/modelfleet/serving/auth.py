"""Bearer tokens with scopes: only their sha256 is configured, never the token itself."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from modelfleet.errors import ConfigError, ForbiddenError, UnauthorizedError
from modelfleet.serving.settings import TokenConfig, TokenScope


def hash_token(token: str) -> str:
    """The sha256 hex digest a token is configured by."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and its hash."""
    token = "mf_" + secrets.token_urlsafe(32)
    return token, hash_token(token)


def parse_tokens(text: str) -> tuple[TokenConfig, ...]:
    """Tokens from ``name:sha256:scope+scope,…`` (the ``MODELFLEET_SERVE_TOKENS`` format)."""
    tokens = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        parts = item.split(":")
        if len(parts) != 3:
            raise ConfigError(
                f"invalid token entry {item!r}", hint="write name:sha256:infer+feedback+admin"
            )
        name, digest, scopes = parts
        try:
            tokens.append(TokenConfig(name=name, sha256=digest, scopes=tuple(scopes.split("+"))))
        except ValueError as exc:
            raise ConfigError(f"invalid token entry {name!r}: {exc}") from None
    return tuple(tokens)


class Authenticator:
    """Checks ``Authorization: Bearer …`` against the configured token hashes."""

    def __init__(self, tokens: Iterable[TokenConfig]) -> None:
        self._scopes = {t.sha256: set(t.scopes) for t in tokens}

    @property
    def enabled(self) -> bool:
        """False when no token is configured (every endpoint is open)."""
        return bool(self._scopes)

    def check(self, authorization: str | None, scope: TokenScope) -> None:
        """Raise 401 without a known token, 403 when the token lacks ``scope``."""
        if not self._scopes:
            return
        if not authorization or not authorization.lower().startswith("bearer "):
            raise UnauthorizedError(
                "this endpoint needs a bearer token", hint="send 'Authorization: Bearer <token>'"
            )
        digest = hash_token(authorization[7:].strip())
        scopes = None
        for known, granted in self._scopes.items():
            if hmac.compare_digest(known, digest):
                scopes = granted
        if scopes is None:
            raise UnauthorizedError("the bearer token is not valid", hint="check the token")
        if scope not in scopes:
            raise ForbiddenError(
                f"the token lacks the {scope!r} scope",
                hint=f"use a token with scope {scope!r}",
            )
