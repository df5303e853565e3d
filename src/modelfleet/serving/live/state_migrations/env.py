"""Alembic environment of the serving state database: runs on the connection the store hands.

The state database may be the registry's own, so its revisions live in a version table of
their own (``modelfleet_state_version``) and the two histories never see each other.
"""

from __future__ import annotations

from alembic import context

from modelfleet.serving.live.pg_state import VERSION_TABLE

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached through the alembic CLI
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, version_table=VERSION_TABLE)
        context.run_migrations()
else:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
