"""Which URLs the server may POST to: https, or plain http on a loopback host when the configuration allows it
(conformance receivers). Checked when a receiver names its URL, not at delivery."""

from __future__ import annotations

import ipaddress
import urllib.parse

from server.config import DeliverySettings
from server.core.errors import Invalid


def check_target_url(url: str, settings: DeliverySettings) -> str:
    """The URL itself when it may be POSTed to, else ``Invalid`` saying why."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname or parsed.scheme not in ("https", "http"):
        raise Invalid(f"notification URI must be an absolute https URL, got {url!r}")
    if parsed.scheme == "http":
        if not settings.allow_http_loopback:
            raise Invalid("plain http notification URIs are not allowed (https only)")
        try:
            loopback = ipaddress.ip_address(parsed.hostname).is_loopback
        except ValueError:
            loopback = parsed.hostname == "localhost"
        if not loopback:
            raise Invalid("plain http notification URIs are allowed on loopback only")
    return url
