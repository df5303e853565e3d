"""Alembic migrations of the modelfleet database; applied automatically when it opens."""
