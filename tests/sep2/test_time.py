"""Time resource local-time fields from an IANA zone, and the sep2 settings that are validated at load."""

from __future__ import annotations

import datetime as dt

import pytest

from server.config import ConfigError, load_settings
from server.core.sep2_time import local_time


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


def test_sydney_in_summer_and_winter():
    summer = local_time("Australia/Sydney", utc(2026, 1, 15, 0, 0))
    assert (summer.tz_offset, summer.dst_offset) == (36000, 3600)
    assert summer.local_time - summer.tz_offset - summer.dst_offset == utc(2026, 1, 15, 0, 0)
    assert summer.dst_end == utc(2026, 4, 4, 16, 0)  # 03:00 AEDT -> 02:00 AEST
    assert summer.dst_start == utc(2026, 10, 3, 16, 0)  # 02:00 AEST -> 03:00 AEDT
    winter = local_time("Australia/Sydney", utc(2026, 7, 1, 0, 0))
    assert (winter.tz_offset, winter.dst_offset) == (36000, 0)


def test_new_york_and_zones_without_dst():
    ny = local_time("America/New_York", utc(2026, 7, 1))
    assert (ny.tz_offset, ny.dst_offset) == (-18000, 3600)
    assert (ny.dst_start, ny.dst_end) == (utc(2026, 3, 8, 7), utc(2026, 11, 1, 6))
    for zone in ("UTC", "Australia/Brisbane"):
        t = local_time(zone, utc(2026, 7, 1))
        assert t.dst_offset == 0 and t.dst_start == t.dst_end


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DSO_SEP2__TIME_ZONE", "Mars/Olympus"),
        ("DSO_SEP2__PEN", "123456789"),
        ("DSO_SEP2__REGISTRATION", "sometimes"),
    ],
)
def test_bad_sep2_settings_are_refused(key, value):
    with pytest.raises(ConfigError):
        load_settings(env={key: value})
