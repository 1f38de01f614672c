"""Migration 0010 on SQLite and PostgreSQL: a database with queued 2030.5 notifications (one leased by a process
that is gone) and queued OpenADR messages keeps every one of them in the one outbox, in order, and new messages
get fresh ids; the downgrade puts what is still queued back."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select, text

from server.delivery import enqueue, take_head
from server.store import create_store
from server.store.migrate import current_revision, upgrade
from server.store.models import DeliveryMessage


async def _downgrade(store, revision: str) -> None:
    from alembic import command

    from server.store.migrate import alembic_config

    def run(sync_conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(run)


OUTBOX_ROW = (
    "INSERT INTO outbox_message (id, channel, order_key, url, content_type, body, status, attempts, created_at, "
    "next_attempt_at, lease_until, delivered_at, last_status, last_error) VALUES (:id, 'sep2-notification', "
    ":key, 'https://device.example/n', 'application/sep+xml', :body, :status, :attempts, CURRENT_TIMESTAMP, "
    "CURRENT_TIMESTAMP, :lease, NULL, NULL, '')"
)
QUEUE_ROW = (
    "INSERT INTO oadr_queue (ven_pk, kind, payload, created_at, attempts, next_attempt_at, last_error) "
    "VALUES (:ven, :kind, :payload, CURRENT_TIMESTAMP, 0, NULL, '')"
)


async def test_queued_messages_of_both_old_queues_move_to_the_one_outbox(database_url):
    store = create_store(database_url)
    try:
        await upgrade(store, "0007")
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO ven (id, name, fingerprint, ven_id, created_at, http_pull, push_enabled, "
                    "enabled, transport_address, xml_signature, report_only, profile, self_registered) "
                    "VALUES (7, 'old', 'AA:BB:CC:DD:EE:FF:00:11:22:33', 'VEN-OLD', CURRENT_TIMESTAMP, true, "
                    "false, true, '', false, false, '2.0b', false)"
                )
            )
            for row in (
                {"id": 1, "key": "sep2-sub:1", "body": b"<a/>", "status": "delivered", "attempts": 1},
                {"id": 2, "key": "sep2-sub:1", "body": b"<b/>", "status": "pending", "attempts": 0},
                {"id": 5, "key": "sep2-sub:1", "body": b"<c/>", "status": "pending", "attempts": 3},
            ):
                far = dt.datetime(2999, 1, 1, tzinfo=None if "sqlite" in database_url else dt.UTC)
                lease = far if row["id"] == 2 else None
                await conn.execute(text(OUTBOX_ROW), {**row, "lease": lease})
            for kind, payload in (("register_report", {}), ("distribute_event", {"x": 1})):
                await conn.execute(text(QUEUE_ROW), {"ven": 7, "kind": kind, "payload": json.dumps(payload)})
        await upgrade(store, "0010")
        assert await current_revision(store) == "0010"
        async with store.sessions() as session:
            rows = list(await session.scalars(select(DeliveryMessage).order_by(DeliveryMessage.id)))
        assert [(m.id, m.channel, m.order_key, m.status) for m in rows] == [
            (1, "sep2-notification", "sep2-sub:1", "delivered"),
            (2, "sep2-notification", "sep2-sub:1", "pending"),
            (5, "sep2-notification", "sep2-sub:1", "pending"),
            (6, "openadr", "openadr-ven:7", "pending"),
            (7, "openadr", "openadr-ven:7", "pending"),
        ]
        assert rows[1].body == b"<b/>" and rows[1].lease_until is None and rows[2].attempts == 3
        assert rows[0].via == "post" and rows[3].body is None
        assert [(m.kind, m.payload) for m in rows[3:]] == [
            ("register_report", {}),
            ("distribute_event", {"x": 1}),
        ]

        async with store.sessions.begin() as session:
            fresh = enqueue(session, "openadr", "openadr-ven:7", kind="cancel_registration")
            await session.flush()
            assert fresh.id == 8
        async with store.sessions.begin() as session:
            assert (await take_head(session, "openadr-ven:7")).kind == "register_report"

        await _downgrade(store, "0007")
        async with store.engine.connect() as conn:
            sep2 = (await conn.execute(text("SELECT id, status FROM outbox_message ORDER BY id"))).all()
            queue = (await conn.execute(text("SELECT ven_pk, kind FROM oadr_queue ORDER BY id"))).all()
        assert [tuple(r) for r in sep2] == [(1, "delivered"), (2, "pending"), (5, "pending")]
        assert [tuple(r) for r in queue] == [(7, "distribute_event"), (7, "cancel_registration")]
    finally:
        await store.close()
