"""A database of the release before the one event model (schema 0007, the release's head) upgrades in place, on
SQLite and PostgreSQL: every device, program, FSA, curve, DER control, tariff, rate, DR program, price, load-control
event, OpenADR event and its VEN targets, every response of both protocols, subscriptions, readings and outbox rows
are kept; renumbered programs are followed by the subscriptions that named them; afterwards the server's own calls
read the moved rows and new rows get fresh ids."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, func, select, text
from sqlalchemy.engine import Connection

from server.core import events, oadr_events, programs
from server.store import create_store
from server.store.migrate import alembic_config, current_revision, upgrade
from server.store.models import Event, EventResponse, Program, ProgramMember

pytestmark = pytest.mark.asyncio

T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
LATER = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


def _filler(column: Any) -> Any:
    """A value for a NOT NULL column the test does not care about."""
    kind = column.type.__class__.__name__.upper()
    if "INT" in kind:
        return 0
    if "BOOL" in kind:
        return False
    if "DATE" in kind or "TIME" in kind:
        return T0
    if "JSON" in kind:
        return {}
    if "BINARY" in kind or "BLOB" in kind or "BYTEA" in kind:
        return b""
    return ""


def insert(conn: Connection, meta: MetaData, table: str, **values: Any) -> int:
    t = meta.tables[table]
    row = dict(values)
    for c in t.columns:
        if c.name not in row and not c.nullable and not c.primary_key and c.server_default is None:
            row[c.name] = _filler(c)
    for c in t.columns:  # JSON columns reflected as text on SQLite
        if c.name in row and isinstance(row[c.name], dict | list) and "JSON" not in str(c.type).upper():
            row[c.name] = json.dumps(row[c.name])
    result = conn.execute(t.insert().values(**row))
    return int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0


def fill(conn: Connection) -> dict[str, int]:
    meta = MetaData()
    meta.reflect(conn)
    ids: dict[str, int] = {}
    ids["device"] = insert(conn, meta, "end_device", lfdi="AB" * 20, sfdi=1, enabled=True, created_at=T0)
    ids["ven"] = insert(
        conn, meta, "ven", name="agg", fingerprint="AA:BB:CC:DD:EE:FF:00:11:22:33", ven_id="VEN-1",
        registration_id="REG-1", enabled=True, created_at=T0,
    )  # fmt: skip
    # DER: two programs (ids kept), an FSA, a curve, two controls (one still to come), a response
    ids["derp"] = insert(conn, meta, "sep2_program", name="der", primacy=1, created_at=T0, changed_at=T0)
    insert(conn, meta, "sep2_program", name="der-2", primacy=4, created_at=T0, changed_at=T0)
    fsa = insert(conn, meta, "sep2_fsa", end_device_id=ids["device"], title="default", created_at=T0)
    insert(conn, meta, "sep2_fsa_program", fsa_id=fsa, program_id=ids["derp"])
    insert(
        conn, meta, "sep2_curve", program_id=ids["derp"], curve_type=11, points=[[1, 2]], y_ref_type=1,
        creation_time=T0,
    )  # fmt: skip
    ids["derc"] = insert(
        conn, meta, "sep2_control", program_id=ids["derp"], creation_time=T0, start=T0, duration_s=600,
        base={"opModExpLimW": 5000.0}, response_required=3, changed_at=T0,
    )  # fmt: skip
    ids["derc_later"] = insert(
        conn, meta, "sep2_control", program_id=ids["derp"], creation_time=T0, start=LATER, duration_s=600,
        base={"opModConnect": False}, response_required=3, changed_at=T0,
    )  # fmt: skip
    insert(
        conn, meta, "sep2_response", control_id=ids["derc"], end_device_id=ids["device"], lfdi="AB" * 20,
        status=3, created_date_time=T0, received_at=T0,
    )  # fmt: skip
    # pricing and DRLC: a tariff with a rate and a price, a DR program with an event; responses to both
    tariff = insert(conn, meta, "sep2_influence_set", kind="tariff", name="tou", primacy=1,
                    attrs={"currency": 840, "pricePowerOfTenMultiplier": -3}, created_at=T0, changed_at=T0)  # fmt: skip
    rate = insert(conn, meta, "sep2_influence_set", kind="rate", parent_id=tariff, name="energy", primacy=1,
                  attrs={"uom": 72}, created_at=T0, changed_at=T0)  # fmt: skip
    drp = insert(conn, meta, "sep2_influence_set", kind="drp", name="peak", primacy=2, created_at=T0,
                 changed_at=T0)  # fmt: skip
    ids.update(tariff=tariff, rate=rate, drp=drp)
    for s in (tariff, drp):
        insert(conn, meta, "sep2_influence_assignment", set_id=s, end_device_id=ids["device"])
    ids["tti"] = insert(
        conn, meta, "sep2_influence_event", set_id=rate, creation_time=T0, start=LATER, duration_s=3600,
        payload={"touTier": 0, "tiers": [{"price": 12, "startValue": 0}]}, changed_at=T0,
    )  # fmt: skip
    ids["edc"] = insert(
        conn, meta, "sep2_influence_event", set_id=drp, creation_time=T0, start=LATER, duration_s=900,
        payload={"deviceCategory": 1, "control": {"dutyCycle": {"normalValue": 50}}}, changed_at=T0,
    )  # fmt: skip
    insert(conn, meta, "sep2_influence_response", event_id=ids["edc"], end_device_id=ids["device"],
           lfdi="AB" * 20, status=2, created_date_time=T0, received_at=T0 + dt.timedelta(seconds=1))  # fmt: skip
    # OpenADR: an event aimed at the VEN, and its answer
    ids["oadr"] = insert(
        conn, meta, "oadr_event", signal_name="SIMPLE", signal_type="level",
        intervals=[{"duration_s": 900, "value": 2.0}], start=LATER, duration_s=900,
        end=LATER + dt.timedelta(seconds=900), priority=0, market_context="http://mc/1", modification_number=1,
        modification_reason="level", cancelled=False, response_required="always", randomization_s=30,
        all_vens=False, resource_ids=[], group_ids=[], created_at=T0, changed_at=T0,
    )  # fmt: skip
    insert(conn, meta, "oadr_event_ven", event_id=ids["oadr"], ven_pk=ids["ven"])
    insert(conn, meta, "oadr_event_response", event_id=ids["oadr"], ven_pk=ids["ven"], modification_number=1,
           opt_type="optIn", response_code=200, received_at=T0 + dt.timedelta(seconds=2))  # fmt: skip
    # a subscription to the DR program's event list (its program gets a new id)
    insert(
        conn, meta, "sep2_subscription", end_device_id=ids["device"], owner_lfdi="AB" * 20,
        resource=f"/edev/{ids['device']}/drp/{drp}/edc", kind="edc-list", program_id=drp,
        subject_device_id=ids["device"], notification_uri="https://127.0.0.1/n", created_at=T0, changed_at=T0,
    )  # fmt: skip
    insert(conn, meta, "telemetry", source_kind="device", source_id="AB" * 20, resource="r", measurement="W",
           ts=T0, value=1.0, unit="W", reading_type="")  # fmt: skip
    insert(conn, meta, "outbox_message", channel="sep2", order_key="sub:1", url="https://127.0.0.1/n", body=b"<x/>",
           status="delivered", created_at=T0, next_attempt_at=T0)  # fmt: skip
    return ids


async def test_a_release_database_upgrades_with_every_row_kept(database_url):
    store = create_store(database_url)
    try:
        await upgrade(store, "0007")
        async with store.engine.begin() as conn:
            ids = await conn.run_sync(fill)
        await upgrade(store)  # through 0013 and every later migration
        assert (
            await current_revision(store) == ScriptDirectory.from_config(alembic_config()).get_current_head()
        )

        async with store.sessions() as session:
            progs = {(p.kind, p.name): p for p in await session.scalars(select(Program))}
            assert set(progs) == {
                ("der", "der"),
                ("der", "der-2"),
                ("price", "tou"),
                ("rate", "energy"),
                ("dr", "peak"),
                ("dr", "openadr:http://mc/1"),
            }
            assert progs[("der", "der")].id == ids["derp"]  # DER programs keep their ids (hrefs unchanged)
            assert progs[("rate", "energy")].parent_id == progs[("price", "tou")].id
            assert progs[("dr", "openadr:http://mc/1")].market_context == "http://mc/1"
            members = set(await session.scalars(select(ProgramMember.program_id)))
            assert members == {progs[("price", "tou")].id, progs[("dr", "peak")].id}

            evs = {e.kind: [] for e in await session.scalars(select(Event))}
            for e in await session.scalars(select(Event).order_by(Event.id)):
                evs[e.kind].append(e)
            assert [e.id for e in evs["der"]] == [ids["derc"], ids["derc_later"]]  # ids kept
            assert evs["der"][0].payload == {"base": {"opModExpLimW": 5000.0}}
            assert evs["der"][0].end_at == T0 + dt.timedelta(seconds=600)
            (price,) = evs["price"]
            assert (
                price.program_id == progs[("rate", "energy")].id and price.payload["tiers"][0]["price"] == 12
            )
            edc, oadr = evs["dr"]
            assert edc.program_id == progs[("dr", "peak")].id and edc.payload["deviceCategory"] == 1
            assert oadr.program_id == progs[("dr", "openadr:http://mc/1")].id
            assert oadr.payload["signal"] == {
                "name": "SIMPLE",
                "type": "level",
                "intervals": [{"duration_s": 900, "value": 2.0}],
            }
            assert (oadr.modification_number, oadr.randomize_start_s, oadr.response_required) == (1, 30, 3)
            # the VEN still receives its event, and the event its answer
            assert [e.id for e in await events.events_for_ven(session, ids["ven"], T0)] == [oadr.id]

            answers = list(await session.scalars(select(EventResponse).order_by(EventResponse.received_at)))
            assert [(r.event_id, r.protocol, r.status) for r in answers] == [
                (ids["derc"], "2030.5", 3),
                (edc.id, "2030.5", 2),
                (oadr.id, "openadr", 5),
            ]
            assert answers[2].ven_pk == ids["ven"] and answers[2].opt_type == "optIn"

            shown = await oadr_events.get_event(session, oadr.id, 3600)
            assert shown.vens == ["agg"] and shown.market_context == "http://mc/1"
            assert [r["ven"] for r in shown.responses] == ["agg"]
            tariffs = await programs.device_member_programs(session, ids["device"], "price")
            assert [t.name for t in tariffs] == ["tou"]

        async with store.engine.connect() as conn:
            sub = (await conn.execute(text("SELECT resource, program_id FROM sep2_subscription"))).one()
            assert sub == (
                f"/edev/{ids['device']}/drp/{progs[('dr', 'peak')].id}/edc",
                progs[("dr", "peak")].id,
            )
            for table, n in (
                ("sep2_fsa_program", 1),
                ("sep2_curve", 1),
                ("telemetry", 1),
                ("delivery_message", 1),
            ):
                count = await conn.scalar(select(func.count()).select_from(text(table)))
                assert count == n, table

        # new rows get fresh ids after the copied ones (sequences moved past them on PostgreSQL)
        async with store.sessions.begin() as session:
            der = await programs.get_program(session, "der")
            made = await events.create(
                session,
                der,
                events.NewEvent(start=LATER, duration_s=60, payload={"base": {"opModConnect": True}}),
            )
            newer = await programs.create(session, "dr", "peak-2")
        assert made.id > max(e.id for kind in evs.values() for e in kind)
        assert newer.id > max(p.id for p in progs.values())
    finally:
        await store.close()
