"""One simulated OpenADR 2.0b VEN: an aggregator of several EV chargers at one depot, speaking to the server's VTN
over mutual TLS with its own certificate (pull model, simpleHttp):

* registers (oadrCreatePartyRegistration -> venID, registrationID) and offers its meter data as a
  TELEMETRY_USAGE report with one rID per charger (oadrRegisterReport; the VTN answers with its report request,
  which the VEN accepts with oadrCreatedReport);
* reports what each charger drew (oadrUpdateReport, 15-minute intervals): the VTN lands the values in telemetry,
  per resource, where forecasts and M&V read them;
* polls (oadrPoll) until the VTN has nothing more, answering every oadrDistributeEvent with oadrCreatedEvent
  (optIn to each event that asks for a response);
* follows its events physically (``play``): a LOAD_DISPATCH ``delta`` asks, per interval, for the depot's import
  raised (positive W) or lowered (negative W) against what the cars would do unmanaged (charging on arrival
  what they need by their deadline, which they still do outside the events); a raise charges the cars plugged
  in beyond that need, into their batteries' spare room, each within its charger's power; a cut is made up as
  early as it can outside the events, so that each car has what it needs by its deadline. It offers
  (``raise_kw``) only the raise it can hold over the offered window.

Messages are built and read with openleadr's message builder (its templates follow the 2.0b schema); the server
validates every one against the schema.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from server.sim.device import SimError
from server.sim.profiles import STEP, Ev, interval_mid

PREFIX = "/OpenADR2/Simple/2.0b"
REPORT_SPECIFIER = "depot-chargers"


@dataclass
class VenEvent:
    event_id: str
    modification: int
    signal: str
    intervals: list[tuple[int, int, float]]  # (start epoch s, duration s, value)
    status: str


@dataclass
class EvDay:
    start: int
    per_ev_w: dict[str, np.ndarray]
    unmanaged_w: np.ndarray
    asked_w: np.ndarray  # the delta the events asked for per interval
    full: int  # sessions with their deadline in the window whose car was full by it
    due: int  # sessions with their deadline in the window
    needed_wh: float  # what those cars needed
    short_wh: float  # what they lacked at their deadline

    @property
    def net_w(self) -> np.ndarray:
        return np.sum(list(self.per_ev_w.values()), axis=0)


@dataclass
class SimVen:
    name: str
    cert: dict  # from DevPki.issue_ven: cert, key, fingerprint
    base_url: str
    ca: str
    evs: list[Ev]
    bus: int
    ven_id: str = ""
    registration_id: str = ""
    events: dict[str, VenEvent] = field(default_factory=dict)
    report_request_id: str = ""
    reported: int = 0  # values sent in oadrUpdateReport
    requests: int = 0
    _session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert["cert"], self.cert["key"])
        self._session = aiohttp.ClientSession(
            self.base_url, connector=aiohttp.TCPConnector(ssl=ctx, limit=1), timeout=aiohttp.ClientTimeout(30)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, service: str, kind: str, **payload: Any) -> tuple[str, dict[str, Any]]:
        from openleadr.messaging import create_message, parse_message  # type: ignore[import-untyped]

        assert self._session is not None, "open() first"
        body = create_message(kind, **payload).encode()
        self.requests += 1
        async with self._session.post(
            f"{PREFIX}/{service}", data=body, headers={"Content-Type": "application/xml"}
        ) as r:
            raw = await r.read()
            if r.status != 200:
                raise SimError(f"OpenADR {service} {kind}: HTTP {r.status} {raw[:200]!r}")
        answer_kind, answer = parse_message(raw)
        return answer_kind, answer

    async def register(self) -> None:
        kind, answer = await self._send(
            "EiRegisterParty",
            "oadrCreatePartyRegistration",
            request_id="reg-1",
            ven_name=self.name,
            ven_id=None,
            http_pull_model=True,
            xml_signature=False,
            report_only=False,
            profile_name="2.0b",
            transport_name="simpleHttp",
            transport_address=None,
            registration_id=None,
        )
        if kind != "oadrCreatedPartyRegistration" or not answer.get("ven_id"):
            raise SimError(f"registration answered {kind}: {answer.get('response')}")
        self.ven_id, self.registration_id = answer["ven_id"], answer.get("registration_id") or ""

    async def register_reports(self) -> None:
        """Offer a TELEMETRY_USAGE report: each charger's real power (W), one rID each; accept the VTN's request."""
        from openleadr import objects  # type: ignore[import-untyped]

        now = dt.datetime.now(dt.UTC)
        report = objects.Report(
            report_specifier_id=REPORT_SPECIFIER,
            report_name="METADATA_TELEMETRY_USAGE",
            created_date_time=now,
            duration=dt.timedelta(seconds=STEP),
            report_descriptions=[
                objects.ReportDescription(
                    r_id=ev.name,
                    reading_type="Direct Read",
                    report_type="usage",
                    market_context="http://opendso.example/demo",
                    report_subject=objects.Target(resource_id=ev.name),
                    report_data_source=objects.Target(resource_id=ev.name),
                    sampling_rate=objects.SamplingRate(
                        min_period=dt.timedelta(seconds=60), max_period=dt.timedelta(seconds=STEP)
                    ),
                    measurement=objects.Measurement(
                        name="powerReal",
                        description="RealPower",
                        unit="W",
                        scale="none",
                        power_attributes=objects.PowerAttributes(hertz=50, voltage=400, ac=True),
                    ),
                )
                for ev in self.evs
            ],
        )
        kind, answer = await self._send(
            "EiReport",
            "oadrRegisterReport",
            request_id="rr-1",
            ven_id=self.ven_id,
            reports=[report],
            report_request_id=0,
        )
        if kind != "oadrRegisteredReport":
            raise SimError(f"oadrRegisterReport answered {kind}")
        wanted = [
            r["report_request_id"]
            for r in answer.get("report_requests") or []
            if (r.get("report_specifier") or {}).get("report_specifier_id") == REPORT_SPECIFIER
        ]
        if not wanted:
            raise SimError("the VTN requested no TELEMETRY_USAGE report")
        self.report_request_id = wanted[0]
        await self._send(
            "EiReport",
            "oadrCreatedReport",
            response={"response_code": 200, "response_description": "OK", "request_id": "rr-1"},
            pending_reports=[{"report_request_id": rid} for rid in wanted],
            ven_id=self.ven_id,
        )

    async def update_report(self, start: int, per_ev_w: dict[str, np.ndarray]) -> None:
        """What each charger drew in consecutive 15-minute intervals from ``start`` (one oadrUpdateReport)."""
        from openleadr import objects

        t0 = dt.datetime.fromtimestamp(start, dt.UTC)
        step = dt.timedelta(seconds=STEP)
        intervals = [
            objects.ReportInterval(
                dtstart=t0 + i * step,
                duration=step,
                report_payload=objects.ReportPayload(r_id=name, value=round(float(w), 1)),
            )
            for name, values in per_ev_w.items()
            for i, w in enumerate(values)
        ]
        if not intervals:
            return
        n = max(len(v) for v in per_ev_w.values())
        kind, _ = await self._send(
            "EiReport",
            "oadrUpdateReport",
            request_id=f"up-{start}",
            ven_id=self.ven_id,
            reports=[
                objects.Report(
                    report_specifier_id=REPORT_SPECIFIER,
                    report_name="TELEMETRY_USAGE",
                    report_request_id=self.report_request_id,
                    dtstart=t0,
                    duration=n * step,
                    intervals=intervals,
                )
            ],
        )
        if kind != "oadrUpdatedReport":
            raise SimError(f"oadrUpdateReport answered {kind}")
        self.reported += len(intervals)

    async def poll(self, max_messages: int = 20) -> int:
        """Poll until the VTN has nothing more; returns how many events were new or changed."""
        changed = 0
        for _ in range(max_messages):
            kind, answer = await self._send("OadrPoll", "oadrPoll", ven_id=self.ven_id)
            if kind == "oadrDistributeEvent":
                changed += await self._distributed(answer)
            elif kind == "oadrRegisterReport":  # the VTN's own reports: acknowledged, none requested
                await self._send(
                    "EiReport",
                    "oadrRegisteredReport",
                    response={"response_code": 200, "response_description": "OK", "request_id": ""},
                    ven_id=self.ven_id,
                )
            else:  # oadrResponse: nothing queued
                break
        return changed

    async def _distributed(self, answer: dict[str, Any]) -> int:
        changed, replies = 0, []
        for e in answer.get("events") or []:
            desc = e["event_descriptor"]
            eid, mod = str(desc["event_id"]), int(desc.get("modification_number") or 0)
            start = e["active_period"]["dtstart"]
            intervals = []
            signal_name = ""
            for sig in e.get("event_signals") or []:
                signal_name = sig.get("signal_name", "")
                cursor = start
                for iv in sig.get("intervals") or []:
                    begin = iv.get("dtstart") or cursor
                    seconds = int(iv["duration"].total_seconds())
                    intervals.append(
                        (int(begin.timestamp()), seconds, float(iv.get("signal_payload") or 0.0))
                    )
                    cursor = begin + dt.timedelta(seconds=seconds)
            old = self.events.get(eid)
            status = str(desc.get("event_status", ""))
            if old is None or old.modification != mod or old.status != status:
                changed += 1
            self.events[eid] = VenEvent(eid, mod, signal_name, intervals, status)
            if e.get("response_required", "always") == "always" and status != "cancelled":
                replies.append(
                    {
                        "response_code": 200,
                        "response_description": "OK",
                        "request_id": answer.get("request_id") or "",
                        "event_id": eid,
                        "modification_number": mod,
                        "opt_type": "optIn",
                    }
                )
        if replies:
            await self._send(
                "EiEvent",
                "oadrCreatedEvent",
                response={"response_code": 200, "response_description": "OK", "request_id": ""},
                event_responses=replies,
                ven_id=self.ven_id,
            )
        return changed

    # ------------------------------------------------------------------------------------------------ physics
    def asked(self, start: int, steps: int) -> np.ndarray:
        """The change of the depot's import the events in force ask for, per interval (W, at its middle)."""
        mid = interval_mid(start, steps).astype(np.int64)
        out = np.zeros(steps)
        for e in self.events.values():
            if e.status == "cancelled" or e.signal != "LOAD_DISPATCH":
                continue
            for a, seconds, value in e.intervals:
                out[(mid >= a) & (mid < a + seconds)] += value
        return out

    def unmanaged(self, start: int, steps: int) -> dict[str, np.ndarray]:
        mid = interval_mid(start, steps)
        return {ev.name: ev.unmanaged_w(mid) for ev in self.evs}

    def play(self, start: int, steps: int) -> EvDay:
        """The cars over ``steps`` simulated intervals from ``start`` as the aggregator runs them. Each car has
        one session a UTC day (plugged in at its arrival, charged with what it needs by its deadline). Outside
        its events every car charges as it would unmanaged: the baseline the DSO's forecast and M&V see. An
        event's delta is shared, interval by interval, by the cars plugged in: a raise goes into their spare
        battery room on top of what they need (so what the DSO bought is import it gets, not charging taken from
        the hours before, which its plan counts on, nor from cars already charged before ``start``); a cut
        charges less there and makes it up as early as it can outside the events, before the deadline."""
        delta = self.asked(start, steps)
        power, sessions = self._schedule(start, steps, delta)
        due = [s for s in sessions if s.inside]
        return EvDay(
            start,
            power,
            np.sum([np.zeros(steps), *self.unmanaged(start, steps).values()], axis=0),
            delta,
            full=sum(1 for s in due if s.owed_wh <= 1.0),
            due=len(due),
            needed_wh=sum(s.ev.energy_wh for s in due),
            short_wh=sum(s.owed_wh for s in due),
        )

    def raise_kw(self, start: int, end: int) -> float:
        """The raise of the depot's import (kW, 0.1 kW steps) the aggregator can hold over every interval of
        ``start``-``end`` on top of its baseline: what it may offer."""
        steps = (end - start) // STEP
        if steps <= 0 or not self.evs:
            return 0.0

        def holds(kw: float) -> bool:
            power, _ = self._schedule(start, steps, np.full(steps, kw * 1000))
            got = np.sum(list(power.values()), axis=0) - np.sum(
                list(self.unmanaged(start, steps).values()), axis=0
            )
            return bool((got >= kw * 1000 - 1e-6).all())

        lo, hi = 0, int(sum(ev.charger_w for ev in self.evs) / 100)  # in 0.1 kW
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if holds(mid / 10) else (lo, mid - 1)
        return lo / 10

    def _schedule(
        self, start: int, steps: int, delta: np.ndarray
    ) -> tuple[dict[str, np.ndarray], list[Session]]:
        """Each car's power per interval (W) when the depot's import is asked to change by ``delta`` (W per
        interval) against the baseline, and its sessions as they end."""
        h = STEP / 3600
        starts = start + np.arange(steps) * STEP  # interval starts
        power = {name: w.astype(float) for name, w in self.unmanaged(start, steps).items()}
        sessions: list[Session] = []
        for ev in self.evs:
            for day in range(start // 86_400 - 1, (start + steps * STEP) // 86_400 + 1):
                a, b = day * 86_400 + ev.arrive_h * 3600, day * 86_400 + ev.deadline_h * 3600
                mask = (starts >= a) & (starts < b)
                if mask.any():
                    sessions.append(Session(ev, mask, ev.room_wh, b <= start + steps * STEP))
        for i in np.flatnonzero(delta):
            live = [s for s in sessions if s.mask[i]]
            if delta[i] > 0:  # into the spare room, within each charger's power
                want = float(delta[i])
                while want > 1e-6 and live:
                    share, keep = want / len(live), []
                    for s in live:
                        p = max(0.0, min(share, s.ev.charger_w - power[s.ev.name][i], s.room_wh / h))
                        power[s.ev.name][i] += p
                        s.room_wh -= p * h
                        want -= p
                        if s.ev.charger_w - power[s.ev.name][i] > 1e-6 and s.room_wh > 1e-6:
                            keep.append(s)
                    live = keep
            else:  # less now, owed until made up
                cut = float(-delta[i])
                live = [s for s in live if power[s.ev.name][i] > 1e-6]
                while cut > 1e-6 and live:
                    share, keep = cut / len(live), []
                    for s in live:
                        p = min(share, power[s.ev.name][i])
                        power[s.ev.name][i] -= p
                        s.owed_wh += p * h
                        cut -= p
                        if power[s.ev.name][i] > 1e-6:
                            keep.append(s)
                    live = keep
        for s in sessions:
            for i in np.flatnonzero(s.mask & (delta == 0)):
                if s.owed_wh <= 1e-6:
                    break
                p = max(0.0, min(s.ev.charger_w - power[s.ev.name][i], s.owed_wh / h))
                power[s.ev.name][i] += p
                s.owed_wh -= p * h
        return power, sessions


@dataclass
class Session:
    """One car's plug-in of one day within the simulated intervals."""

    ev: Ev
    mask: np.ndarray  # the intervals it is plugged in
    room_wh: float  # spare battery room left for raised import
    inside: bool  # its deadline falls within the simulated intervals
    owed_wh: float = 0.0  # energy a cut took that it has not made up yet
