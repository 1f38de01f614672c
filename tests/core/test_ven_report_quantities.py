"""A VEN's reported real power lands in telemetry under the store's name of the quantity (``realPower``, as a
2030.5 device's does), not OpenADR's ``powerReal``: M&V, forecasts and plans read ``realPower``, and a VEN that
reported its load as OpenADR says was invisible to them (M&V found no baseline days)."""

from __future__ import annotations

import datetime as dt

from lxml import etree
from openleadr import enums, objects
from openleadr.messaging import create_message

from server.core import mv, reports, telemetry
from server.openadr import codec
from server.store.models import Ven

T0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday


def inner(message: str, kind: str) -> etree._Element:
    found = etree.fromstring(message.encode()).find(f".//oadr:{kind}", codec.NS)
    assert found is not None
    return found


def description(r_id: str, measurement: objects.Measurement) -> objects.ReportDescription:
    return objects.ReportDescription(
        r_id=r_id,
        reading_type="Direct Read",
        report_type="usage",
        market_context="http://mc",
        report_subject=objects.Target(resource_id="load-1"),
        report_data_source=objects.Target(resource_id="load-1"),
        sampling_rate=objects.SamplingRate(
            min_period=dt.timedelta(minutes=1), max_period=dt.timedelta(minutes=15)
        ),
        measurement=measurement,
    )


async def test_a_vens_real_power_is_the_stores_real_power(store):
    async with store.sessions.begin() as session:
        ven = Ven(name="v", fingerprint="AA:BB:CC:DD:EE:FF:00:11:22:33", ven_id="VEN-1")
        session.add(ven)
        await session.flush()
        metadata = objects.Report(
            report_specifier_id="usage",
            report_name="METADATA_TELEMETRY_USAGE",
            report_descriptions=[
                description("p", enums.MEASUREMENTS.REAL_POWER),
                description("u", enums.MEASUREMENTS.VOLTAGE),
            ],
        )
        message = create_message("oadrRegisterReport", request_id="r", ven_id="VEN-1", reports=[metadata])
        offered = codec.read_register_report(inner(message, "oadrRegisterReport"))
        await reports.register_offered(session, ven.id, offered)
        [request] = await reports.choose_requests(session, ven.id, offered, ["TELEMETRY_USAGE"], 900, 900)
        # 15 days of a 2 kW load, then 1.5 kW in the event hour
        values = [
            objects.ReportInterval(
                dtstart=T0 + dt.timedelta(minutes=15 * k),
                duration=dt.timedelta(minutes=15),
                report_payload=objects.ReportPayload(r_id=r_id, value=value),
            )
            for k in range(15 * 96 + 4)
            for r_id, value in (("p", 1500.0 if k >= 15 * 96 else 2000.0), ("u", 230.0))
        ]
        data = objects.Report(
            report_specifier_id="usage",
            report_name="TELEMETRY_USAGE",
            report_request_id=request.report_request_id,
            intervals=values,
        )
        message = create_message("oadrUpdateReport", request_id="u1", ven_id="VEN-1", reports=[data])
        assert await reports.store_update(
            session, ven, codec.read_update_report(inner(message, "oadrUpdateReport"))
        )

    async with store.sessions() as session:
        kinds = {r["measurement"] for r in await telemetry.query(session, source_kind="ven", limit=10_000)}
        assert kinds == {"realPower", "voltage"}
        start = T0 + dt.timedelta(days=15)
        [result] = await mv.measure(
            session, [mv.Resource("ven", "VEN-1", "load-1")], start, start + dt.timedelta(hours=1)
        )
    assert len(result.days_used) == 10 and result.flags == []
    assert [i.delivered_w for i in result.intervals] == [500.0] * 4
