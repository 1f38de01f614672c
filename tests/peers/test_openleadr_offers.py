"""An OpenADR 2.0b VEN offers flexibility the way the protocol carries it: openleadr's OpenADRClient sends an
oadrCreateOpt of optType optIn with an availability schedule and no event; each window becomes an open offer of
that VEN (kW and price from ``openadr.availability_*``: 2.0b carries neither), the one the scheduler's plans may
buy. Sending the optID again replaces its offers; oadrCancelOpt withdraws them."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from openleadr import objects
from support.openadr import SchemaWatch, admin, client, enroll, start_server

pytestmark = pytest.mark.asyncio


def _availability(*windows: tuple[dt.datetime, dt.timedelta]) -> objects.Vavailability:
    return objects.Vavailability(
        components=[objects.VavailabilityComponent(dtstart=s, duration=d) for s, d in windows]
    )


async def _offers(server) -> list[dict]:  # noqa: ANN001
    status, found = await admin(server, "GET", "/api/v1/offers")
    assert status == 200
    return sorted(found, key=lambda o: o["id"])


async def test_an_opt_in_availability_schedule_is_an_offer_of_the_ven(tmp_path):
    server = await asyncio.to_thread(
        start_server,
        tmp_path / "dso",
        DSO_OPENADR__AVAILABILITY_DOWN_KW="25",
        DSO_OPENADR__AVAILABILITY_PRICE="0.15",
    )
    watch = SchemaWatch()
    ven = await asyncio.to_thread(enroll, server, "aggregator-1")
    c = client(server, ven, watch)
    try:
        await c.run()
        start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        hour = dt.timedelta(hours=1)
        opt_id = await c.create_opt(
            opt_type="optIn",
            opt_reason="economic",
            targets=[objects.Target(ven_id=c.ven_id)],
            vavailability=_availability((start, 2 * hour), (start + 5 * hour, hour)),
        )
        assert opt_id
        made = await _offers(server)
        assert [(o["start"], o["end"]) for o in made] == [
            (start.isoformat(), (start + 2 * hour).isoformat()),
            ((start + 5 * hour).isoformat(), (start + 6 * hour).isoformat()),
        ]
        for o in made:
            assert o["ven"] == "aggregator-1" and o["status"] == "offered" and o["opt_id"] == opt_id
            assert (o["down_kw"], o["up_kw"], o["price"]) == (25.0, 0.0, 0.15)

        # an optOut schedule is not an offer; an event-qualified opt is an answer to the event, not an offer
        await c.create_opt(
            opt_type="optOut",
            opt_reason="notParticipating",
            targets=[objects.Target(ven_id=c.ven_id)],
            vavailability=_availability((start, hour)),
        )
        assert len(await _offers(server)) == 2

        # oadrCancelOpt withdraws the opt's open offers
        assert await c.cancel_opt(opt_id) is True
        assert [o["status"] for o in await _offers(server)] == ["withdrawn", "withdrawn"]
        watch.assert_clean()
    finally:
        await c.stop()
        await asyncio.to_thread(server.stop)
