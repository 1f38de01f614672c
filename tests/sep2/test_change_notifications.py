"""Every admin mutation route against every subscribable resource: a subscriber is notified exactly when the GET
of its resource changed, and the notification carries what that GET returns.

The routes come from the admin application's router and the resources from the 2030.5 function sets'
declarations (``server.sep2.resources``): a route or a declaration this test does not exercise fails it. Each step
makes one change on the live server (real TLS, real outbox, webhook on loopback); around it every subscriber GETs
its resource, and after the outbox has drained, the notifications that arrived are compared with the GETs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from support import free_port
from support.openadr import RawVen, SchemaWatch
from support.sep2_live import (
    Admin,
    Receiver,
    Sep2Client,
    enrolled_device,
    module_server,
    subscription_xml,
    valid_notification,
    wait_until,
)
from support.sunspec_sim import SunSpecSimulator

from server.admin import create_admin_app
from server.config import Settings
from server.runtime import Runtime
from server.sep2 import (
    subscriptions,  # noqa: F401 - loads every function set's declarations
    xml,
)
from server.sep2.resources import REGISTRY, match
from server.store import create_store

server = module_server("changes")
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
NOW = int(time.time()) // 300 * 300 - 3600
POWER = "CC" * 15 + "01"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


def admin_mutation_routes() -> set[tuple[str, str]]:
    """Every mutating admin API route. The console's form routes (/console/...) are left to the browser tests:
    each calls the core function of an API route enumerated here."""
    rt = Runtime(settings=Settings(), store=create_store("sqlite+aiosqlite:///:memory:"))
    app = create_admin_app(rt)
    return {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method in MUTATING and not r.resource.canonical.startswith("/console/")
    }


def mup_xml(lfdi: str) -> str:
    rtype = (
        "<ReadingType><accumulationBehaviour>12</accumulationBehaviour><dataQualifier>2</dataQualifier>"
        "<flowDirection>1</flowDirection><intervalLength>300</intervalLength><kind>37</kind><phase>0</phase>"
        "<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType>"
    )
    return (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>C0FFEE01</mRID><description>site</description>'
        f"<roleFlags>49</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{POWER}</mRID><description>P</description>"
        f"{rtype}</MirrorMeterReading></MirrorUsagePoint>"
    )


def reading_xml(value: int, start: int) -> str:
    return (
        f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{POWER}</mRID><MirrorReadingSet><mRID>{"AD" * 16}</mRID>'
        f"<description>set</description><timePeriod><duration>300</duration><start>{start}</start></timePeriod>"
        f"<Reading><timePeriod><duration>300</duration><start>{start}</start></timePeriod>"
        f"<value>{value}</value></Reading></MirrorReadingSet></MirrorMeterReading>"
    )


def canonical(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True)


def as_get(resource: etree._Element) -> bytes:
    """A notification's Resource element as the GET of that resource spells it."""
    copy = etree.fromstring(etree.tostring(resource))
    copy.tag = xml.q(copy.attrib.pop(XSI_TYPE))
    return canonical(copy)


@dataclass
class Subscriber:
    client: Sep2Client
    holder: str  # the EndDevice whose SubscriptionList holds the subscription
    href: str
    path: str  # the receiver path its notifications arrive at

    @property
    def kind(self) -> str:
        found = match(self.href)
        assert found is not None, self.href
        return found[0].kind

    def get(self) -> bytes | None:
        decl = REGISTRY[self.kind]
        reply = self.client.get(self.href + ("?s=0&l=10" if decl.is_list else ""))
        # a 429 would read as "the resource changed": the world stays within its request budgets
        assert reply.status != 429, f"{self.href}: request budget exceeded"
        return canonical(reply.root) if reply.status == 200 else None


@dataclass
class World:
    admin: Admin
    receiver: Receiver
    names: dict[str, Any] = field(default_factory=dict)
    subscribers: list[Subscriber] = field(default_factory=list)

    def drained(self) -> bool:
        pending = self.admin("GET", "/api/v1/deliveries?status=pending&channel=sep2-notification")
        return pending == []


def build(server, admin: Admin, receiver: Receiver) -> World:
    w = World(admin, receiver)
    client, edev, derp = enrolled_device(server, admin, "chg-dev", program="chg-prog")
    w.names.update(d1=client.lfdi, edev=edev, derp=derp)
    admin("PUT", "/api/v1/programs/chg-prog/default-control", {"base": {"opModExpLimW": 4000}})
    control = admin(
        "POST",
        "/api/v1/controls",
        {"program": "chg-prog", "start": "now", "duration_s": 7200, "base": {"opModExpLimW": 3000}},
        expect=201,
    )
    w.names["control"] = control["id"]
    admin("POST", "/api/v1/tariffs", {"name": "chg-t"}, expect=201)
    admin("POST", "/api/v1/tariffs/chg-t/rates", {"name": "chg-r"}, expect=201)
    admin("POST", "/api/v1/tariffs/chg-t/assign", {"lfdi": client.lfdi})
    price = {"start": "now", "duration_s": 3600, "prices": [{"price": 10}]}
    w.names["price"] = admin("POST", "/api/v1/tariffs/chg-t/prices", price, expect=201)["id"]
    admin("POST", "/api/v1/dr-programs", {"name": "chg-dr"}, expect=201)
    admin("POST", "/api/v1/dr-programs/chg-dr/assign", {"lfdi": client.lfdi})
    dr = {"duration_s": 3600, "device_category": "0001", "control": {"dutyCycle": {"normalValue": 50}}}
    w.names["drev"] = admin("POST", "/api/v1/dr-programs/chg-dr/events", {"start": "now", **dr}, expect=201)[
        "id"
    ]
    w.names["dr_event"] = dr
    mup = client.post("/mup", mup_xml(client.lfdi))
    assert mup.status == 201
    w.names["mup"] = mup.location
    assert client.post(mup.location, reading_xml(1000, NOW)).status == 201

    fsa = client.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0]
    control_href = client.get(derp + "/derc?l=10").all("DERControl")[0].get("href")
    tp = client.get(xml.find(fsa, "TariffProfileListLink").get("href") + "?l=1").all("TariffProfile")[0]
    rc = client.get(xml.find(tp, "RateComponentListLink").get("href") + "?l=1").all("RateComponent")[0]
    drp_list = client.get(xml.find(fsa, "DemandResponseProgramListLink").get("href") + "?l=1")
    drp = drp_list.all("DemandResponseProgram")[0]
    upt = client.get("/upt?l=1").all("UsagePoint")[0].get("href")
    own = [
        "/edev",
        edev,
        edev + "/fsa",
        fsa.get("href") + "/derp",
        derp,
        derp + "/derc",
        derp + "/actderc",
        control_href,
        derp + "/dderc",
        xml.find(fsa, "TariffProfileListLink").get("href"),
        xml.find(rc, "TimeTariffIntervalListLink").get("href"),
        tp.get("href") + "/ctti",  # the CSIP-AUS 1.3 combined list (a 1.2 client reads plain intervals there)
        xml.find(drp, "EndDeviceControlListLink").get("href"),
        f"{upt}/mr/1/rs/1/r",
    ]
    # an aggregator sees the EndDevices registered under it: its EndDeviceList changes with their enrolment
    agg = Sep2Client(server, server.issue_device("chg-agg", aggregator=True))
    admin("PUT", f"/api/v1/sep2/aggregators/{agg.lfdi}")
    under = Sep2Client(server, server.issue_device("chg-under"))
    held = admin("PUT", f"/api/v1/sep2/end-devices/{under.lfdi}", {"aggregator": agg.lfdi})["href"]
    w.names.update(agg=agg.lfdi)
    RawVen(server, "chg-raw", SchemaWatch()).register()  # a registered VEN for the registration routes
    subs = [(client, edev, href) for href in own] + [(agg, held, "/edev"), (agg, held, held)]
    for i, (who, holder, href) in enumerate(subs):
        path = f"/s{i}"
        assert who.post(holder + "/sub", subscription_xml(href, receiver.url(path), limit=10)).status == 201
        w.subscribers.append(Subscriber(who, holder, href, path))
    wait_until(w.drained, what="set-up notifications delivered")
    return w


@dataclass
class Step:
    method: str
    route: str  # the admin route as its router names it
    path: str = ""  # the concrete path, with {names} filled in from earlier steps
    body: Any = None
    expect: tuple[int, ...] = (200, 201, 202, 204)
    save: str | None = None  # keep the answer's "id" under this name


def steps(fresh: dict[str, str], modbus_port: int) -> list[Step]:
    """One step per admin mutation route (in an order that makes each possible); ``fresh`` holds LFDIs of
    devices no subscriber sees. Routes that need what this world does not have answer 4xx here and still must not
    notify anyone: forecasts and plans need days of telemetry (their dispatch path is POST /api/v1/dispatch),
    report requests need reports a VEN registered."""
    later = "2099-01-01T00:00:00Z"
    return [
        Step("POST", "/api/v1/programs", body={"name": "chg-other", "primacy": 9}),
        Step("PATCH", "/api/v1/programs/{ref}", "/api/v1/programs/chg-prog", {"description": "renamed"}),
        Step("POST", "/api/v1/programs/{ref}/assign", "/api/v1/programs/chg-other/assign", {"lfdi": "{d1}"}),
        Step(
            "POST", "/api/v1/programs/{ref}/unassign", "/api/v1/programs/chg-other/unassign", {"lfdi": "{d1}"}
        ),
        Step(
            "PUT",
            "/api/v1/programs/{ref}/default-control",
            "/api/v1/programs/chg-prog/default-control",
            {"base": {"opModExpLimW": 4500}},
        ),
        Step("DELETE", "/api/v1/programs/{ref}/default-control", "/api/v1/programs/chg-prog/default-control"),
        Step(
            "POST",
            "/api/v1/programs/{ref}/curves",
            "/api/v1/programs/chg-prog/curves",
            {"curve_type": 11, "points": [[9000, 3000], [11000, -3000]], "y_ref_type": 2},
            save="curve",
        ),
        Step("DELETE", "/api/v1/curves/{id}", "/api/v1/curves/{curve}"),
        Step(
            "POST",
            "/api/v1/controls",
            body={"program": "chg-prog", "start": "now", "duration_s": 600, "base": {"opModConnect": False}},
            save="later",
        ),
        Step("POST", "/api/v1/controls/{id}/cancel", "/api/v1/controls/{later}/cancel", {}),
        Step("POST", "/api/v1/devices", body={"lfdi": fresh["a"]}, save="fresh_a"),
        Step("DELETE", "/api/v1/devices/{id}", "/api/v1/devices/{fresh_a}"),
        Step(
            "PUT",
            "/api/v1/sep2/end-devices/{lfdi}",
            f"/api/v1/sep2/end-devices/{fresh['b']}",
            {"aggregator": "{agg}"},
        ),
        Step("PUT", "/api/v1/sep2/end-devices/{lfdi}/fsa/{title}", "/api/v1/sep2/end-devices/{d1}/fsa/extra"),
        Step("DELETE", "/api/v1/sep2/end-devices/{lfdi}", f"/api/v1/sep2/end-devices/{fresh['b']}"),
        Step("PUT", "/api/v1/sep2/aggregators/{lfdi}", "/api/v1/sep2/aggregators/{agg}"),
        Step(
            "PUT",
            "/api/v1/sep2/poll-rates/{resource}",
            "/api/v1/sep2/poll-rates/FunctionSetAssignmentsList",
            {"rate_s": 77},
        ),
        Step(
            "PUT", "/api/v1/sep2/post-rates/{resource}", "/api/v1/sep2/post-rates/EndDevice", {"rate_s": 88}
        ),
        Step("PUT", "/api/v1/sep2/access/{lfdi}", f"/api/v1/sep2/access/{fresh['c']}", {"granted": False}),
        Step("POST", "/api/v1/tariffs", body={"name": "chg-t2"}),
        Step("POST", "/api/v1/tariffs/{ref}/rates", "/api/v1/tariffs/chg-t/rates", {"name": "chg-r2"}),
        Step("POST", "/api/v1/tariffs/{ref}/assign", "/api/v1/tariffs/chg-t2/assign", {"lfdi": "{d1}"}),
        Step(
            "POST",
            "/api/v1/tariffs/{ref}/prices",
            "/api/v1/tariffs/chg-t/prices",
            {"start": "now", "duration_s": 1800, "prices": [{"price": 20}], "rate": "chg-r"},
            save="price2",
        ),
        Step("POST", "/api/v1/prices/{id}/cancel", "/api/v1/prices/{price2}/cancel", {}),
        Step("POST", "/api/v1/dr-programs", body={"name": "chg-dr2"}),
        Step(
            "POST", "/api/v1/dr-programs/{ref}/assign", "/api/v1/dr-programs/chg-dr2/assign", {"lfdi": "{d1}"}
        ),
        Step(
            "POST",
            "/api/v1/dr-programs/{ref}/events",
            "/api/v1/dr-programs/chg-dr/events",
            {
                "start": "now",
                "duration_s": 900,
                "device_category": "0001",
                "control": {"dutyCycle": {"normalValue": 20}},
            },
            save="drev2",
        ),
        Step("POST", "/api/v1/dr-events/{id}/cancel", "/api/v1/dr-events/{drev2}/cancel", {}),
        Step("POST", "/api/v1/influence-events/{id}/cancel", "/api/v1/influence-events/{drev}/cancel", {}),
        # the one event family: a DER control through it, then cancelled through it
        Step(
            "POST",
            "/api/v1/events",
            body={
                "program": "chg-prog",
                "kind": "der",
                "start": later,
                "duration_s": 600,
                "base": {"opModExpLimW": 1234},
            },
            save="one",
        ),
        Step("POST", "/api/v1/events/{id}/cancel", "/api/v1/events/{one}/cancel", {}),
        Step("POST", "/api/v1/grid/nodes", body={"name": "chg-feeder", "kind": "feeder"}),
        Step("POST", "/api/v1/grid/nodes", body={"name": "chg-spare", "kind": "group"}),
        Step(
            "PATCH",
            "/api/v1/grid/nodes/{name}",
            "/api/v1/grid/nodes/chg-feeder",
            {"export_limit_kw": 30.0},
        ),
        Step("DELETE", "/api/v1/grid/nodes/{name}", "/api/v1/grid/nodes/chg-spare"),
        Step(
            "POST",
            "/api/v1/grid/nodes/{name}/members",
            "/api/v1/grid/nodes/chg-feeder/members",
            {"kind": "device", "id": "{d1}"},
        ),
        Step(
            "POST",
            "/api/v1/dispatch",
            body={"node": "chg-feeder", "start": later, "duration_s": 600, "export_limit_w": 2500},
        ),
        Step(
            "DELETE",
            "/api/v1/grid/nodes/{name}/members/{kind}/{id}",
            "/api/v1/grid/nodes/chg-feeder/members/device/{d1}",
        ),
        Step("POST", "/api/v1/forecasts", body={"node": "chg-feeder"}, expect=(400, 404, 409, 422)),
        # staff requeue a dead letter: nothing of the domain changes, so nobody is notified (none exists here)
        Step(
            "POST",
            "/api/v1/deliveries/{id}/requeue",
            "/api/v1/deliveries/999999/requeue",
            {},
            expect=(404, 409),
        ),
        # grid models and their plans: an import needs a network (refused here), a mapping or plan needs a model
        Step("POST", "/api/v1/grid/models", body={}, expect=(400,)),
        Step(
            "POST",
            "/api/v1/grid/models/{name}/mappings",
            "/api/v1/grid/models/chg-none/mappings",
            {"bus": 1, "kind": "device", "id": "{d1}"},
            expect=(404,),
        ),
        Step(
            "DELETE",
            "/api/v1/grid/models/{name}/mappings/{kind}/{source}",
            "/api/v1/grid/models/chg-none/mappings/device/{d1}",
            expect=(404,),
        ),
        Step("POST", "/api/v1/plans/runs", body={"model": "chg-none"}, expect=(404,)),
        Step(
            "POST", "/api/v1/plans/runs/{id}/approve", "/api/v1/plans/runs/999999/approve", {}, expect=(404,)
        ),
        # OpenADR 3 clients are credentials of aggregators: no 2030.5 device's view changes
        Step("POST", "/api/v1/oadr3/clients", body={"name": "chg-o3", "role": "bl"}),
        Step("PATCH", "/api/v1/oadr3/clients/{name}", "/api/v1/oadr3/clients/chg-o3", {"enabled": False}),
        # acknowledging an alarm is staff bookkeeping: no device's view changes
        Step(
            "POST",
            "/api/v1/alarms/{id}/acknowledge",
            "/api/v1/alarms/999999/acknowledge",
            {},
            expect=(404,),
        ),
        Step(
            "POST",
            "/api/v1/plans",
            body={"node": "chg-feeder", "dispatch": True},
            expect=(400, 404, 409, 422),
        ),
        Step(
            "POST",
            "/api/v1/telemetry",
            body={
                "source_kind": "device",
                "source_id": "{d1}",
                "measurement": "realPower",
                "readings": [["2026-01-01T00:00:00Z", 5.0]],
            },
        ),
        Step(
            "POST",
            "/api/v1/modbus/devices",
            body={"name": "chg-mb", "host": "127.0.0.1", "port": modbus_port},
        ),
        Step(
            "POST",
            "/api/v1/modbus/devices/{name}/control",
            "/api/v1/modbus/devices/chg-mb/control",
            {"export_limit_pct": 50},
        ),
        Step(
            "POST", "/api/v1/vens", body={"name": "chg-ven", "fingerprint": "AB:CD:EF:01:23:45:67:89:AB:CD"}
        ),
        Step("PATCH", "/api/v1/vens/{name}", "/api/v1/vens/chg-ven", {"push": False}),
        # flexibility offers: a VEN's offer, withdrawn, and a clearing with nothing open (no device hears of any)
        Step(
            "POST",
            "/api/v1/offers",
            body={"ven": "chg-ven", "start": later, "duration_s": 3600, "up_kw": 5, "price": 0.1},
            save="offer",
        ),
        Step("POST", "/api/v1/offers/{id}/withdraw", "/api/v1/offers/{offer}/withdraw", {}),
        Step("POST", "/api/v1/offers/clear", body={"start": later, "up_kw": [5], "up_cost": 1.0}),
        Step(
            "POST",
            "/api/v1/openadr/events",
            body={"level": 1, "duration_s": 600, "vens": ["chg-ven"]},
            save="oadr",
        ),
        Step("PATCH", "/api/v1/openadr/events/{id}", "/api/v1/openadr/events/{oadr}", {"level": 2}),
        Step("POST", "/api/v1/openadr/events/{id}/cancel", "/api/v1/openadr/events/{oadr}/cancel", {}),
        Step(
            "POST",
            "/api/v1/vens/{name}/report-requests",
            "/api/v1/vens/chg-ven/report-requests",
            {"report_specifier_id": "none"},
            expect=(404,),
        ),
        Step(
            "POST",
            "/api/v1/vens/{name}/report-requests/{rrid}/cancel",
            "/api/v1/vens/chg-ven/report-requests/none/cancel",
            {},
            expect=(404,),
        ),
        Step("POST", "/api/v1/vens/{name}/reregister", "/api/v1/vens/chg-raw/reregister", {}),
        Step(
            "POST", "/api/v1/vens/{name}/cancel-registration", "/api/v1/vens/chg-raw/cancel-registration", {}
        ),
        Step("DELETE", "/api/v1/vens/{name}", "/api/v1/vens/chg-ven"),
        Step("DELETE", "/api/v1/sep2/mups", "/api/v1/sep2/mups?owner={d1}"),
        # staff access changes no device's view (the bootstrap token has no session, tokens or password)
        Step("POST", "/api/v1/staff", body={"name": "chg-staff", "role": "viewer"}),
        Step(
            "POST", "/api/v1/login", body={"name": "chg-staff", "password": "x", "totp": "1"}, expect=(401,)
        ),
        Step("POST", "/api/v1/staff/{name}/disable", "/api/v1/staff/chg-staff/disable", {}),
        Step("POST", "/api/v1/tokens", body={"name": "t"}, expect=(400,)),
        Step("DELETE", "/api/v1/tokens/{id}", "/api/v1/tokens/1", expect=(400,)),
        Step("POST", "/api/v1/session/password", body={"password": "a", "new_password": "b"}, expect=(400,)),
        Step("POST", "/api/v1/logout", body={}, expect=(400,)),
    ]


def fill(value: Any, names: dict[str, Any]) -> Any:
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", str(v))
        return value
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    return value


def check_step(w: World, label: str, change) -> None:
    """Run ``change``; every subscriber is notified iff its GET changed, with that GET as the body."""
    before = {s.path: s.get() for s in w.subscribers}
    seen = {s.path: len(w.receiver.bodies(s.path)) for s in w.subscribers}
    change()
    wait_until(w.drained, what=f"notifications of {label} delivered")
    time.sleep(0.3)  # the last POSTs of a drained outbox reach the receiver's thread
    for s in w.subscribers:
        after = s.get()
        new = w.receiver.bodies(s.path)[seen[s.path] :]
        changed = after != before[s.path]
        assert len(new) == (1 if changed else 0), (label, s.kind, s.href, changed, len(new))
        if new:
            note = valid_notification(new[0])
            resource = xml.find(note, "Resource")
            if after is None:  # gone (or no longer visible to the subscriber): status 4, no representation
                assert resource is None and xml.text(note, "status") == "4", (label, s.href)
            else:
                assert resource is not None, (label, s.href)
                assert as_get(resource) == after, (label, s.href, as_get(resource), after)


def test_every_admin_change_notifies_exactly_the_resources_whose_get_changed(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    inverter = SunSpecSimulator().__enter__()  # a SunSpec inverter on loopback for the Modbus routes
    try:
        w = build(server, admin, receiver)
        assert {s.kind for s in w.subscribers} == set(REGISTRY), "a declared resource has no subscriber here"
        fresh = {k: Sep2Client(server, server.issue_device(f"chg-fresh-{k}")).lfdi for k in "abc"}
        plan = steps(fresh, inverter.port)
        assert {(s.method, s.route) for s in plan} == admin_mutation_routes(), (
            "an admin route is not exercised"
        )
        # a protocol-side change (a device posting readings) follows the same rule
        client = w.subscribers[0].client
        check_step(w, "readings posted", lambda: client.post(w.names["mup"], reading_xml(2000, NOW + 300)))
        notified_kinds: set[str] = set()
        for step in plan:
            path = fill(step.path or step.route, w.names)
            label = f"{step.method} {path}"

            def change(step=step, path=path, label=label) -> None:
                status, answer = server.admin(step.method, path, fill(step.body, w.names))
                assert status in step.expect, (label, status, answer)
                if step.save:
                    w.names[step.save] = answer["id"]

            counts = {s.path: len(receiver.bodies(s.path)) for s in w.subscribers}
            check_step(w, label, change)
            notified_kinds |= {s.kind for s in w.subscribers if len(receiver.bodies(s.path)) > counts[s.path]}
        # the steps are worth their name: every declared resource was notified by some admin change
        assert notified_kinds == set(REGISTRY), set(REGISTRY) - notified_kinds
    finally:
        inverter.__exit__(None, None, None)
        receiver.down()
