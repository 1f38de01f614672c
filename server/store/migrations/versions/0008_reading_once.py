"""telemetry: a reading is stored once (unique source, series, reading type and time)

Duplicates stored before (one per re-post) are removed first, keeping the earliest received row; the
unique index replaces the series index it extends.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEY = ["source_kind", "source_id", "resource", "measurement", "ts", "reading_type"]


def upgrade() -> None:
    same = " AND ".join(f"o.{c} = telemetry.{c}" for c in KEY)
    older = f"SELECT 1 FROM telemetry o WHERE {same} AND o.id < telemetry.id"
    op.execute(sa.text(f"DELETE FROM telemetry WHERE EXISTS ({older})"))
    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_series_ts")
        batch_op.create_index("uq_telemetry_reading", KEY, unique=True)


def downgrade() -> None:
    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.drop_index("uq_telemetry_reading")
        batch_op.create_index(
            "ix_telemetry_series_ts",
            ["source_kind", "source_id", "resource", "measurement", "ts"],
            unique=False,
        )
