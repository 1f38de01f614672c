"""The outbox channel of SunSpec Modbus writes: a dispatch's limit is queued for the moment it starts and its
release for the moment it ends (``server.core.dispatch.schedule_modbus``); the delivery worker hands each one over
when it is due, and this sender writes it to the inverter. An inverter that does not answer is retried with the
outbox's back-off; one that staff removed drops its writes."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from server.config import ModbusSettings
from server.core.dispatch import APPLY, MODBUS_CHANNEL, RELEASE
from server.core.errors import Invalid, NotFound
from server.delivery import Channel, Claimed, Outcome
from server.delivery.context import add_channel
from server.modbus.gateway import apply_control
from server.runtime import RUNTIME
from server.store import Store


def channel(store: Store, settings: ModbusSettings) -> Channel:
    async def send(_http: aiohttp.ClientSession, message: Claimed) -> Outcome:
        p = message.payload
        try:
            if message.kind == APPLY:
                await apply_control(
                    store,
                    settings,
                    p["name"],
                    export_limit_pct=p.get("export_limit_pct"),
                    connect=p.get("connect"),
                )
            elif message.kind == RELEASE:
                await apply_control(
                    store,
                    settings,
                    p["name"],
                    release_limit=bool(p.get("release_limit")),
                    connect=p.get("connect"),
                )
            else:
                return Outcome(dropped=True, error=f"unknown Modbus message kind {message.kind}")
        except NotFound as exc:
            return Outcome(dropped=True, error=str(exc))
        except Invalid as exc:
            return Outcome(error=str(exc))
        return Outcome()

    return Channel(MODBUS_CHANNEL, send, timeout_s=settings.timeout_s * 4)


def setup(app: web.Application) -> None:
    rt = app[RUNTIME]
    add_channel(app, channel(rt.store, rt.settings.modbus))
