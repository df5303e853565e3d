"""Alembic migrations of the metadata store; applied automatically when a registry opens."""
