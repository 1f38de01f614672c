"""Which IEEE 2030.5 edition each client speaks, so each receives representations valid in its own edition.

A client says it by the ``level`` parameter of the 2030.5 media type in its Accept header (§5.7: ``S1`` the
2018 schema, ``S2`` the 2023 schema), which wins; otherwise by the edition of the last body it sent (a 2023 body
carries ``schemaVer="2.2"`` or uses 2023 elements), remembered per LFDI in the database (so every process and a
restart agree) and in a bounded per-process cache; a client that has said neither is a 2018 client, whose
representations are valid in both editions (2023 reads a document without ``schemaVer`` as schema 2.1)."""

from __future__ import annotations

from collections import OrderedDict

from aiohttp import web
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import readcache
from server.core import sep2_device as devres
from server.runtime import IDENTITY, RUNTIME
from server.sep2 import xml

CACHE_SIZE = 10_000  # LFDIs remembered per process; the database has the rest
BODY_EDITION = web.RequestKey("sep2_body_edition", str)


class ClientCache:
    """A bounded per-process map of LFDI -> what the database remembers of that client (least recent dropped)."""

    def __init__(self, size: int) -> None:
        self.size, self.items = size, OrderedDict[str, str]()

    def get(self, lfdi: str) -> str | None:
        value = self.items.get(lfdi)
        if value is not None:
            self.items.move_to_end(lfdi)
        return value

    def clear(self) -> None:
        self.items.clear()

    def put(self, lfdi: str, edition: str) -> None:
        self.items[lfdi] = edition
        self.items.move_to_end(lfdi)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


_cache = ClientCache(CACHE_SIZE)


def _key(lfdi: str) -> str:
    return f"edition:{lfdi}"


def known(lfdi: str, edition: str) -> bool:
    """Whether this process already knows ``lfdi`` writes in ``edition`` (then there is nothing to record)."""
    return _cache.get(lfdi) == edition


async def remember(session: AsyncSession, lfdi: str, edition: str) -> None:
    """Record the edition of a body ``lfdi`` sent (a write only when it changed)."""
    if _cache.get(lfdi) == edition:
        return
    stored = await devres.get_setting(session, _key(lfdi))
    if stored != edition:
        await devres.set_setting(session, _key(lfdi), edition)
        if (stored or xml.EDITION_2018) != edition:
            # what other processes keep changes only if they would have inferred another edition (a client
            # never heard from is taken for 2018): a fleet's first 2018 bodies drop nothing anywhere
            await readcache.clients_changed(session)
    _cache.put(lfdi, edition)


def forget_all() -> None:
    """What another process recorded of any client may differ from what this one keeps (readcache)."""
    _cache.clear()


async def of_client(session: AsyncSession, lfdi: str) -> str:
    """The edition ``lfdi`` last wrote in (2018 when it never sent a body)."""
    cached = _cache.get(lfdi)
    if cached is None:
        cached = await devres.get_setting(session, _key(lfdi)) or xml.EDITION_2018
        _cache.put(lfdi, cached)
    return cached


async def of_request(request: web.Request, session: AsyncSession) -> str:
    """The edition the answer to ``request`` must be valid in."""
    asked = xml.edition_of_media_type(request.headers.get("Accept"))
    if asked is not None:
        return asked
    return await of_client(session, request[IDENTITY].lfdi)


async def as_stored(request: web.Request, session: AsyncSession, root: etree._Element) -> etree._Element:
    """A resource stored as a client sent it, as the caller may receive it (``xml.for_edition``)."""
    if root.get("schemaVer") is None:
        return root  # stored from a 2018 body: valid in both editions
    strict = request.app[RUNTIME].settings.sep2.profile == "csip-aus"
    return xml.for_edition(root, await of_request(request, session), strict)
