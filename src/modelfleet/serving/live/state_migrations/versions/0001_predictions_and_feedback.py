"""Predictions and feedback shared by replicas, with the byte counter that bounds them.

Every row carries its logical ``size`` (a generated column, so no writer can get it wrong);
``serving_state_usage`` holds their sum in its one row, kept in step by every write.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Bytes of text plus a fixed overhead per row (tuple header, numbers, index entries).
_PREDICTION_SIZE = (
    "octet_length(classes) + octet_length(id) + octet_length(model) + octet_length(version) + 64"
)
_FEEDBACK_SIZE = "octet_length(id) + octet_length(model) + octet_length(version) + 64"


def upgrade() -> None:
    op.create_table(
        "serving_predictions",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("classes", sa.Text, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, sa.Computed(_PREDICTION_SIZE, persisted=True)),
        sa.PrimaryKeyConstraint("model", "id", name="serving_predictions_pkey"),
    )
    op.create_index("serving_predictions_ts", "serving_predictions", ["ts"])
    op.create_table(
        "serving_feedback",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("correct", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, sa.Computed(_FEEDBACK_SIZE, persisted=True)),
        sa.UniqueConstraint("model", "id", name="serving_feedback_model_id"),
    )
    op.create_index("serving_feedback_version", "serving_feedback", ["model", "version", "seq"])
    op.create_index("serving_feedback_ts", "serving_feedback", ["ts"])
    usage = op.create_table(
        "serving_state_usage",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="serving_state_usage_one_row"),
    )
    op.bulk_insert(usage, [{"id": 1, "bytes": 0}])


def downgrade() -> None:
    op.drop_table("serving_state_usage")
    op.drop_table("serving_feedback")
    op.drop_table("serving_predictions")
