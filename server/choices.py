"""The closed sets of names the API, the store and the CLI share, in a module that imports nothing: ``dso``
builds its whole parser (every sub-command's ``choices``) on each run, and must not import the store, SQLAlchemy
or aiohttp to do it. The domain modules re-export these under their own names."""

from __future__ import annotations

# alarms (server.core.alarms)
COMMS_LOST = "comms_lost"  # a device, VEN or Modbus asset has not been heard from within its expected period
DELIVERY_FAILING = "delivery_failing"  # notifications or pushes to a party keep failing (dead letters)
FORECAST_FAILED = "forecast_failed"
PLAN_FAILED = "plan_failed"  # a solve failed or its inputs were missing: the last good plan stays in force
LIMIT_VIOLATION = "limit_violation"  # a predicted or measured voltage/thermal/export limit violation
SCHEDULER = "scheduler"  # a scheduled job failed for a reason of its own
ALARM_KINDS = (COMMS_LOST, DELIVERY_FAILING, FORECAST_FAILED, PLAN_FAILED, LIMIT_VIOLATION, SCHEDULER)
ALARM_STATES = ("open", "unacknowledged", "acknowledged", "cleared", "all")

# the delivery outbox's message states (server.delivery.outbox)
PENDING, DELIVERED, FAILED, DROPPED = "pending", "delivered", "failed", "dropped"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED, DROPPED)

# measurement and verification's same-day adjustments (server.core.mv)
MV_ADJUSTMENTS = ("multiplicative", "additive", "none")

# an OpenADR 3 client's role (server.core.oadr3_clients)
OADR3_ROLES = ("ven", "bl")

# a flexibility offer's states (server.store.models.market)
OFFER_STATUSES = ("offered", "cleared", "rejected", "withdrawn")
