"""OpenADR 2.0b VTN: registrations, events, opts, message queue, reports; the shared telemetry store

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-25

Follows the 2030.5 migration.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oadr_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signal_name", sa.String(length=64), nullable=False),
        sa.Column("signal_type", sa.String(length=64), nullable=False),
        sa.Column("intervals", sa.JSON(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("market_context", sa.String(length=300), nullable=False),
        sa.Column("modification_number", sa.Integer(), nullable=False),
        sa.Column("modification_reason", sa.String(length=200), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("response_required", sa.String(length=16), nullable=False),
        sa.Column("randomization_s", sa.Integer(), nullable=False),
        sa.Column("test_event", sa.Boolean(), nullable=False),
        sa.Column("vtn_comment", sa.String(length=300), nullable=False),
        sa.Column("all_vens", sa.Boolean(), nullable=False),
        sa.Column("resource_ids", sa.JSON(), nullable=False),
        sa.Column("group_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr_event")),
    )
    with op.batch_alter_table("oadr_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr_event_end"), ["end"], unique=False)
        batch_op.create_index(batch_op.f("ix_oadr_event_start"), ["start"], unique=False)

    op.create_table(
        "oadr_nonce",
        sa.Column("nonce", sa.String(length=200), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_oadr_nonce")),
    )
    with op.batch_alter_table("oadr_nonce", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr_nonce_seen_at"), ["seen_at"], unique=False)

    op.create_table(
        "telemetry",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=200), nullable=False),
        sa.Column("measurement", sa.String(length=64), nullable=False),
        sa.Column("reading_type", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry")),
    )
    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_series_ts",
            ["source_kind", "source_id", "resource", "measurement", "ts"],
            unique=False,
        )
        batch_op.create_index("ix_telemetry_ts", ["ts"], unique=False)

    op.create_table(
        "oadr_event_response",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.Column("modification_number", sa.Integer(), nullable=False),
        sa.Column("opt_type", sa.String(length=16), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["oadr_event.id"],
            name=op.f("fk_oadr_event_response_event_id_oadr_event"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_oadr_event_response_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr_event_response")),
    )
    with op.batch_alter_table("oadr_event_response", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr_event_response_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oadr_event_response_ven_pk"), ["ven_pk"], unique=False)

    op.create_table(
        "oadr_event_ven",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["oadr_event.id"],
            name=op.f("fk_oadr_event_ven_event_id_oadr_event"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_oadr_event_ven_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", "ven_pk", name=op.f("pk_oadr_event_ven")),
    )
    with op.batch_alter_table("oadr_event_ven", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr_event_ven_ven_pk"), ["ven_pk"], unique=False)

    op.create_table(
        "oadr_opt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.Column("opt_id", sa.String(length=200), nullable=False),
        sa.Column("opt_type", sa.String(length=16), nullable=False),
        sa.Column("opt_reason", sa.String(length=64), nullable=False),
        sa.Column("market_context", sa.String(length=300), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("modification_number", sa.Integer(), nullable=True),
        sa.Column("availability", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_oadr_opt_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr_opt")),
        sa.UniqueConstraint("ven_pk", "opt_id", name=op.f("uq_oadr_opt_ven_pk")),
    )
    with op.batch_alter_table("oadr_opt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr_opt_ven_pk"), ["ven_pk"], unique=False)

    op.create_table(
        "oadr_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_oadr_queue_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr_queue")),
    )
    with op.batch_alter_table("oadr_queue", schema=None) as batch_op:
        batch_op.create_index("ix_oadr_queue_ven_order", ["ven_pk", "id"], unique=False)

    op.create_table(
        "oadr_report_description",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.Column("report_specifier_id", sa.String(length=200), nullable=False),
        sa.Column("report_name", sa.String(length=64), nullable=False),
        sa.Column("r_id", sa.String(length=200), nullable=False),
        sa.Column("resource_id", sa.String(length=200), nullable=False),
        sa.Column("report_type", sa.String(length=64), nullable=False),
        sa.Column("reading_type", sa.String(length=64), nullable=False),
        sa.Column("measurement", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("scale", sa.String(length=8), nullable=False),
        sa.Column("min_period_s", sa.Float(), nullable=True),
        sa.Column("max_period_s", sa.Float(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_oadr_report_description_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr_report_description")),
        sa.UniqueConstraint(
            "ven_pk", "report_specifier_id", "r_id", name=op.f("uq_oadr_report_description_ven_pk")
        ),
    )
    with op.batch_alter_table("oadr_report_description", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr_report_description_ven_pk"), ["ven_pk"], unique=False)

    op.create_table(
        "oadr_report_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.Column("report_request_id", sa.String(length=200), nullable=False),
        sa.Column("report_specifier_id", sa.String(length=200), nullable=False),
        sa.Column("report_name", sa.String(length=64), nullable=False),
        sa.Column("r_ids", sa.JSON(), nullable=False),
        sa.Column("granularity_s", sa.Integer(), nullable=False),
        sa.Column("report_back_duration_s", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_update_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ven_pk"], ["ven.id"], name=op.f("fk_oadr_report_request_ven_pk_ven"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oadr_report_request")),
        sa.UniqueConstraint("ven_pk", "report_request_id", name=op.f("uq_oadr_report_request_ven_pk")),
    )
    with op.batch_alter_table("oadr_report_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oadr_report_request_ven_pk"), ["ven_pk"], unique=False)

    with op.batch_alter_table("ven", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registration_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("profile", sa.String(length=16), nullable=False, server_default="2.0b"))
        batch_op.add_column(
            sa.Column("transport_address", sa.String(length=500), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("http_pull", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("report_only", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(
            sa.Column("xml_signature", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("push_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(
            sa.Column("self_registered", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_ven_registration_id"), ["registration_id"])


def downgrade() -> None:
    with op.batch_alter_table("ven", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_ven_registration_id"), type_="unique")
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("self_registered")
        batch_op.drop_column("enabled")
        batch_op.drop_column("push_enabled")
        batch_op.drop_column("xml_signature")
        batch_op.drop_column("report_only")
        batch_op.drop_column("http_pull")
        batch_op.drop_column("transport_address")
        batch_op.drop_column("profile")
        batch_op.drop_column("registered_at")
        batch_op.drop_column("registration_id")

    with op.batch_alter_table("oadr_report_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr_report_request_ven_pk"))

    op.drop_table("oadr_report_request")
    with op.batch_alter_table("oadr_report_description", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr_report_description_ven_pk"))

    op.drop_table("oadr_report_description")
    with op.batch_alter_table("oadr_queue", schema=None) as batch_op:
        batch_op.drop_index("ix_oadr_queue_ven_order")

    op.drop_table("oadr_queue")
    with op.batch_alter_table("oadr_opt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr_opt_ven_pk"))

    op.drop_table("oadr_opt")
    with op.batch_alter_table("oadr_event_ven", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr_event_ven_ven_pk"))

    op.drop_table("oadr_event_ven")
    with op.batch_alter_table("oadr_event_response", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr_event_response_ven_pk"))
        batch_op.drop_index(batch_op.f("ix_oadr_event_response_event_id"))

    op.drop_table("oadr_event_response")
    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_ts")
        batch_op.drop_index("ix_telemetry_series_ts")

    op.drop_table("telemetry")
    with op.batch_alter_table("oadr_nonce", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr_nonce_seen_at"))

    op.drop_table("oadr_nonce")
    with op.batch_alter_table("oadr_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oadr_event_start"))
        batch_op.drop_index(batch_op.f("ix_oadr_event_end"))

    op.drop_table("oadr_event")
