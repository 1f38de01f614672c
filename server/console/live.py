"""Live updates: a server-sent event stream per console page. Every ``TICK_S`` it compares a fingerprint of the
alarms and of the events (counts and newest changes, a few aggregate queries) with the last one it sent and,
when one moved, names it (``event: alarms`` / ``event: events``); the page's script then asks htmx to refresh the
lists that follow it. The stream ends when the session does (logout or expiry) or the server stops."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.access import SESSION_COOKIE
from server.admin.common import runtime
from server.console.render import PREFIX
from server.core import staff
from server.store.models import Alarm, Event, EventResponse

routes = web.RouteTableDef()
STOPPING = web.AppKey("console_stopping", asyncio.Event)
TICK_S = 1.0
KEEPALIVE_S = 15.0


def setup(app: web.Application) -> None:
    async def stopping(app: web.Application) -> AsyncIterator[None]:
        app[STOPPING] = asyncio.Event()
        yield

    async def on_shutdown(app: web.Application) -> None:
        app[STOPPING].set()  # open streams end before the runner waits for its handlers

    app.cleanup_ctx.append(stopping)
    app.on_shutdown.append(on_shutdown)


async def fingerprints(session: AsyncSession) -> dict[str, tuple]:
    alarm = (
        await session.execute(
            select(
                func.count(Alarm.id),
                func.max(Alarm.id),
                func.max(Alarm.last_seen_at),
                func.count(Alarm.cleared_at),
                func.count(Alarm.acknowledged_at),
            )
        )
    ).one()
    event = (
        await session.execute(
            select(
                func.count(Event.id),
                func.max(Event.id),
                func.max(Event.changed_at),
                func.count(Event.cancelled_at),
            )
        )
    ).one()
    responses = (
        await session.execute(select(func.count(EventResponse.id), func.max(EventResponse.id)))
    ).one()
    return {"alarms": tuple(alarm), "events": (*event, *responses)}


@routes.get(PREFIX + "/live")
async def live(request: web.Request) -> web.StreamResponse:
    rt = runtime(request)
    stop = request.app[STOPPING]
    cookie = request.cookies.get(SESSION_COOKIE, "")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b"retry: 3000\n\n")
    sent: dict[str, tuple] = {}
    quiet = 0.0
    while not stop.is_set():
        async with rt.store.sessions() as session:
            # a stream opened with a session lives only as long as the session (tokens are checked per request)
            if cookie and await staff.session_principal(session, cookie, dt.datetime.now(dt.UTC)) is None:
                break
            now = await fingerprints(session)
        changed = [name for name, value in now.items() if sent.get(name) != value]
        try:
            if sent and changed:
                for name in changed:
                    await response.write(f"event: {name}\ndata: {name}\n\n".encode())
                quiet = 0.0
            elif quiet >= KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                quiet = 0.0
        except (ConnectionResetError, RuntimeError):
            break
        sent = now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)
        quiet += TICK_S
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response
