"""Sun position and clear-sky sanity checks against well-known values."""

from __future__ import annotations

import numpy as np

from forecasting.solar import clear_sky, plane_of_array, sun_position


def test_solar_noon_at_summer_solstice_golden():
    # Golden, CO: solar noon on 2020-06-21 is about 19:07 UTC; zenith = latitude - 23.44 deg.
    t = np.datetime64("2020-06-21T18:30", "s") + np.arange(0, 90 * 60, 60).astype("timedelta64[s]")
    sun = sun_position(t, 39.74, -105.18)
    i = int(np.argmin(sun.zenith))
    assert abs(sun.zenith[i] - (39.74 - 23.44)) < 0.2
    noon = t[i]
    assert abs((noon - np.datetime64("2020-06-21T19:07", "s")).astype(int)) <= 4 * 60
    assert abs(sun.azimuth[i] - 180) < 3


def test_equinox_sunrise_east():
    # On the equinox the sun rises due east everywhere, about 06:00 local solar time.
    t = np.datetime64("2021-03-20T00:00", "s") + np.arange(0, 86400, 60).astype("timedelta64[s]")
    sun = sun_position(t, 0.0, 0.0)
    rise = np.flatnonzero((sun.zenith[:-1] > 90) & (sun.zenith[1:] <= 90))[0]
    assert abs(sun.azimuth[rise] - 90) < 1.0
    assert abs(rise - 6 * 60) < 10
    assert 0.98 < sun.distance_au.mean() < 1.0


def test_clear_sky_magnitudes():
    t = np.array(["2020-06-21T19:07", "2020-06-21T09:00", "2020-12-21T19:00"], dtype="datetime64[s]")
    sun = sun_position(t, 39.74, -105.18)
    ghi, dni, dhi = clear_sky(sun, altitude_m=1800)
    assert 950 < ghi[0] < 1150 and 850 < dni[0] < 1100
    assert ghi[1] == 0 and dni[1] == 0  # night
    assert 400 < ghi[2] < 700
    poa = plane_of_array(sun, dni, dhi, ghi, tilt=40, azimuth=180)
    assert poa[2] > ghi[2]  # a tilted south-facing array gains in winter
