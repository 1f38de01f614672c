"""2030.5 subscriptions, log events, pricing and DRLC (meter readings go to the existing telemetry table)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sep2_log_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("end_device_id", sa.Integer(), nullable=False),
        sa.Column("created_date_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.String(length=64), nullable=False),
        sa.Column("extended_data", sa.BigInteger(), nullable=True),
        sa.Column("function_set", sa.Integer(), nullable=False),
        sa.Column("log_event_code", sa.Integer(), nullable=False),
        sa.Column("log_event_id", sa.Integer(), nullable=False),
        sa.Column("log_event_pen", sa.BigInteger(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_device_id"],
            ["end_device.id"],
            name=op.f("fk_sep2_log_event_end_device_id_end_device"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_log_event")),
    )
    with op.batch_alter_table("sep2_log_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sep2_log_event_device_time", ["end_device_id", "created_date_time"], unique=False
        )

    op.create_table(
        "sep2_subscription",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("end_device_id", sa.Integer(), nullable=False),
        sa.Column("owner_lfdi", sa.String(length=40), nullable=False),
        sa.Column("resource", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=True),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("subject_device_id", sa.Integer(), nullable=True),
        sa.Column("notification_uri", sa.String(length=2000), nullable=False),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("encoding", sa.Integer(), nullable=False),
        sa.Column("condition", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notifications", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_device_id"],
            ["end_device.id"],
            name=op.f("fk_sep2_subscription_end_device_id_end_device"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_subscription")),
    )
    with op.batch_alter_table("sep2_subscription", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sep2_subscription_end_device_id"), ["end_device_id"], unique=False
        )
        batch_op.create_index("ix_sep2_subscription_kind_program", ["kind", "program_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sep2_subscription_owner_lfdi"), ["owner_lfdi"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sep2_subscription_subject_device_id"), ["subject_device_id"], unique=False
        )

    op.create_table(
        "sep2_influence_set",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=32), nullable=False),
        sa.Column("primacy", sa.Integer(), nullable=False),
        sa.Column("attrs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["sep2_influence_set.id"],
            name=op.f("fk_sep2_influence_set_parent_id_sep2_influence_set"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_influence_set")),
        sa.UniqueConstraint("kind", "parent_id", "name", name=op.f("uq_sep2_influence_set_kind")),
    )
    with op.batch_alter_table("sep2_influence_set", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_influence_set_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "sep2_influence_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=32), nullable=False),
        sa.Column("creation_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("randomize_start_s", sa.Integer(), nullable=True),
        sa.Column("randomize_duration_s", sa.Integer(), nullable=True),
        sa.Column("response_required", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_randomized", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["set_id"],
            ["sep2_influence_set.id"],
            name=op.f("fk_sep2_influence_event_set_id_sep2_influence_set"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_influence_event")),
    )
    with op.batch_alter_table("sep2_influence_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_influence_event_set_id"), ["set_id"], unique=False)

    op.create_table(
        "sep2_influence_assignment",
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("end_device_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_device_id"],
            ["end_device.id"],
            name=op.f("fk_sep2_influence_assignment_end_device_id_end_device"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_id"],
            ["sep2_influence_set.id"],
            name=op.f("fk_sep2_influence_assignment_set_id_sep2_influence_set"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("set_id", "end_device_id", name=op.f("pk_sep2_influence_assignment")),
    )
    with op.batch_alter_table("sep2_influence_assignment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sep2_influence_assignment_end_device_id"), ["end_device_id"], unique=False
        )

    op.create_table(
        "sep2_influence_response",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("end_device_id", sa.Integer(), nullable=False),
        sa.Column("lfdi", sa.String(length=40), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("created_date_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_device_id"],
            ["end_device.id"],
            name=op.f("fk_sep2_influence_response_end_device_id_end_device"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["sep2_influence_event.id"],
            name=op.f("fk_sep2_influence_response_event_id_sep2_influence_event"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_influence_response")),
    )
    with op.batch_alter_table("sep2_influence_response", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sep2_influence_response_end_device_id"), ["end_device_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sep2_influence_response_event_id"), ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sep2_influence_response", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_influence_response_event_id"))
        batch_op.drop_index(batch_op.f("ix_sep2_influence_response_end_device_id"))

    op.drop_table("sep2_influence_response")
    with op.batch_alter_table("sep2_influence_assignment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_influence_assignment_end_device_id"))

    op.drop_table("sep2_influence_assignment")
    with op.batch_alter_table("sep2_influence_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_influence_event_set_id"))

    op.drop_table("sep2_influence_event")
    with op.batch_alter_table("sep2_influence_set", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_influence_set_parent_id"))

    op.drop_table("sep2_influence_set")

    with op.batch_alter_table("sep2_subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_subscription_subject_device_id"))
        batch_op.drop_index(batch_op.f("ix_sep2_subscription_owner_lfdi"))
        batch_op.drop_index("ix_sep2_subscription_kind_program")
        batch_op.drop_index(batch_op.f("ix_sep2_subscription_end_device_id"))

    op.drop_table("sep2_subscription")
    with op.batch_alter_table("sep2_log_event", schema=None) as batch_op:
        batch_op.drop_index("ix_sep2_log_event_device_time")

    op.drop_table("sep2_log_event")
