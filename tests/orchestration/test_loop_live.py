"""The loop on a running server: a small grid whose forecast overloads its transformer, two rooftop PV
inverters and a battery enrolled over IEEE 2030.5 and an OpenADR VEN, all mapped to the grid by staff; the
devices mirror their sites' meters (MirrorUsagePoint readings over mutual TLS: weeks of history, backfilled); the
scheduler (not staff) forecasts from that metered history and plans; the devices fetch their envelopes and
setpoints as DERControls and the VEN polls its LOAD_DISPATCH event; the stored plan shows the overload removed by
AC power flow, and ``dso plan show`` / ``dso event show`` say why a device got its limit.

Then the simulated fleet responds: each device's meter reads what its site does under the DERControls the device
holds (a PV site's export capped at opModExpLimW, the battery's site import less its opModTargetW), and the VEN
reports (oadrUpdateReport, TELEMETRY_USAGE: weeks of history, then the event) its load less what its LOAD_DISPATCH
event asks it to shed. ``dso mv`` reports, per resource, the delivered kW against the 10-of-10 baseline with its
same-day adjustment; the test computes the same figures from the readings it posted and checks the report against
them, and that what each resource delivered is what it held back.

Most event windows are hours ahead of the wall clock (the overloads are at midday and in the evening), and a test
cannot wait for them: the fleet posts the readings of the windows ahead of time (the server takes readings up to
a day ahead), metering what it will do under the controls it holds."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from lxml import etree
from support import LiveServer, dso, dso_json, loop_grid
from support.openadr import FAST_ENV, RawVen, SchemaWatch
from support.sep2 import Sep2Client

from server.openadr import codec
from server.sep2 import xml
from server.sim.device import reading_type

pytest.importorskip("pandapower")
MODEL = "loopfeeder"
STEP = loop_grid.STEP_S
# metered history the devices backfill: 10 similar days before the event day even when that is a weekend day
# (10 weekend days are five weeks back), with room for a day excluded by an event
BACKFILL_DAYS = 38
WEEK = 7 * 86400 // STEP  # readings per MirrorReadingSet posted
TOLERANCE_KW = (
    0.002  # the report's kW are rounded to 0.1 W; the expectation is computed from the same integers
)


@pytest.fixture
def server(tmp_path):
    env = {
        **FAST_ENV,
        # the loop every 4 s instead of 15 min; no day-ahead job in the test
        "DSO_ORCHESTRATION__REPLAN_INTERVAL_S": "4",
        "DSO_ORCHESTRATION__DAY_AHEAD_AT": "",
    }
    s = LiveServer(tmp_path / "dso", extra_env=env).init().start()
    try:
        yield s
    finally:
        s.stop()


def device(server: LiveServer, name: str, dercap: str, ders: str | None = None) -> Sep2Client:
    client = Sep2Client(server, server.issue_device(name))
    status, made = server.admin("PUT", f"/api/v1/sep2/end-devices/{client.lfdi}", {"pin": 111115})
    assert status in (200, 201), made
    client.edev = made["href"]  # type: ignore[attr-defined]
    # what the device says of itself, over its own TLS connection
    assert client.put(made["href"] + "/der/1/dercap", dercap).status == 204
    if ders:
        assert client.put(made["href"] + "/der/1/ders", ders).status == 204
    return client


def controls(client: Sep2Client) -> list[dict]:
    """Every DERControl the device can see, through FunctionSetAssignments -> DERPrograms -> DERControls."""
    out = []
    fsa = client.get(client.edev + "/fsa?l=10").all("FunctionSetAssignments")  # type: ignore[attr-defined]
    for f in fsa:
        for derp in client.get(f.get("href") + "/derp?l=10").all("DERProgram"):
            for c in client.get(derp.get("href") + "/derc?l=200").all("DERControl"):
                base = c.find(xml.q("DERControlBase"))
                fields = {etree.QName(x).localname: xml.text(x, "value") for x in base}
                out.append({"href": c.get("href"), "primacy": xml.text(derp, "primacy"), **fields})
    return out


def wait(predicate, within: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


# ------------------------------------------------------------------------------------------ the fleet's meters
@dataclass
class Meter:
    """A device's site meter, mirrored to the server as one MirrorUsagePoint over the device's own TLS
    connection; ``posted`` is every reading it sent (interval start -> W), what M&V must work from."""

    client: Sep2Client
    site: str
    mup: str = ""
    posted: dict[int, int] = field(default_factory=dict)

    @property
    def mmr(self) -> str:
        return self.client.lfdi[:30] + "01"

    def mirror(self) -> None:
        lfdi = self.client.lfdi
        body = xml.E(
            "MirrorUsagePoint",
            None,
            xml.leaf("mRID", lfdi[:30] + "5E"),
            xml.leaf("description", f"{self.site} site"),
            xml.leaf("roleFlags", 49),
            xml.leaf("serviceCategoryKind", 0),
            xml.leaf("status", 1),
            xml.leaf("deviceLFDI", lfdi),
            xml.E(
                "MirrorMeterReading",
                None,
                xml.leaf("mRID", self.mmr),
                xml.leaf("description", "site real power"),
                reading_type(),
            ),
        )
        r = self.client.post("/mup", xml.serialize(body))
        assert r.status == 201 and r.location, r.body
        self.mup = r.location

    def post(self, start: int, values: list[int]) -> None:
        """Consecutive 15-minute readings from ``start``, a week per MirrorReadingSet."""
        for i in range(0, len(values), WEEK):
            chunk, t0 = values[i : i + WEEK], start + i * STEP
            body = xml.E(
                "MirrorMeterReading",
                None,
                xml.leaf("mRID", self.mmr),
                xml.E(
                    "MirrorReadingSet",
                    None,
                    xml.leaf("mRID", f"{t0:010X}{self.client.lfdi[:20]}02"),
                    xml.leaf("description", "site"),
                    xml.E("timePeriod", None, xml.leaf("duration", len(chunk) * STEP), xml.leaf("start", t0)),
                    [xml.E("Reading", None, xml.leaf("value", v)) for v in chunk],
                ),
            )
            r = self.client.post(self.mup, xml.serialize(body))
            assert r.status == 201, r.body
            for k, v in enumerate(chunk):  # the server keeps the first value of an interval (stored once)
                self.posted.setdefault(t0 + k * STEP, v)


@dataclass
class Held:
    """A DERControl as the device holds it."""

    event: int
    start: int
    end: int
    status: int
    base: dict[str, float]  # DERControlBase power fields, W

    def active(self, ts: int) -> bool:
        return self.start <= ts < self.end


def held_controls(client: Sep2Client) -> list[Held]:
    """The DERControls the device must follow (scheduled or active, not cancelled or superseded)."""
    out = []
    fsa = client.get(client.edev + "/fsa?l=10").all("FunctionSetAssignments")  # type: ignore[attr-defined]
    for f in fsa:
        for derp in client.get(f.get("href") + "/derp?l=10").all("DERProgram"):
            for c in client.get(derp.get("href") + "/derc?l=200").all("DERControl"):
                base = {}
                for x in c.find(xml.q("DERControlBase")):
                    value = xml.integer(x, "value")
                    if value is not None:
                        base[etree.QName(x).localname] = value * 10.0 ** (xml.integer(x, "multiplier") or 0)
                start = int(xml.text(c, "interval/start") or 0)
                status = int(xml.text(c, "EventStatus/currentStatus") or -1)
                end = start + int(xml.text(c, "interval/duration") or 0)
                held = Held(int(c.get("href").rsplit("/", 1)[1]), start, end, status, base)
                if status in (0, 1):  # scheduled, active
                    out.append(held)
    return out


def respond(site: str, ts: np.ndarray, held: list[Held]) -> list[int]:
    """The 15-minute readings of a site under the controls, each the mean of its minutes: export held to the
    smallest active opModExpLimW, the battery's opModTargetW (discharge positive) taken off the site's import.
    A control that starts within an interval (an intraday plan's first block starts at its dispatch) counts for
    the minutes it was active."""
    out = []
    for t, free in zip(ts, loop_grid.metered_w(site, ts), strict=True):
        minutes = []
        for m in range(int(t) + 30, int(t) + STEP, 60):
            v = float(free)
            active = [h for h in held if h.active(m)]
            limits = [h.base["opModExpLimW"] for h in active if "opModExpLimW" in h.base]
            if limits:
                v = max(v, -min(limits))
            targets = [h.base["opModTargetW"] for h in active if "opModTargetW" in h.base]
            if targets:
                v -= targets[0]
            minutes.append(v)
        out.append(round(sum(minutes) / len(minutes)))
    return out


def expected_mv(
    posted: dict[int, int], start: dt.datetime, end: dt.datetime, event_days: set[dt.date], generation: bool
) -> tuple[list[dt.date], float, list[int], list[tuple[int, float, float, float]]]:
    """docs/mv.md's 10-of-10 baseline with the multiplicative same-day adjustment (3 h ending 1 h before the
    event, factor capped to 0.8..1.2), from the readings posted (all in UTC, the grid's time zone):
    (days used, factor, the adjustment window's interval starts,
    [(interval start, baseline W, measured W, delivered W)])."""

    def slots(a: float, b: float) -> list[int]:
        return list(range(int(a) // STEP * STEP, int(np.ceil(b / STEP)) * STEP, STEP))

    s0, s1 = start.timestamp(), end.timestamp()
    window = slots(s0, s1)
    adjust = slots(s0 - 4 * 3600, s0 - 3600)
    day = start.date()
    days = []
    for back in range(1, 46):
        d = day - dt.timedelta(days=back)
        shift = back * 86400
        if (d.weekday() >= 5) == (day.weekday() >= 5) and d not in event_days | {day}:
            if all(t - shift in posted for t in adjust + window):
                days.append(d)
                if len(days) == 10:
                    break
    shifts = [(day - d).days * 86400 for d in days]

    def baseline(t: int) -> float:
        return sum(posted[t - s] for s in shifts) / len(shifts)

    factor = sum(posted[t] for t in adjust) / sum(baseline(t) for t in adjust)
    factor = min(max(factor, 0.8), 1.2)
    sign = -1.0 if generation else 1.0
    out = []
    for t in window:
        b, m = baseline(t) * factor, float(posted[t])
        out.append((t, b, m, sign * (b - m)))
    return days, factor, adjust, out


# ------------------------------------------------------------------------------------------------- the VEN's meter
VEN_RESOURCE = "business-load"
VEN_SHARE = 0.6  # the flexible load behind the VEN: this share of the business's metered load


def ven_free_w(ts: np.ndarray) -> np.ndarray:
    return loop_grid.metered_w("business", ts) * VEN_SHARE


def ven_register_report(ven: RawVen) -> str:
    """The VEN offers its load's real power (TELEMETRY_USAGE); the VTN requests it: the reportRequestID."""
    from openleadr import enums, objects

    report = objects.Report(
        report_specifier_id="usage",
        report_name="METADATA_TELEMETRY_USAGE",
        created_date_time=dt.datetime.now(dt.UTC),
        duration=dt.timedelta(seconds=STEP),
        report_descriptions=[
            objects.ReportDescription(
                r_id="load",
                reading_type="Direct Read",
                report_type="usage",
                market_context="http://opendso.local/market/default",
                report_subject=objects.Target(resource_id=VEN_RESOURCE),
                report_data_source=objects.Target(resource_id=VEN_RESOURCE),
                sampling_rate=objects.SamplingRate(
                    min_period=dt.timedelta(seconds=60), max_period=dt.timedelta(seconds=STEP)
                ),
                measurement=enums.MEASUREMENTS.REAL_POWER,
            )
        ],
    )
    body = ven.msg(
        "oadrRegisterReport", request_id="reg-usage", ven_id=ven.ven_id, reports=[report], report_request_id=0
    )
    _, answer = ven.send("EiReport", body)
    root = etree.fromstring(answer)
    request_id = codec.text(root, ".//ei:reportRequestID")
    assert request_id and codec.text(root, ".//ei:reportSpecifierID") == "usage", answer
    return request_id


def ven_update_report(
    ven: RawVen, request_id: str, start: int, values: list[int], posted: dict[int, int]
) -> None:
    """15-minute values of the VEN's load (W) from ``start`` in oadrUpdateReports of 250 intervals each."""
    from openleadr import objects

    for i in range(0, len(values), 250):
        t0 = start + i * STEP
        chunk = values[i : i + 250]
        intervals = [
            objects.ReportInterval(
                dtstart=dt.datetime.fromtimestamp(t0 + k * STEP, dt.UTC),
                duration=dt.timedelta(seconds=STEP),
                report_payload=objects.ReportPayload(r_id="load", value=float(v)),
            )
            for k, v in enumerate(chunk)
        ]
        report = objects.Report(
            report_specifier_id="usage",
            report_name="TELEMETRY_USAGE",
            report_request_id=request_id,
            dtstart=intervals[0].dtstart,
            duration=dt.timedelta(seconds=STEP * len(chunk)),
            intervals=intervals,
        )
        body = ven.msg("oadrUpdateReport", request_id=f"upd-{t0}", ven_id=ven.ven_id, reports=[report])
        status, answer = ven.send("EiReport", body)
        assert status == 200 and b"oadrUpdatedReport" in answer and b"<ei:responseCode>200<" in answer, answer
        for k, v in enumerate(chunk):  # the server keeps the first value of an interval (stored once)
            posted.setdefault(t0 + k * STEP, v)


def ven_signal(answer: bytes, event_id: int) -> list[tuple[int, int, float]]:
    """The LOAD_DISPATCH intervals of one event of an oadrDistributeEvent: (start, end, value W)."""
    root = etree.fromstring(answer)
    for ev in root.iterfind(".//ei:eiEvent", codec.NS):
        if codec.text(ev, "ei:eventDescriptor/ei:eventID") != str(event_id):
            continue
        start = codec.parse_dt(
            codec.text(ev, "ei:eiActivePeriod/xcal:properties/xcal:dtstart/xcal:date-time")
        )
        assert start is not None
        cursor = int(start.timestamp())
        out = []
        for iv in ev.iterfind("ei:eiEventSignals/ei:eiEventSignal/strm:intervals/ei:interval", codec.NS):
            length = int(codec.parse_duration(codec.text(iv, "xcal:duration/xcal:duration")) or 0)
            value = float(codec.text(iv, "ei:signalPayload/ei:payloadFloat/ei:value") or 0)
            out.append((cursor, cursor + length, value))
            cursor += length
        return out
    raise AssertionError(f"event {event_id} is not in {answer[:300]!r}")


def ven_respond(ts: np.ndarray, signal: list[tuple[int, int, float]]) -> list[int]:
    """The VEN's 15-minute readings: its load changed by the LOAD_DISPATCH delta in force (negative: shed), the
    mean of each interval's minutes, never below zero."""
    out = []
    for t, free in zip(ts, ven_free_w(ts), strict=True):
        minutes = []
        for m in range(int(t) + 30, int(t) + STEP, 60):
            delta = sum(v for a, b, v in signal if a <= m < b)
            minutes.append(max(float(free) + delta, 0.0))
        out.append(round(sum(minutes) / len(minutes)))
    return out


def event_days(server: LiveServer, program: str) -> set[dt.date]:
    """UTC days on which an event (not cancelled) of the program ran."""
    _, found = server.admin("GET", f"/api/v1/events?program={program}&all=1&limit=1000")
    days = set()
    for e in found:
        if e["cancelled_at"] is None:
            a = dt.datetime.fromisoformat(e["start"])
            b = dt.datetime.fromisoformat(e["end"]) - dt.timedelta(seconds=1)
            while a.date() <= b.date():
                days.add(a.date())
                a += dt.timedelta(days=1)
    return days


def test_the_scheduler_plans_and_every_protocol_receives_the_plan(server, tmp_path):
    cfg = ["-c", server.config]
    feeder = tmp_path / "loopfeeder.json"
    feeder.write_text(loop_grid.grid_json())
    out = dso_json("grid", "import", str(feeder), "--json", *cfg)
    assert out["version"] == 1 and f"{MODEL}/T1" in out["zones"].values()
    # the imported transformer is a grid node like any other, with its rating as its limits
    node = dso_json("grid", "list", "--json", *cfg)
    t1 = next(n for n in node if n["name"] == f"{MODEL}/T1")
    assert t1["kind"] == "transformer" and t1["export_limit_kw"] == loop_grid.TRAFO_KVA

    # bad input is refused with the reason, nothing stored
    status, err = server.admin("POST", "/api/v1/grid/models", {"name": "broken", "pandapower": "{not json"})
    assert status == 400 and "pandapower" in err["error"], err
    status, err = server.admin(
        "POST", f"/api/v1/grid/models/{MODEL}/mappings", {"bus": 999, "kind": "ven", "id": "x"}
    )
    assert status == 400 and "999" in err["error"], err
    _, models = server.admin("GET", "/api/v1/grid/models")
    assert [m["name"] for m in models] == [MODEL]

    pv0 = device(server, "pv-0", loop_grid.dercap_xml(4, loop_grid.PV_W))
    pv1 = device(server, "pv-1", loop_grid.dercap_xml(4, loop_grid.PV_W))
    bat = device(
        server,
        "battery",
        loop_grid.dercap_xml(80, loop_grid.BATTERY_W, loop_grid.BATTERY_WH),
        loop_grid.ders_xml(50),
    )
    watch = SchemaWatch()
    ven = RawVen(server, "business", watch)
    ven.register()
    # each device mirrors its site's meter and backfills weeks of it: the forecasts' and the baselines' history
    backfilled = int(time.time()) // STEP * STEP
    past = np.arange(backfilled - BACKFILL_DAYS * 86400, backfilled, STEP)
    meters: dict[str, Meter] = {}
    for client, site in ((pv0, "house 0"), (pv1, "house 1"), (bat, "business")):
        meter = meters[client.lfdi] = Meter(client, site)
        meter.mirror()
        meter.post(int(past[0]), [round(float(v)) for v in loop_grid.metered_w(site, past)])
        dso("grid", "map", MODEL, "--bus", str(loop_grid.BUS[site]), "--lfdi", client.lfdi, *cfg)
    dso("grid", "map", MODEL, "--bus", str(loop_grid.BUS["business"]), "--ven", ven.ven["ven_id"], *cfg)
    ready = dt.datetime.now(dt.UTC)

    def planned() -> dict | None:
        _, found = server.admin("GET", f"/api/v1/plans/runs?model={MODEL}")
        for p in found:
            if p["status"] == "active" and dt.datetime.fromisoformat(p["created_at"]) > ready:
                return p
        return None

    plan = wait(planned, 240, "the scheduler's first plan after the fleet was mapped")
    assert plan["trigger"] == "intraday"  # made by the scheduler, not by staff
    _, full = server.admin("GET", f"/api/v1/plans/runs/{plan['id']}")
    t = full["check"]["transformers"][f"{MODEL}/T1"]
    assert t["before_max_pct"] > 105 and t["after_max_pct"] <= 100.5, t
    assert full["check"]["summary"]["violation_intervals_before"] > 0
    assert full["check"]["summary"]["violation_intervals_after"] == 0
    assert full["inputs"]["grid_model"]["version"] == 1
    assert f"{MODEL}/T1" in full["inputs"]["forecasts"]
    counted = {(r["id"], r["kind"]) for r in full["inputs"]["flexibility"] if r["counted"]}
    assert {(pv0.lfdi, "pv"), (pv1.lfdi, "pv"), (bat.lfdi, "battery"), (ven.ven["ven_id"], "dr")} <= counted

    # the devices fetch what the plan gives them, over their own TLS connections
    limits = [c for c in controls(pv0) if "opModExpLimW" in c]
    assert limits and all(c["primacy"] == "50" for c in limits), limits
    assert any(c["opModExpLimW"] for c in limits)
    setpoints = [c for c in controls(bat) if "opModTargetW" in c]
    assert any(int(c["opModTargetW"]) < 0 for c in setpoints) and any(
        int(c["opModTargetW"]) > 0 for c in setpoints
    )

    # the VEN polls its LOAD_DISPATCH event
    def distributed():  # noqa: ANN202
        kind, answer = ven.poll()
        return answer if kind == "oadrDistributeEvent" else None

    ven_key = f"ven:{ven.ven['ven_id']}"
    assert full["outputs"]["resources"][ven_key]["blocks"], full["outputs"]["resources"][ven_key]
    ven_events = [pe["event"] for pe in full["events"] if pe["resource"] == ven_key]
    assert ven_events, full["outputs"]["dispatched"]
    _, shown_ven_event = server.admin("GET", f"/api/v1/events/{ven_events[0]}")
    answer = wait(distributed, 30, f"oadrDistributeEvent of {shown_ven_event}")
    root = etree.fromstring(answer)
    assert codec.text(root, ".//ei:signalName") == "LOAD_DISPATCH"
    watch.assert_clean()

    # why did this inverter get its limit: from the event, and from the plan at that interval
    first = next(b for b in full["outputs"]["resources"][f"device:{pv0.lfdi}"]["blocks"])
    events = [pe for pe in full["events"] if pe["resource"] == f"device:{pv0.lfdi}"]
    shown = dso("event", "show", str(events[0]["event"]), *cfg).stdout
    assert f"plan {plan['id']} of {MODEL}" in shown and f"{MODEL}/T1" in shown, shown
    at = first["start"]
    why = dso("plan", "show", str(plan["id"]), "--lfdi", pv0.lfdi, "--at", at, *cfg).stdout
    assert f"opModExpLimW {first['value_w']:g} W" in why and "unmanaged" in why, why

    # the next turns re-plan on fresh forecasts without piling up events. A re-plan within the 15-minute interval
    # of the plan before it plans from the same inputs (forecasts issued from the interval's start on the same
    # readings, the horizon from the same next boundary), so it creates nothing, modifies nothing and keeps every
    # event: one per block of a device, one per VEN (a VEN's event whose first block is under way began at the
    # dispatch before and says from now what it said). A re-plan across a boundary plans a horizon shifted by one
    # interval on forecasts with one more interval of history: any block may change, each then a new event, and
    # nothing bounds how many but the plan's own blocks. So the test takes the first re-plan that stayed in the
    # interval of its predecessor (a turn takes seconds, so at most one re-plan in a row straddles a boundary).
    def replanned() -> dict | None:
        _, found = server.admin("GET", f"/api/v1/plans/runs?model={MODEL}")
        made = sorted((p for p in found if p["status"] in ("active", "superseded")), key=lambda p: p["id"])
        for before, after in zip(made, made[1:], strict=False):
            if after["id"] > plan["id"] and after["start"] == before["start"]:
                return after
        return None

    second = wait(replanned, 240, "a re-plan within the interval of the plan before it")
    _, again = server.admin("GET", f"/api/v1/plans/runs/{second['id']}")
    dispatched = again["outputs"]["dispatched"]
    planned_for = again["outputs"]["resources"].values()
    device_blocks = sum(len(r["blocks"]) for r in planned_for if r["party"] == "device")
    dispatched_vens = [r for r in planned_for if r["party"] == "ven" and r["blocks"]]
    assert device_blocks > 0 and dispatched["skipped"] == [], dispatched
    assert dispatched["created"] == 0 and dispatched["modified"] == 0, dispatched
    assert dispatched["kept"] == device_blocks + len(dispatched_vens), dispatched
    # only a proposed plan can be approved; an unknown one is not found
    assert server.admin("POST", f"/api/v1/plans/runs/{second['id']}/approve", {})[0] == 409
    assert server.admin("POST", "/api/v1/plans/runs/999999/approve", {})[0] == 404

    # the simulated fleet responds: from where the backfill ended, each meter reads what its site does under the
    # DERControls its device holds, up to the end of the controls measured below
    held = {lfdi: held_controls(m.client) for lfdi, m in meters.items()}

    def curtails(lfdi: str, h: Held) -> bool:
        ts = np.arange(h.start // STEP * STEP, h.end, STEP)
        free = loop_grid.metered_w(meters[lfdi].site, ts)
        return "opModExpLimW" in h.base and bool((free < -h.base["opModExpLimW"] - 100).any())

    def first(found: list[Held], what: str) -> Held:
        assert found, f"no {what} among the controls held: {held}"
        return min(found, key=lambda h: h.start)

    # each inverter's first export limit that holds its site below what it would export; the battery's first
    # discharge
    measured = {
        c.lfdi: first([h for h in held[c.lfdi] if curtails(c.lfdi, h)], f"curtailing limit of {c.lfdi}")
        for c in (pv0, pv1)
    }
    measured[bat.lfdi] = first([h for h in held[bat.lfdi] if h.base.get("opModTargetW", 0) > 0], "discharge")
    until = max(h.end for h in measured.values())
    future = np.arange(backfilled, until, STEP)
    for lfdi, m in meters.items():
        m.post(backfilled, respond(m.site, future, held[lfdi]))

    # the VEN reports its load's real power: weeks of history, then what it sheds under its LOAD_DISPATCH event as
    # last distributed to it (a re-plan modifies the event; the VEN polls until it has the newest form)
    request_id = ven_register_report(ven)
    ven_posted: dict[int, int] = {}
    ven_update_report(ven, request_id, int(past[0]), [round(float(v)) for v in ven_free_w(past)], ven_posted)
    ven_event = ven_events[0]
    for _ in range(20):
        kind, polled = ven.poll()
        if kind == "oadrDistributeEvent" and f"<ei:eventID>{ven_event}</ei:eventID>".encode() in polled:
            answer = polled
        elif kind == "oadrResponse":
            break
    signal = ven_signal(answer, ven_event)
    assert any(v < 0 for _, _, v in signal) and not any(v > 0 for _, _, v in signal), signal
    ven_until = signal[-1][1]
    ven_update_report(
        ven, request_id, backfilled, ven_respond(np.arange(backfilled, ven_until, STEP), signal), ven_posted
    )
    watch.assert_clean()

    # M&V: what each event delivered against the baseline, per resource, as `dso mv` reports it
    cases = [
        (
            h.event,
            f"device:{lfdi}",
            meters[lfdi].posted,
            lambda ts, site=meters[lfdi].site: loop_grid.metered_w(site, ts),
            "opModExpLimW" in h.base,
        )
        for lfdi, h in measured.items()
    ]
    cases.append((ven_event, f"ven:{ven.ven['ven_id']}/{VEN_RESOURCE}", ven_posted, ven_free_w, False))
    for event, label, posted, free_w, generation in cases:
        report = dso_json("mv", str(event), "--json", *cfg)
        _, shown_event = server.admin("GET", f"/api/v1/events/{event}")
        assert report["direction"] == ("generation" if generation else "load"), report
        assert report["method"] == "10-of-10 multiplicative adjustment cap 0.2"
        # the event reached its own resource only (a program of the plan's own per device; the VEN by name)
        (r,) = report["resources"]
        assert r["resource"] == label and not r["flags"], r
        # the window the report measured: the scheduler keeps re-planning, and a re-plan may move the event
        # between the report and a later read of the event
        days, factor, adjust, want = expected_mv(
            posted,
            dt.datetime.fromisoformat(report["start"]),
            dt.datetime.fromisoformat(report["end"]),
            event_days(server, shown_event["program"]),
            generation,
        )
        assert r["days_used"] == [d.isoformat() for d in days] and len(days) == 10, (r["days_used"], days)
        assert r["adjustment_factor"] == pytest.approx(factor, abs=1e-6)
        got = [
            (
                int(dt.datetime.fromisoformat(i["start"]).timestamp()) // STEP * STEP,
                i["baseline_kw"],
                i["measured_kw"],
                i["delivered_kw"],
            )
            for i in r["intervals"]
        ]
        assert [g[0] for g in got] == [w[0] for w in want]
        for g, w in zip(got, want, strict=True):
            assert g[1:] == pytest.approx([x / 1000 for x in w[1:]], abs=TOLERANCE_KW), (g, w)
        delivered = [g[3] for g in got]
        assert sum(delivered) > 0, got
        assert max(delivered) > 0.1, delivered
        # every day is the profile scaled (and +-40 W of meter noise), so the adjusted baseline is what the site
        # would have metered uncontrolled, and what the resource delivered is what it held back (the export it
        # withheld, the import it covered or shed) when nothing had moved the site in the adjustment window:
        # always so for an inverter (its first curtailment is measured), not for a battery that had charged before
        free = {t: round(float(v)) for t, v in zip(adjust, free_w(np.array(adjust)), strict=True)}
        undisturbed = all(posted[t] == free[t] for t in adjust)
        assert undisturbed or not generation
        if undisturbed:
            sign = 1.0 if generation else -1.0
            ts = np.array([g[0] for g in got])
            withheld = [sign * (posted[t] - u) / 1000 for t, u in zip(ts, free_w(ts), strict=True)]
            assert delivered == pytest.approx(withheld, abs=0.1), (delivered, withheld)
        print(
            f"event {event} {label[:24]} {shown_event['start']}..{shown_event['end']}: factor {factor:.4f}, "
            f"days {days[-1]}..{days[0]}, undisturbed {undisturbed}, delivered kW {delivered}"
        )
        # the program total of a single-resource event is that resource
        assert [i["delivered_kw"] for i in report["program_total"]] == delivered
    assert server.proc is not None and server.proc.poll() is None
