"""One durable outbox for every message the server owes a receiver: 2030.5 Subscription notifications, OpenADR
2.0b messages for VENs (pushed or polled), and OpenADR 3 webhooks (``server.openadr3.notify``).

What it owns:

- the ``delivery_message`` table and its rules (``outbox``): a producer queues a message in the transaction of
  the change it announces, so it exists if and only if the change committed; messages of one ``order_key`` (one
  subscription, one VEN) leave strictly in order -- only the oldest pending message of a key may be claimed;
- the worker (``worker``, one per process, an aiohttp cleanup context under ``context.DELIVERY``): claims due
  heads with leases (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a conditional UPDATE on SQLite), sends them
  through their channel, retries with exponential back-off from ``[delivery]`` settings, and after the last
  attempt (or a 4xx refusal) leaves a dead letter (status ``failed``) so the key's next message can go;
- crash safety (``instances``): every worker has a heartbeat row; leases are renewed by it while a send is in
  flight, and a process that finds another one dead (stale heartbeat, or a vanished process id on its own host)
  releases that one's claims at once -- on start-up too, so a restart after a kill -9 does not wait for leases;
- the status staff see (``status``): pages of messages and counts per channel, in SQL.

What it does not own: how a protocol's message is rendered and sent. A protocol registers a ``Channel``
(``channels``) with its sender and its own TLS client set-up (2030.5 in ``server.sep2.delivery``, OpenADR in
``server.openadr.push``); the outbox only calls the sender and records what it says.

OpenADR poll and push share the VEN's ordered stream in this table (channel ``openadr``, one key per VEN): an
oadrPoll takes the head of its VEN's key (``outbox.take_head``, one message per poll, marked delivered ``via``
poll in the poll's transaction), and the worker claims the same messages for push only while the VEN takes pushes
(the channel's ``claimable`` condition: push enabled by staff, registered with oadrHttpPullModel=false and a
transport address). So a message is delivered once, by whichever exit comes first; a head being pushed is not
handed to a poll meanwhile; a VEN switched between push and pull keeps its queue; and ``dso deliveries`` shows
polled and pushed messages alike.
"""

from server.delivery.channels import Channel, Claimed, Outcome
from server.delivery.outbox import (
    DELIVERED,
    DROPPED,
    FAILED,
    PENDING,
    STATUSES,
    Taken,
    discard,
    enqueue,
    has_unclaimed,
    mark_dropped,
    pending_count,
    pending_counts,
    take_head,
)
from server.delivery.targets import Refused, TargetPolicy, check_target, check_target_url

__all__ = [
    "DELIVERED",
    "DROPPED",
    "FAILED",
    "PENDING",
    "STATUSES",
    "Channel",
    "Claimed",
    "Outcome",
    "Refused",
    "Taken",
    "TargetPolicy",
    "check_target",
    "check_target_url",
    "discard",
    "enqueue",
    "has_unclaimed",
    "mark_dropped",
    "pending_count",
    "pending_counts",
    "take_head",
]
