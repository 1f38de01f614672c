"""Unit tests of the pure parts: durations and date-times, status from time, unit normalisation, fingerprints,
the hardened parser, and schema validity of every message the VTN can build."""

from __future__ import annotations

import datetime as dt

import pytest

from server.core import telemetry
from server.core.errors import Invalid
from server.core.oadr_events import status_at
from server.core.vens import normalise_fingerprint
from server.openadr import codec
from server.store.models import Event

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "seconds,text",
    [(0, "PT0S"), (1, "PT1S"), (90, "PT1M30S"), (3600, "PT1H"), (86400, "P1D"), (90061, "P1DT1H1M1S")],
)
def test_duration_round_trip(seconds, text):
    assert codec.fmt_duration(seconds) == text
    assert codec.parse_duration(text) == seconds


def test_duration_forms_sent_by_vens():
    assert codec.parse_duration("P") == 0  # openleadr's zero
    assert codec.parse_duration("P1W") == 7 * 86400
    assert codec.parse_duration("-PT5M") == -300
    with pytest.raises(ValueError):
        codec.parse_duration("5 minutes")


def test_datetimes_are_utc_with_z():
    assert codec.fmt_dt(T0) == "2026-01-01T12:00:00Z"
    assert codec.parse_dt("2026-01-01T14:00:00+02:00") == T0
    assert codec.parse_dt("2026-01-01T12:00:00.5Z") == T0.replace(microsecond=500000)
    with pytest.raises(ValueError):
        codec.parse_dt("yesterday")


def _event(cancelled: bool = False) -> Event:
    return Event(start=T0, end_at=T0 + dt.timedelta(hours=1), cancelled_at=T0 if cancelled else None)


@pytest.mark.parametrize(
    "now,expected",
    [
        (T0 - dt.timedelta(hours=2), "far"),
        (T0 - dt.timedelta(minutes=30), "near"),
        (T0, "active"),
        (T0 + dt.timedelta(minutes=59), "active"),
        (T0 + dt.timedelta(hours=1), "completed"),
    ],
)
def test_event_status_from_time(now, expected):
    assert status_at(_event(), now, near_window_s=3600) == expected


def test_cancelled_wins_over_time():
    assert status_at(_event(cancelled=True), T0 + dt.timedelta(minutes=5), 3600) == "cancelled"


def test_units_normalised_to_si():
    assert telemetry.normalise(1.5, "W", "k") == (1500.0, "W")
    assert telemetry.normalise(2, "VAR", "M") == (2e6, "var")
    assert telemetry.normalise(230, "V", "none") == (230, "V")


def test_fingerprint_forms():
    assert normalise_fingerprint("aa:bb:cc:dd:ee:ff:00:11:22:33") == "AA:BB:CC:DD:EE:FF:00:11:22:33"
    assert normalise_fingerprint("aabbccddeeff00112233") == "AA:BB:CC:DD:EE:FF:00:11:22:33"
    with pytest.raises(Invalid):
        normalise_fingerprint("not-a-fingerprint")


UTF16_BOMB = (
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    '<oadrPayload xmlns="http://openadr.org/oadr-2.0b/2012/07">&b;</oadrPayload>'
).encode("utf-16")


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE x [<!ENTITY a SYSTEM 'file:///etc/passwd'>]><x>&a;</x>",
        UTF16_BOMB,
        b"<oadrPayload>",
        b"<x/>",
        b"",
    ],
)
def test_hardened_parser_rejects(body):
    with pytest.raises(codec.XmlRejected):
        codec.parse(body)


def _valid(msg) -> None:
    root = codec.envelope(msg)
    codec.validate(codec.parse(codec.serialise(root)))


def test_every_built_message_is_schema_valid():
    e = codec.EventOut(
        event_id="1",
        modification_number=2,
        modification_reason="cancelled",
        modification_time=T0,
        priority=1,
        market_context="http://mc",
        created=T0,
        status="cancelled",
        test_event=True,
        comment="c & <d>",
        start=T0,
        duration_s=600,
        randomization_s=30,
        signal_name="SIMPLE",
        signal_type="level",
        signal_id="1-0",
        intervals=[(300, 1), (300, 2.5)],
        current_value=0,
        ven_id="VEN-1",
        resource_ids=["r1"],
        group_ids=["g1"],
    )
    for msg in (
        codec.response(200, "OK", "r", "VEN-1"),
        codec.response(452, "x", None),
        codec.created_party_registration("r", "VTN", 10, "VEN-1", "REG-1"),
        codec.created_party_registration("r", "VTN", 10),
        codec.canceled_party_registration("r", "REG-1", "VEN-1"),
        codec.cancel_party_registration("r", "REG-1", "VEN-1"),
        codec.request_reregistration("VEN-1"),
        codec.distribute_event("r", "VTN", [e]),
        codec.distribute_event("r", "VTN", []),
        codec.registered_report("r", "VEN-1", [("RR-1", "S", 60, 60, [("a", "Direct Read")])]),
        codec.registered_report("r", "VEN-1", []),
        codec.register_report("r", "VEN-1"),
        codec.create_report("r", "VEN-1", "RR-1", "S", 0, 0, [("a", "x-notApplicable")]),
        codec.cancel_report("r", "VEN-1", "RR-1"),
        codec.pending_reports_reply("oadrCreatedReport", "r", "VEN-1", ["RR-1"]),
        codec.pending_reports_reply("oadrCanceledReport", "r", "VEN-1", []),
        codec.updated_report("r", "VEN-1"),
        codec.opt_reply("oadrCreatedOpt", "r", "o"),
        codec.opt_reply("oadrCanceledOpt", "r", "o"),
    ):
        _valid(msg)


def test_values_are_escaped_by_construction():
    msg = codec.response(400, 'bad <tag> & "quote"', "r")
    body = codec.serialise(codec.envelope(msg))
    assert b"bad &lt;tag&gt; &amp;" in body
    assert (
        codec.text(codec.message_of(codec.parse(body)), "ei:eiResponse/ei:responseDescription")
        == 'bad <tag> & "quote"'
    )


@pytest.mark.parametrize(
    "signal", sorted(__import__("server.core.oadr_events", fromlist=["SIGNALS"]).SIGNALS)
)
def test_every_supported_signal_renders_schema_valid(signal):
    from openleadr import enums

    from server.core.oadr_events import SIGNALS

    e = codec.EventOut(
        event_id="7",
        modification_number=0,
        modification_reason="",
        modification_time=None,
        priority=0,
        market_context="http://mc",
        created=T0,
        status="far",
        test_event=False,
        comment="",
        start=T0,
        duration_s=60,
        randomization_s=0,
        signal_name=signal,
        signal_type=SIGNALS[signal],
        signal_id="7-0",
        intervals=[(60, 1.0)],
        current_value=0,
        ven_id="VEN-1",
    )
    _valid(codec.distribute_event("r", "VTN", [e]))
    assert signal in enums.SIGNAL_NAME.values  # openleadr answers 460 (signal not supported) otherwise


def test_prefixed_paths_and_local_names():
    assert codec.clark("pyld:eiCreatedEvent/ei:venID") == (
        f"{{{codec.NS['pyld']}}}eiCreatedEvent/{{{codec.NS['ei']}}}venID"
    )
    assert codec.clark(".//xcal:date-time") == f".//{{{codec.NS['xcal']}}}date-time"
    already = f"{{{codec.NS['xcal']}}}dtstart"
    assert codec.clark(already) == already
    msg = codec.response(200, "OK", "r-1", "ven-1")
    assert codec.local(msg) == "oadrResponse"
    assert codec.text(msg, "ei:venID") == "ven-1" and codec.text(msg, ".//pyld:requestID") == "r-1"
    assert codec.message_of(codec.envelope(msg)) is msg
