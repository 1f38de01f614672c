"""OpenADR 3: OAuth2 clients and tokens, 3.x VEN state, resources, subscriptions, reports

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oadr3_client",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr3_client")),
        sa.UniqueConstraint("client_id", name=op.f("uq_oadr3_client_client_id")),
        sa.UniqueConstraint("name", name=op.f("uq_oadr3_client_name")),
    )
    op.create_table(
        "oadr3_resource",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_oadr3_resource_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr3_resource")),
        sa.UniqueConstraint("ven_pk", "name", name=op.f("uq_oadr3_resource_ven_pk")),
    )
    with op.batch_alter_table("oadr3_resource", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr3_resource_ven_pk"), ["ven_pk"], unique=False)

    op.create_table(
        "oadr3_subscription",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("client_name", sa.String(length=128), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=True),
        sa.Column("object_operations", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_pk"],
            ["oadr3_client.id"],
            name=op.f("fk_oadr3_subscription_client_pk_oadr3_client"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["program.id"],
            name=op.f("fk_oadr3_subscription_program_id_program"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr3_subscription")),
    )
    with op.batch_alter_table("oadr3_subscription", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr3_subscription_client_pk"), ["client_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_oadr3_subscription_program_id"), ["program_id"], unique=False)

    op.create_table(
        "oadr3_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("scopes", sa.String(length=400), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_pk"],
            ["oadr3_client.id"],
            name=op.f("fk_oadr3_token_client_pk_oadr3_client"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr3_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_oadr3_token_token_hash")),
    )
    with op.batch_alter_table("oadr3_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr3_token_client_pk"), ["client_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_oadr3_token_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "oadr3_ven",
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_pk"],
            ["oadr3_client.id"],
            name=op.f("fk_oadr3_ven_client_pk_oadr3_client"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_oadr3_ven_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ven_pk", name=op.f("pk_oadr3_ven")),
        sa.UniqueConstraint("client_pk", name=op.f("uq_oadr3_ven_client_pk")),
    )
    op.create_table(
        "oadr3_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("client_name", sa.String(length=128), nullable=False),
        sa.Column("report_name", sa.String(length=200), nullable=True),
        sa.Column("payload_descriptors", sa.JSON(), nullable=True),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_pk"],
            ["oadr3_client.id"],
            name=op.f("fk_oadr3_report_client_pk_oadr3_client"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["event.id"], name=op.f("fk_oadr3_report_event_id_event"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr3_report")),
    )
    with op.batch_alter_table("oadr3_report", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr3_report_client_pk"), ["client_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_oadr3_report_event_id"), ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oadr3_report", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr3_report_event_id"))
        batch_op.drop_index(batch_op.f("ix_oadr3_report_client_pk"))

    op.drop_table("oadr3_report")
    op.drop_table("oadr3_ven")
    with op.batch_alter_table("oadr3_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr3_token_expires_at"))
        batch_op.drop_index(batch_op.f("ix_oadr3_token_client_pk"))

    op.drop_table("oadr3_token")
    with op.batch_alter_table("oadr3_subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr3_subscription_program_id"))
        batch_op.drop_index(batch_op.f("ix_oadr3_subscription_client_pk"))

    op.drop_table("oadr3_subscription")
    with op.batch_alter_table("oadr3_resource", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr3_resource_ven_pk"))

    op.drop_table("oadr3_resource")
    op.drop_table("oadr3_client")
