"""flexibility offers: the plan that cleared one, the OpenADR opt it came from

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flex_offer") as batch:
        batch.add_column(sa.Column("plan_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("opt_id", sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_flex_offer_plan_id_plan"), "plan", ["plan_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_flex_offer_opt_id", ["ven_pk", "opt_id"])


def downgrade() -> None:
    with op.batch_alter_table("flex_offer") as batch:
        batch.drop_index("ix_flex_offer_opt_id")
        batch.drop_constraint(batch.f("fk_flex_offer_plan_id_plan"), type_="foreignkey")
        batch.drop_column("opt_id")
        batch.drop_column("plan_id")
