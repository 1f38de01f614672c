"""event_response.modes_responded: the DERControlType bitmap an IEEE 2030.5-2023 DERControlResponse names (the
modes of the control the device acted on); null for 2018 Responses and every other protocol.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event_response") as batch:
        batch.add_column(sa.Column("modes_responded", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event_response") as batch:
        batch.drop_column("modes_responded")
