"""The local-time fields of the 2030.5 Time resource for an IANA time zone (``sep2.time_zone``).

2030.5 describes local time as ``tzOffset`` (standard offset from UTC, seconds; negative west of Greenwich),
``dstOffset`` (the daylight-saving shift now in effect) and the current year's ``dstStartTime``/``dstEndTime``
(UTC instants). zoneinfo exposes offsets, not transitions, so the transitions are found by bisection.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class LocalTime:
    tz_offset: int
    dst_offset: int
    dst_start: int
    dst_end: int
    local_time: int


def _dst(zone: ZoneInfo, t: int) -> int:
    d = dt.datetime.fromtimestamp(t, zone).dst()
    return int(d.total_seconds()) if d else 0


def _standard(zone: ZoneInfo, t: int) -> int:
    when = dt.datetime.fromtimestamp(t, zone)
    return int(when.utcoffset().total_seconds()) - _dst(zone, t)  # type: ignore[union-attr]


def _bisect(zone: ZoneInfo, lo: int, hi: int) -> int:
    """First second in (lo, hi] whose DST state differs from lo's."""
    state = _dst(zone, lo) != 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (_dst(zone, mid) != 0) == state:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=64)
def transitions(zone_name: str, year: int) -> tuple[int, int]:
    """(DST start, DST end) of ``year`` as UTC epoch seconds; both Jan 1 when the zone keeps no DST."""
    zone = ZoneInfo(zone_name)
    start = int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp())
    end = int(dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC).timestamp())
    changes = []
    day = 86400
    t = start
    while t < end:
        nxt = min(t + day, end)
        if (_dst(zone, t) != 0) != (_dst(zone, nxt) != 0):
            changes.append(_bisect(zone, t, nxt))
        t = nxt
    on = [c for c in changes if _dst(zone, c) != 0]
    off = [c for c in changes if _dst(zone, c) == 0]
    if not on or not off:
        return start, start
    return on[0], off[0]  # southern-hemisphere zones end DST before they start it again


def local_time(zone_name: str, now: int) -> LocalTime:
    zone = ZoneInfo(zone_name)
    year = dt.datetime.fromtimestamp(now, zone).year
    start, end = transitions(zone_name, year)
    dst = _dst(zone, now)
    tz = _standard(zone, now)
    return LocalTime(tz_offset=tz, dst_offset=dst, dst_start=start, dst_end=end, local_time=now + tz + dst)
