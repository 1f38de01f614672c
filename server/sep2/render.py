"""What the 2030.5 function-set modules share to translate between XML and the domain: the pollRate/postRate a
resource carries (staff may set them per resource type), the PEN in server mRIDs, the LFDI a body names, and the
stored XML of resources devices PUT/POST (kept without href; served with the href they are read at).

Renderers of one function set live in that function set's module; only what several modules use is here."""

from __future__ import annotations

from aiohttp import web
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server import pki
from server.core import sep2_device as devres
from server.core.errors import Invalid
from server.sep2.common import (
    runtime,
)


def lfdi_of(text: str) -> str:
    try:
        return pki.normalise_lfdi(text)
    except ValueError as exc:
        raise Invalid(f"not an LFDI: {exc}") from None


async def poll_rate(request: web.Request, session: AsyncSession, resource: str) -> int:
    value = await devres.get_setting(session, f"pollrate:{resource}")
    return int(value) if value is not None else runtime(request).settings.sep2.poll_rate_s


async def post_rate(request: web.Request, session: AsyncSession, resource: str) -> int:
    value = await devres.get_setting(session, f"postrate:{resource}")
    return int(value) if value is not None else runtime(request).settings.sep2.post_rate_s


def pen(request: web.Request) -> int:
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
