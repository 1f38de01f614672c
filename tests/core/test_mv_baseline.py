"""The 10-of-10 baseline with a same-day adjustment, on synthetic series whose expected values are worked out by
hand (the arithmetic is in each test's comments)."""

from __future__ import annotations

import datetime as dt

import pytest

from server.core import mv
from server.core.errors import Invalid

STEP = 900
UTC = dt.UTC
# Wednesday 18 November 2026, 14:00-16:00 UTC: eight 15-minute intervals
START = dt.datetime(2026, 11, 18, 14, tzinfo=UTC)
END = START + dt.timedelta(hours=2)
EVENT_DAY = START.date()


def weekdays_before(day: dt.date, n: int) -> list[dt.date]:
    out, d = [], day
    while len(out) < n:
        d -= dt.timedelta(days=1)
        if d.weekday() < 5:
            out.append(d)
    return out


def day_series(day: dt.date, value_at) -> dict[dt.datetime, float]:
    """Every 15-minute interval of one UTC day, value_at(interval start)."""
    t0 = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
    return {
        t0 + dt.timedelta(seconds=i * STEP): float(value_at(t0 + dt.timedelta(seconds=i * STEP)))
        for i in range(96)
    }


def history(value_of_day, days: int = 40) -> dict[dt.datetime, float]:
    """``days`` calendar days before the event day, each at a constant value value_of_day(date)."""
    series: dict[dt.datetime, float] = {}
    for back in range(1, days + 1):
        day = EVENT_DAY - dt.timedelta(days=back)
        value = value_of_day(day)
        if value is not None:
            series |= day_series(day, lambda _t, v=value: v)
    return series


def ranked(day: dt.date) -> int:
    """1 for the most recent weekday before the event day, 2 for the one before, ..."""
    return weekdays_before(EVENT_DAY, 80).index(day) + 1


def weekday_ramp(day: dt.date) -> float:
    # weekdays: 1000 + 100 k W (k = 1 most recent); weekends 50 kW, which a weekday baseline must never use
    return 50_000.0 if day.weekday() >= 5 else 1000.0 + 100.0 * ranked(day)


def with_event_day(series, value_in_event, value_before=None):
    out = dict(series)
    out |= day_series(
        EVENT_DAY,
        lambda t: value_in_event if START <= t < END else (value_before if value_before is not None else 0.0),
    )
    return out


NO_ADJ = mv.Method(adjustment="none")


def test_ten_most_recent_weekdays_averaged():
    series = with_event_day(history(weekday_ramp), 1200.0)
    days, factor, intervals, flags = mv.compute(series, START, END, method=NO_ADJ)
    # the ten most recent weekdays: k = 1..10 -> mean of 1100..2000 = 1550 W
    assert days == weekdays_before(EVENT_DAY, 10)
    assert factor is None and flags == []
    assert len(intervals) == 8
    for i in intervals:
        assert i.baseline_w == pytest.approx(1550.0)
        assert i.measured_w == 1200.0
        assert i.delivered_w == pytest.approx(350.0)  # load reduction: baseline - measured
        assert i.flags == []
    assert intervals[0].start == START and intervals[-1].end == END


def test_event_days_and_days_with_missing_data_are_not_similar_days():
    series = with_event_day(history(weekday_ramp), 1200.0)
    second, third = weekdays_before(EVENT_DAY, 3)[1:]
    # day k=3 lacks one interval inside the event window: skipped like an event day
    del series[dt.datetime.combine(third, dt.time(15), tzinfo=UTC)]
    days, _, intervals, flags = mv.compute(series, START, END, excluded_days={second}, method=NO_ADJ)
    # k = 1, 4..12: (1100 + 1400 + ... + 2200) / 10 = (1100 + 16200) / 10 = 1730 W
    assert second not in days and third not in days and len(days) == 10
    assert intervals[0].baseline_w == pytest.approx(1730.0)
    assert flags == ["days_skipped_missing_data:1"]


def test_fewer_similar_days_than_ten_is_flagged_and_none_is_no_baseline():
    short = with_event_day(history(weekday_ramp, days=8), 1200.0)  # 8 calendar days back: 6 weekdays
    days, _, intervals, flags = mv.compute(short, START, END, method=NO_ADJ)
    assert len(days) == 6 and flags == ["fewer_days:6"]
    # k = 1..6: mean of 1100..1600 = 1350 W
    assert intervals[0].baseline_w == pytest.approx(1350.0)

    none = with_event_day({}, 1200.0)
    days, _, intervals, flags = mv.compute(none, START, END, method=NO_ADJ)
    assert days == [] and flags == ["no_baseline_days"]
    assert all(i.baseline_w is None and i.delivered_w is None and "no_baseline" in i.flags for i in intervals)


def test_weekend_event_uses_weekend_days():
    saturday = dt.datetime(2026, 11, 21, 14, tzinfo=UTC)
    series = history(weekday_ramp, days=100)
    series |= day_series(EVENT_DAY, lambda _t: 1.0)  # the Wednesday before: not a weekend day either
    series |= day_series(dt.date(2026, 11, 19), lambda _t: 1.0)
    series |= day_series(dt.date(2026, 11, 20), lambda _t: 1.0)
    series |= day_series(saturday.date(), lambda _t: 40_000.0)
    days, _, intervals, _ = mv.compute(
        series,
        saturday,
        saturday + dt.timedelta(hours=1),
        method=mv.Method(adjustment="none", lookback_days=90),
    )
    assert len(days) == 10 and all(d.weekday() >= 5 for d in days)
    assert intervals[0].baseline_w == pytest.approx(50_000.0)
    assert intervals[0].delivered_w == pytest.approx(10_000.0)


def flat(value: float):
    return lambda day: value


def test_multiplicative_adjustment_from_the_hours_before_the_event():
    # history 1000 W flat; the event day runs 10 % high in 10:00-13:00 (3 h ending 1 h before 14:00)
    series = with_event_day(history(flat(1000.0)), 800.0, value_before=1100.0)
    days, factor, intervals, flags = mv.compute(series, START, END)
    assert len(days) == 10 and flags == []
    assert factor == pytest.approx(1.1)
    assert intervals[0].baseline_w == pytest.approx(1100.0)
    assert intervals[0].delivered_w == pytest.approx(300.0)


def test_only_the_adjustment_window_sets_the_factor():
    # 13:00-14:00 (the hour just before the event) is excluded from the window: a pre-event dip there is ignored
    series = with_event_day(history(flat(1000.0)), 800.0, value_before=1100.0)
    for i in range(4):
        series[dt.datetime(2026, 11, 18, 13, tzinfo=UTC) + dt.timedelta(seconds=i * STEP)] = 10.0
    _, factor, _, _ = mv.compute(series, START, END)
    assert factor == pytest.approx(1.1)


def test_multiplicative_adjustment_is_capped():
    series = with_event_day(history(flat(1000.0)), 800.0, value_before=1500.0)
    _, factor, intervals, flags = mv.compute(series, START, END)
    # 1500 / 1000 = 1.5, capped at 1 + 0.2
    assert factor == pytest.approx(1.2)
    assert flags == ["adjustment_capped:1.5000"]
    assert intervals[0].baseline_w == pytest.approx(1200.0)
    low = with_event_day(history(flat(1000.0)), 500.0, value_before=100.0)
    _, factor, intervals, _ = mv.compute(low, START, END, method=mv.Method(cap=0.4))
    assert factor == pytest.approx(0.6) and intervals[0].baseline_w == pytest.approx(600.0)


def test_additive_adjustment_and_its_cap():
    series = with_event_day(history(flat(1000.0)), 800.0, value_before=1150.0)
    _, offset, intervals, flags = mv.compute(series, START, END, method=mv.Method(adjustment="additive"))
    assert offset == pytest.approx(150.0) and flags == []
    assert intervals[0].baseline_w == pytest.approx(1150.0)
    assert intervals[0].delivered_w == pytest.approx(350.0)
    series = with_event_day(history(flat(1000.0)), 800.0, value_before=1900.0)
    _, offset, intervals, flags = mv.compute(series, START, END, method=mv.Method(adjustment="additive"))
    # +900 W capped at 0.2 x 1000 W
    assert offset == pytest.approx(200.0) and flags == ["adjustment_capped:900.0000"]
    assert intervals[0].baseline_w == pytest.approx(1200.0)


def test_missing_adjustment_window_leaves_the_baseline_unadjusted_and_says_so():
    series = with_event_day(history(flat(1000.0)), 800.0, value_before=1500.0)
    del series[dt.datetime(2026, 11, 18, 11, tzinfo=UTC)]
    _, factor, intervals, flags = mv.compute(series, START, END)
    assert factor is None and flags == ["adjustment_window_missing_data"]
    assert intervals[0].baseline_w == pytest.approx(1000.0)


def test_missing_measurement_is_flagged_not_zero():
    series = with_event_day(history(flat(1000.0)), 800.0, value_before=1000.0)
    gap = START + dt.timedelta(minutes=30)
    del series[gap]
    _, _, intervals, _ = mv.compute(series, START, END)
    [hole] = [i for i in intervals if i.start == gap]
    assert hole.measured_w is None and hole.delivered_w is None and hole.flags == ["missing_measurement"]
    assert hole.baseline_w == pytest.approx(1000.0)
    others = [i for i in intervals if i.start != gap]
    assert all(i.delivered_w == pytest.approx(200.0) for i in others)


def test_generation_reduction_reads_positive():
    # a PV site exporting 5 kW (net import -5000 W) held to 3 kW export delivered 2 kW of export reduction
    series = with_event_day(history(flat(-5000.0)), -3000.0, value_before=-5000.0)
    _, factor, intervals, _ = mv.compute(series, START, END, direction="generation")
    assert factor == pytest.approx(1.0)
    assert intervals[0].baseline_w == pytest.approx(-5000.0)
    assert intervals[0].delivered_w == pytest.approx(2000.0)


def test_local_days_and_clock_times_follow_the_zone():
    # in America/New_York 14:00 UTC is 09:00 local; a similar day's value is taken at 09:00 local
    zone_start = dt.datetime(2026, 11, 18, 14, tzinfo=UTC)

    def morning_bump(t: dt.datetime) -> float:
        return 3000.0 if t.hour == 14 else 1000.0

    series: dict[dt.datetime, float] = {}
    for back in range(1, 30):
        series |= day_series(EVENT_DAY - dt.timedelta(days=back), morning_bump)
    series |= day_series(EVENT_DAY, lambda _t: 2000.0)
    days, _, intervals, _ = mv.compute(
        series, zone_start, zone_start + dt.timedelta(hours=1), tz="America/New_York", method=NO_ADJ
    )
    assert all(d.weekday() < 5 for d in days) and days[0] == dt.date(2026, 11, 17)
    assert intervals[0].baseline_w == pytest.approx(3000.0)


def test_aggregate_is_unknown_where_a_resource_is_missing():
    a = with_event_day(history(flat(1000.0)), 800.0, value_before=1000.0)
    b = dict(a)
    del b[START]
    results = []
    for name, s in (("a", a), ("b", b)):
        days, factor, intervals, flags = mv.compute(s, START, END)
        results.append(mv.ResourceResult(name, "tx", days, factor, intervals, flags))
    total = mv.aggregate(results)
    assert total[0].delivered_w is None and total[0].measured_w is None
    assert total[0].baseline_w == pytest.approx(2000.0)
    assert total[0].flags == ["measured_missing:1/2", "delivered_missing:1/2"]
    assert total[1].delivered_w == pytest.approx(400.0) and total[1].flags == []


def test_interval_means_and_method_checks():
    t = dt.datetime(2026, 11, 18, 14, 3, tzinfo=UTC)
    means = mv.interval_means([(t, 100.0), (t + dt.timedelta(minutes=5), 300.0), (t, float("nan"))], STEP)
    assert means == {dt.datetime(2026, 11, 18, 14, tzinfo=UTC): 200.0}
    for bad in (mv.Method(adjustment="x"), mv.Method(cap=2), mv.Method(days=0), mv.Method(step_s=7)):
        with pytest.raises(Invalid):
            bad.check()
    with pytest.raises(Invalid):
        mv.compute({}, START, END, direction="sideways")


def test_direction_of_an_event_follows_its_signal_and_controls():
    from server.store.models import Event

    def dispatch(kind: str | None, *values: float) -> Event:
        signal = {"name": "LOAD_DISPATCH", "intervals": [{"duration_s": 900, "value": v} for v in values]}
        if kind:
            signal["type"] = kind
        return Event(kind="dr", payload={"signal": signal})

    # the plan's VEN events: a delta of net import, negative where the VEN is to shed load, 0 between blocks
    assert mv.direction_of(dispatch("delta", 0.0, -8000.0, -8000.0, 0.0)) == "load"
    # a cleared "up" offer: more import asked for (taking up export) reads positive as measured - baseline
    assert mv.direction_of(dispatch("delta", 5000.0, 5000.0)) == "generation"
    # a dispatch's setpoint: an import limit, or (negative) an export limit
    assert mv.direction_of(dispatch("setpoint", 20000.0)) == "load"
    assert mv.direction_of(dispatch(None, -15000.0)) == "generation"
    assert (
        mv.direction_of(Event(kind="dr", payload={"signal": {"name": "SIMPLE", "intervals": []}})) == "load"
    )
    assert mv.direction_of(Event(kind="der", payload={"base": {"opModExpLimW": 3000}})) == "generation"
    assert mv.direction_of(Event(kind="der", payload={"base": {"opModTargetW": 5000}})) == "load"
