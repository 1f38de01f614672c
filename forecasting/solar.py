"""Sun position, clear-sky irradiance and plane-of-array transposition, computed in-package.

Accuracy targets are those of a forecaster, not of an ephemeris: the sun position follows the low-precision
formulae of the Astronomical Almanac (about 0.01 degree between 1950 and 2050), the clear-sky model is a
Meinel/Laue beam model with an altitude correction plus a fixed diffuse fraction, and the transposition to the
array plane is the isotropic-sky model.  Errors of a few percent in clear-sky irradiance are absorbed by the
learned array scale and by the clear-sky-index regressions in :mod:`forecasting.pv`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SOLAR_CONSTANT = 1361.0  # W/m2, mean top-of-atmosphere irradiance at 1 AU

__all__ = [
    "SunPosition",
    "sun_position",
    "clear_sky",
    "plane_of_array",
]


@dataclass(frozen=True)
class SunPosition:
    """Sun geometry for an array of instants (angles in degrees)."""

    zenith: np.ndarray
    azimuth: np.ndarray  # clockwise from north
    distance_au: np.ndarray


def _days_since_j2000(t: np.ndarray) -> np.ndarray:
    seconds = np.asarray(t, dtype="datetime64[s]").astype(np.int64).astype(float)
    # J2000.0 is 2000-01-01 12:00 TT; the 64 s TT-UT difference is below the formula's accuracy.
    return seconds / 86400.0 - 10957.5


def sun_position(t: np.ndarray, latitude: float, longitude: float) -> SunPosition:
    """Apparent topocentric-free sun position for UTC instants ``t`` at ``latitude``/``longitude`` (deg)."""
    n = _days_since_j2000(t)
    mean_lon = np.deg2rad(np.mod(280.460 + 0.9856474 * n, 360.0))
    anomaly = np.deg2rad(np.mod(357.528 + 0.9856003 * n, 360.0))
    ecl_lon = mean_lon + np.deg2rad(1.915) * np.sin(anomaly) + np.deg2rad(0.020) * np.sin(2 * anomaly)
    obliquity = np.deg2rad(23.439 - 4.0e-7 * n)
    right_asc = np.arctan2(np.cos(obliquity) * np.sin(ecl_lon), np.cos(ecl_lon))
    declination = np.arcsin(np.sin(obliquity) * np.sin(ecl_lon))
    gmst_hours = np.mod(18.697374558 + 24.06570982441908 * n, 24.0)
    hour_angle = np.deg2rad(gmst_hours * 15.0 + longitude) - right_asc
    lat = np.deg2rad(latitude)
    cos_zen = np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(hour_angle)
    zenith = np.rad2deg(np.arccos(np.clip(cos_zen, -1.0, 1.0)))
    # Azimuth measured clockwise from north: atan2 of the east and north components of the sun vector.
    east = -np.cos(declination) * np.sin(hour_angle)
    north = np.cos(lat) * np.sin(declination) - np.sin(lat) * np.cos(declination) * np.cos(hour_angle)
    azimuth = np.mod(np.rad2deg(np.arctan2(east, north)), 360.0)
    distance = 1.00014 - 0.01671 * np.cos(anomaly) - 0.00014 * np.cos(2 * anomaly)
    return SunPosition(zenith=zenith, azimuth=azimuth, distance_au=distance)


def _air_mass(zenith: np.ndarray) -> np.ndarray:
    """Kasten-Young relative air mass; finite up to the horizon."""
    z = np.minimum(zenith, 90.0)
    return 1.0 / (np.cos(np.deg2rad(z)) + 0.50572 * (96.07995 - z) ** -1.6364)


def clear_sky(sun: SunPosition, altitude_m: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clear-sky (GHI, DNI, DHI) in W/m2.

    The beam follows the Meinel form ``0.7 ** (AM ** 0.678)`` with Laue's altitude term; diffuse is taken as a
    tenth of the beam, which keeps GHI within a few percent of the usual clear-sky models at moderate zenith.
    """
    cos_z = np.cos(np.deg2rad(sun.zenith))
    up = cos_z > 0.0
    am = _air_mass(sun.zenith)
    h_km = max(altitude_m, 0.0) / 1000.0
    extra = SOLAR_CONSTANT / sun.distance_au**2
    dni = extra * ((1.0 - 0.14 * h_km) * 0.7 ** (am**0.678) + 0.14 * h_km)
    dni = np.where(up, dni, 0.0)
    dhi = 0.1 * dni
    ghi = np.where(up, dni * cos_z + dhi, 0.0)
    return ghi, dni, dhi


def plane_of_array(
    sun: SunPosition,
    dni: np.ndarray,
    dhi: np.ndarray,
    ghi: np.ndarray,
    tilt: float,
    azimuth: float,
    albedo: float = 0.2,
) -> np.ndarray:
    """Irradiance on a plane tilted ``tilt`` deg facing ``azimuth`` deg (isotropic sky)."""
    cos_aoi = cos_angle_of_incidence(sun, tilt, azimuth)
    tilt_r = np.deg2rad(tilt)
    beam = dni * np.maximum(cos_aoi, 0.0)
    sky = dhi * (1.0 + np.cos(tilt_r)) / 2.0
    ground = ghi * albedo * (1.0 - np.cos(tilt_r)) / 2.0
    return beam + sky + ground


def cos_angle_of_incidence(sun: SunPosition, tilt: float, azimuth: float) -> np.ndarray:
    """Cosine of the angle between the sun and the normal of a tilted plane."""
    zen = np.deg2rad(sun.zenith)
    tilt_r = np.deg2rad(tilt)
    return np.cos(zen) * np.cos(tilt_r) + np.sin(zen) * np.sin(tilt_r) * np.cos(
        np.deg2rad(sun.azimuth - azimuth)
    )
