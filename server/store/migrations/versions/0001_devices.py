"""devices, aggregators and VENs

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aggregator",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lfdi", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregator")),
        sa.UniqueConstraint("lfdi", name=op.f("uq_aggregator_lfdi")),
    )
    op.create_table(
        "ven",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=29), nullable=False),
        sa.Column("ven_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ven")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_ven_fingerprint")),
        sa.UniqueConstraint("name", name=op.f("uq_ven_name")),
        sa.UniqueConstraint("ven_id", name=op.f("uq_ven_ven_id")),
    )
    op.create_table(
        "end_device",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lfdi", sa.String(length=40), nullable=False),
        sa.Column("sfdi", sa.BigInteger(), nullable=False),
        sa.Column("pin", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("device_category", sa.String(length=16), nullable=False),
        sa.Column("aggregator_id", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("registered_by", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["aggregator_id"],
            ["aggregator.id"],
            name=op.f("fk_end_device_aggregator_id_aggregator"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_end_device")),
        sa.UniqueConstraint("lfdi", name=op.f("uq_end_device_lfdi")),
    )
    with op.batch_alter_table("end_device", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_end_device_aggregator_id"), ["aggregator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_end_device_sfdi"), ["sfdi"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("end_device", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_end_device_sfdi"))
        batch_op.drop_index(batch_op.f("ix_end_device_aggregator_id"))

    op.drop_table("end_device")
    op.drop_table("ven")
    op.drop_table("aggregator")
