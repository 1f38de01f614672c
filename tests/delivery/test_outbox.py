"""The delivery outbox on both backends: retries with back-off on 5xx and refused connections, order per key,
exactly once across a worker restart and with two workers on one database, dead letters, the poll exit."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest
from aiohttp import web
from support import free_port

from server.config import DeliverySettings
from server.core.errors import Invalid
from server.delivery import check_target_url, enqueue
from server.delivery.channels import Channel, post_stored_body
from server.delivery.outbox import backoff
from server.delivery.worker import DeliveryWorker
from server.store.models import DeliveryMessage

FAST = DeliverySettings(
    allow_http_loopback=True, initial_backoff_s=1, max_backoff_s=2, poll_interval_ms=50, timeout_s=5
)


class Receiver:
    """A webhook receiver on loopback that can answer 5xx, be switched off, and records what arrives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[str, bytes]] = []
        self.fail_next = 0
        self.status = 200
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        if self.status == 200:
            self.received.append((request.match_info["key"], body))
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/notify/{key}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
            self.runner = None

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.port}/notify/{key}"


def worker_for(store, settings: DeliverySettings = FAST) -> DeliveryWorker:
    worker = DeliveryWorker(store, settings)
    worker.add_channel(Channel("test", post_stored_body))
    return worker


async def put(store, receiver: Receiver, items: list[tuple[str, str]]) -> None:
    async with store.sessions.begin() as session:
        for key, body in items:
            enqueue(
                session, "test", key, url=receiver.url(key), body=body.encode(), content_type="text/plain"
            )


async def wait_for(predicate, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def statuses(store) -> collections.Counter:
    from sqlalchemy import select

    async with store.sessions() as session:
        return collections.Counter(await session.scalars(select(DeliveryMessage.status)))


def by_key(received: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = collections.defaultdict(list)
    for key, body in received:
        out[key].append(body.decode())
    return dict(out)


async def test_retries_5xx_then_refused_then_delivers_in_order_exactly_once_across_restart(store):
    receiver = Receiver(free_port())
    await receiver.start()
    receiver.fail_next = 2  # the first two POSTs get 503
    items = [("sub-a", f"a{i}") for i in range(4)] + [("sub-b", f"b{i}") for i in range(3)]
    await put(store, receiver, items)
    worker = worker_for(store)
    await worker.start()
    await wait_for(lambda: receiver.fail_next == 0)
    # now the receiver goes away entirely: connections are refused
    await receiver.stop()
    await asyncio.sleep(1.0)
    await worker.stop()  # "server restart": the first worker is gone, its state only in the database
    assert (await statuses(store))["pending"] >= 1
    await receiver.start()
    restarted = worker_for(store)
    await restarted.start()
    try:
        await wait_for(lambda: len(receiver.received) == len(items))
        await asyncio.sleep(0.3)  # nothing more may arrive
    finally:
        await restarted.stop()
        await receiver.stop()
    assert by_key(receiver.received) == {"sub-a": ["a0", "a1", "a2", "a3"], "sub-b": ["b0", "b1", "b2"]}
    assert await statuses(store) == {"delivered": len(items)}


async def test_two_workers_share_one_outbox_without_duplicates_or_reordering(store):
    receiver = Receiver(free_port())
    await receiver.start()
    items = [(f"sub-{k}", f"{k}-{i}") for i in range(10) for k in range(4)]
    await put(store, receiver, items)
    workers = [worker_for(store) for _ in range(2)]
    for w in workers:
        await w.start()
    try:
        await wait_for(lambda: len(receiver.received) >= len(items))
        await asyncio.sleep(0.3)
    finally:
        for w in workers:
            await w.stop()
        await receiver.stop()
    assert len(receiver.received) == len(items)
    assert by_key(receiver.received) == {f"sub-{k}": [f"{k}-{i}" for i in range(10)] for k in range(4)}


async def test_a_4xx_answer_fails_that_message_and_its_successors_still_go(store):
    receiver = Receiver(free_port())
    await receiver.start()
    receiver.status = 404
    await put(store, receiver, [("sub", "gone")])
    worker = worker_for(store)
    await worker.start()
    try:
        for _ in range(100):
            if (await statuses(store)).get("failed") == 1:
                break
            await asyncio.sleep(0.05)
        assert (await statuses(store)) == {"failed": 1}
        receiver.status = 200
        await put(store, receiver, [("sub", "next")])
        worker.wake()
        await wait_for(lambda: len(receiver.received) == 1)
    finally:
        await worker.stop()
        await receiver.stop()
    assert receiver.received == [("sub", b"next")]


async def test_after_the_last_attempt_a_message_is_a_dead_letter_and_its_key_moves_on(store):
    from dataclasses import replace

    receiver = Receiver(free_port())
    await receiver.start()
    receiver.fail_next = 2  # 503 twice: with max_attempts 2 the first message is given up on
    await put(store, receiver, [("sub", "first"), ("sub", "second")])
    worker = worker_for(store, replace(FAST, max_attempts=2))
    await worker.start()
    try:
        for _ in range(200):
            if await statuses(store) == {"failed": 1, "delivered": 1}:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await receiver.stop()
    assert receiver.received == [("sub", b"second")]
    async with store.sessions() as session:
        from sqlalchemy import select

        rows = (
            await session.execute(
                select(DeliveryMessage.status, DeliveryMessage.attempts).order_by(DeliveryMessage.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("failed", 2), ("delivered", 1)]


def test_backoff_doubles_up_to_the_cap():
    s = DeliverySettings(initial_backoff_s=2, max_backoff_s=30)
    assert [backoff(n, s).total_seconds() for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("https://device.example/notify", False, True),
        ("http://127.0.0.1:9/notify", False, False),
        ("http://127.0.0.1:9/notify", True, True),
        ("http://[::1]:9/notify", True, True),
        ("http://localhost:9/notify", True, True),
        ("http://192.0.2.1/notify", True, False),
        ("ftp://127.0.0.1/x", True, False),
        ("/relative", True, False),
    ],
)
def test_target_url_policy(url, allow, ok):
    settings = DeliverySettings(allow_http_loopback=allow)
    if ok:
        assert check_target_url(url, settings) == url
    else:
        with pytest.raises(Invalid):
            check_target_url(url, settings)
