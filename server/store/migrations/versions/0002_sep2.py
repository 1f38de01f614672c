"""sep2: programs, FSAs, controls, curves, responses, device resources, mirror usage points, settings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "sep2_mup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_lfdi", sa.String(length=40), nullable=False),
        sa.Column("device_lfdi", sa.String(length=40), nullable=False),
        sa.Column("mrid", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("readings", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_mup")),
        sa.UniqueConstraint("owner_lfdi", "mrid", name=op.f("uq_sep2_mup_owner_lfdi")),
    )
    with op.batch_alter_table("sep2_mup", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_mup_owner_lfdi"), ["owner_lfdi"], unique=False)

    op.create_table(
        "sep2_program",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=32), nullable=False),
        sa.Column("primacy", sa.Integer(), nullable=False),
        sa.Column("default_control", sa.JSON(), nullable=True),
        sa.Column("default_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_program")),
        sa.UniqueConstraint("name", name=op.f("uq_sep2_program_name")),
    )
    op.create_table(
        "sep2_setting",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=400), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sep2_setting")),
    )
    op.create_table(
        "sep2_control",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=32), nullable=False),
        sa.Column("creation_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("randomize_start_s", sa.Integer(), nullable=True),
        sa.Column("randomize_duration_s", sa.Integer(), nullable=True),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("response_required", sa.Integer(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_randomized", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["sep2_program.id"],
            name=op.f("fk_sep2_control_program_id_sep2_program"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_control")),
    )
    with op.batch_alter_table("sep2_control", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_control_program_id"), ["program_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sep2_control_start"), ["start"], unique=False)

    op.create_table(
        "sep2_curve",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=32), nullable=False),
        sa.Column("curve_type", sa.Integer(), nullable=False),
        sa.Column("points", sa.JSON(), nullable=False),
        sa.Column("x_multiplier", sa.Integer(), nullable=False),
        sa.Column("y_multiplier", sa.Integer(), nullable=False),
        sa.Column("y_ref_type", sa.Integer(), nullable=False),
        sa.Column("creation_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["sep2_program.id"],
            name=op.f("fk_sep2_curve_program_id_sep2_program"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_curve")),
    )
    with op.batch_alter_table("sep2_curve", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_curve_program_id"), ["program_id"], unique=False)

    op.create_table(
        "sep2_mmr",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mup_id", sa.Integer(), nullable=False),
        sa.Column("mrid", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["mup_id"], ["sep2_mup.id"], name=op.f("fk_sep2_mmr_mup_id_sep2_mup"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_mmr")),
        sa.UniqueConstraint("mrid", name=op.f("uq_sep2_mmr_mrid")),
    )
    with op.batch_alter_table("sep2_mmr", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_mmr_mup_id"), ["mup_id"], unique=False)

    op.create_table(
        "sep2_mup_reading",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mup_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mup_id"], ["sep2_mup.id"], name=op.f("fk_sep2_mup_reading_mup_id_sep2_mup"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_mup_reading")),
    )
    with op.batch_alter_table("sep2_mup_reading", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_mup_reading_mup_id"), ["mup_id"], unique=False)

    op.create_table(
        "sep2_device_resource",
        sa.Column("end_device_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_device_id"],
            ["end_device.id"],
            name=op.f("fk_sep2_device_resource_end_device_id_end_device"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("end_device_id", "kind", name=op.f("pk_sep2_device_resource")),
    )
    op.create_table(
        "sep2_fsa",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("end_device_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_device_id"],
            ["end_device.id"],
            name=op.f("fk_sep2_fsa_end_device_id_end_device"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_fsa")),
    )
    with op.batch_alter_table("sep2_fsa", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_fsa_end_device_id"), ["end_device_id"], unique=False)

    op.create_table(
        "sep2_response",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("control_id", sa.Integer(), nullable=False),
        sa.Column("end_device_id", sa.Integer(), nullable=True),
        sa.Column("lfdi", sa.String(length=40), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("created_date_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["control_id"],
            ["sep2_control.id"],
            name=op.f("fk_sep2_response_control_id_sep2_control"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["end_device_id"],
            ["end_device.id"],
            name=op.f("fk_sep2_response_end_device_id_end_device"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sep2_response")),
    )
    with op.batch_alter_table("sep2_response", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sep2_response_control_id"), ["control_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sep2_response_end_device_id"), ["end_device_id"], unique=False)

    op.create_table(
        "sep2_fsa_program",
        sa.Column("fsa_id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["fsa_id"], ["sep2_fsa.id"], name=op.f("fk_sep2_fsa_program_fsa_id_sep2_fsa"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["sep2_program.id"],
            name=op.f("fk_sep2_fsa_program_program_id_sep2_program"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("fsa_id", "program_id", name=op.f("pk_sep2_fsa_program")),
    )


def downgrade() -> None:

    op.drop_table("sep2_fsa_program")
    with op.batch_alter_table("sep2_response", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_response_end_device_id"))
        batch_op.drop_index(batch_op.f("ix_sep2_response_control_id"))

    op.drop_table("sep2_response")
    with op.batch_alter_table("sep2_fsa", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_fsa_end_device_id"))

    op.drop_table("sep2_fsa")
    op.drop_table("sep2_device_resource")
    with op.batch_alter_table("sep2_mup_reading", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_mup_reading_mup_id"))

    op.drop_table("sep2_mup_reading")
    with op.batch_alter_table("sep2_mmr", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_mmr_mup_id"))

    op.drop_table("sep2_mmr")
    with op.batch_alter_table("sep2_curve", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_curve_program_id"))

    op.drop_table("sep2_curve")
    with op.batch_alter_table("sep2_control", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_control_start"))
        batch_op.drop_index(batch_op.f("ix_sep2_control_program_id"))

    op.drop_table("sep2_control")
    op.drop_table("sep2_setting")
    op.drop_table("sep2_program")
    with op.batch_alter_table("sep2_mup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sep2_mup_owner_lfdi"))

    op.drop_table("sep2_mup")
