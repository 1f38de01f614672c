"""last contact of 2030.5 end devices and aggregators

Revision ID: 0017
Revises: 0016
Create Date: 2027-02-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("end_device") as batch_op:
        batch_op.add_column(sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("aggregator") as batch_op:
        batch_op.add_column(sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("aggregator") as batch_op:
        batch_op.drop_column("last_contact_at")
    with op.batch_alter_table("end_device") as batch_op:
        batch_op.drop_column("last_contact_at")
