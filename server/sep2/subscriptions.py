"""2030.5 Subscription/Notification: SubscriptionList per EndDevice, and durable Notifications on change.

    /edev/{e}/sub          SubscriptionList (GET, POST)
    /edev/{e}/sub/{s}      Subscription (GET, PUT, DELETE)

Subscribable resources (``subscribedResource``, relative or absolute href of this server):

    /edev                                   EndDeviceList         (kind edev-list)
    /edev/{e}                               EndDevice             (edev)
    /edev/{e}/fsa                           FunctionSetAssignmentsList (fsa-list)
    /edev/{e}/fsa/{f}/derp                  DERProgramList        (derp-list)
    /edev/{e}/derp/{p}                      DERProgram            (derp)
    /edev/{e}/derp/{p}/derc                 DERControlList        (derc-list)
    /edev/{e}/derp/{p}/actderc              ActiveDERControlList  (actderc)
    /edev/{e}/derp/{p}/derc/{c}             DERControl            (derc)
    /edev/{e}/derp/{p}/dderc                DefaultDERControl     (dderc)
    /edev/{e}/tp/{t}/rc/{r}/tti             TimeTariffIntervalList (tti-list; server.sep2.pricing)
    /edev/{e}/drp/{d}/edc                   EndDeviceControlList  (edc-list; server.sep2.drlc)
    /upt/{m}/mr/{k}/rs/1/r                  ReadingList           (reading-list; server.sep2.metering), the one
                                            resource that takes a Condition (SubscribableType 3)

How a notification is made (and why it is never lost)::

    staff/orchestration            core (one transaction)                      outbox worker
    -------------------            ----------------------                      -------------
    create/cancel control  ---->   change rows
                                   notify.changed(...)  --> this module's listener:
                                       matching Subscriptions (indexed by kind/program/device)
                                       render the resource *as the subscriber sees it now*
                                       delivery.enqueue(order_key="sep2-sub:{id}", url=notificationURI)
                                   COMMIT (wakes the worker)  ------------------->  POST Notification (HTTPS)
                                                                                    5xx/refused: back-off, retry
                                                                                    in order per subscription

The notification carries the whole resource (a list: its first ``limit`` items, as a GET with ``s=0&l=limit``
would), so cancellation (EventStatus 2/3) and supersession (4) arrive with the status the device must apply.
``limit`` 0 asks for a simple change notification (IEEE 2030.5 Subscription.limit; ``notified_items`` is the one
place that reads it): a list resource comes with ``results="0"``, its ``all`` and no items; a non-list resource
(EndDevice, DERProgram, DERControl, DefaultDERControl) with no Resource element at all, status 0.
Conditions (IEEE 2030.5 Subscription/Condition: "a condition that must be satisfied for the Notification to be
triggered"; attributeIdentifier 0 = Reading value, 1-255 reserved): only a ReadingList takes one -- the other
resources advertise ``subscribable="1"`` (SubscribableType: non-conditional subscriptions only) and a Condition on
them, or a reserved attributeIdentifier, or lowerThreshold > upperThreshold, is refused with 400 and an Error
body. New readings trigger a notification of a conditional subscription only when at least one of them has a
Reading value (as the ReadingList shows it: in its ReadingType's power of ten) below lowerThreshold or above
upperThreshold, i.e. outside the band the subscriber called normal; the notification still carries the
ReadingList as a GET would return it (§8.7.3.2: the representation SHALL be identical to a GET's).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from lxml import etree
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import delivery
from server.core import der_controls as rules
from server.core import influence, notify, programs
from server.core import sep2_device as devres
from server.core import subscriptions as core_subs
from server.core.errors import Forbidden, Invalid, NotFound
from server.runtime import RUNTIME
from server.sep2 import delivery as sep2_delivery
from server.sep2 import derp, drlc, edev, fsa, metering, pricing, xml
from server.sep2.common import (
    REASON_LIMIT,
    Scope,
    Sep2Error,
    device_in_scope,
    list_element,
    no_content,
    owners,
    page,
    path_int,
    read_body,
    reply,
    runtime,
    scope_of,
    sep2_handler,
    visible_devices,
)
from server.sep2.render import poll_rate, post_rate
from server.store.models import (
    Aggregator,
    DeliveryMessage,
    EndDevice,
    Sep2Fsa,
    Sep2FsaProgram,
    Sep2InfluenceAssignment,
    Sep2InfluenceEvent,
    Sep2InfluenceSet,
    Sep2Mup,
    Sep2Program,
    Sep2Subscription,
)
from server.store.types import utcnow

routes = web.RouteTableDef()

CHANNEL = sep2_delivery.CHANNEL
MAX_PER_DEVICE = 64  # Subscriptions one SubscriptionList holds (bounded work per change and per client)
MAX_LIMIT = 255  # list items carried in one notification (the same cap as one GET page)
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

# subscription kinds whose resource is a 2030.5 List (Subscription.limit counts their items)
LIST_KINDS = frozenset(
    {"edev-list", "fsa-list", "derp-list", "derc-list", "actderc", "tti-list", "edc-list", "reading-list"}
)

# Notification.status values (IEEE 2030.5 Notification)
STATUS_DEFAULT = 0
STATUS_CANCELLED_DELETED = 4  # subscription cancelled: the resource was deleted

# resource type names (what staff use for poll rates) -> subscription kinds that render them
KINDS_BY_TYPE = {
    "EndDeviceList": ("edev-list",),
    "EndDevice": ("edev", "edev-list"),
    "FunctionSetAssignmentsList": ("fsa-list",),
    "FunctionSetAssignments": ("fsa-list",),
    "DERProgramList": ("derp-list",),
    "DERProgram": ("derp", "derp-list"),
    "DERControlList": ("derc-list", "actderc"),
    "DERControl": ("derc", "derc-list", "actderc"),
    "DefaultDERControl": ("dderc",),
    "TimeTariffIntervalList": ("tti-list",),
    "EndDeviceControlList": ("edc-list",),
}
PROGRAM_KINDS = ("derc-list", "actderc", "derc", "dderc", "derp")
DEVICE_KINDS = ("edev", "fsa-list", "derp-list")

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("edev-list", re.compile(r"^/edev$")),
    ("edev", re.compile(r"^/edev/(?P<e>\d{1,9})$")),
    ("fsa-list", re.compile(r"^/edev/(?P<e>\d{1,9})/fsa$")),
    ("derp-list", re.compile(r"^/edev/(?P<e>\d{1,9})/fsa/(?P<t>\d{1,9})/derp$")),
    ("derp", re.compile(r"^/edev/(?P<e>\d{1,9})/derp/(?P<p>\d{1,9})$")),
    ("derc-list", re.compile(r"^/edev/(?P<e>\d{1,9})/derp/(?P<p>\d{1,9})/derc$")),
    ("actderc", re.compile(r"^/edev/(?P<e>\d{1,9})/derp/(?P<p>\d{1,9})/actderc$")),
    ("derc", re.compile(r"^/edev/(?P<e>\d{1,9})/derp/(?P<p>\d{1,9})/derc/(?P<t>\d{1,9})$")),
    ("dderc", re.compile(r"^/edev/(?P<e>\d{1,9})/derp/(?P<p>\d{1,9})/dderc$")),
    # pricing and DRLC: ``p`` is the rate component / DR program (an influence set), ``t`` the tariff
    ("tti-list", re.compile(r"^/edev/(?P<e>\d{1,9})/tp/(?P<t>\d{1,9})/rc/(?P<p>\d{1,9})/tti$")),
    ("edc-list", re.compile(r"^/edev/(?P<e>\d{1,9})/drp/(?P<p>\d{1,9})/edc$")),
    # metering: ``p`` is the UsagePoint (MirrorUsagePoint id), ``t`` the MeterReading index k; one ReadingSet
    ("reading-list", re.compile(r"^/upt/(?P<p>\d{1,9})/mr/(?P<t>\d{1,9})/rs/1/r$")),
]
INFLUENCE_KINDS = ("tti-list", "edc-list")


@dataclass(frozen=True)
class Target:
    kind: str
    href: str
    device_id: int | None
    program_id: int | None
    target_id: int | None


def parse_target(resource: str) -> Target:
    """Which kind of resource an href names (absolute URIs of this server are reduced to their path)."""
    path = urllib.parse.urlsplit(resource.strip()).path.rstrip("/") or "/"
    for kind, pattern in _PATTERNS:
        m = pattern.match(path)
        if m:
            groups = m.groupdict()
            return Target(
                kind,
                path,
                int(groups["e"]) if "e" in groups else None,
                int(groups["p"]) if "p" in groups else None,
                int(groups["t"]) if "t" in groups else None,
            )
    raise NotFound(f"{path} is not a subscribable resource of this server")


async def check_visible(session: AsyncSession, scope: Scope, target: Target) -> None:
    """The subscriber must be able to GET the resource; otherwise 404/403 and nothing is stored."""
    if target.kind == "edev-list":
        if scope.device is None and scope.aggregator is None:
            raise Sep2Error(403, 0, "register before subscribing")
        return
    if target.kind == "reading-list":
        await meter_reading_in_scope(session, scope, target)
        return
    assert target.device_id is not None
    device = await device_in_scope(session, scope, target.device_id)
    if target.kind in ("edev", "fsa-list"):
        return
    if target.kind == "tti-list":
        await pricing.rate_in_scope(session, scope, device.id, target.target_id or 0, target.program_id or 0)
        return
    if target.kind == "edc-list":
        await drlc.drp_in_scope(session, scope, device.id, target.program_id or 0)
        return
    if target.kind == "derp-list":
        if target.target_id not in {f.id for f in await programs.device_fsas(session, device.id)}:
            raise NotFound("no such FunctionSetAssignments")
        return
    _, program = await derp.program_in_scope(session, scope, device.id, target.program_id or 0)
    if target.kind == "derc":
        _, controls = await programs.device_intervals(session, device.id)
        control = controls.get(target.target_id or 0)
        if control is None or control.program_id != program.id:
            raise NotFound("no such DERControl")


async def meter_reading_in_scope(session: AsyncSession, scope: Scope, target: Target):
    """(MirrorUsagePoint, k, MirrorMeterReading) behind ``/upt/{m}/mr/{k}``, if the caller may read it."""
    for mup in await devres.mups_of(session, owners(scope)):
        if mup.id == target.program_id:
            mmrs = metering.meter_readings(mup)
            k = target.target_id or 0
            if 1 <= k <= len(mmrs):
                return mup, k, mmrs[k - 1]
    raise NotFound("no such MeterReading")


# ------------------------------------------------------------------------------------------------ rendering
def notified_items(kind: str, limit: int) -> int | None:
    """What a notification of a ``kind`` subscription with Subscription ``limit`` carries; the one place the
    limit is interpreted (IEEE 2030.5 Subscription.limit, "functionally equivalent to the 'limit' query string
    parameter, but applies to both list resources as well as other resources").

    List resources: the number of list items, ``min(limit, MAX_LIMIT)`` (the first ones, as a GET with
    ``s=0&l=limit`` returns them); 0 means the list element with ``results="0"`` and no items -- "equivalent to a
    simple change notification". Non-list resources: None for limit 0 ("notifications SHALL NOT contain a
    resource representation"), else 1 (the representation; its renderers take no item count)."""
    if kind in LIST_KINDS:
        return max(0, min(limit, MAX_LIMIT))
    return None if limit <= 0 else 1


def shim(settings: Any) -> Any:
    """What the function-set renderers need from a request (``request.app[RUNTIME].settings``), for rendering
    outside a request: a notification is rendered in the transaction of the change, as its subscriber sees it."""
    return SimpleNamespace(app={RUNTIME: SimpleNamespace(settings=settings)})


async def owner_scope(session: AsyncSession, lfdi: str) -> Scope:
    agg = await session.scalar(select(Aggregator).where(Aggregator.lfdi == lfdi))
    device = await session.scalar(select(EndDevice).where(EndDevice.lfdi == lfdi))
    return Scope(lfdi, device.sfdi if device else 0, agg, device)


async def render_target(
    session: AsyncSession, settings: Any, scope: Scope, target: Target, n: int, now: dt.datetime
) -> etree._Element | None:
    """The subscribed resource as a GET (a list: its first ``n`` items) would return it; None when gone."""
    req = shim(settings)
    try:
        if target.kind == "edev-list":
            found = await visible_devices(session, scope)
            prate = await post_rate(req, session, "EndDevice")
            rate = await poll_rate(req, session, "EndDeviceList")
            items = [await edev.render_edev(session, d, prate) for d in found[:n]]
            return list_element("EndDeviceList", "/edev", items, len(found), rate, subscribable=True)
        if target.kind == "reading-list":
            mup, k, mmr = await meter_reading_in_scope(session, scope, target)
            return await metering.render_reading_list(session, mup, k, mmr, 0, n)
        assert target.device_id is not None
        device = await device_in_scope(session, scope, target.device_id)
        if target.kind == "edev":
            return await edev.render_edev(session, device, await post_rate(req, session, "EndDevice"))
        if target.kind == "fsa-list":
            fsas = await programs.device_fsas(session, device.id)
            rate = await poll_rate(req, session, "FunctionSetAssignmentsList")
            items = [await fsa.render_fsa(req, session, device, f) for f in fsas[:n]]
            return list_element(
                "FunctionSetAssignmentsList", target.href, items, len(fsas), rate, subscribable=True
            )
        if target.kind == "tti-list":
            _, _, rate = await pricing.rate_in_scope(
                session, scope, device.id, target.target_id or 0, target.program_id or 0
            )
            return await pricing.render_tti_list(req, session, device, rate, now, 0, n)
        if target.kind == "edc-list":
            _, drp = await drlc.drp_in_scope(session, scope, device.id, target.program_id or 0)
            return await drlc.render_edc_list(req, session, device, drp, now, 0, n)
        if target.kind == "derp-list":
            if target.target_id not in {f.id for f in await programs.device_fsas(session, device.id)}:
                return None
            found = await programs.fsa_programs(session, target.target_id or 0)
            rate = await poll_rate(req, session, "DERProgramList")
            items = [await derp.render_program(req, session, device, p, now) for p in found[:n]]
            return list_element("DERProgramList", target.href, items, len(found), rate, subscribable=True)
        _, program = await derp.program_in_scope(session, scope, device.id, target.program_id or 0)
        if target.kind == "derp":
            return await derp.render_program(req, session, device, program, now)
        if target.kind == "dderc":
            return derp.render_default(req, device, program)
        if target.kind in ("derc-list", "actderc"):
            found = await derp.program_controls(
                session, device, program, now, active_only=target.kind == "actderc"
            )
            return derp.control_list(req, device, program, found[:n], len(found), target.kind == "actderc")
        if target.kind == "derc":
            intervals, controls = await programs.device_intervals(session, device.id)
            control = controls.get(target.target_id or 0)
            if control is None or control.program_id != program.id:
                return None
            interval = next(i for i in intervals if i.id == control.id)
            return derp.render_control(req, device, control, rules.evaluate(interval, intervals, now))
    except (NotFound, Forbidden, Sep2Error):  # gone, or the subscriber lost access to it
        return None
    return None


def notification(
    sub: Sep2Subscription, resource: etree._Element | None, represented: bool = True
) -> etree._Element:
    """A Notification carrying ``resource`` (typed with xsi:type, as 2030.5 requires for the Resource element).

    ``resource`` None: the resource is gone (status 4, no Resource). ``represented`` False (a non-list resource
    subscribed with limit 0, see ``notified_items``): the resource changed, status 0, no Resource element."""
    res_el = None
    status = STATUS_CANCELLED_DELETED if resource is None else STATUS_DEFAULT
    if resource is not None and represented:
        type_name = xml.local_name(resource)
        resource.tag = xml.q("Resource")
        resource.set(XSI_TYPE, type_name)
        res_el = resource
    return xml.E(
        "Notification",
        None,
        xml.leaf("subscribedResource", sub.resource),
        res_el,
        xml.leaf("status", status),
        xml.leaf("subscriptionURI", sub_href(sub)),
    )


def sub_href(sub: Sep2Subscription) -> str:
    return f"/edev/{sub.end_device_id}/sub/{sub.id}"


async def enqueue_for(
    session: AsyncSession,
    settings: Any,
    subs: list[Sep2Subscription],
    now: dt.datetime | None = None,
    unless_same: set[int] | None = None,
) -> int:
    """Render and queue one Notification per subscription (same transaction as the caller's change).

    Subscriptions in ``unless_same`` (touched only indirectly by the change) are skipped when their resource is
    gone or their notification would equal the last one queued (pending or delivered) for them. A notification
    that carries no items or no representation (limit 0) cannot show whether the resource changed, so that
    comparison is not made for it: it is queued whenever the change may alter the resource (``other_programs``),
    which can be a change that did not (a spurious simple change notification rather than a missed one)."""
    now = now or utcnow()
    unless_same = unless_same or set()
    last = await last_bodies(session, unless_same) if unless_same else {}
    fast = [s for s in subs if s.kind in CONTROL_KINDS]
    rendered: dict[int, etree._Element | None] = (
        await render_control_subs(session, settings, fast, now) if fast else {}
    )
    scopes: dict[str, Scope] = {}
    count = 0
    for sub in subs:
        items = notified_items(sub.kind, sub.limit)
        if sub.id in rendered:
            resource = rendered[sub.id]
        else:
            scope = scopes.get(sub.owner_lfdi)
            if scope is None:
                scope = scopes[sub.owner_lfdi] = await owner_scope(session, sub.owner_lfdi)
            target = Target(sub.kind, sub.resource, sub.subject_device_id, sub.program_id, sub.target_id)
            resource = await render_target(session, settings, scope, target, items or 0, now)
        if sub.id in unless_same and resource is None:
            continue
        body = xml.serialize(notification(sub, resource, represented=items is not None))
        if sub.id in unless_same and items and last.get(sub.id) == body:
            continue
        delivery.enqueue(
            session,
            CHANNEL,
            core_subs.order_key(sub.id),
            kind=sub.kind,
            url=sub.notification_uri,
            body=body,
            content_type=xml.MEDIA_TYPE,
        )
        sub.notifications += 1
        count += 1
    return count


async def last_bodies(session: AsyncSession, sub_ids: set[int]) -> dict[int, bytes]:
    """The body of the newest notification queued (and not given up on) for each of these subscriptions."""
    keys = {core_subs.order_key(i): i for i in sub_ids}
    newest = (
        select(func.max(DeliveryMessage.id))
        .where(
            DeliveryMessage.order_key.in_(list(keys)), DeliveryMessage.status.in_(("pending", "delivered"))
        )
        .group_by(DeliveryMessage.order_key)
    )
    rows = await session.execute(
        select(DeliveryMessage.order_key, DeliveryMessage.body).where(DeliveryMessage.id.in_(newest))
    )
    return {keys[k]: bytes(b) for k, b in rows.all()}


CONTROL_KINDS = ("derc-list", "actderc", "derc")
IN_CHUNK = 5000  # ids per IN (...) list: well below SQLite's and asyncpg's bound-parameter limits


async def _in_chunks(session: AsyncSession, make, ids: set[int] | set[str]) -> list:
    out: list = []
    items = list(ids)
    for i in range(0, len(items), IN_CHUNK):
        out.extend((await session.execute(make(items[i : i + IN_CHUNK]))).all())
    return out


async def render_control_subs(
    session: AsyncSession, settings: Any, subs: list[Sep2Subscription], now: dt.datetime
) -> dict[int, etree._Element | None]:
    """The DER control subscriptions of a change, rendered with a handful of queries in all (not several per
    subscriber): fan-out to thousands of devices of one program must stay within seconds.

    Same result as ``render_target``: the caller's visibility is checked (device owned by the subscriber or
    registered under its aggregator, program assigned to the device), statuses come from ``der_controls.evaluate``
    over every control the device sees, and one evaluation is shared by all devices with the same programs."""
    req = shim(settings)
    device_ids = {s.subject_device_id for s in subs if s.subject_device_id is not None}
    devices = {
        d.id: d
        for (d,) in await _in_chunks(
            session, lambda ids: select(EndDevice).where(EndDevice.id.in_(ids)), device_ids
        )
    }
    assigned: dict[int, set[int]] = {}
    for dev_id, prog_id in await _in_chunks(
        session,
        lambda ids: (
            select(Sep2Fsa.end_device_id, Sep2FsaProgram.program_id)
            .join(Sep2FsaProgram, Sep2FsaProgram.fsa_id == Sep2Fsa.id)
            .where(Sep2Fsa.end_device_id.in_(ids))
        ),
        device_ids,
    ):
        assigned.setdefault(dev_id, set()).add(prog_id)
    all_programs = {p for ps in assigned.values() for p in ps}
    prog_rows = {
        p.id: p
        for (p,) in await _in_chunks(
            session, lambda ids: select(Sep2Program).where(Sep2Program.id.in_(ids)), all_programs
        )
    }
    controls = await programs.list_controls(session, list(all_programs)) if all_programs else []
    owners = {s.owner_lfdi for s in subs}
    agg_of = dict(
        await _in_chunks(
            session,
            lambda ids: select(Aggregator.lfdi, Aggregator.id).where(Aggregator.lfdi.in_(ids)),
            owners,
        )
    )
    evaluated: dict[frozenset[int], list[tuple[Any, rules.Interval, rules.Evaluated]]] = {}
    out: dict[int, etree._Element | None] = {}
    for sub in subs:
        device = devices.get(sub.subject_device_id or 0)
        progs = assigned.get(device.id, set()) if device else set()
        visible = (
            device is not None
            and device.enabled
            and (
                device.lfdi == sub.owner_lfdi
                or (device.aggregator_id is not None and agg_of.get(sub.owner_lfdi) == device.aggregator_id)
            )
        )
        if not visible or sub.program_id not in progs:
            out[sub.id] = None
            continue
        key = frozenset(progs)
        if key not in evaluated:
            intervals = [
                programs.interval_of(c, prog_rows[c.program_id].primacy)
                for c in controls
                if c.program_id in key
            ]
            by_id = {c.id: c for c in controls}
            evaluated[key] = [
                (by_id[i.id], i, rules.evaluate(i, intervals, now))
                for i in sorted(intervals, key=rules.list_order_key)
            ]
        mine = [(c, ev) for c, i, ev in evaluated[key] if i.program_id == sub.program_id and not ev.completed]
        if sub.kind == "derc":
            found = [(c, ev) for c, ev in mine if c.id == sub.target_id]
            out[sub.id] = derp.render_control(req, device, *found[0]) if found else None
            continue
        if sub.kind == "actderc":
            mine = [(c, ev) for c, ev in mine if ev.status == rules.EventStatus.ACTIVE]
        n = notified_items(sub.kind, sub.limit) or 0
        items = [derp.render_control(req, device, c, ev) for c, ev in mine[:n]]
        out[sub.id] = list_element(
            "DERControlList", sub.resource, items, len(mine), subscribable=sub.kind == "derc-list"
        )
    return out


async def affected(session: AsyncSession, change: notify.Change) -> list[Sep2Subscription]:
    """Subscriptions whose rendered resource may differ after ``change`` (one indexed query per facet)."""
    conds = []
    if change.programs:
        conds.append(
            (Sep2Subscription.kind.in_(PROGRAM_KINDS)) & Sep2Subscription.program_id.in_(change.programs)
        )
        fsa_ids = select(Sep2FsaProgram.fsa_id).where(Sep2FsaProgram.program_id.in_(change.programs))
        conds.append((Sep2Subscription.kind == "derp-list") & Sep2Subscription.target_id.in_(fsa_ids))
    if change.devices:
        conds.append(
            Sep2Subscription.kind.in_(DEVICE_KINDS) & Sep2Subscription.subject_device_id.in_(change.devices)
        )
        # an EndDeviceList changes for the device itself and for the aggregator it is registered under
        owners = select(EndDevice.lfdi).where(EndDevice.id.in_(change.devices))
        agg_owners = (
            select(Aggregator.lfdi)
            .join(EndDevice, EndDevice.aggregator_id == Aggregator.id)
            .where(EndDevice.id.in_(change.devices))
        )
        conds.append(
            (Sep2Subscription.kind == "edev-list")
            & or_(Sep2Subscription.owner_lfdi.in_(owners), Sep2Subscription.owner_lfdi.in_(agg_owners))
        )
    influence_sets = change.objects.get("influence", frozenset())
    if influence_sets:
        conds.append(
            Sep2Subscription.kind.in_(INFLUENCE_KINDS) & Sep2Subscription.program_id.in_(influence_sets)
        )
    kinds = {k for t in change.resource_types for k in KINDS_BY_TYPE.get(t, ())}
    if kinds:
        conds.append(Sep2Subscription.kind.in_(kinds))
    if not conds:
        return []
    return list(
        await session.scalars(select(Sep2Subscription).where(or_(*conds)).order_by(Sep2Subscription.id))
    )


async def reading_subs(session: AsyncSession, change: notify.Change) -> list[Sep2Subscription]:
    """Subscriptions to the ReadingLists that ``change.readings`` added to, whose Condition the new values meet."""
    if not change.readings:
        return []
    values: dict[tuple[str, str], list[float]] = {}
    for source, resource, value in change.readings:
        values.setdefault((source, resource.upper()), []).append(value)
    lfdis = {source for source, _ in values}
    mups = {m.id: m for m in await session.scalars(select(Sep2Mup).where(Sep2Mup.device_lfdi.in_(lfdis)))}
    if not mups:
        return []
    subs = list(
        await session.scalars(
            select(Sep2Subscription)
            .where(Sep2Subscription.kind == "reading-list", Sep2Subscription.program_id.in_(list(mups)))
            .order_by(Sep2Subscription.id)
        )
    )
    out = []
    for sub in subs:
        mup = mups[sub.program_id or 0]
        mmrs = metering.meter_readings(mup)
        k = sub.target_id or 0
        if not 1 <= k <= len(mmrs):
            continue
        mmr = mmrs[k - 1]
        new = values.get((mup.device_lfdi, (xml.text(mmr, "mRID") or "").upper()))
        if not new:
            continue
        p10 = metering.power_of_ten(mmr)
        if condition_met(sub.condition, [metering.reading_value(v, p10) for v in new]):
            out.append(sub)
    return out


async def other_programs(
    session: AsyncSession, change: notify.Change, now: dt.datetime
) -> list[Sep2Subscription]:
    """Subscriptions to the control/event lists of *other* programs of the devices a changed program reaches.

    A device sees the events of all its programs together: a control created or cancelled in program A flips the
    potentiallySuperseded flag of overlapping controls of program B (``der_controls.evaluate``), so B's
    DERControlList / ActiveDERControlList / DERControl as a GET returns them changed, and their subscribers must
    hear of it (§8.7.3.2: a notification carries what a GET returns). Candidates are the subscriptions on another
    program of such a device that lists an event overlapping an event of a changed program
    (``der_controls.touches``); ``enqueue_for`` then drops those whose notification would repeat the last one
    (not those of limit 0, whose notification shows no items to compare).
    The same holds for DR programs (EndDeviceControlList)."""
    out: list[Sep2Subscription] = []
    if change.programs:
        reached = (
            select(Sep2Fsa.end_device_id)
            .join(Sep2FsaProgram, Sep2FsaProgram.fsa_id == Sep2Fsa.id)
            .where(Sep2FsaProgram.program_id.in_(change.programs))
        )
        subs = list(
            await session.scalars(
                select(Sep2Subscription).where(
                    Sep2Subscription.kind.in_(CONTROL_KINDS),
                    Sep2Subscription.subject_device_id.in_(reached),
                    Sep2Subscription.program_id.not_in(change.programs),
                )
            )
        )
        if subs:
            ids = set(change.programs) | {s.program_id for s in subs if s.program_id is not None}
            by_program: dict[int, list[rules.Interval]] = {}
            for c in await programs.list_controls(session, list(ids)):
                by_program.setdefault(c.program_id, []).append(programs.interval_of(c, 0))
            changed = [i for p in change.programs for i in by_program.get(p, [])]
            out += [s for s in subs if rules.touches(changed, by_program.get(s.program_id or 0, []), now)]
    sets = change.objects.get("influence", frozenset())
    if sets:
        drps = list(
            await session.scalars(
                select(Sep2InfluenceSet.id).where(
                    Sep2InfluenceSet.id.in_(sets), Sep2InfluenceSet.kind == "drp"
                )
            )
        )
        if drps:
            reached = select(Sep2InfluenceAssignment.end_device_id).where(
                Sep2InfluenceAssignment.set_id.in_(drps)
            )
            subs = list(
                await session.scalars(
                    select(Sep2Subscription).where(
                        Sep2Subscription.kind == "edc-list",
                        Sep2Subscription.subject_device_id.in_(reached),
                        Sep2Subscription.program_id.not_in(drps),
                    )
                )
            )
            if subs:
                ids = set(drps) | {s.program_id for s in subs if s.program_id is not None}
                by_set: dict[int, list[rules.Interval]] = {}
                for e in await session.scalars(
                    select(Sep2InfluenceEvent).where(Sep2InfluenceEvent.set_id.in_(ids))
                ):
                    by_set.setdefault(e.set_id, []).append(influence.interval_of(e, 0))
                changed = [i for d in drps for i in by_set.get(d, [])]
                out += [s for s in subs if rules.touches(changed, by_set.get(s.program_id or 0, []), now)]
    return out


async def on_change(session: AsyncSession, settings: Any, change: notify.Change) -> int:
    now = utcnow()
    subs = await affected(session, change) + await reading_subs(session, change)
    direct = {s.id for s in subs}
    others = [s for s in await other_programs(session, change, now) if s.id not in direct]
    return await enqueue_for(session, settings, subs + others, now, unless_same={s.id for s in others})


notify.register(on_change)


# ---------------------------------------------------------------------------------------------------- wire
def render_subscription(sub: Sep2Subscription) -> etree._Element:
    cond = sub.condition
    return xml.E(
        "Subscription",
        {"href": sub_href(sub)},
        xml.leaf("subscribedResource", sub.resource),
        xml.E(
            "Condition",
            None,
            xml.leaf("attributeIdentifier", cond["attributeIdentifier"]),
            xml.leaf("lowerThreshold", cond["lowerThreshold"]),
            xml.leaf("upperThreshold", cond["upperThreshold"]),
        )
        if cond
        else None,
        xml.leaf("encoding", sub.encoding),
        xml.leaf("level", sub.level),
        xml.leaf("limit", sub.limit),
        xml.leaf("notificationURI", sub.notification_uri),
    )


@dataclass(frozen=True)
class Parsed:
    target: Target
    uri: str
    limit: int
    level: str
    encoding: int
    condition: dict[str, int] | None


def parse_subscription(request: web.Request, body: etree._Element) -> Parsed:
    resource = xml.text(body, "subscribedResource") or ""
    encoding = xml.integer(body, "encoding") or 0
    if encoding != 0:
        raise Invalid("only encoding 0 (application/sep+xml) is supported")
    limit = xml.integer(body, "limit") or 0  # 0: simple change notifications (``notified_items``)
    if limit < 0:
        raise Invalid("limit must not be negative")
    raw_uri = xml.text(body, "notificationURI") or ""
    if len(raw_uri) > 2000:  # the outbox column's size; anyURI itself is unbounded
        raise Invalid("notificationURI is longer than 2000 characters")
    uri = delivery.check_target_url(raw_uri, runtime(request).settings.delivery)
    target = parse_target(resource)
    return Parsed(
        target,
        uri,
        limit,
        xml.text(body, "level") or "+S1",
        encoding,
        parse_condition(xml.find(body, "Condition"), target),
    )


CONDITION_READING_VALUE = 0  # Condition.attributeIdentifier: 0 = Reading value, 1-255 reserved
CONDITIONAL_KINDS = ("reading-list",)


def parse_condition(el: etree._Element | None, target: Target) -> dict[str, int] | None:
    """A Subscription's Condition, checked: on a resource that takes one, naming the Reading value, with
    lowerThreshold <= upperThreshold (the schema already bounds them to Int48)."""
    if el is None:
        return None
    condition = {
        k: int(xml.text(el, k) or 0) for k in ("attributeIdentifier", "lowerThreshold", "upperThreshold")
    }
    if target.kind not in CONDITIONAL_KINDS:
        raise Invalid(
            f"{target.href} takes no Condition (subscribable 1: non-conditional subscriptions only); "
            "conditions apply to a ReadingList"
        )
    if condition["attributeIdentifier"] != CONDITION_READING_VALUE:
        raise Invalid("Condition attributeIdentifier must be 0 (Reading value); 1-255 are reserved")
    if condition["lowerThreshold"] > condition["upperThreshold"]:
        raise Invalid("Condition lowerThreshold is above upperThreshold")
    return condition


def condition_met(condition: dict[str, int] | None, values: list[int]) -> bool:
    """Whether new Reading values trigger a notification: always without a Condition; with one, when a value is
    outside [lowerThreshold, upperThreshold]."""
    if not condition:
        return True
    low, high = condition["lowerThreshold"], condition["upperThreshold"]
    return any(v < low or v > high for v in values)


async def sub_in_scope(session: AsyncSession, scope: Scope, device_id: int, sub_id: int) -> Sep2Subscription:
    await device_in_scope(session, scope, device_id)
    sub = await session.get(Sep2Subscription, sub_id)
    if sub is None or sub.end_device_id != device_id or sub.owner_lfdi != scope.lfdi:
        raise NotFound("no such Subscription")
    return sub


@routes.get("/edev/{e}/sub")
@sep2_handler
async def get_subscription_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with runtime(request).store.sessions() as session:
        scope = await scope_of(request, session)
        device = await device_in_scope(session, scope, path_int(request, "e"))
        found = list(
            await session.scalars(
                select(Sep2Subscription)
                .where(Sep2Subscription.end_device_id == device.id, Sep2Subscription.owner_lfdi == scope.lfdi)
                .order_by(Sep2Subscription.id)
            )
        )
        rate = await poll_rate(request, session, "SubscriptionList")
    if pg.after:
        found = [s for s in found if s.changed_at >= pg.after]
    items = [render_subscription(s) for s in pg.slice(found)]
    return reply(list_element("SubscriptionList", f"/edev/{device.id}/sub", items, len(found), rate))


@routes.post("/edev/{e}/sub")
@sep2_handler
async def post_subscription(request: web.Request) -> web.Response:
    body = await read_body(request, "Subscription")
    parsed = parse_subscription(request, body)
    async with runtime(request).store.sessions.begin() as session:
        scope = await scope_of(request, session)
        device = await device_in_scope(session, scope, path_int(request, "e"))
        await check_visible(session, scope, parsed.target)
        held = await session.scalar(
            select(func.count())
            .select_from(Sep2Subscription)
            .where(Sep2Subscription.end_device_id == device.id)
        )
        if (held or 0) >= MAX_PER_DEVICE:
            raise Sep2Error(400, REASON_LIMIT, f"at most {MAX_PER_DEVICE} subscriptions per EndDevice")
        sub = Sep2Subscription(
            end_device_id=device.id,
            owner_lfdi=scope.lfdi,
            resource=parsed.target.href,
            kind=parsed.target.kind,
            program_id=parsed.target.program_id,
            target_id=parsed.target.target_id,
            subject_device_id=parsed.target.device_id,
            notification_uri=parsed.uri,
            limit=parsed.limit,
            level=parsed.level[:16],
            encoding=parsed.encoding,
            condition=parsed.condition,
            notifications=0,
        )
        session.add(sub)
        await session.flush()
        href = sub_href(sub)
    return web.Response(status=201, headers={"Location": href})


@routes.get("/edev/{e}/sub/{s}")
@sep2_handler
async def get_subscription(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        scope = await scope_of(request, session)
        sub = await sub_in_scope(session, scope, path_int(request, "e"), path_int(request, "s"))
    return reply(render_subscription(sub))


@routes.put("/edev/{e}/sub/{s}")
@sep2_handler
async def put_subscription(request: web.Request) -> web.Response:
    body = await read_body(request, "Subscription")
    parsed = parse_subscription(request, body)
    async with runtime(request).store.sessions.begin() as session:
        scope = await scope_of(request, session)
        sub = await sub_in_scope(session, scope, path_int(request, "e"), path_int(request, "s"))
        await check_visible(session, scope, parsed.target)
        sub.resource, sub.kind = parsed.target.href, parsed.target.kind
        sub.program_id, sub.target_id = parsed.target.program_id, parsed.target.target_id
        sub.subject_device_id = parsed.target.device_id
        sub.notification_uri, sub.limit, sub.level = parsed.uri, parsed.limit, parsed.level[:16]
        sub.encoding, sub.condition = parsed.encoding, parsed.condition
        sub.changed_at = utcnow()
    return no_content()


@routes.delete("/edev/{e}/sub/{s}")
@sep2_handler
async def delete_subscription(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        scope = await scope_of(request, session)
        sub = await sub_in_scope(session, scope, path_int(request, "e"), path_int(request, "s"))
        await session.delete(sub)
    return no_content()
