"""The notification-target rules on their own: every address a name resolves to is checked, a name that does not
resolve is refused, allowed networks, the server's own listeners. Names resolve through a fixed table here, so
nothing is looked up on the network."""

from __future__ import annotations

import socket

import pytest

from server.config import Settings
from server.delivery.targets import GuardedResolver, Refused, TargetPolicy, check_target

TABLE = {
    "public.example": ["192.0.43.10"],  # not a documentation range: a globally routable address
    "mixed.example": ["192.0.43.10", "10.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "trusted.example": ["10.20.3.4"],
    "dso.example": ["192.0.43.20"],
}


async def table_resolve(host: str, port: int) -> list[str]:
    if host not in TABLE:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return TABLE[host]


def policy(**delivery: object) -> TargetPolicy:
    s = Settings()
    s.server.public_host = "dso.example"
    for key, value in delivery.items():
        setattr(s.delivery, key, value)
    return TargetPolicy.of(s, resolve=table_resolve)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("https://mixed.example/n", "10.0.0.1 is a private address"),  # one bad address among good ones
        ("https://metadata.example/n", "link-local"),
        ("https://mapped.example/n", "10.0.0.1 is a private address"),
        ("https://nowhere.example/n", "does not resolve"),
        ("https://dso.example:8443/n", "own protocol listener"),  # public_host, the protocol port
        ("https://127.0.0.1:8444/n", "own admin listener"),
        ("https://[::1]:8443/n", "own protocol listener"),
        ("https://10.20.3.4/n", "private address"),  # not allowed without allow_networks
        ("https://0.0.0.0/n", "unspecified"),
        ("https://[ff02::1]/n", "multicast"),
        ("https://100.64.0.1/n", "not a globally routable"),
        ("https://127.0.0.1:9/n", "loopback"),
        ("http://public.example/n", "https only"),
    ],
)
async def test_refused(url, needle):
    with pytest.raises(Refused, match=needle):
        await check_target(url, policy())


async def test_allowed():
    assert await check_target("https://public.example/n", policy()) == "https://public.example/n"
    assert await check_target("https://dso.example:9443/n", policy())  # our host, not our port
    trusted = policy(allow_networks=["10.20.0.0/16"])
    assert await check_target("https://trusted.example/n", trusted)
    assert await check_target("https://10.20.3.4:8443/n", trusted)
    with pytest.raises(Refused, match="10.0.0.1"):
        await check_target("https://mixed.example/n", trusted)
    loopback = policy(allow_http_loopback=True)
    assert await check_target("http://127.0.0.1:9/n", loopback)
    assert await check_target("https://[::1]:9/n", loopback)
    for own in ("http://127.0.0.1:8443/n", "http://127.0.0.1:8444/n"):  # never the server's own ports
        with pytest.raises(Refused, match="own"):
            await check_target(own, loopback)
    with pytest.raises(Refused, match="loopback only"):  # http to a trusted private network is still refused
        await check_target(
            "http://10.20.3.4/n", policy(allow_http_loopback=True, allow_networks=["10.20.0.0/16"])
        )


async def test_guarded_resolver_refuses_forbidden_addresses_at_connect_time():
    """What the connection itself resolves is checked too (a name rebound between the check and the connection)."""
    resolver = GuardedResolver(policy())
    with pytest.raises(OSError, match="loopback"):
        await resolver.resolve("localhost", 443)
    allowed = GuardedResolver(policy(allow_http_loopback=True))
    assert {r["host"] for r in await allowed.resolve("localhost", 9)} <= {"127.0.0.1", "::1"}
    with pytest.raises(OSError, match="own admin listener"):
        await allowed.resolve("localhost", 8444)
