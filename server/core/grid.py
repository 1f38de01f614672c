"""Grid nodes (feeders, transformers, groups) and which telemetry sources count in each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server import pki
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import GridNode, GridNodeMember

KINDS = ("feeder", "transformer", "group")
SOURCE_KINDS = ("device", "ven", "modbus")


@dataclass(frozen=True)
class NodeInfo:
    id: int
    name: str
    kind: str
    parent: str | None
    timezone: str
    latitude: float | None
    longitude: float | None
    import_limit_kw: float | None
    export_limit_kw: float | None
    members: list[dict[str, str]]


def _info(node: GridNode, parent_name: str | None) -> NodeInfo:
    return NodeInfo(
        node.id,
        node.name,
        node.kind,
        parent_name,
        node.timezone,
        node.latitude,
        node.longitude,
        node.import_limit_kw,
        node.export_limit_kw,
        [{"kind": m.source_kind, "id": m.source_id} for m in node.members],
    )


async def _node(session: AsyncSession, name: str) -> GridNode:
    node = await session.scalar(
        select(GridNode).where(GridNode.name == name).options(selectinload(GridNode.members))
    )
    if node is None:
        raise NotFound(f"no grid node {name!r}")
    return node


async def create_node(
    session: AsyncSession,
    name: str,
    kind: str,
    parent: str | None = None,
    timezone: str = "UTC",
    latitude: float | None = None,
    longitude: float | None = None,
    import_limit_kw: float | None = None,
    export_limit_kw: float | None = None,
) -> NodeInfo:
    _check(name, kind, timezone, latitude, longitude, import_limit_kw, export_limit_kw)
    parent_node = await _node(session, parent) if parent else None
    node = GridNode(
        name=name,
        kind=kind,
        parent_id=parent_node.id if parent_node else None,
        timezone=timezone,
        latitude=latitude,
        longitude=longitude,
        import_limit_kw=import_limit_kw,
        export_limit_kw=export_limit_kw,
        members=[],
    )
    session.add(node)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a grid node named {name!r} exists") from None
    return _info(node, parent)


def _check(
    name: str,
    kind: str,
    timezone: str,
    latitude: float | None,
    longitude: float | None,
    import_limit_kw: float | None,
    export_limit_kw: float | None,
) -> None:
    if not name or len(name) > 100:
        raise Invalid("node name must be 1..100 characters")
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {timezone!r}") from None
    if (
        latitude is not None
        and not -90 <= latitude <= 90
        or longitude is not None
        and not -180 <= longitude <= 180
    ):
        raise Invalid("latitude must be -90..90 and longitude -180..180")
    for what, limit in (("import_limit_kw", import_limit_kw), ("export_limit_kw", export_limit_kw)):
        if limit is not None and not 0 <= limit < 1e9:
            raise Invalid(f"{what} must be a non-negative number of kW")


# what a node's update may change; a name maps to None to clear an optional value
UPDATABLE = (
    "name",
    "kind",
    "parent",
    "timezone",
    "latitude",
    "longitude",
    "import_limit_kw",
    "export_limit_kw",
)


async def update_node(session: AsyncSession, name: str, changes: dict[str, Any]) -> NodeInfo:
    """Change some of a node's fields (``UPDATABLE``); a parent may not be the node itself or below it."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise Invalid(f"cannot change {', '.join(sorted(unknown))} (changeable: {', '.join(UPDATABLE)})")
    node = await _node(session, name)
    for required in ("name", "kind", "timezone"):
        if required in changes and changes[required] is None:
            raise Invalid(f"{required} cannot be cleared")
    merged = {f: changes.get(f, getattr(node, f)) for f in UPDATABLE if f != "parent"}
    _check(**merged)
    if "parent" in changes:
        parent = await _node(session, changes["parent"]) if changes["parent"] else None
        if parent is not None:
            by_id = {n.id: n for n in await session.scalars(select(GridNode))}
            above: GridNode | None = parent
            while above is not None:
                if above.id == node.id:
                    raise Invalid(f"{parent.name!r} is {name!r} or below it: it cannot be its parent")
                above = by_id.get(above.parent_id) if above.parent_id else None
        node.parent_id = parent.id if parent else None
    for f, value in merged.items():
        setattr(node, f, value)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a grid node named {merged['name']!r} exists") from None
    return await get_node(session, node.name)


async def delete_node(session: AsyncSession, name: str) -> None:
    """Remove a node with its membership list and forecasts; a node with nodes below it stays (move or delete
    them first)."""
    node = await _node(session, name)
    below = list(await session.scalars(select(GridNode.name).where(GridNode.parent_id == node.id)))
    if below:
        raise Conflict(f"{name!r} has nodes below it ({', '.join(sorted(below))}): move or delete them first")
    await session.delete(node)
    await session.flush()


def _source_id(kind: str, source_id: str) -> str:
    if kind not in SOURCE_KINDS:
        raise Invalid(f"member kind must be one of {', '.join(SOURCE_KINDS)}")
    if kind == "device":
        try:
            return pki.normalise_lfdi(source_id)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    if not source_id or len(source_id) > 64:
        raise Invalid("member id must be 1..64 characters")
    return source_id


async def add_member(session: AsyncSession, node_name: str, kind: str, source_id: str) -> NodeInfo:
    node = await _node(session, node_name)
    source_id = _source_id(kind, source_id)
    if any(m.source_kind == kind and m.source_id == source_id for m in node.members):
        raise Conflict(f"{kind} {source_id} is already in {node_name}")
    node.members.append(GridNodeMember(source_kind=kind, source_id=source_id))
    await session.flush()
    return await get_node(session, node_name)


async def remove_member(session: AsyncSession, node_name: str, kind: str, source_id: str) -> NodeInfo:
    node = await _node(session, node_name)
    source_id = _source_id(kind, source_id)
    kept = [m for m in node.members if not (m.source_kind == kind and m.source_id == source_id)]
    if len(kept) == len(node.members):
        raise NotFound(f"{kind} {source_id} is not in {node_name}")
    node.members = kept
    await session.flush()
    return await get_node(session, node_name)


async def get_node(session: AsyncSession, name: str) -> NodeInfo:
    node = await _node(session, name)
    parent = await session.get(GridNode, node.parent_id) if node.parent_id else None
    return _info(node, parent.name if parent else None)


async def list_nodes(session: AsyncSession) -> list[NodeInfo]:
    nodes = list(
        await session.scalars(select(GridNode).options(selectinload(GridNode.members)).order_by(GridNode.id))
    )
    names = {n.id: n.name for n in nodes}
    return [_info(n, names.get(n.parent_id) if n.parent_id else None) for n in nodes]


async def node_sources(session: AsyncSession, name: str) -> list[tuple[str, str]]:
    """Every (kind, id) counted in the node: its own members and those of the nodes below it."""
    nodes = list(await session.scalars(select(GridNode).options(selectinload(GridNode.members))))
    by_id = {n.id: n for n in nodes}
    root = next((n for n in nodes if n.name == name), None)
    if root is None:
        raise NotFound(f"no grid node {name!r}")
    children: dict[int, list[GridNode]] = {}
    for n in nodes:
        if n.parent_id in by_id:
            children.setdefault(n.parent_id, []).append(n)
    sources: set[tuple[str, str]] = set()
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if node.id in seen:  # a cycle in staff data must not hang the forecaster
            continue
        seen.add(node.id)
        sources.update((m.source_kind, m.source_id) for m in node.members)
        stack.extend(children.get(node.id, []))
    return sorted(sources)
