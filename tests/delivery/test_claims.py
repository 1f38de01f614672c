"""Claims on both backends: a dead process's claims are released (stale heartbeat; vanished process id on this
host) while a live one's are not; the poll exit takes only the unclaimed head; a channel's ``claimable`` condition
keeps messages for the poll exit; leases are renewed while a send is in flight."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys

from aiohttp import web
from sqlalchemy import literal, select
from support import free_port

from server.config import DeliverySettings
from server.delivery import enqueue, has_unclaimed, take_head
from server.delivery.channels import Channel, post_stored_body
from server.delivery.instances import host_identity
from server.delivery.worker import DeliveryWorker
from server.store.models import DeliveryInstance, DeliveryMessage
from server.store.types import utcnow

FAST = DeliverySettings(
    allow_http_loopback=True,
    initial_backoff_s=1,
    max_backoff_s=2,
    poll_interval_ms=50,
    timeout_s=5,
    heartbeat_s=1,
    lease_s=300,
    stale_after_s=60,
)


async def receiver(delay: float = 0.0):
    got: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(await request.read())
        await asyncio.sleep(delay)
        return web.Response()

    app = web.Application()
    app.router.add_post("/n", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/n", got


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def claimed_by(
    store, owner: str, host: str, pid: int, heartbeat: dt.datetime, url: str, n: int
) -> None:
    """``n`` messages of one key, the first claimed (for 300 s) by another process."""
    async with store.sessions.begin() as session:
        session.add(
            DeliveryInstance(id=owner, host=host, pid=pid, started_at=heartbeat, heartbeat_at=heartbeat)
        )
        for i in range(n):
            m = enqueue(session, "test", "k", url=url, body=f"m{i}".encode(), content_type="text/plain")
            if i == 0:
                m.lease_owner, m.lease_until = owner, utcnow() + dt.timedelta(seconds=300)


def worker_for(store) -> DeliveryWorker:
    w = DeliveryWorker(store, FAST)
    w.add_channel(Channel("test", post_stored_body))
    return w


async def wait_for(predicate, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_claims_of_a_process_with_a_stale_heartbeat_are_released_at_start(store):
    runner, url, got = await receiver()
    old = utcnow() - dt.timedelta(seconds=FAST.stale_after_s + 5)
    await claimed_by(store, "a" * 32, "elsewhere/pid:[1]", 1, old, url, 3)
    worker = worker_for(store)
    await worker.start()
    try:
        await wait_for(lambda: len(got) == 3)
    finally:
        await worker.stop()
        await runner.cleanup()
    assert got == [b"m0", b"m1", b"m2"]
    async with store.sessions() as session:
        assert (
            list(await session.scalars(select(DeliveryInstance.id))) == []
        )  # the dead row went, ours at stop


async def test_claims_of_a_vanished_process_on_this_host_are_released_at_start(store):
    runner, url, got = await receiver()
    await claimed_by(store, "b" * 32, host_identity(), dead_pid(), utcnow(), url, 2)
    worker = worker_for(store)
    await worker.start()
    try:
        await wait_for(lambda: len(got) == 2)
    finally:
        await worker.stop()
        await runner.cleanup()
    assert got == [b"m0", b"m1"]


async def test_claims_of_a_live_process_are_left_alone_and_hold_their_key(store):
    runner, url, got = await receiver()
    # a live process: fresh heartbeat, a process id that exists (this one, but another instance id)
    await claimed_by(store, "c" * 32, host_identity(), os.getppid(), utcnow(), url, 2)
    worker = worker_for(store)
    await worker.start()
    try:
        await asyncio.sleep(1.5)  # past a heartbeat of ours
        assert got == []  # m0 is someone else's, m1 waits behind it
    finally:
        await worker.stop()
        await runner.cleanup()


async def test_a_slow_send_keeps_its_lease_renewed_and_other_keys_go_meanwhile(store):
    runner, url, got = await receiver(delay=2.5)
    fast_runner, fast_url, fast_got = await receiver()
    settings = DeliverySettings(**{**FAST.__dict__, "lease_s": 2})
    worker = DeliveryWorker(store, settings)
    worker.add_channel(Channel("test", post_stored_body))
    async with store.sessions.begin() as session:
        enqueue(session, "test", "slow", url=url, body=b"s0", content_type="text/plain")
        for i in range(3):
            enqueue(session, "test", "fast", url=fast_url, body=f"f{i}".encode(), content_type="text/plain")
    await worker.start()
    try:
        await wait_for(lambda: len(fast_got) == 3, 2.0)  # not held behind the slow receiver
        await asyncio.sleep(2.2)  # the 2 s lease would have lapsed without renewal
        async with store.sessions() as session:
            slow = await session.scalar(select(DeliveryMessage).where(DeliveryMessage.order_key == "slow"))
            assert slow.status in ("pending", "delivered")
            if slow.status == "pending":
                assert slow.lease_owner == worker.instance.id and slow.lease_until > utcnow()
        await wait_for(lambda: len(got) == 1)
    finally:
        await worker.stop()
        await runner.cleanup()
        await fast_runner.cleanup()
    assert got == [b"s0"]  # sent once: nobody took the lapsed-looking lease


async def test_the_poll_exit_takes_only_the_unclaimed_head_in_order(store):
    async with store.sessions.begin() as session:
        for i in range(3):
            enqueue(session, "openadr", "ven:1", kind=f"k{i}", payload={"i": i})
        enqueue(session, "openadr", "ven:2", kind="other")
    async with store.sessions.begin() as session:
        first = await take_head(session, "ven:1")
        assert first is not None and first.kind == "k0" and first.payload == {"i": 0}
        assert await has_unclaimed(session, "ven:1", "k1")
    # a sender claims the head: the poll exit must not hand out what is behind it
    async with store.sessions.begin() as session:
        head = await session.scalar(
            select(DeliveryMessage)
            .where(DeliveryMessage.order_key == "ven:1", DeliveryMessage.status == "pending")
            .order_by(DeliveryMessage.id)
        )
        head.lease_owner, head.lease_until = "d" * 32, utcnow() + dt.timedelta(seconds=60)
    async with store.sessions.begin() as session:
        assert await take_head(session, "ven:1") is None
        assert not await has_unclaimed(session, "ven:1", "k1")  # the claimed copy cannot carry later changes
        assert await has_unclaimed(session, "ven:1", "k2")
    async with store.sessions.begin() as session:
        head = await session.get(DeliveryMessage, head.id)
        head.lease_owner, head.lease_until = None, None
    async with store.sessions.begin() as session:
        kinds = [(await take_head(session, "ven:1")).kind, (await take_head(session, "ven:1")).kind]
        assert kinds == ["k1", "k2"] and await take_head(session, "ven:1") is None
    async with store.sessions() as session:
        rows = (await session.execute(select(DeliveryMessage.status, DeliveryMessage.via))).all()
    assert sorted(rows) == [("delivered", "poll")] * 3 + [("pending", "")]


async def test_a_channel_claims_only_what_its_condition_admits(store):
    runner, url, got = await receiver()
    worker = DeliveryWorker(store, FAST)
    worker.add_channel(
        Channel(
            "test", post_stored_body, claimable=lambda: DeliveryMessage.order_key.in_(select(literal("push")))
        )
    )
    async with store.sessions.begin() as session:
        enqueue(session, "test", "push", url=url, body=b"p", content_type="text/plain")
        enqueue(session, "test", "poll", url=url, body=b"q", content_type="text/plain")
    await worker.start()
    try:
        await wait_for(lambda: got == [b"p"])
        await asyncio.sleep(0.5)
    finally:
        await worker.stop()
        await runner.cleanup()
    assert got == [b"p"]
    async with store.sessions() as session:
        assert (await take_head(session, "poll")).body == b"q"


async def test_old_delivered_messages_are_forgotten_but_each_keys_newest_and_dead_letters_stay(store):
    from server.delivery.outbox import prune

    old = utcnow() - dt.timedelta(days=40)
    async with store.sessions.begin() as session:
        rows = []
        for key, status in (
            ("a", "delivered"),
            ("a", "delivered"),
            ("a", "failed"),
            ("b", "dropped"),
            ("b", "delivered"),
        ):
            m = enqueue(session, "test", key, body=b"x")
            m.status, m.created_at = status, old
            rows.append(m)
        recent = enqueue(session, "test", "c", body=b"y")
        recent.status = "delivered"
    async with store.sessions.begin() as session:
        assert await prune(session, utcnow() - dt.timedelta(days=30)) == 2
    async with store.sessions() as session:
        left = (await session.execute(select(DeliveryMessage.order_key, DeliveryMessage.status))).all()
    assert sorted(left) == [("a", "delivered"), ("a", "failed"), ("b", "delivered"), ("c", "delivered")]


async def test_a_commit_that_queued_messages_wakes_the_worker(store):
    runner, url, got = await receiver()
    worker = DeliveryWorker(store, DeliverySettings(**{**FAST.__dict__, "poll_interval_ms": 30_000}))
    worker.add_channel(Channel("test", post_stored_body))
    await worker.start()
    try:
        await asyncio.sleep(0.3)  # the worker is waiting now, for up to 30 s
        async with store.sessions.begin() as session:
            enqueue(session, "test", "k", url=url, body=b"now", content_type="text/plain")
        await wait_for(lambda: got == [b"now"], 3.0)
        async with store.sessions.begin() as session:
            enqueue(session, "test", "k", url=url, body=b"rolled back", content_type="text/plain")
            await session.rollback()
        await asyncio.sleep(0.5)
    finally:
        await worker.stop()
        await runner.cleanup()
    assert got == [b"now"]


async def test_a_claim_whose_process_left_no_row_is_released(store):
    runner, url, got = await receiver()
    async with store.sessions.begin() as session:
        m = enqueue(session, "test", "k", url=url, body=b"orphan", content_type="text/plain")
        m.lease_owner, m.lease_until = "e" * 32, utcnow() + dt.timedelta(seconds=300)
    worker = worker_for(store)
    await worker.start()
    try:
        await wait_for(lambda: got == [b"orphan"])
    finally:
        await worker.stop()
        await runner.cleanup()


async def test_only_channels_with_a_due_unclaimed_message_are_claimed(store):
    """An idle outbox costs one read per pass, not a write transaction per channel: a channel is claimed only when
    it has a pending message that is due and not leased."""
    worker = DeliveryWorker(store, FAST)
    for name in ("idle", "later", "leased", "due"):
        worker.add_channel(Channel(name, post_stored_body))
    assert await worker._due_channels() == set()
    async with store.sessions.begin() as session:
        enqueue(
            session, "later", "k1", url="http://x/", body=b"l", content_type="text/plain"
        ).next_attempt_at = utcnow() + dt.timedelta(seconds=60)
        leased = enqueue(session, "leased", "k2", url="http://x/", body=b"c", content_type="text/plain")
        leased.lease_owner, leased.lease_until = "d" * 32, utcnow() + dt.timedelta(seconds=300)
        enqueue(session, "due", "k3", url="http://x/", body=b"d", content_type="text/plain")
    assert await worker._due_channels() == {"due"}
    claimed = await worker.claim(10)
    assert [(c.channel, c.body) for c in claimed] == [("due", b"d")]
    assert await worker._due_channels() == set()  # now leased by this worker
