"""Which :class:`PredictionStore` a server uses: one URL chooses the backend.

``MODELFLEET_STATE_URL`` (or ``state.url`` in the serve config) names it:

- none, or ``sqlite:///PATH``: a SQLite file, shared by the worker processes of one server
  (the default keeps it in the server's state directory);
- ``postgresql://…``: a PostgreSQL database shared by every replica (tables created by the
  store's own Alembic migrations);
- ``redis://…``, ``rediss://…`` or ``unix://…``: a Redis server shared by every replica.

Opening never connects: a backend that is down when the server starts does not stop it
from serving; the store's calls raise :class:`StateUnavailableError` until it is back.
"""

from __future__ import annotations

from pathlib import Path

from modelfleet.errors import ConfigError
from modelfleet.serving.live.feedback import FeedbackStore, PredictionStore
from modelfleet.serving.settings import MonitoringConfig, StateConfig

STATE_URL_ENV = "MODELFLEET_STATE_URL"
_SCHEMES = "sqlite:///PATH, postgresql://USER:PASSWORD@HOST/DB or redis://HOST:PORT/DB"


def backend_of(url: str | None) -> str:
    """``sqlite``, ``postgresql`` or ``redis`` for a state URL (a clear error otherwise)."""
    if not url:
        return "sqlite"
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return "sqlite"
    if scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("redis", "rediss", "unix"):
        return "redis"
    raise ConfigError(
        f"state URL {_shown(url)} names no known backend",
        hint=f"use {_SCHEMES} (set MODELFLEET_STATE_URL or state.url in the serve config)",
    )


def _shown(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    head, sep, tail = url.partition("://")
    if not sep or "@" not in tail.split("/", 1)[0]:
        return repr(url)
    credentials, _, rest = tail.partition("@")
    user = credentials.split(":", 1)[0]
    return repr(f"{head}://{user}:***@{rest}" if ":" in credentials else url)


def open_store(
    state: StateConfig, monitoring: MonitoringConfig, state_dir: Path
) -> PredictionStore:
    """The store ``state.url`` names, bounded and pruned as ``monitoring`` says."""
    url = state.url
    backend = backend_of(url)
    bounds = {
        "retention_s": monitoring.retention_s,
        "feedback_retention_s": monitoring.feedback_retention_s,
        "max_predictions": monitoring.max_predictions,
        "max_bytes": monitoring.max_store_bytes,
    }
    if backend == "sqlite":
        path = state_dir / "predictions.sqlite3"
        if url:
            path = Path(url.split("://", 1)[1].removeprefix("/") or path)
            path = Path("/" + str(path)) if url.startswith("sqlite:////") else path
        return FeedbackStore(path, **bounds)  # type: ignore[arg-type]
    assert url is not None
    if backend == "postgresql":
        try:
            from modelfleet.serving.live.pg_store import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"the state URL names PostgreSQL, but this install cannot reach it ({exc})",
                hint="pip install 'modelfleet[postgres]' (serving images carry the Redis "
                "driver only: use a redis:// state URL there)",
            ) from exc
        return PostgresStore(url, timeout_s=state.timeout_s, **bounds)  # type: ignore[arg-type]
    from modelfleet.serving.live.redis_store import RedisStore

    return RedisStore(url, timeout_s=state.timeout_s, **bounds)  # type: ignore[arg-type]


def describe(url: str | None) -> str:
    """What to print at start: the backend and where (password hidden)."""
    backend = backend_of(url)
    return f"{backend} ({_shown(url)})" if url else "sqlite (per server, in its state directory)"
