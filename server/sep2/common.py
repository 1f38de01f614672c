"""What every 2030.5 handler shares: the request scope, reading/validating bodies,
answering with ``application/sep+xml`` and 2030.5 ``Error`` bodies, list paging (in SQL), mRIDs.

Request scope (zero trust; every query goes through it; ``server.core.scope`` builds it from the TLS identity):

* a *device* client is the EndDevice whose LFDI equals its certificate's LFDI;
* an *aggregator* client is an enrolled Aggregator (staff, or in-band registration of a device under it, create
  it); it reaches exactly the EndDevices registered under it (and its own, if any);
* an *unregistered* client reaches DeviceCapability, Time, an EndDeviceList showing nothing, an empty
  MirrorUsagePointList, and may POST its own EndDevice when in-band registration is open.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import StreamReader, web
from lxml import etree
from sqlalchemy import Select, SQLColumnExpression, and_, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import DomainError, Invalid, NotFound
from server.core.identity import ClientIdentity
from server.core.parties import visible_devices_query
from server.core.scope import Scope
from server.runtime import IDENTITY, RUNTIME, SCOPE, Runtime
from server.sep2 import csipaus, editions, xml
from server.store.models import EndDevice
from server.store.paging import count_rows, fetch_page

log = logging.getLogger("dso.sep2")

# 2030.5 Error reasonCode values
REASON_INVALID_FORMAT = 0
REASON_INVALID_VALUES = 1
REASON_LIMIT = 2


class Sep2Error(Exception):
    def __init__(self, status: int, reason: int, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def sessions(request: web.Request):
    return runtime(request).store.sessions


def identity(request: web.Request) -> ClientIdentity:
    return request[IDENTITY]


def error_response(status: int, reason: int, message: str = "") -> web.Response:
    body = xml.E("Error", None, xml.leaf("reasonCode", reason))
    headers = {"X-Error-Detail": message[:200].replace("\n", " ").encode("ascii", "replace").decode()}
    return web.Response(status=status, body=xml.serialize(body), content_type=xml.MEDIA_TYPE, headers=headers)


def reply(el: etree._Element, status: int = 200, location: str | None = None) -> web.Response:
    headers = {"Location": location} if location else None
    return web.Response(status=status, body=xml.serialize(el), content_type=xml.MEDIA_TYPE, headers=headers)


def created(location: str) -> web.Response:
    return web.Response(status=201, headers={"Location": location})


def no_content() -> web.Response:
    return web.Response(status=204)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sep2_handler(fn: Handler) -> Handler:
    """Map every failure caused by client input to a 4xx with an Error body; never answer 5xx for it."""

    @functools.wraps(fn)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except Sep2Error as exc:
            log.info("2030.5 %s %s -> %s: %s", request.method, request.path, exc.status, exc)
            return error_response(exc.status, exc.reason, str(exc))
        except xml.XmlError as exc:
            log.info("2030.5 %s %s -> 400: %s", request.method, request.path, exc)
            return error_response(400, REASON_INVALID_FORMAT, str(exc))
        except DomainError as exc:
            log.info("2030.5 %s %s -> %s: %s", request.method, request.path, exc.status, exc)
            reason = REASON_INVALID_VALUES if exc.status in (400, 409) else REASON_INVALID_FORMAT
            return error_response(exc.status, reason, str(exc))
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, REASON_LIMIT, "body too large")
        except (ValueError, OverflowError) as exc:
            # a value the schema admits but the domain cannot hold (e.g. a timestamp beyond year 9999)
            log.warning(
                "2030.5 %s %s -> 400 (unmapped %s: %s)", request.method, request.path, type(exc).__name__, exc
            )
            return error_response(400, REASON_INVALID_VALUES, str(exc))

    return wrapper


async def read_limited(content: StreamReader, limit: int) -> bytes:
    """The whole body, or its first ``limit + 1`` bytes when it is longer. ``StreamReader.read(n)`` returns what
    has arrived so far (at most one TLS record, 16 KiB, may be all), so one call would cut a longer body short."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def read_body(request: web.Request, *roots: str) -> etree._Element:
    """The validated body; its root must be one of ``roots`` (local names)."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype not in (xml.MEDIA_TYPE, "application/xml", "text/xml"):
        raise Sep2Error(415, REASON_INVALID_FORMAT, f"content type must be {xml.MEDIA_TYPE}")
    limit = runtime(request).settings.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Sep2Error(413, REASON_LIMIT, "body too large")
    body = await read_limited(request.content, limit)
    if len(body) > limit:
        raise Sep2Error(413, REASON_LIMIT, "body too large")
    strict = runtime(request).settings.sep2.profile == "csip-aus"
    parsed = xml.parse_any(
        body,
        strict=strict,
        max_bytes=limit,
        claimed=xml.edition_of_media_type(request.headers.get("Content-Type")),
    )
    root = parsed.root
    if parsed.edition == xml.EDITION_2023:
        # stored as it came, declaring its edition, so it is shown to a 2018 reader in its 2018 form
        root.set("schemaVer", root.get("schemaVer") or xml.SCHEMA_VERSION[xml.EDITION_2023])
    request[editions.BODY_EDITION] = parsed.edition
    lfdi = identity(request).lfdi
    aus = parsed.csipaus
    if not editions.known(lfdi, parsed.edition) or (aus is not None and not csipaus.known(lfdi, aus)):
        try:
            async with sessions(request).begin() as session:
                await editions.remember(session, lfdi, parsed.edition)
                if aus is not None:
                    await csipaus.remember(session, lfdi, aus)
        except IntegrityError:
            pass  # a concurrent first body of the same client recorded the same fact
    if aus in (xml.CSIPAUS_STORAGE_NS, xml.CSIPAUS_V13_NS):  # a 1.3 body was read in the storage namespace
        csipaus.canonical(root)
    if roots and xml.local_name(root) not in roots:
        raise Sep2Error(
            400, REASON_INVALID_FORMAT, f"expected {' or '.join(roots)}, got {xml.local_name(root)}"
        )
    return root


def path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFound(f"no such resource {request.path}")
    return int(raw)


# ---------------------------------------------------------------------------------------------------- paging
T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    start: int
    limit: int
    after: dt.datetime | None

    def slice(self, items: list[Any]) -> list[Any]:
        """This page of a list that is short by nature (one ReadingSet, one DER); every other list pages
        in SQL with ``fetch``."""
        return items[self.start : self.start + self.limit]

    async def fetch(
        self,
        session: AsyncSession,
        query: Select[T],
        changed: SQLColumnExpression[dt.datetime] | None = None,
    ) -> tuple[list[T], int]:
        """This page of ``query`` and the list's ``all``, both in SQL; ``a`` keeps the items whose ``changed``
        time is at or after it."""
        if self.after is not None and changed is not None:
            query = query.where(changed >= self.after)
        return await fetch_page(session, query, self.start, self.limit)


MAX_LIMIT = 255  # the most items one page returns (a bigger l is honoured up to this)


def page(request: web.Request) -> Page:
    """``s`` (start, default 0), ``l`` (limit, default 1 as 2030.5 specifies), ``a`` (after, epoch seconds)."""

    def num(name: str, default: int) -> int:
        raw = request.query.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or int(raw) > 2**32 - 1:
            raise Sep2Error(400, REASON_INVALID_VALUES, f"query parameter {name} must be 0..4294967295")
        return int(raw)

    after = request.query.get("a")
    return Page(
        num("s", 0),
        min(num("l", 1), MAX_LIMIT),
        dt.datetime.fromtimestamp(num("a", 0), dt.UTC) if after is not None else None,
    )


# SubscribableType 1: non-conditional subscriptions, what every resource server.sep2.subscriptions serves takes
SUBSCRIBABLE = 1


def list_element(
    tag: str,
    href: str,
    items: list[etree._Element],
    total: int,
    poll_rate: int | None = None,
    subscribable: bool = False,
) -> etree._Element:
    attrs: dict[str, Any] = {"href": href}
    if subscribable:
        attrs["subscribable"] = SUBSCRIBABLE
    attrs.update({"all": total, "results": len(items)})
    if poll_rate is not None:
        attrs["pollRate"] = poll_rate
    return xml.E(tag, attrs, items)


# ------------------------------------------------------------------------------------------------------ mRID
def mrid(kind: int, ident: int, pen: int, version: int = 0) -> str:
    """A server mRID: 24 hex digits naming the object, then the PEN as 8 decimal digits (CSIP-AUS)."""
    return f"{kind:04X}{version:08X}{ident:012X}{pen % 10**8:08d}"


MRID_PROGRAM, MRID_CONTROL, MRID_DEFAULT, MRID_FSA, MRID_RSET, MRID_CURVE = 1, 2, 3, 4, 5, 6


def parse_control_mrid(value: str, pen: int) -> int | None:
    value = value.strip().upper()
    if len(value) != 32 or not value.endswith(f"{pen % 10**8:08d}"):
        return None
    try:
        kind, ident = int(value[:4], 16), int(value[12:24], 16)
    except ValueError:
        return None
    return ident if kind == MRID_CONTROL else None


def epoch(t: dt.datetime) -> int:
    return int(t.timestamp())


# ----------------------------------------------------------------------------------------------------- scope
def scope_of(request: web.Request) -> Scope:
    """The caller's Scope (built once per request by the protocol listener, ``server.core.scope``); 403 when
    staff revoked its access."""
    return request[SCOPE].check_access()


def visible_device_ids(scope: Scope) -> Select[int]:
    """The ids of ``visible_devices_query`` as a subquery for ``IN``."""
    return select(EndDevice.id).where(scope.device_filter(), EndDevice.enabled.is_(True))


async def _aggregator_list(
    session: AsyncSession, scope: Scope, after: dt.datetime | None
) -> tuple[Select[EndDevice], EndDevice | None]:
    """An aggregator's EndDeviceList in two parts that each use an index (one OR over both would sort every
    visible row on each page): its devices in list order, and its own EndDevice if that is not one of them."""
    assert scope.aggregator_id is not None
    changed = [EndDevice.changed_at >= after] if after is not None else []
    devices = (
        select(EndDevice)
        .where(EndDevice.aggregator_id == scope.aggregator_id, EndDevice.enabled == true(), *changed)
        .order_by(EndDevice.sfdi, EndDevice.id)
    )
    own = await session.scalar(
        select(EndDevice).where(
            EndDevice.lfdi == scope.lfdi,
            EndDevice.enabled == true(),
            or_(EndDevice.aggregator_id.is_(None), EndDevice.aggregator_id != scope.aggregator_id),
            *changed,
        )
    )
    return devices, own


async def visible_devices_page(session: AsyncSession, scope: Scope, pg: Page) -> tuple[list[EndDevice], int]:
    """One page of the caller's EndDeviceList (``visible_devices_query`` order, ``a`` on changedTime) and its
    ``all``, in SQL."""
    if scope.aggregator_id is None:
        return await pg.fetch(session, visible_devices_query(scope), EndDevice.changed_at)
    devices, own = await _aggregator_list(session, scope, pg.after)
    if own is None:
        return await fetch_page(session, devices, pg.start, pg.limit)
    total = await count_rows(session, devices) + 1
    if pg.limit <= 0 or pg.start >= total:
        return [], total
    # the own EndDevice's place in the merged order: the aggregator's devices that sort before it
    before = or_(EndDevice.sfdi < own.sfdi, and_(EndDevice.sfdi == own.sfdi, EndDevice.id < own.id))
    place = await count_rows(session, devices.where(before))
    on_page = pg.start <= place < pg.start + pg.limit
    first = pg.start if pg.start <= place else pg.start - 1
    wanted = pg.limit - 1 if on_page else pg.limit
    rows = list(await session.scalars(devices.offset(first).limit(wanted))) if wanted else []
    if on_page:
        rows.insert(place - pg.start, own)
    return rows, total


async def count_visible_devices(session: AsyncSession, scope: Scope) -> int:
    if scope.aggregator_id is None:
        return await count_rows(session, visible_devices_query(scope))
    devices, own = await _aggregator_list(session, scope, None)
    return await count_rows(session, devices) + (own is not None)


def invalid(message: str) -> Invalid:
    return Invalid(message)


async def visible_device(session: AsyncSession, scope: Scope, lfdi: str) -> EndDevice | None:
    """The enabled EndDevice with this LFDI if the caller may reach it."""
    return await session.scalar(visible_devices_query(scope).where(EndDevice.lfdi == lfdi))
