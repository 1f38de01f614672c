"""The 2030.5 route table: which function-set modules the protocol listener serves (hrefs are relative to the
server root, stable, and documented in the README and in each module), and the 2030.5 Error answers for anything
else under their prefixes.

    /dcap, /tm                              DeviceCapability, Time                       server.sep2.dcap
    /edev, /edev/{e}, /edev/{e}/rg, …/cp    EndDevice, Registration, ConnectionPoint     server.sep2.edev
    /edev/{e}/der…                          DER and what the device reports about it     server.sep2.der
    /edev/{e}/fsa…                          FunctionSetAssignments                       server.sep2.fsa
    /edev/{e}/fsa/{f}/derp, /edev/{e}/derp… DERProgram, DERControl, DefaultDERControl,   server.sep2.derp
                                            DERCurve
    /mup…                                   Metering Mirror                              server.sep2.mup
    /upt…                                   Metering (mirrored data read back)           server.sep2.metering
    /rsps…                                  Responses to DER controls                    server.sep2.responses
    /edev/{e}/sub…                          Subscription (+ Notifications on change)     server.sep2.subscriptions
    /edev/{e}/lel…                          LogEvent                                     server.sep2.logevents
    /edev/{e}/tp…                           Pricing                                      server.sep2.pricing
    /edev/{e}/drp…                          DRLC                                         server.sep2.drlc
    /edev/{e}/rsp                           Responses to price and DRLC events           server.sep2.events

Programs, tariffs and DR programs are reached through the device (``/edev/{e}/derp/{p}`` …) so that every such
request is scoped by an EndDevice the caller may reach and something assigned to it.
"""

from __future__ import annotations

from aiohttp import web

from server.sep2 import (
    dcap,
    der,
    derp,
    drlc,
    edev,
    events,
    fsa,
    logevents,
    metering,
    mup,
    pricing,
    responses,
    subscriptions,
)
from server.sep2.common import (
    REASON_INVALID_FORMAT,
    error_response,
)

FUNCTION_SETS = (
    dcap,
    edev,
    fsa,
    derp,
    der,
    mup,
    responses,
    subscriptions,
    logevents,
    pricing,
    drlc,
    events,
    metering,
)
PREFIXES = ("/dcap", "/tm", "/edev", "/mup", "/rsps", "/upt")


def method_not_allowed(allowed: list[str]):
    async def handler(request: web.Request) -> web.Response:
        response = error_response(
            405, REASON_INVALID_FORMAT, f"{request.method} is not allowed on {request.path}"
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response

    return handler


async def unknown_href(request: web.Request) -> web.Response:
    return error_response(404, REASON_INVALID_FORMAT, f"no resource at {request.path}")


def setup(app: web.Application) -> None:
    """Add the function sets, then 2030.5 answers (Error bodies) for other methods on them and unknown hrefs
    under their prefixes; aiohttp tries routes in order, so these only see what nothing else matched."""
    methods: dict[str, list[str]] = {}
    for module in FUNCTION_SETS:
        app.add_routes(module.routes)
        for r in module.routes:
            if isinstance(r, web.RouteDef):
                methods.setdefault(r.path, []).append(r.method)
    for path, allowed in methods.items():
        app.router.add_route("*", path, method_not_allowed(sorted(allowed)))
    for prefix in PREFIXES:
        app.router.add_route("*", prefix + "/{tail:.*}", unknown_href)
