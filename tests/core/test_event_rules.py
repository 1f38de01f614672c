"""Event status rules (protocol-neutral, ``server.core.der_controls``) and the power-of-ten encoding."""

from __future__ import annotations

import datetime as dt

import pytest

from server.core.der_controls import (
    EventStatus,
    Interval,
    check_base,
    encode_power,
    evaluate,
    list_order_key,
    winner,
)
from server.core.errors import Invalid

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def ev(
    id_: int,
    start_min: int,
    dur_min: int,
    program: int = 1,
    primacy: int = 1,
    created_min: int = 0,
    cancelled: bool = False,
    randomized: bool = False,
) -> Interval:
    return Interval(
        id=id_,
        program_id=program,
        primacy=primacy,
        creation_time=T0 + dt.timedelta(minutes=created_min),
        start=T0 + dt.timedelta(minutes=start_min),
        duration_s=dur_min * 60,
        cancelled=cancelled,
        cancel_randomized=randomized,
    )


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_scheduled_active_completed_from_time():
    e = ev(1, 10, 5)
    assert evaluate(e, [e], at(0)).status == EventStatus.SCHEDULED
    assert evaluate(e, [e], at(10)).status == EventStatus.ACTIVE
    assert evaluate(e, [e], at(14.9)).status == EventStatus.ACTIVE
    assert evaluate(e, [e], at(15)).completed


def test_cancelled_and_cancelled_with_randomization_stay_visible():
    a, b = ev(1, 0, 10, cancelled=True), ev(2, 0, 10, cancelled=True, randomized=True)
    assert evaluate(a, [a, b], at(5)).status == EventStatus.CANCELLED
    assert evaluate(b, [a, b], at(5)).status == EventStatus.CANCELLED_RANDOM
    assert not evaluate(a, [a, b], at(5)).completed


def test_newer_overlapping_event_in_same_program_supersedes():
    old, new = ev(1, 0, 10, created_min=0), ev(2, 5, 10, created_min=1)
    assert evaluate(old, [old, new], at(1)).status == EventStatus.SUPERSEDED
    assert evaluate(new, [old, new], at(1)).status == EventStatus.SCHEDULED
    # a cancelled newer event supersedes nothing
    cancelled = ev(3, 0, 10, created_min=2, cancelled=True)
    assert evaluate(new, [old, new, cancelled], at(6)).status == EventStatus.ACTIVE


def test_non_overlapping_events_do_not_supersede():
    a, b = ev(1, 0, 10), ev(2, 10, 10, created_min=1)
    assert evaluate(a, [a, b], at(1)).status == EventStatus.ACTIVE
    assert evaluate(b, [a, b], at(1)).status == EventStatus.SCHEDULED


def test_other_program_overlap_is_potentially_superseded_and_primacy_wins():
    low, high = ev(1, 0, 10, program=1, primacy=5), ev(2, 0, 10, program=2, primacy=1)
    r = evaluate(low, [low, high], at(1))
    assert r.status == EventStatus.ACTIVE and r.potentially_superseded
    assert winner([low, high], at(1)) == high  # lower primacy value wins
    assert winner([low, high], at(11)) is None


def test_list_order_start_then_newest_first():
    a, b, c = ev(1, 10, 5, created_min=0), ev(2, 0, 5, created_min=0), ev(3, 10, 5, created_min=3)
    assert [e.id for e in sorted([a, b, c], key=list_order_key)] == [2, 3, 1]


@pytest.mark.parametrize(
    ("watts", "expected"),
    [
        (0, (0, 0)),
        (5000, (5000, 0)),
        (32767, (32767, 0)),
        (50000, (5000, 1)),
        (1.5, (15, -1)),
        (-2500, (-2500, 0)),
        (20000, (20000, 0)),
        (1_000_000, (10000, 2)),
    ],
)
def test_power_of_ten_encoding(watts, expected):
    value, mult = encode_power(watts)
    assert (value, mult) == expected
    assert value * 10.0**mult == pytest.approx(watts)


def test_check_base_rejects_unknown_and_out_of_range():
    assert check_base({"opModExpLimW": 100, "opModConnect": True}) == {
        "opModExpLimW": 100,
        "opModConnect": True,
    }
    for bad in (
        {"nope": 1},
        {"opModConnect": 1},
        {"opModFixedW": 10001},
        {"opModExpLimW": "x"},
        {"rampTms": -1},
    ):
        with pytest.raises(Invalid):
            check_base(bad)


def test_event_header_is_checked_once_for_every_event_kind():
    import datetime as dt

    import pytest

    from server.core.der_controls import check_event_header
    from server.core.errors import Invalid

    now = dt.datetime.now(dt.UTC)
    check_event_header(now, 60, -3600, 3600, 3)  # OneHourRangeType bounds are inclusive
    for args in (
        (now.replace(tzinfo=None), 60, None, None, 0),
        (now, 0, None, None, 0),
        (now, 60, 3601, None, 0),
        (now, 60, None, -3601, 0),
        (now, 60, None, None, 256),
    ):
        with pytest.raises(Invalid):
            check_event_header(*args)
