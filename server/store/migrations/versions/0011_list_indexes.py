"""an index the EndDeviceList pages walk: an aggregator's enabled devices in list order (sfdi, id)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("end_device") as batch_op:
        batch_op.create_index("ix_end_device_aggregator_list", ["aggregator_id", "enabled", "sfdi", "id"])


def downgrade() -> None:
    with op.batch_alter_table("end_device") as batch_op:
        batch_op.drop_index("ix_end_device_aggregator_list")
