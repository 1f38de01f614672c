"""The worker as an aiohttp resource: ``setup`` puts a (not yet started) worker under ``DELIVERY`` on the protocol
application, protocol setups add their channels to it, and a cleanup context starts it with the application and
stops it (handing back unfinished claims) when the application shuts down."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from server.delivery.channels import Channel
from server.delivery.worker import DeliveryWorker
from server.runtime import RUNTIME

DELIVERY = web.AppKey("delivery", DeliveryWorker)


def setup(app: web.Application) -> DeliveryWorker:
    rt = app[RUNTIME]
    worker = DeliveryWorker(rt.store, rt.settings.delivery)
    app[DELIVERY] = worker

    async def run(app: web.Application) -> AsyncIterator[None]:
        await worker.start()
        # the admin application shares the Runtime, not this application: its handlers reach the worker there
        rt.outbox = worker
        try:
            yield
        finally:
            rt.outbox = None
            await worker.stop()

    app.cleanup_ctx.append(run)
    return worker


def add_channel(app: web.Application, channel: Channel) -> None:
    """A protocol's setup registers how its messages leave (before the application starts)."""
    app[DELIVERY].add_channel(channel)
