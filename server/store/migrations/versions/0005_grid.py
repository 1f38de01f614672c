"""grid nodes and forecasts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grid_node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("import_limit_kw", sa.Float(), nullable=True),
        sa.Column("export_limit_kw", sa.Float(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["grid_node.id"],
            name=op.f("fk_grid_node_parent_id_grid_node"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_node")),
        sa.UniqueConstraint("name", name=op.f("uq_grid_node_name")),
    )
    with op.batch_alter_table("grid_node", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grid_node_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "forecast_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=10), nullable=False),
        sa.Column("measurement", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step_s", sa.Integer(), nullable=False),
        sa.Column("horizon_s", sa.Integer(), nullable=False),
        sa.Column("history_points", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["grid_node.id"], name=op.f("fk_forecast_run_node_id_grid_node"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forecast_run")),
    )
    with op.batch_alter_table("forecast_run", schema=None) as batch_op:
        batch_op.create_index("ix_forecast_run_node_issued", ["node_id", "issued_at"], unique=False)

    op.create_table(
        "grid_node_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["grid_node.id"],
            name=op.f("fk_grid_node_member_node_id_grid_node"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_node_member")),
        sa.UniqueConstraint("node_id", "source_kind", "source_id", name=op.f("uq_grid_node_member_node_id")),
    )
    op.create_table(
        "forecast_point",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("q10", sa.Float(), nullable=False),
        sa.Column("q90", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["forecast_run.id"],
            name=op.f("fk_forecast_point_run_id_forecast_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "ts", name=op.f("pk_forecast_point")),
    )


def downgrade() -> None:
    op.drop_table("forecast_point")
    op.drop_table("grid_node_member")
    with op.batch_alter_table("forecast_run", schema=None) as batch_op:
        batch_op.drop_index("ix_forecast_run_node_issued")

    op.drop_table("forecast_run")
    with op.batch_alter_table("grid_node", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grid_node_parent_id"))

    op.drop_table("grid_node")
