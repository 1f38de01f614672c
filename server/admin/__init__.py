"""Admin JSON API: the one way staff tools (CLI, web page, conformance plugin) change server state.

Served on its own listener (loopback by default); every call but ``/healthz`` needs ``Authorization: Bearer``
with the token from the config. Errors are JSON ``{"error": message}``.
"""

from server.admin.app import create_admin_app

__all__ = ["create_admin_app"]
