"""flexibility offers of aggregators and their clearing

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flex_offer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("up_kw", sa.Float(), nullable=False),
        sa.Column("down_kw", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("cleared_direction", sa.String(length=4), nullable=False),
        sa.Column("cleared_kw", sa.Float(), nullable=False),
        sa.Column("cleared_kwh", sa.Float(), nullable=False),
        sa.Column("cleared_price", sa.Float(), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_flex_offer_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["event.id"], name=op.f("fk_flex_offer_event_id_event"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flex_offer")),
    )
    op.create_index("ix_flex_offer_ven_pk", "flex_offer", ["ven_pk"])
    op.create_index("ix_flex_offer_status_start", "flex_offer", ["status", "start"])


def downgrade() -> None:
    op.drop_index("ix_flex_offer_status_start", table_name="flex_offer")
    op.drop_index("ix_flex_offer_ven_pk", table_name="flex_offer")
    op.drop_table("flex_offer")
