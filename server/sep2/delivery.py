"""How 2030.5 Notifications leave: the ``sep2-notification`` channel of the delivery outbox, and its TLS client
side (notifications are mutually authenticated like every other 2030.5 exchange: the server's certificate as
client certificate, the receiver checked against the server's trust anchors)."""

from __future__ import annotations

import ssl

from server.config import Settings
from server.core import subscriptions as core_subs
from server.delivery.channels import Channel, post_stored_body
from server.tls import trust_files

CHANNEL = "sep2-notification"


def client_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if settings.delivery.verify_tls:
        for path in trust_files(settings):
            ctx.load_verify_locations(cafile=path)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = settings.path(settings.pki.server_cert), settings.path(settings.pki.server_key)
    if cert.exists() and key.exists():
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def channel(settings: Settings) -> Channel:
    """Notifications are rendered when queued (the resource as the change left it): the sender POSTs the body;
    a subscriber whose access staff revoked since gets none of what was queued for it."""
    return Channel(
        CHANNEL,
        post_stored_body,
        ssl_context=client_context(settings),
        withhold=core_subs.revoked_recipients,
    )
