"""A channel: how one protocol's messages leave. The outbox claims, orders, retries and records; the channel's
``send`` turns one claimed message into one exchange with its receiver and says how it went."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Claimed:
    """A message this process holds a lease on, as its sender sees it."""

    id: int
    channel: str
    order_key: str
    kind: str
    url: str
    content_type: str
    body: bytes | None
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """How one send went. ``error`` empty: delivered. ``dropped``: nothing left to say (not sent, not retried).
    ``later``: not sendable now for a reason that is not the receiver's failure (back to the queue, no attempt
    counted). ``final``: the error is final (e.g. the target became one the server must not reach): a dead letter
    at once, never retried."""

    status: int | None = None
    error: str = ""
    dropped: bool = False
    later: bool = False
    final: bool = False


Sender = Callable[[aiohttp.ClientSession, Claimed], Awaitable[Outcome]]
# of claimed messages (id, order key), those whose receiver may no longer have them (e.g. a 2030.5 subscriber
# whose access staff revoked after they were queued): given up on, never sent
Withhold = Callable[[AsyncSession, list[tuple[int, str]]], Awaitable[set[int]]]
WITHHELD = "recipient's access revoked"


@dataclass(frozen=True)
class Channel:
    name: str
    send: Sender
    # the client side of its TLS (each protocol sets up its own: client certificate, trust anchors)
    ssl_context: ssl.SSLContext | None = None
    # seconds per exchange; None: delivery.timeout_s
    timeout_s: float | None = None
    # a condition a message of this channel must also meet to be claimed (e.g. "its VEN takes pushes"); messages
    # that do not meet it wait for their receiver to fetch them
    claimable: Callable[[], ColumnElement[bool]] | None = None
    withhold: Withhold | None = None
    # the resolver of its connections (made in the worker's loop), e.g. one refusing forbidden addresses
    resolver: Callable[[], AbstractResolver] | None = None


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, content_type: str
) -> tuple[Outcome, bytes]:
    """POST ``body``; the outcome and the receiver's answer body (empty when none came)."""
    try:
        # redirects are not followed: a receiver must not be able to send the server somewhere it would refuse
        async with http.post(
            url, data=body, headers={"Content-Type": content_type}, allow_redirects=False
        ) as response:
            answer = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:500]), b""
    return Outcome(status=status, error="" if 200 <= status < 300 else f"HTTP {status}"), answer


async def post_stored_body(http: aiohttp.ClientSession, message: Claimed) -> Outcome:
    """The sender of channels whose messages were rendered when queued (2030.5 notifications)."""
    if message.body is None:
        return Outcome(dropped=True, error="message has no body")
    outcome, _ = await post(http, message.url, message.body, message.content_type)
    return outcome
