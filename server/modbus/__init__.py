"""SunSpec Modbus TCP gateway: legacy inverters polled for telemetry, controlled through SunSpec model 123.

``sunspec`` decodes and encodes register blocks (no I/O); ``gateway`` polls the devices staff registered and
writes their readings into the shared telemetry store; ``controls`` applies export limits and connect/disconnect.
"""
