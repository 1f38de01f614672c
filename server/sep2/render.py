"""What the 2030.5 function-set modules share to translate between XML and the domain: the render context (what a
renderer needs besides the data, never a web.Request, so that a notification renders exactly like a GET), the
pollRate/postRate a resource carries (staff may set them per resource type), the PEN in server mRIDs, the LFDI a
body names, and the stored XML of resources devices PUT/POST (kept without href; served with the href they are
read at).

Renderers of one function set live in that function set's module; only what several modules use is here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server import pki
from server.config import Settings
from server.core import sep2_device as devres
from server.core.errors import Invalid
from server.core.readcache import Dependencies
from server.runtime import CACHE_TOKEN
from server.sep2 import xml
from server.sep2.common import runtime, scope_of
from server.store.types import utcnow


@dataclass(frozen=True)
class RenderCtx:
    """What a renderer reads besides the data: the session, the settings and the time it renders at; what it
    read is noted in ``deps`` (so that a GET's answer can be kept, ``kept_reply``)."""

    session: AsyncSession
    settings: Settings
    now: dt.datetime
    href_prefix: str = (
        ""  # reserved for a deployment that serves 2030.5 below a path; hrefs are root-relative
    )
    deps: Dependencies = field(default_factory=Dependencies)

    @property
    def pen(self) -> int:
        return self.settings.sep2.pen


def render_ctx(request: web.Request, session: AsyncSession) -> RenderCtx:
    """The render context of a request (handlers only; renderers never see the request)."""
    return RenderCtx(session, runtime(request).settings, utcnow())


async def kept_reply(
    request: web.Request, render: Callable[[RenderCtx], Awaitable[etree._Element]]
) -> web.Response:
    """A GET's answer, kept per scope and query (``server.core.readcache``) until a change record names what it
    read or the clock changes it; rendered by ``render`` (the same function a notification uses) when not
    kept. A refusal (NotFound, Forbidden) is never kept."""
    rt = runtime(request)
    scope = scope_of(request)

    async def build() -> tuple[bytes, Dependencies]:
        async with rt.store.sessions() as session:
            ctx = render_ctx(request, session)
            return xml.serialize(await render(ctx)), ctx.deps

    body = await rt.cache.kept(("get", scope, request.path_qs), request[CACHE_TOKEN], build)
    return web.Response(body=body, content_type=xml.MEDIA_TYPE)


def lfdi_of(text: str) -> str:
    try:
        return pki.normalise_lfdi(text)
    except ValueError as exc:
        raise Invalid(f"not an LFDI: {exc}") from None


async def poll_rate(ctx: RenderCtx, resource: str) -> int:
    value = await devres.get_setting(ctx.session, f"pollrate:{resource}")
    return int(value) if value is not None else ctx.settings.sep2.poll_rate_s


async def post_rate(ctx: RenderCtx, resource: str) -> int:
    value = await devres.get_setting(ctx.session, f"postrate:{resource}")
    return int(value) if value is not None else ctx.settings.sep2.post_rate_s


def pen(request: web.Request) -> int:
    """The PEN in server mRIDs, for handlers (a renderer reads ``ctx.pen``)."""
    return runtime(request).settings.sep2.pen


def for_storage(root: etree._Element) -> str:
    """A posted resource as stored: its XML without the href (the server decides where it is served)."""
    root.attrib.pop("href", None)
    return etree.tostring(root, encoding="unicode")


def with_href(body: str, href: str) -> etree._Element:
    """A stored resource as served at ``href``."""
    root = etree.fromstring(body.encode())  # our own stored, validated XML
    root.set("href", href)
    return root
