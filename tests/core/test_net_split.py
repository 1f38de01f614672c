"""The split of metered net load into load and behind-the-meter PV, and the PV forecast built on it (the fit
used to learn a vertical east-facing array of a fraction of a kilowatt from the net)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from support import dso, dso_json

from server.core import net_split

LAT, LON = 39.74, -104.99
STEP = 900


def times(start: dt.datetime, days: int) -> np.ndarray:
    t0 = np.datetime64(int(start.timestamp()), "s")
    return t0 + np.arange(days * 96) * np.timedelta64(STEP, "s")


def test_split_recovers_pv_under_a_flat_night_load():
    t = times(dt.datetime(2026, 6, 1, tzinfo=dt.UTC), 3)
    clear = net_split.clear_sky_power(t, LAT, LON, 5000.0)
    assert clear.max() > 3000 and clear.min() == 0.0  # a 5 kW array in June at noon, nothing at night
    pv = 0.8 * clear
    net = 1500.0 - pv
    parts = net_split.split(t, net, LAT, LON, 5000.0)
    assert parts.tilt == 35.0 and parts.azimuth == 180.0
    np.testing.assert_allclose(parts.pv_w, pv, atol=1e-6)
    np.testing.assert_allclose(parts.load_w, 1500.0, atol=1e-6)


def test_split_bounds_and_unknowns():
    t = times(dt.datetime(2026, 6, 1, tzinfo=dt.UTC), 2)
    clear = net_split.clear_sky_power(t, LAT, LON, 4000.0)
    net = 1000.0 - 3.0 * clear  # more than the nameplate could give: PV held at the clear-sky ceiling
    net[10] = np.nan
    parts = net_split.split(t, net, LAT, LON, 4000.0)
    assert np.nanmax(parts.pv_w / np.where(clear > 0, clear, np.inf)) == pytest.approx(net_split.CEILING)
    assert np.isnan(parts.pv_w[10]) and np.isnan(parts.load_w[10])
    assert (parts.pv_w[(clear <= 0) & np.isfinite(net)] == 0).all()
    with pytest.raises(ValueError):
        net_split.split(t, net, LAT, LON, 0.0)


@pytest.fixture
def server(quiet_server):
    return quiet_server


def test_pv_forecast_of_a_node_uses_the_nameplate_and_the_split(server, tmp_path):
    cfg = ["-c", server.config]
    site = server.issue_device("pv-site")
    dso("grid", "create", "feeder-pv", "--kind", "feeder", "--timezone", "America/Denver",
        "--lat", str(LAT), "--lon", str(LON), *cfg)  # fmt: skip
    dso("grid", "add", "feeder-pv", "--lfdi", site["lfdi"], *cfg)
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    t = times(now - dt.timedelta(days=14), 14)
    clear = net_split.clear_sky_power(t, LAT, LON, 6000.0)
    net = 800.0 - 0.9 * clear
    lines = ["time,value"] + [
        f"{dt.datetime.fromtimestamp(int(ts.astype('datetime64[s]').astype(int)), dt.UTC).isoformat()},{v:.1f}"
        for ts, v in zip(t, net, strict=True)
    ]
    (tmp_path / "net.csv").write_text("\n".join(lines) + "\n")
    dso("telemetry", "import", str(tmp_path / "net.csv"), "--lfdi", site["lfdi"], *cfg)

    refused = dso("forecast", "--node", "feeder-pv", "--target", "pv", *cfg, check=False)
    assert refused.returncode == 1 and "no PV nameplate" in refused.stderr

    (tmp_path / "rated.csv").write_text(f"time,value\n{(now - dt.timedelta(days=1)).isoformat()},6000\n")
    dso("telemetry", "import", str(tmp_path / "rated.csv"), "--lfdi", site["lfdi"], "--measurement",
        "ratedPower", *cfg)  # fmt: skip
    run = dso_json("forecast", "--node", "feeder-pv", "--target", "pv", "--horizon", "24h", "--json", *cfg)
    assert run["model"] == "PVForecaster"
    assert any("6.0 kW PV nameplate" in n and "tilt=35" in n for n in run["notes"])
    assert not any("tilt=90" in n for n in run["notes"])
    future = np.array([np.datetime64(p["ts"][:19], "s") for p in run["points"]])
    expected = 0.9 * net_split.clear_sky_power(future, LAT, LON, 6000.0)
    means = np.array([p["mean"] for p in run["points"]])
    # the history was 90 % of clear sky every day: the forecast peak is within 15 % of that
    assert means.max() == pytest.approx(expected.max(), rel=0.15)
    assert all(p["q10"] <= p["mean"] <= p["q90"] for p in run["points"])

    gross = dso_json(
        "forecast", "--node", "feeder-pv", "--target", "gross", "--horizon", "24h", "--json", *cfg
    )
    assert all(abs(p["mean"] - 800.0) < 80.0 for p in gross["points"])  # the load under the PV was 800 W
