"""The domain: devices, aggregators, VENs, programs, dispatches, telemetry and responses.

Protocol-neutral: nothing here knows XML or HTTP. Functions take an ``AsyncSession`` and the caller's scope, and
raise the errors in ``core.errors``; protocol adapters translate those into their own error bodies.
"""
