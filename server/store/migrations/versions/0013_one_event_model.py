"""one program and event model: program, program_member, event, event_target, event_response

Moves every DER program (sep2_program, ids kept), tariff, rate component and DR program (sep2_influence_set,
renumbered after them) and one program per OpenADR market context into ``program``; every DER control (ids kept),
TimeTariffInterval and EndDeviceControl (renumbered after them) and OpenADR event (renumbered after those) into
``event``; their responses into ``event_response``; device assignments into ``program_member`` and OpenADR VEN
targets into ``event_target``. Subscriptions to renumbered resources get their new ids and hrefs. FSAs and curves
keep their rows and point at ``program``. Then the old tables are dropped.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

import datetime as dt
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
SET_KIND = {"tariff": "price", "rate": "rate", "drp": "dr"}


def _new_tables() -> None:
    op.create_table(
        "program",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("parent_ref", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=32), nullable=False),
        sa.Column("primacy", sa.Integer(), nullable=False),
        sa.Column("attrs", sa.JSON(), nullable=False),
        sa.Column("default_control", sa.JSON(), nullable=True),
        sa.Column("default_version", sa.Integer(), nullable=False),
        sa.Column("market_context", sa.String(length=300), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["program.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "parent_ref", "name"),
    )
    with op.batch_alter_table("program") as batch_op:
        batch_op.create_index(batch_op.f("ix_program_parent_id"), ["parent_id"], unique=False)
    op.create_table(
        "program_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("end_device_id", sa.Integer(), nullable=True),
        sa.Column("ven_pk", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["end_device_id"], ["end_device.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["program_id"], ["program.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ven_pk"], ["ven.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("program_id", "end_device_id", name="uq_program_member_device"),
        sa.UniqueConstraint("program_id", "ven_pk", name="uq_program_member_ven"),
    )
    with op.batch_alter_table("program_member") as batch_op:
        batch_op.create_index(batch_op.f("ix_program_member_program_id"), ["program_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_program_member_end_device_id"), ["end_device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_program_member_ven_pk"), ["ven_pk"], unique=False)
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("description", sa.String(length=32), nullable=False),
        sa.Column("creation_time", TS, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("start", TS, nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("end_at", TS, nullable=False),
        sa.Column("randomize_start_s", sa.Integer(), nullable=True),
        sa.Column("randomize_duration_s", sa.Integer(), nullable=True),
        sa.Column("response_required", sa.Integer(), nullable=False),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.Column("cancel_randomized", sa.Boolean(), nullable=False),
        sa.Column("modification_number", sa.Integer(), nullable=False),
        sa.Column("modification_reason", sa.String(length=200), nullable=False),
        sa.Column("all_vens", sa.Boolean(), nullable=False),
        sa.Column("test_event", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["program.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("event") as batch_op:
        batch_op.create_index("ix_event_program_end", ["program_id", "end_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_end_at"), ["end_at"], unique=False)
    op.create_table(
        "event_target",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("ven_pk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ven_pk"], ["ven.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id", "ven_pk"),
    )
    with op.batch_alter_table("event_target") as batch_op:
        batch_op.create_index(batch_op.f("ix_event_target_ven_pk"), ["ven_pk"], unique=False)
    op.create_table(
        "event_response",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("end_device_id", sa.Integer(), nullable=True),
        sa.Column("ven_pk", sa.Integer(), nullable=True),
        sa.Column("lfdi", sa.String(length=40), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("opt_type", sa.String(length=16), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("modification_number", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("created_date_time", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["end_device_id"], ["end_device.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ven_pk"], ["ven.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("event_response") as batch_op:
        batch_op.create_index(batch_op.f("ix_event_response_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_response_end_device_id"), ["end_device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_response_ven_pk"), ["ven_pk"], unique=False)


def _rows(conn: sa.Connection, sql: str) -> list[Any]:
    return list(conn.execute(sa.text(sql)).mappings())


def _table(name: str, *cols: str) -> sa.TableClause:
    json_cols = {"attrs", "default_control", "payload", "base", "intervals", "resource_ids", "group_ids"}
    ts_cols = {
        "created_at",
        "changed_at",
        "creation_time",
        "start",
        "end_at",
        "cancelled_at",
        "created_date_time",
        "received_at",
    }

    def col(c: str) -> sa.ColumnClause:
        if c in json_cols:
            return sa.column(c, sa.JSON())
        if c in ts_cols:
            return sa.column(c, TS)
        return sa.column(c)

    return sa.table(name, *(col(c) for c in cols))


def _json(value: Any) -> Any:
    """JSON columns read back through text(): decoded on PostgreSQL, a string on SQLite."""
    import json

    return json.loads(value) if isinstance(value, str) else value


def _time(value: Any) -> Any:
    """Timestamps read through text() are strings on SQLite; give the typed column a datetime."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def _copy_programs(conn: sa.Connection) -> tuple[int, dict[str, int]]:
    """Programs; returns the offset of renumbered influence sets and the program of each market context."""
    program = _table(
        "program",
        "id",
        "kind",
        "parent_id",
        "parent_ref",
        "name",
        "description",
        "primacy",
        "attrs",
        "default_control",
        "default_version",
        "market_context",
        "created_at",
        "changed_at",
    )
    rows = []
    for r in _rows(conn, "SELECT * FROM sep2_program ORDER BY id"):
        rows.append(
            {
                "id": r["id"],
                "kind": "der",
                "parent_id": None,
                "parent_ref": 0,
                "name": r["name"],
                "description": r["description"],
                "primacy": r["primacy"],
                "attrs": {},
                "default_control": _json(r["default_control"]),
                "default_version": r["default_version"],
                "market_context": "",
                "created_at": _time(r["created_at"]),
                "changed_at": _time(r["changed_at"]),
            }
        )
    offset = max((r["id"] for r in rows), default=0)
    # parents first: a rate's tariff must exist before it
    sets = _rows(conn, "SELECT * FROM sep2_influence_set ORDER BY parent_id IS NOT NULL, id")
    for r in sets:
        parent = r["parent_id"] + offset if r["parent_id"] is not None else None
        rows.append(
            {
                "id": r["id"] + offset,
                "kind": SET_KIND[r["kind"]],
                "parent_id": parent,
                "parent_ref": parent or 0,
                "name": r["name"],
                "description": r["description"],
                "primacy": r["primacy"],
                "attrs": _json(r["attrs"]) or {},
                "default_control": None,
                "default_version": 0,
                "market_context": "",
                "created_at": _time(r["created_at"]),
                "changed_at": _time(r["changed_at"]),
            }
        )
    next_id = max((r["id"] for r in rows), default=0) + 1
    contexts: dict[str, int] = {}
    for r in _rows(
        conn, "SELECT market_context, MIN(created_at) AS first FROM oadr_event GROUP BY market_context"
    ):
        contexts[r["market_context"]] = next_id
        rows.append(
            {
                "id": next_id,
                "kind": "dr",
                "parent_id": None,
                "parent_ref": 0,
                "name": f"openadr:{r['market_context']}"[:200],
                "description": "",
                "primacy": 1,
                "attrs": {},
                "default_control": None,
                "default_version": 0,
                "market_context": r["market_context"],
                "created_at": _time(r["first"]),
                "changed_at": _time(r["first"]),
            }
        )
        next_id += 1
    if rows:
        conn.execute(sa.insert(program), rows)
    member = _table("program_member", "program_id", "end_device_id", "ven_pk", "created_at")
    assigned = [
        {"program_id": r["set_id"] + offset, "end_device_id": r["end_device_id"], "ven_pk": None}
        for r in _rows(conn, "SELECT * FROM sep2_influence_assignment")
    ]
    if assigned:
        now = dt.datetime.now(dt.UTC)
        conn.execute(sa.insert(member), [{**a, "created_at": now} for a in assigned])
    return offset, contexts


EVENT_COLS = (
    "id",
    "program_id",
    "kind",
    "description",
    "creation_time",
    "changed_at",
    "start",
    "duration_s",
    "end_at",
    "randomize_start_s",
    "randomize_duration_s",
    "response_required",
    "cancelled_at",
    "cancel_randomized",
    "modification_number",
    "modification_reason",
    "all_vens",
    "test_event",
    "payload",
)


def _copy_events(conn: sa.Connection, set_offset: int, contexts: dict[str, int]) -> tuple[int, int]:
    """Events; returns the offsets of renumbered influence events and OpenADR events."""
    event = _table("event", *EVENT_COLS)
    rows: list[dict[str, Any]] = []

    def header(r: Any, **over: Any) -> dict[str, Any]:
        start = _time(r["start"])
        base = {
            "description": r.get("description", ""),
            "creation_time": _time(r.get("creation_time")),
            "changed_at": _time(r.get("changed_at")),
            "start": start,
            "duration_s": r["duration_s"],
            "end_at": start + dt.timedelta(seconds=r["duration_s"]),
            "randomize_start_s": r.get("randomize_start_s"),
            "randomize_duration_s": r.get("randomize_duration_s"),
            "response_required": r.get("response_required", 0),
            "cancelled_at": _time(r.get("cancelled_at")),
            "cancel_randomized": bool(r.get("cancel_randomized", False)),
            "modification_number": 0,
            "modification_reason": "",
            "all_vens": False,
            "test_event": False,
        }
        base.update(over)
        return base

    for r in _rows(conn, "SELECT * FROM sep2_control ORDER BY id"):
        rows.append(
            header(
                dict(r),
                id=r["id"],
                program_id=r["program_id"],
                kind="der",
                payload={"base": _json(r["base"])},
            )
        )
    influence_offset = max((r["id"] for r in rows), default=0)
    set_kinds = {r["id"]: r["kind"] for r in _rows(conn, "SELECT id, kind FROM sep2_influence_set")}
    for r in _rows(conn, "SELECT * FROM sep2_influence_event ORDER BY id"):
        rows.append(
            header(
                dict(r),
                id=r["id"] + influence_offset,
                program_id=r["set_id"] + set_offset,
                kind="price" if set_kinds[r["set_id"]] == "rate" else "dr",
                payload=_json(r["payload"]),
            )
        )
    oadr_offset = max((r["id"] for r in rows), default=0)
    for r in _rows(conn, "SELECT * FROM oadr_event ORDER BY id"):
        signal = {"name": r["signal_name"], "type": r["signal_type"], "intervals": _json(r["intervals"])}
        created = _time(r["created_at"])
        changed = _time(r["changed_at"])
        rows.append(
            header(
                {"start": r["start"], "duration_s": r["duration_s"]},
                id=r["id"] + oadr_offset,
                program_id=contexts[r["market_context"]],
                kind="price" if r["signal_type"] == "price" else "dr",
                creation_time=created,
                changed_at=changed,
                randomize_start_s=r["randomization_s"] or None,
                response_required=3 if r["response_required"] == "always" else 0,
                cancelled_at=changed if r["cancelled"] else None,
                modification_number=r["modification_number"],
                modification_reason=r["modification_reason"],
                all_vens=bool(r["all_vens"]),
                test_event=bool(r["test_event"]),
                payload={
                    "signal": signal,
                    "priority": r["priority"],
                    "comment": r["vtn_comment"],
                    "resource_ids": _json(r["resource_ids"]) or [],
                    "group_ids": _json(r["group_ids"]) or [],
                },
            )
        )
    if rows:
        conn.execute(sa.insert(event), rows)
    targets = [
        {"event_id": r["event_id"] + oadr_offset, "ven_pk": r["ven_pk"]}
        for r in _rows(conn, "SELECT * FROM oadr_event_ven")
    ]
    if targets:
        conn.execute(sa.insert(_table("event_target", "event_id", "ven_pk")), targets)
    return influence_offset, oadr_offset


def _copy_responses(conn: sa.Connection, influence_offset: int, oadr_offset: int) -> None:
    response = _table(
        "event_response",
        "event_id",
        "protocol",
        "end_device_id",
        "ven_pk",
        "lfdi",
        "status",
        "opt_type",
        "response_code",
        "modification_number",
        "request_id",
        "created_date_time",
        "received_at",
    )
    rows: list[dict[str, Any]] = []
    blank = {
        "ven_pk": None,
        "opt_type": None,
        "response_code": None,
        "modification_number": None,
        "request_id": "",
    }
    for table, offset in (("sep2_response", 0), ("sep2_influence_response", influence_offset)):
        column = "control_id" if table == "sep2_response" else "event_id"
        for r in _rows(conn, f"SELECT * FROM {table} ORDER BY received_at, id"):
            rows.append(
                {
                    **blank,
                    "event_id": r[column] + offset,
                    "protocol": "2030.5",
                    "end_device_id": r["end_device_id"],
                    "lfdi": r["lfdi"],
                    "status": r["status"],
                    "created_date_time": _time(r["created_date_time"]),
                    "received_at": _time(r["received_at"]),
                }
            )
    for r in _rows(conn, "SELECT * FROM oadr_event_response ORDER BY received_at, id"):
        rows.append(
            {
                "event_id": r["event_id"] + oadr_offset,
                "protocol": "openadr",
                "end_device_id": None,
                "ven_pk": r["ven_pk"],
                "lfdi": "",
                "status": 5 if r["opt_type"] == "optIn" else 4,
                "opt_type": r["opt_type"],
                "response_code": r["response_code"],
                "modification_number": r["modification_number"],
                "request_id": r["request_id"],
                "created_date_time": _time(r["received_at"]),
                "received_at": _time(r["received_at"]),
            }
        )
    rows.sort(key=lambda r: r["received_at"])
    if rows:
        conn.execute(sa.insert(response), rows)


def _renumber_subscriptions(conn: sa.Connection, set_offset: int) -> None:
    """Subscriptions to a DR program's or a rate component's event list name renumbered programs."""
    for r in _rows(conn, "SELECT id, kind, program_id, target_id, subject_device_id FROM sep2_subscription"):
        if r["kind"] == "edc-list" and r["program_id"] is not None:
            p = r["program_id"] + set_offset
            href = f"/edev/{r['subject_device_id']}/drp/{p}/edc"
            values = {"p": p, "t": r["target_id"], "href": href}
        elif r["kind"] == "tti-list" and r["program_id"] is not None and r["target_id"] is not None:
            p, t = r["program_id"] + set_offset, r["target_id"] + set_offset
            href = f"/edev/{r['subject_device_id']}/tp/{t}/rc/{p}/tti"
            values = {"p": p, "t": t, "href": href}
        else:
            continue
        conn.execute(
            sa.text(
                "UPDATE sep2_subscription SET program_id = :p, target_id = :t, resource = :href WHERE id = :id"
            ),
            {**values, "id": r["id"]},
        )


def _repoint(table: str, columns: list[sa.Column], indexes: list[tuple[str, list[str]]]) -> None:
    """Recreate ``table`` with its program_id pointing at ``program`` (rows kept), on every backend."""
    op.create_table(f"{table}_new", *columns)
    names = ", ".join(c.name for c in columns if isinstance(c, sa.Column))
    op.execute(f"INSERT INTO {table}_new ({names}) SELECT {names} FROM {table}")
    op.drop_table(table)
    op.rename_table(f"{table}_new", table)
    for name, cols in indexes:
        op.create_index(name, table, cols)


def upgrade() -> None:
    _new_tables()
    conn = op.get_bind()
    set_offset, contexts = _copy_programs(conn)
    influence_offset, oadr_offset = _copy_events(conn, set_offset, contexts)
    _copy_responses(conn, influence_offset, oadr_offset)
    _renumber_subscriptions(conn, set_offset)
    _repoint(
        "sep2_fsa_program",
        [
            sa.Column(
                "fsa_id", sa.Integer(), sa.ForeignKey("sep2_fsa.id", ondelete="CASCADE"), primary_key=True
            ),
            sa.Column(
                "program_id", sa.Integer(), sa.ForeignKey("program.id", ondelete="CASCADE"), primary_key=True
            ),
        ],
        [],
    )
    _repoint(
        "sep2_curve",
        [
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column(
                "program_id", sa.Integer(), sa.ForeignKey("program.id", ondelete="CASCADE"), nullable=False
            ),
            sa.Column("description", sa.String(length=32), nullable=False),
            sa.Column("curve_type", sa.Integer(), nullable=False),
            sa.Column("points", sa.JSON(), nullable=False),
            sa.Column("x_multiplier", sa.Integer(), nullable=False),
            sa.Column("y_multiplier", sa.Integer(), nullable=False),
            sa.Column("y_ref_type", sa.Integer(), nullable=False),
            sa.Column("creation_time", TS, nullable=False),
        ],
        [("ix_sep2_curve_program_id", ["program_id"])],
    )
    for table in (
        "sep2_response",
        "sep2_control",
        "sep2_influence_response",
        "sep2_influence_event",
        "sep2_influence_assignment",
        "sep2_influence_set",
        "sep2_program",
        "oadr_event_response",
        "oadr_event_ven",
        "oadr_event",
    ):
        op.drop_table(table)
    if conn.dialect.name == "postgresql":
        # copied rows kept their ids: move each sequence past them
        for table in ("program", "event", "event_response", "sep2_curve"):
            op.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )


def downgrade() -> None:
    raise NotImplementedError("the one event model cannot be split back into per-protocol tables")
