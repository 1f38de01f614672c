"""How 2030.5 Notifications leave: the ``sep2-notification`` channel of the delivery outbox, and its TLS client
side (notifications are mutually authenticated like every other 2030.5 exchange: the server's certificate as
client certificate, the receiver checked against the server's trust anchors).

The notificationURI was checked when the Subscription was made; it is checked again before each POST
(``server.delivery.targets``: the configuration or the name's DNS may have changed since), and a notification whose
target has become forbidden is a dead letter at once, never sent. Connections resolve through the same rules
(``GuardedResolver``), so an address swapped in between the check and the connection is refused too."""

from __future__ import annotations

import ssl

import aiohttp

from server.config import Settings
from server.core import subscriptions as core_subs
from server.delivery.channels import Channel, Claimed, Outcome, Sender, post_stored_body
from server.delivery.targets import GuardedResolver, Refused, TargetPolicy, check_target
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


REFUSED = "notification target refused"


def checked_sender(policy: TargetPolicy) -> Sender:
    """POST the stored body, after checking its target once more (a forbidden one: a dead letter, not sent)."""

    async def send(http: aiohttp.ClientSession, message: Claimed) -> Outcome:
        try:
            await check_target(message.url, policy)
        except Refused as exc:
            return Outcome(error=f"{REFUSED}: {exc}"[:500], final=True)
        return await post_stored_body(http, message)

    return send


def channel(settings: Settings) -> Channel:
    """Notifications are rendered when queued (the resource as the change left it): the sender POSTs the body;
    a subscriber whose access staff revoked since gets none of what was queued for it."""
    policy = TargetPolicy.of(settings)
    return Channel(
        CHANNEL,
        checked_sender(policy),
        ssl_context=client_context(settings),
        withhold=core_subs.revoked_recipients,
        resolver=lambda: GuardedResolver(policy),
    )
