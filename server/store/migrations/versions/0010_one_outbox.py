"""one delivery outbox: 2030.5 notifications and OpenADR messages for VENs in delivery_message, worker heartbeats

Moves every row of outbox_message (history included, ids kept: subscriptions compare new notifications with the
last one sent) and every queued oadr_queue message (after them, in queue order) into delivery_message, then drops
the old tables.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

VEN_KEY_PREFIX = "openadr-ven:"


def upgrade() -> None:
    op.create_table(
        "delivery_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("order_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=32), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_message")),
    )
    with op.batch_alter_table("delivery_message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_message_due", ["status", "channel", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_delivery_message_key", ["order_key", "status", "id"], unique=False)
        batch_op.create_index("ix_delivery_message_lease_owner", ["lease_owner"], unique=False)
    op.create_table(
        "delivery_instance",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_instance")),
    )

    # leases of the old tables are dropped: the process that held them is not running (this runs at start-up)
    op.execute(
        """
        INSERT INTO delivery_message (id, channel, order_key, kind, url, content_type, body, payload, status,
            attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at, via, last_status,
            last_error)
        SELECT id, channel, order_key, '', url, content_type, body, NULL, status,
            attempts, created_at, next_attempt_at, NULL, NULL, delivered_at,
            CASE WHEN status = 'delivered' THEN 'post' ELSE '' END, last_status, last_error
        FROM outbox_message
        """
    )
    op.execute(
        f"""
        INSERT INTO delivery_message (id, channel, order_key, kind, url, content_type, body, payload, status,
            attempts, created_at, next_attempt_at, lease_owner, lease_until, delivered_at, via, last_status,
            last_error)
        SELECT (SELECT COALESCE(MAX(id), 0) FROM outbox_message) + ROW_NUMBER() OVER (ORDER BY q.id),
            'openadr', '{VEN_KEY_PREFIX}' || CAST(q.ven_pk AS VARCHAR(20)), q.kind, '', '', NULL, q.payload,
            'pending', q.attempts, q.created_at, COALESCE(q.next_attempt_at, q.created_at), NULL, NULL, NULL,
            '', NULL, q.last_error
        FROM oadr_queue q
        """
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('delivery_message', 'id'), "
            "COALESCE((SELECT MAX(id) FROM delivery_message), 0) + 1, false)"
        )

    with op.batch_alter_table("oadr_queue", schema=None) as batch_op:
        batch_op.drop_index("ix_oadr_queue_ven_order")
    op.drop_table("oadr_queue")
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_key_status")
        batch_op.drop_index("ix_outbox_message_due")
    op.drop_table("outbox_message")


def downgrade() -> None:
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("order_key", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_message")),
    )
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_message_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_outbox_message_key_status", ["order_key", "status", "id"], unique=False)
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

    op.execute(
        """
        INSERT INTO outbox_message (id, channel, order_key, url, content_type, body, status, attempts, created_at,
            next_attempt_at, lease_until, delivered_at, last_status, last_error)
        SELECT id, channel, order_key, url, content_type, body,
            CASE WHEN status = 'dropped' THEN 'failed' ELSE status END, attempts, created_at,
            next_attempt_at, NULL, delivered_at, last_status, last_error
        FROM delivery_message WHERE channel <> 'openadr' AND body IS NOT NULL
        """
    )
    op.execute(
        f"""
        INSERT INTO oadr_queue (ven_pk, kind, payload, created_at, attempts, next_attempt_at, last_error)
        SELECT CAST(SUBSTR(order_key, {len(VEN_KEY_PREFIX) + 1}) AS INTEGER), kind, COALESCE(payload, '{{}}'),
            created_at, attempts, next_attempt_at, SUBSTR(last_error, 1, 300)
        FROM delivery_message
        WHERE channel = 'openadr' AND status = 'pending'
            AND CAST(SUBSTR(order_key, {len(VEN_KEY_PREFIX) + 1}) AS INTEGER) IN (SELECT id FROM ven)
        ORDER BY id
        """
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('outbox_message', 'id'), "
            "COALESCE((SELECT MAX(id) FROM outbox_message), 0) + 1, false)"
        )
    op.drop_table("delivery_instance")
    with op.batch_alter_table("delivery_message", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_message_lease_owner")
        batch_op.drop_index("ix_delivery_message_key")
        batch_op.drop_index("ix_delivery_message_due")
    op.drop_table("delivery_message")
