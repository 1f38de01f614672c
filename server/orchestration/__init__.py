"""Orchestration: the scheduler (periodic forecasts, later plans) running on one elected process.

The optimizer that turns forecasts, grid limits and DER flexibility into dispatches will live here too.
"""
