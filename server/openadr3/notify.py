"""Webhook notifications of 3.x subscriptions, through the durable outbox (channel ``openadr3-webhook``).

A change record naming events, programs or reports (``server.core.changes``) is rendered here, in the
transaction of the change, once per subscription that asks for that object and operation and whose holder may
see the object (a VEN only of events that reach it and of its own reports; a BL client of everything). The body
is the specification's ``notification`` rendered by the same function as the GET, queued under one order key per
subscription, so a subscriber hears of an event's creation, modification and cancellation in that order, retried
with back-off across restarts. The POST carries the subscription's ``bearerToken`` as ``Authorization: Bearer``;
the callback URL is checked against the target rules when subscribed and again before each POST.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from server import delivery
from server.config import Settings
from server.core import changes, oadr3
from server.delivery.channels import Channel, Claimed, Outcome
from server.delivery.targets import GuardedResolver, Refused, TargetPolicy, check_target
from server.openadr3 import render
from server.store.models import Event, Oadr3Report, Program
from server.tls import trust_files

CHANNEL = "openadr3-webhook"
KEY_PREFIX = "oadr3-subscription:"
JSON = "application/json"


# the 3.0.1 names of the operations (kept as a subscriber spelled them: server.openadr3.subscriptions)
NAMES_301 = {"CREATE": "POST", "UPDATE": "PUT", "READ": "GET", "DELETE": "DELETE"}


def _wants(operations: dict[str, Any], object_type: str, operation: str) -> bool:
    asked = operations.get("operations", [])
    return object_type in operations.get("objects", []) and (
        operation in asked or NAMES_301[operation] in asked
    )


def _queue(
    session: AsyncSession, sub: oadr3.Subscriber, object_type: str, operation: str, obj: dict[str, Any]
) -> int:
    queued = 0
    for ops in sub.subscription.object_operations:
        if not _wants(ops, object_type, operation):
            continue
        note = {
            "objectType": object_type,
            "operation": operation,
            "object": obj,
            "targets": obj.get("targets"),
        }
        delivery.enqueue(
            session,
            channel=CHANNEL,
            order_key=f"{KEY_PREFIX}{sub.subscription.id}",
            kind=f"{object_type.lower()}-{operation.lower()}",
            url=ops["callbackUrl"],
            body=json.dumps(note).encode(),
            content_type=JSON,
            payload={"bearer": ops.get("bearerToken")},
        )
        queued += 1
    return queued


async def _events(session: AsyncSession, ids: frozenset[int]) -> int:
    queued = 0
    for event in [e for i in sorted(ids) if (e := await session.get(Event, i)) is not None]:
        if event.kind not in ("price", "dr"):
            continue
        targets = (await oadr3.event_targets(session, [event.id])).get(event.id, [])
        obj = render.event(event, targets)
        operation = oadr3.operation_of(event)
        reached = await oadr3.reached_vens(session, event)
        for sub in await oadr3.subscribers(session, "EVENT", event.program_id):
            if sub.role != "bl" and (
                sub.ven_pk is None or (reached is not None and sub.ven_pk not in reached)
            ):
                continue
            queued += _queue(session, sub, "EVENT", operation, obj)
    return queued


async def _programs(session: AsyncSession, ids: frozenset[int]) -> int:
    queued = 0
    for program in [p for i in sorted(ids) if (p := await session.get(Program, i)) is not None]:
        if program.kind not in oadr3.PROGRAM_KINDS:
            continue
        operation = "CREATE" if program.created_at == program.changed_at else "UPDATE"
        obj = render.program(program, (await oadr3.target_names(session, [program.id])).get(program.id, []))
        for sub in await oadr3.subscribers(session, "PROGRAM", program.id):
            queued += _queue(session, sub, "PROGRAM", operation, obj)
    return queued


async def _reports(session: AsyncSession, ids: frozenset[int]) -> int:
    queued = 0
    for report in [r for i in sorted(ids) if (r := await session.get(Oadr3Report, i)) is not None]:
        operation = "CREATE" if report.created_at == report.changed_at else "UPDATE"
        client_id = (await oadr3.client_ids(session, [report.client_pk])).get(report.client_pk, "")
        obj = render.report(report, client_id)
        for sub in await oadr3.subscribers(session, "REPORT", None):
            if sub.role == "bl" or sub.subscription.client_pk == report.client_pk:
                queued += _queue(session, sub, "REPORT", operation, obj)
    return queued


async def on_change(session: AsyncSession, settings: Any, change: changes.Change) -> int:
    if not getattr(getattr(settings, "openadr3", None), "enabled", False):
        return 0
    wanted = {k: change.objects.get(k) for k in ("event", "program", "report")}
    if not any(wanted.values()):
        return 0
    total = 0
    if wanted["program"]:
        total += await _programs(session, wanted["program"])
    if wanted["event"]:
        total += await _events(session, wanted["event"])
    if wanted["report"]:
        total += await _reports(session, wanted["report"])
    return total


changes.listen(on_change)


# ------------------------------------------------------------------------------------------------- the channel
def client_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if settings.delivery.verify_tls:
        for path in trust_files(settings):
            ctx.load_verify_locations(cafile=path)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def sender(policy: TargetPolicy):
    async def send(http: aiohttp.ClientSession, message: Claimed) -> Outcome:
        if message.body is None:
            return Outcome(dropped=True, error="message has no body")
        try:
            await check_target(message.url, policy)
        except Refused as exc:
            return Outcome(error=f"webhook target refused: {exc}"[:500], final=True)
        headers = {"Content-Type": JSON}
        bearer = (message.payload or {}).get("bearer")
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            async with http.post(
                message.url, data=message.body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            return Outcome(error=f"{type(exc).__name__}: {exc}"[:500])
        return Outcome(status=status, error="" if 200 <= status < 300 else f"HTTP {status}")

    return send


def channel(settings: Settings) -> Channel:
    policy = TargetPolicy.of(settings)
    return Channel(
        CHANNEL,
        sender(policy),
        ssl_context=client_context(settings),
        resolver=lambda: GuardedResolver(policy),
    )
