"""Which URLs the server may POST to, checked when a receiver names its URL and again before every delivery (DNS
may have changed since).

A target is refused unless it is an absolute https URL (plain http only on loopback, when
``delivery.allow_http_loopback`` is on) whose host resolves, and every address it resolves to is one the server
may reach:

- never an unspecified (0.0.0.0, ::) or multicast address, and never this server's own listeners (the protocol and
  admin ports on loopback, on a listener's bind address or on ``server.public_host``);
- otherwise an address in ``delivery.allow_networks`` (private networks staff trust) is allowed;
- loopback only with ``delivery.allow_http_loopback`` (local receivers of tests and conformance runs);
- link-local (169.254.0.0/16, fe80::/10, where cloud metadata services live), private (RFC 1918, fc00::/7) and
  every other address that is not globally routable (shared, reserved, documentation ranges) are refused.

Names are resolved with the event loop's ``getaddrinfo`` (a thread, never the loop itself); a name that does not
resolve is refused. An address checked here could still be swapped by the time a connection is made (DNS
rebinding), so the connections themselves resolve through ``GuardedResolver``, which applies the same rules to the
addresses actually connected to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from server.config import DeliverySettings, Settings
from server.core.errors import Invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses the host resolves to; raises OSError (socket.gaierror) when it does not resolve
Resolve = Callable[[str, int], Awaitable[list[str]]]
RESOLVE_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"https": 443, "http": 80}


class Refused(Invalid):
    """A target the server must not POST to; the message says why."""


def check_target_url(url: str, settings: DeliverySettings) -> str:
    """The form of a target alone (no name resolved): the URL itself when its scheme and host may be POSTed to,
    else ``Refused`` saying why. ``check_target`` adds the addresses."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname or parsed.scheme not in ("https", "http"):
        raise Refused(f"target URL must be an absolute https URL, got {url!r}")
    if parsed.scheme == "http":
        if not settings.allow_http_loopback:
            raise Refused("plain http target URLs are not allowed (https only)")
        try:
            loopback = ipaddress.ip_address(parsed.hostname).is_loopback
        except ValueError:
            loopback = parsed.hostname == "localhost"
        if not loopback:
            raise Refused("plain http target URLs are allowed on loopback only")
    return url


def parse_networks(values: list[str]) -> tuple[IPNetwork, ...]:
    """``delivery.allow_networks`` as networks (host bits are tolerated: "10.20.0.1/16" is 10.20.0.0/16)."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is the IPv4 address it maps; scope ids are dropped."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


async def system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=RESOLVE_TIMEOUT_S
    )
    return [str(info[4][0]) for info in infos]


async def addresses_of(host: str, port: int, resolve: Resolve) -> list[IPAddress]:
    """Every address ``host`` names (a literal: itself); ``Refused`` when it does not resolve."""
    try:
        return [plain(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        found = await resolve(host, port)
    except (
        OSError,
        UnicodeError,
        TimeoutError,
    ) as exc:  # gaierror; a name IDNA cannot encode; a dead resolver
        raise Refused(f"target URL host {host!r} does not resolve ({type(exc).__name__})") from None
    addresses = [plain(ipaddress.ip_address(a)) for a in found]
    if not addresses:
        raise Refused(f"target URL host {host!r} does not resolve")
    return addresses


@dataclass(frozen=True)
class TargetPolicy:
    allow_loopback: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()
    # port -> which listener of this server it is
    own_ports: tuple[tuple[int, str], ...] = ()
    # the hosts this server's listeners answer on besides loopback (bind addresses, public_host)
    own_hosts: tuple[str, ...] = ()
    resolve: Resolve = system_resolve

    @classmethod
    def of(cls, settings: Settings, resolve: Resolve = system_resolve) -> TargetPolicy:
        return cls(
            allow_loopback=settings.delivery.allow_http_loopback,
            allow_networks=parse_networks(settings.delivery.allow_networks),
            own_ports=(
                (settings.server.port, "protocol"),
                (settings.admin.port, "admin"),
                (settings.openadr3.port, "OpenADR 3"),
            ),
            own_hosts=tuple(
                {h for h in (settings.server.host, settings.admin.host, settings.server.public_host) if h}
            ),
            resolve=resolve,
        )

    async def own_addresses(self) -> set[IPAddress]:
        out: set[IPAddress] = set()
        for host in self.own_hosts:
            try:
                out.update(await addresses_of(host, 0, self.resolve))
            except Refused:  # a public name that does not resolve here names no address of ours either
                continue
        return out

    def refusal(self, address: IPAddress, port: int, own: set[IPAddress]) -> str | None:
        """Why the server must not connect to ``address``:``port`` (None: it may)."""
        if address.is_unspecified:
            return f"{address} is an unspecified address"
        if address.is_multicast:
            return f"{address} is a multicast address"
        listener = dict(self.own_ports).get(port)
        if listener and (address.is_loopback or address in own):
            where = f"[{address}]" if address.version == 6 else str(address)
            return f"{where}:{port} is this server's own {listener} listener"
        if any(address in network for network in self.allow_networks):
            return None
        if address.is_loopback:
            return None if self.allow_loopback else f"{address} is a loopback address"
        if address.is_link_local:
            return f"{address} is a link-local address"
        if address.is_private:
            return f"{address} is a private address (not in delivery.allow_networks)"
        if not address.is_global:
            return f"{address} is not a globally routable address"
        return None

    async def check_addresses(self, host: str, port: int, addresses: list[IPAddress]) -> None:
        own = await self.own_addresses()
        for address in addresses:
            reason = self.refusal(address, port, own)
            if reason:
                raise Refused(f"target URL host {host!r} resolves to a forbidden address: {reason}")


async def check_target(url: str, policy: TargetPolicy) -> str:
    """The URL itself when the server may POST to it now (every address its host resolves to is allowed), else
    ``Refused`` saying why."""
    check_target_url(url, DeliverySettings(allow_http_loopback=policy.allow_loopback))
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    try:
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    except ValueError:
        raise Refused(f"target URL has an invalid port: {url!r}") from None
    addresses = await addresses_of(host, port, policy.resolve)
    if parsed.scheme == "http" and not all(a.is_loopback for a in addresses):
        raise Refused(f"plain http target URLs are allowed on loopback only ({host!r} is not)")
    await policy.check_addresses(host, port, addresses)
    return url


class GuardedResolver(AbstractResolver):
    """The resolver of outbound connections: what the system resolves, refused (OSError, so the connection fails)
    when any address is one ``policy`` forbids -- the check made at connect time, on the addresses connected to."""

    def __init__(self, policy: TargetPolicy) -> None:
        self.policy = policy
        self.inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        addresses = [plain(ipaddress.ip_address(r["host"])) for r in results]
        try:
            await self.policy.check_addresses(host, port, addresses)
        except Refused as exc:
            raise OSError(str(exc)) from None
        return results

    async def close(self) -> None:
        await self.inner.close()
