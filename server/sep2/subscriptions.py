"""2030.5 Subscription/Notification: SubscriptionList per EndDevice, and durable Notifications on change.

    /edev/{e}/sub          SubscriptionList (GET, POST)
    /edev/{e}/sub/{s}      Subscription (GET, PUT, DELETE)

What a client may subscribe to (``subscribedResource``, a relative or absolute href of this server) is what the
function-set modules declare (``server.sep2.resources``): EndDeviceList and EndDevice (``edev``),
FunctionSetAssignmentsList (``fsa``), DERProgramList, DERProgram, DERControlList, ActiveDERControlList, DERControl
and DefaultDERControl (``derp``), TariffProfileList and TimeTariffIntervalList (``pricing``),
EndDeviceControlList (``drlc``) and ReadingList (``metering``, the one resource that takes a Condition:
SubscribableType 3). This module only iterates those declarations.

How a notification is made (and why it is never lost)::

    staff/orchestration          core (one transaction)                        outbox worker
    -------------------          ----------------------                        -------------
    create/cancel control  --->  change rows + changes.record(...)
                                 COMMIT begins: on_change (this module)
                                     subscriptions each declaration says the change affects
                                     render each with the declaration's render (= its GET), as the
                                     subscriber's Scope sees it now; revoked subscribers get nothing
                                     delivery.enqueue(order_key="sep2-sub:{id}", url=notificationURI)
                                 COMMIT  ---------------------------------------->  POST Notification (HTTPS)
                                 outbox woken                                       5xx/refused: back-off, retry
                                                                                    in order per subscription;
                                                                                    revoked meanwhile: given up

The notification carries the whole resource (a list: its first ``limit`` items, as a GET with ``s=0&l=limit``
would), so cancellation (EventStatus 2/3) and supersession (4) arrive with the status the device must apply.
``limit`` 0 asks for a simple change notification (IEEE 2030.5 Subscription.limit; ``notified_items`` is the one
place that reads it): a list resource comes with ``results="0"``, its ``all`` and no items; a non-list resource
(EndDevice, DERProgram, DERControl, DefaultDERControl) with no Resource element at all, status 0.
Conditions (IEEE 2030.5 Subscription/Condition: "a condition that must be satisfied for the Notification to be
triggered"; attributeIdentifier 0 = Reading value, 1-255 reserved): only a resource declared ``conditional``
takes one -- the others advertise ``subscribable="1"`` (SubscribableType: non-conditional subscriptions only) and
a Condition on them, or a reserved attributeIdentifier, or lowerThreshold > upperThreshold, is refused with 400
and an Error body. New readings trigger a notification of a conditional subscription only when at least one of
them has a Reading value (as the ReadingList shows it: in its ReadingType's power of ten) below lowerThreshold or
above upperThreshold, i.e. outside the band the subscriber called normal; the notification still carries the
ReadingList as a GET would return it (§8.7.3.2: the representation SHALL be identical to a GET's).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import urllib.parse
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from lxml import etree
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import delivery
from server.core import changes
from server.core import scope as client_scope
from server.core import subscriptions as core_subs
from server.core.errors import DomainError, Invalid, NotFound
from server.core.parties import device_in_scope
from server.core.scope import Scope
from server.sep2 import csipaus, derp, drlc, edev, fsa, metering, pricing, xml  # noqa: F401 - they declare resources
from server.sep2 import delivery as sep2_delivery
from server.sep2.common import (
    REASON_LIMIT,
    Sep2Error,
    list_element,
    no_content,
    page,
    path_int,
    read_body,
    reply,
    runtime,
    scope_of,
    sep2_handler,
)
from server.sep2.render import RenderCtx, poll_rate, render_ctx
from server.sep2.resources import REGISTRY, Params, Subscribable, match
from server.store.models import DeliveryMessage, Sep2Subscription
from server.store.types import utcnow

routes = web.RouteTableDef()

CHANNEL = sep2_delivery.CHANNEL
MAX_PER_DEVICE = 64  # Subscriptions one SubscriptionList holds (bounded work per change and per client)
MAX_LIMIT = 255  # list items carried in one notification (the same cap as one GET page)
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

# Notification.status values (IEEE 2030.5 Notification)
STATUS_DEFAULT = 0
STATUS_CANCELLED_DELETED = 4  # subscription cancelled: the resource was deleted


@dataclass(frozen=True)
class Target:
    """A subscribed resource: its declaration, the ids its href names, and the href itself."""

    decl: Subscribable
    params: Params
    href: str

    @property
    def kind(self) -> str:
        return self.decl.kind


def parse_target(resource: str) -> Target:
    """Which declared resource an href names (absolute URIs of this server are reduced to their path)."""
    path = urllib.parse.urlsplit(resource.strip()).path.rstrip("/") or "/"
    found = match(path)
    if found is None:
        raise NotFound(f"{path} is not a subscribable resource of this server")
    return Target(found[0], found[1], path)


async def check_visible(ctx: RenderCtx, scope: Scope, target: Target, limit: int) -> str:
    """The subscriber must be able to GET the resource (its declaration's render answers for the scope);
    otherwise 404/403 and nothing is stored. Returns the digest of what it sees now (``shown``), in the CSIP-AUS
    namespace it reads."""
    n = notified_items(target.decl, limit) or 0
    resource = await target.decl.render(ctx, scope, replace(target.params, limit=n))
    return shown(csipaus.for_client(resource, await csipaus.of_client(ctx.session, scope.lfdi)))


def shown(resource: etree._Element | None) -> str:
    """A digest of a resource as a subscriber sees it (None: gone); compared before each notification."""
    return hashlib.sha256(b"" if resource is None else xml.serialize(resource)).hexdigest()


def notified_items(decl: Subscribable, limit: int) -> int | None:
    """What a notification of a subscription with Subscription ``limit`` carries; the one place the limit is
    interpreted (IEEE 2030.5 Subscription.limit, "functionally equivalent to the 'limit' query string parameter,
    but applies to both list resources as well as other resources").

    List resources: the number of list items, ``min(limit, MAX_LIMIT)`` (the first ones, as a GET with
    ``s=0&l=limit`` returns them); 0 means the list element with ``results="0"`` and no items -- "equivalent to a
    simple change notification". Non-list resources: None for limit 0 ("notifications SHALL NOT contain a
    resource representation"), else 1 (the representation; its renderers take no item count)."""
    if decl.is_list:
        return max(0, min(limit, MAX_LIMIT))
    return None if limit <= 0 else 1


async def render_subscribed(
    ctx: RenderCtx, subs: list[Sep2Subscription], scopes: dict[str, Scope]
) -> dict[int, etree._Element | None]:
    """Each subscription's resource as its subscriber's GET (a list: its first ``limit`` items) returns it now;
    None when it is gone or the subscriber may no longer see it. Rendered by the resource's declaration: many of
    one kind at once where the declaration can (``render_many``)."""
    by_kind: dict[str, list[Sep2Subscription]] = {}
    for sub in subs:
        by_kind.setdefault(sub.kind, []).append(sub)
    out: dict[int, etree._Element | None] = {}
    for kind, group in by_kind.items():
        decl = REGISTRY.get(kind)
        if decl is None:
            out.update({sub.id: None for sub in group})
            continue
        wants = [
            (
                scopes[sub.owner_lfdi],
                Params(
                    sub.subject_device_id,
                    sub.program_id,
                    sub.target_id,
                    0,
                    notified_items(decl, sub.limit) or 0,
                ),
            )
            for sub in group
        ]
        if decl.render_many is not None:
            results: list[Any] = await decl.render_many(ctx, wants)
        else:
            results = []
            for scope, params in wants:
                try:
                    results.append(await decl.render(ctx, scope, params))
                except (DomainError, Sep2Error) as exc:  # gone, or the subscriber lost access to it
                    results.append(exc)
        for sub, result in zip(group, results, strict=True):
            out[sub.id] = None if isinstance(result, Exception) else result
    return out


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

    Subscribers whose access staff revoked get none, and nobody gets one when the resource is as the subscriber
    last saw it (``Sep2Subscription.shown_digest``; declarations may name more subscriptions than a change
    alters). A list notification without items (limit 0) cannot show what changed, so that comparison is not made
    for it: it is queued whenever the change may alter the list (a spurious simple change notification rather
    than a missed one). Subscriptions in ``unless_same`` (touched only indirectly by the change) that have no
    digest yet are compared with the last notification queued for them instead, and skipped when gone."""
    ctx = RenderCtx(session, settings, now or utcnow())
    unless_same = unless_same or set()
    scopes = await client_scope.for_lfdis(session, {s.owner_lfdi for s in subs})
    # a subscriber whose access staff revoked hears nothing (not even that its resource is gone)
    subs = [s for s in subs if not scopes[s.owner_lfdi].revoked]
    undigested = {s.id for s in subs if s.id in unless_same and s.shown_digest is None}
    last = await last_bodies(session, undigested) if undigested else {}
    rendered = await render_subscribed(ctx, subs, scopes)
    # read before the loop: a query in it would flush the messages queued so far, one round trip per message
    namespaces = await csipaus.of_clients(session, {s.owner_lfdi for s in subs})
    count = 0
    for sub in subs:
        decl = REGISTRY.get(sub.kind)
        items = notified_items(decl, sub.limit) if decl else None
        resource = rendered.get(sub.id)
        if resource is not None:
            # the CSIP-AUS namespace the subscriber reads (server.sep2.csipaus), as its GETs are answered; compared
            # in that form, so an element its namespace does not carry (e.g. a CSIP-AUS 1.3 interval count sent
            # to a 1.2 client) changing alone tells it nothing
            resource = csipaus.for_client(resource, namespaces[sub.owner_lfdi])
        digest = shown(resource)
        comparable = not (decl is not None and decl.is_list and items == 0)
        if comparable and sub.shown_digest == digest:
            continue
        if sub.id in unless_same and sub.shown_digest is None and resource is None:
            continue
        body = xml.serialize(notification(sub, resource, represented=items is not None))
        if sub.id in unless_same and sub.shown_digest is None and items and last.get(sub.id) == body:
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
        sub.shown_digest = digest
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
    return {keys[k]: bytes(b) for k, b in rows.all() if b is not None}


async def affected(session: AsyncSession, change: changes.Change) -> list[Sep2Subscription]:
    """Subscriptions whose resource a declaration says ``change`` may alter (one indexed query)."""
    conds = []
    for decl in REGISTRY.values():
        cond = decl.affected(change)
        if cond is not None:
            conds.append((Sep2Subscription.kind == decl.kind) & cond)
    if not conds:
        return []
    return list(
        await session.scalars(select(Sep2Subscription).where(or_(*conds)).order_by(Sep2Subscription.id))
    )


def _hooks(name: str) -> list[Any]:
    """The distinct ``touched``/``triggered`` hooks of the declarations (several resources share one)."""
    seen: list[Any] = []
    for decl in REGISTRY.values():
        hook = getattr(decl, name)
        if hook is not None and hook not in seen:
            seen.append(hook)
    return seen


async def on_change(session: AsyncSession, settings: Any, change: changes.Change) -> int:
    now = utcnow()
    subs = await affected(session, change)
    for hook in _hooks("triggered"):
        subs += await hook(session, change, now)
    direct: dict[int, Sep2Subscription] = {s.id: s for s in subs}
    others: dict[int, Sep2Subscription] = {}
    for hook in _hooks("touched"):
        for s in await hook(session, change, now):
            if s.id not in direct:
                others[s.id] = s
    chosen = list(direct.values()) + list(others.values())
    return await enqueue_for(session, settings, chosen, now, unless_same=set(others))


changes.listen(on_change)


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
    uri = delivery.check_target_url(raw_uri, runtime(request).settings.delivery)  # its form; addresses: below
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


def parse_condition(el: etree._Element | None, target: Target) -> dict[str, int] | None:
    """A Subscription's Condition, checked: on a resource that takes one, naming the Reading value, with
    lowerThreshold <= upperThreshold (the schema already bounds them to Int48)."""
    if el is None:
        return None
    condition = {
        k: int(xml.text(el, k) or 0) for k in ("attributeIdentifier", "lowerThreshold", "upperThreshold")
    }
    if not target.decl.conditional:
        raise Invalid(
            f"{target.href} takes no Condition (subscribable 1: non-conditional subscriptions only); "
            "conditions apply to a ReadingList"
        )
    if condition["attributeIdentifier"] != CONDITION_READING_VALUE:
        raise Invalid("Condition attributeIdentifier must be 0 (Reading value); 1-255 are reserved")
    if condition["lowerThreshold"] > condition["upperThreshold"]:
        raise Invalid("Condition lowerThreshold is above upperThreshold")
    return condition


async def check_notification_target(request: web.Request, parsed: Parsed) -> None:
    """Every address the notificationURI's host resolves to must be one the server may POST to
    (``server.delivery.targets``); otherwise 400 with an Error body, and nothing is stored."""
    await delivery.check_target(parsed.uri, delivery.TargetPolicy.of(runtime(request).settings))


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
        scope = scope_of(request)
        device = await device_in_scope(session, scope, path_int(request, "e"))
        query = (
            select(Sep2Subscription)
            .where(Sep2Subscription.end_device_id == device.id, Sep2Subscription.owner_lfdi == scope.lfdi)
            .order_by(Sep2Subscription.id)
        )
        found, total = await pg.fetch(session, query, Sep2Subscription.changed_at)
        rate = await poll_rate(render_ctx(request, session), "SubscriptionList")
    items = [render_subscription(s) for s in found]
    return reply(list_element("SubscriptionList", f"/edev/{device.id}/sub", items, total, rate))


@routes.post("/edev/{e}/sub")
@sep2_handler
async def post_subscription(request: web.Request) -> web.Response:
    body = await read_body(request, "Subscription")
    parsed = parse_subscription(request, body)
    await check_notification_target(request, parsed)
    async with runtime(request).store.sessions.begin() as session:
        scope = scope_of(request)
        device = await device_in_scope(session, scope, path_int(request, "e"))
        digest = await check_visible(render_ctx(request, session), scope, parsed.target, parsed.limit)
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
            program_id=parsed.target.params.p,
            target_id=parsed.target.params.t,
            subject_device_id=parsed.target.params.e,
            notification_uri=parsed.uri,
            limit=parsed.limit,
            level=parsed.level[:16],
            encoding=parsed.encoding,
            condition=parsed.condition,
            notifications=0,
            shown_digest=digest,
        )
        session.add(sub)
        await session.flush()
        href = sub_href(sub)
    return web.Response(status=201, headers={"Location": href})


@routes.get("/edev/{e}/sub/{s}")
@sep2_handler
async def get_subscription(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        scope = scope_of(request)
        sub = await sub_in_scope(session, scope, path_int(request, "e"), path_int(request, "s"))
    return reply(render_subscription(sub))


@routes.put("/edev/{e}/sub/{s}")
@sep2_handler
async def put_subscription(request: web.Request) -> web.Response:
    body = await read_body(request, "Subscription")
    parsed = parse_subscription(request, body)
    await check_notification_target(request, parsed)
    async with runtime(request).store.sessions.begin() as session:
        scope = scope_of(request)
        sub = await sub_in_scope(session, scope, path_int(request, "e"), path_int(request, "s"))
        sub.shown_digest = await check_visible(
            render_ctx(request, session), scope, parsed.target, parsed.limit
        )
        sub.resource, sub.kind = parsed.target.href, parsed.target.kind
        sub.program_id, sub.target_id = parsed.target.params.p, parsed.target.params.t
        sub.subject_device_id = parsed.target.params.e
        sub.notification_uri, sub.limit, sub.level = parsed.uri, parsed.limit, parsed.level[:16]
        sub.encoding, sub.condition = parsed.encoding, parsed.condition
        sub.changed_at = utcnow()
    return no_content()


@routes.delete("/edev/{e}/sub/{s}")
@sep2_handler
async def delete_subscription(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        scope = scope_of(request)
        sub = await sub_in_scope(session, scope, path_int(request, "e"), path_int(request, "s"))
        await session.delete(sub)
    return no_content()
