"""subscriptions remember what their last notification showed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sep2_subscription") as batch:
        batch.add_column(sa.Column("shown_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sep2_subscription") as batch:
        batch.drop_column("shown_digest")
