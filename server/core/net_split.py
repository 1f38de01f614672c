"""Splitting a node's metered net load into its load and its behind-the-meter PV.

Utilities meter net load (load minus rooftop generation). A PV forecast fitted to that net series learns a
nonsense array: the net is mostly load, so the fit finds the orientation whose clear-sky curve looks least like
a sunny day (a vertical, east-facing array at a fraction of a kilowatt). The split uses what the server knows
instead:

* the PV nameplate below the node (each 2030.5 device's DERCapability ``rtgMaxW`` and each SunSpec nameplate,
  stored as ``ratedPower`` telemetry);
* the clear-sky shape at the node for a default array (tilted at the latitude, at most 35 degrees, facing the
  equator), which says when the sun is down and what the nameplate could give at most;
* the measured net: at night it *is* the load. Daytime load is interpolated between the night-time values on
  either side (the load shape carries no PV there), and PV is what that load minus the measured net leaves,
  between zero and the clear-sky ceiling.

``split`` is pure numpy and runs in the forecast's worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CEILING = 1.1  # PV is at most this much above the clear-sky output of the nameplate (cloud enhancement)


@dataclass(frozen=True)
class Split:
    load_w: np.ndarray  # estimated gross load, W (NaN where the net is unknown)
    pv_w: np.ndarray  # estimated behind-the-meter PV output, W (positive; NaN where the net is unknown)
    clear_w: np.ndarray  # clear-sky output of the nameplate, W
    tilt: float
    azimuth: float


def default_orientation(latitude: float) -> tuple[float, float]:
    return min(abs(latitude), 35.0), (180.0 if latitude >= 0 else 0.0)


def clear_sky_power(t: np.ndarray, latitude: float, longitude: float, nameplate_w: float) -> np.ndarray:
    """The nameplate's output under a clear sky at the interval's middle for the default orientation, W."""
    from forecasting.solar import clear_sky, plane_of_array, sun_position

    tilt, azimuth = default_orientation(latitude)
    step = (t[1] - t[0]) if len(t) > 1 else np.timedelta64(900, "s")
    mid = t + step / 2
    sun = sun_position(mid, latitude, longitude)
    ghi, dni, dhi = clear_sky(sun)
    poa = np.asarray(plane_of_array(sun, dni, dhi, ghi, tilt, azimuth), dtype=float)
    power = np.clip(nameplate_w * poa / 1000.0, 0.0, nameplate_w)
    power[np.asarray(sun.zenith) >= 90] = 0.0
    return power


def split(t: np.ndarray, net_w: np.ndarray, latitude: float, longitude: float, nameplate_w: float) -> Split:
    """Net load (W, import positive) -> (load, PV) as described in the module docstring."""
    if nameplate_w <= 0:
        raise ValueError("a PV split needs a positive nameplate")
    net = np.asarray(net_w, dtype=float)
    clear = clear_sky_power(np.asarray(t), latitude, longitude, nameplate_w)
    # only with the sun below the horizon is the net purely load (dawn and dusk PV is small but not zero)
    night = clear <= 0.0
    known_night = night & np.isfinite(net)
    idx = np.arange(len(net))
    if known_night.sum() >= 2:
        load = np.interp(idx, idx[known_night], net[known_night])
    else:  # no night seen: the best load guess is the net's upper range
        load = np.full(len(net), np.nanquantile(net, 0.9) if np.isfinite(net).any() else np.nan)
    pv = np.clip(load - net, 0.0, CEILING * clear)
    pv[night] = 0.0
    pv[~np.isfinite(net)] = np.nan
    gross = net + pv
    tilt, azimuth = default_orientation(latitude)
    return Split(load_w=gross, pv_w=pv, clear_w=clear, tilt=tilt, azimuth=azimuth)
