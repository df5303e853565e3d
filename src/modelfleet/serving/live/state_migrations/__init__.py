"""Alembic migrations of the serving state database; applied by the store's first call."""
