"""Which CSIP-AUS extension each client speaks, so each receives CSIP-AUS elements in the namespace it reads.

CSIP-AUS 1.2 puts its elements (opModExpLimW, doeModesSupported, ConnectionPoint, ...) in ``https://csipaus.org/ns``;
the CSIP-AUS 1.3 beta storage extension repeats all of them and adds the storage ones (DERControlBase
``opModStorageTargetW``, DERCapability ``vppModesSupported``, DERSettings ``vppModesEnabled`` and ``setMinWh``) in
``https://csipaus.org/ns/v1.3-beta/storage``; CSIP-AUS 1.3 has the same DER and EndDevice elements again, in
``https://csipaus.org/ns/v1.3``, and adds the pricing extension (TariffProfile
``CombinedTimeTariffIntervalListLink``, TimeTariffInterval ``ConsumptionTariffIntervalListSummary`` and, in the
2030.5 namespace, ``RateComponentLink``; ``server.sep2.pricing``). The schemas cannot describe one document, but
they can share a server: a client says which it speaks by the namespace of the CSIP-AUS elements in the bodies it
sends (its DERCapability, which CSIP-AUS requires of every device, carries one), remembered per LFDI in the
database (so every process and a restart agree) and in a bounded per-process cache. A client that has said
nothing is a 1.2 client.

Inside the server one form is kept (``canonical``): the elements every extension shares in the 1.2 namespace, the
storage ones in the storage namespace, the pricing ones in the 1.3 namespace. ``for_client`` turns it into what
a client reads: for a 1.3 client every CSIP-AUS element in the 1.3 namespace; for a storage client every
CSIP-AUS element in the storage namespace and the pricing extension dropped; for a 1.2 client the storage and
pricing elements dropped (its schema has no place for them, so a storage target or a combined price list is
invisible to it while its export limits and its tariffs still reach it). The protocol listener's middleware does
it for every answer and ``server.sep2.subscriptions`` for every notification, so a renderer writes each element
once."""

from __future__ import annotations

import functools

from aiohttp import web
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import readcache
from server.core import sep2_device as devres
from server.observability import Handler
from server.runtime import IDENTITY, Runtime
from server.sep2 import xml
from server.sep2.editions import CACHE_SIZE, ClientCache

V12, STORAGE, V13 = xml.CSIPAUS_NS, xml.CSIPAUS_STORAGE_NS, xml.CSIPAUS_V13_NS
# what CSIP-AUS 1.3 adds in the 2030.5 namespace: parent -> children only a 1.3 client may receive (they are
# always rendered beside a 1.3-namespace element, so an answer holding one is translated for every other client)
V13_IN_2030_5 = {"TimeTariffInterval": frozenset({"RateComponentLink"})}
_cache = ClientCache(CACHE_SIZE)


def _key(lfdi: str) -> str:
    return f"csipaus:{lfdi}"


@functools.cache
def storage_only() -> frozenset[str]:
    """Local names the storage extension declares that CSIP-AUS 1.2 does not."""

    def names(file: str) -> set[str]:
        tree = etree.parse(str(xml.schema_dir() / file))  # installed, trusted schema files
        return {el.get("name", "") for el in tree.getroot().iterchildren(f"{{{xml.XS}}}element")}

    return frozenset(names("csipaus-ext-v1.3-beta_storage.xsd") - names("csipaus-ext.xsd"))


def canonical(root: etree._Element) -> etree._Element:
    """A validated inbound body in the server's one form (in place): shared CSIP-AUS elements in the 1.2
    namespace, storage-only ones in the storage namespace."""
    only = storage_only()
    changed = False
    for el in root.iter():
        if isinstance(el.tag, str):
            name = etree.QName(el)
            if name.namespace == STORAGE and name.localname not in only:
                el.tag = f"{{{V12}}}{name.localname}"
                changed = True
    if changed:
        etree.cleanup_namespaces(root)
    return root


def _only_v13(el: etree._Element, name: etree.QName) -> bool:
    """Whether ``el`` is an element only CSIP-AUS 1.3 has a place for."""
    if name.namespace == V13:
        return True
    parent = el.getparent()
    if name.namespace != xml.NS or parent is None:
        return False
    return name.localname in V13_IN_2030_5.get(etree.QName(parent).localname, frozenset())


def for_client(root: etree._Element, namespace: str) -> etree._Element:
    """A document in the server's form as a client speaking ``namespace`` reads it (in place)."""
    changed = False
    for el in list(root.iter()):
        if not isinstance(el.tag, str):
            continue
        name = etree.QName(el)
        drop = (namespace != V13 and _only_v13(el, name)) or (namespace == V12 and name.namespace == STORAGE)
        if drop:
            parent = el.getparent()
            if parent is not None:
                parent.remove(el)
                changed = True
        elif namespace != V12 and name.namespace in (V12, STORAGE) and name.namespace != namespace:
            el.tag = f"{{{namespace}}}{name.localname}"
            changed = True
    if changed or namespace != V12:
        # declared once at the top in the client's own namespace (a renderer's elements each declare the 1.2 one)
        etree.cleanup_namespaces(root, top_nsmap=xml.NSMAPS[namespace])
    return root


def needs_translation(body: bytes, namespace: str) -> bool:
    """Whether a serialized answer carries CSIP-AUS elements a client of ``namespace`` cannot read as they are
    (a byte test, so answers without CSIP-AUS content cost nothing)."""
    return any(f'"{other}"'.encode() in body for other in (V12, STORAGE, V13) if other != namespace)


def known(lfdi: str, namespace: str) -> bool:
    return _cache.get(lfdi) == namespace


async def remember(session: AsyncSession, lfdi: str, namespace: str) -> None:
    """Record the CSIP-AUS namespace of a body ``lfdi`` sent (a write only when it changed)."""
    if _cache.get(lfdi) == namespace:
        return
    stored = await devres.get_setting(session, _key(lfdi))
    # 1.2 is what an unrecorded client speaks: only a storage or 1.3 client (or one that went back) is written, so the
    # concurrent first bodies of a 1.2 device never race to insert the same row
    if (stored or V12) != namespace:
        await devres.set_setting(session, _key(lfdi), None if namespace == V12 else namespace)
        await readcache.clients_changed(session)
    _cache.put(lfdi, namespace)


def forget_all() -> None:
    """What another process recorded of any client may differ from what this one keeps (readcache)."""
    _cache.clear()


async def of_client(session: AsyncSession, lfdi: str) -> str:
    """The CSIP-AUS namespace ``lfdi`` speaks (1.2 until it sends a storage or a 1.3 body)."""
    cached = _cache.get(lfdi)
    if cached is None:
        cached = await devres.get_setting(session, _key(lfdi)) or V12
        _cache.put(lfdi, cached)
    return cached


async def of_clients(session: AsyncSession, lfdis: set[str]) -> dict[str, str]:
    """``of_client`` for many clients at once (a notification fan-out): the ones not kept in one query."""
    await readcache.check_clients(session)  # outside a request: another process may have recorded one
    found = {lfdi: ns for lfdi in lfdis if (ns := _cache.get(lfdi)) is not None}
    missing = lfdis - found.keys()
    if missing:
        stored = await devres.get_settings(session, {_key(lfdi) for lfdi in missing})
        for lfdi in missing:
            found[lfdi] = stored.get(_key(lfdi)) or V12
            _cache.put(lfdi, found[lfdi])
    return found


def middleware(rt: Runtime):
    """Every 2030.5 answer in the CSIP-AUS namespace its client speaks."""

    @web.middleware
    async def translate(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not isinstance(response, web.Response) or response.content_type != xml.MEDIA_TYPE:
            return response
        body = response.body
        identity = request.get(IDENTITY)
        if not isinstance(body, bytes) or identity is None or b"csipaus.org/ns" not in body:
            return response
        namespace = _cache.get(identity.lfdi)
        if namespace is None:
            async with rt.store.sessions() as session:
                namespace = await of_client(session, identity.lfdi)
        if needs_translation(body, namespace):
            root = etree.fromstring(body)  # our own serialized answer
            response.body = xml.serialize(for_client(root, namespace))
        return response

    return translate
