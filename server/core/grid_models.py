"""The network model in the store: each import of a name is its next version, and every MV/LV transformer of
the model is a grid node (``transformer``, under a ``feeder`` node named after the model) so that forecasts,
limits and members work on it as on any node staff create. Staff map enrolled resources to the model's buses:
a mapping also makes the resource a member of the node of the bus's zone, which is what that node is
forecast from.

The model itself is plain JSON (``Network.to_dict``); what this module needs of its topology (each bus's zone,
each zone's node) is computed by the importer in ``server.orchestration`` and stored as ``summary``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import grid
from server.core.errors import Invalid, NotFound
from server.store.models import GridMapping, GridModel, GridNode, GridNodeMember

MODEL_NODE_KIND = "feeder"


def model_dict(m: GridModel, mappings: int | None = None) -> dict[str, Any]:
    s = m.summary or {}
    return {
        "id": m.id,
        "name": m.name,
        "version": m.version,
        "source": m.source,
        "imported_at": m.imported_at.isoformat(),
        "buses": s.get("buses", 0),
        "connection_points": len(s.get("connection_points", [])),
        "zones": {z: info["node"] for z, info in s.get("zones", {}).items()},
        "mappings": mappings,
    }


async def store_model(
    session: AsyncSession, name: str, source: str, model: dict[str, Any], summary: dict[str, Any]
) -> GridModel:
    """Store ``model`` as the next version of ``name`` and bring its grid nodes up to date (limits from the
    transformer ratings; nodes of transformers a later version no longer has are left to staff)."""
    if not name or len(name) > 60 or "/" in name:
        raise Invalid("a model name must be 1..60 characters without '/'")
    newest = await session.scalar(select(func.max(GridModel.version)).where(GridModel.name == name))
    row = GridModel(name=name, version=(newest or 0) + 1, source=source[:300], model=model, summary=summary)
    session.add(row)
    await session.flush()
    feeder = await session.scalar(select(GridNode).where(GridNode.name == name))
    if feeder is None:
        await grid.create_node(session, name, MODEL_NODE_KIND)
    for info in summary.get("zones", {}).values():
        if info["node"] == name:
            continue
        node = await session.scalar(select(GridNode).where(GridNode.name == info["node"]))
        limit = info.get("rating_kva")
        if node is None:
            await grid.create_node(
                session,
                info["node"],
                "transformer",
                parent=name,
                import_limit_kw=limit,
                export_limit_kw=limit,
            )
        else:
            node.import_limit_kw = node.export_limit_kw = limit
    await session.flush()
    return row


async def latest(session: AsyncSession, name: str) -> GridModel:
    row = await session.scalar(
        select(GridModel).where(GridModel.name == name).order_by(GridModel.version.desc()).limit(1)
    )
    if row is None:
        raise NotFound(f"no network model {name!r} (import one: dso grid import)")
    return row


async def model_names(session: AsyncSession) -> list[str]:
    return sorted(set(await session.scalars(select(GridModel.name))))


async def list_models(session: AsyncSession) -> list[dict[str, Any]]:
    """The newest version of every model, with its mapping count."""
    out = []
    for name in await model_names(session):
        row = await latest(session, name)
        n = await session.scalar(select(func.count()).where(GridMapping.model_name == name))
        out.append(model_dict(row, int(n or 0)))
    return out


def zone_node(model: GridModel, bus: int) -> str:
    """The grid node whose forecast covers ``bus`` (its MV/LV transformer's, or the model's own)."""
    s = model.summary
    zone = s.get("bus_zone", {}).get(str(bus))
    if zone is None:
        raise Invalid(f"model {model.name!r} has no bus {bus}")
    return str(s["zones"][str(zone)]["node"])


async def map_resource(session: AsyncSession, model_name: str, bus: int, kind: str, source_id: str) -> dict:
    """Connect a resource at ``bus`` (moving it if it was mapped elsewhere in the model)."""
    model = await latest(session, model_name)
    source_id = grid._source_id(kind, source_id)
    if str(bus) not in model.summary.get("connectable", {}):
        raise Invalid(f"bus {bus} of {model_name!r} is not a customer connection point (an LV or MV bus)")
    node = zone_node(model, bus)
    old = await session.scalar(
        select(GridMapping).where(
            GridMapping.model_name == model_name,
            GridMapping.source_kind == kind,
            GridMapping.source_id == source_id,
        )
    )
    if old is not None:
        old_node = zone_node(model, old.bus)
        await _drop_member(session, old_node, kind, source_id)
        old.bus = bus
    else:
        session.add(GridMapping(model_name=model_name, bus=bus, source_kind=kind, source_id=source_id))
    info = await grid.get_node(session, node)
    if not any(m["kind"] == kind and m["id"] == source_id for m in info.members):
        await grid.add_member(session, node, kind, source_id)
    await session.flush()
    return {"model": model_name, "bus": bus, "kind": kind, "id": source_id, "node": node}


async def unmap_resource(session: AsyncSession, model_name: str, kind: str, source_id: str) -> None:
    model = await latest(session, model_name)
    source_id = grid._source_id(kind, source_id)
    row = await session.scalar(
        select(GridMapping).where(
            GridMapping.model_name == model_name,
            GridMapping.source_kind == kind,
            GridMapping.source_id == source_id,
        )
    )
    if row is None:
        raise NotFound(f"{kind} {source_id} is not mapped in {model_name!r}")
    await _drop_member(session, zone_node(model, row.bus), kind, source_id)
    await session.delete(row)
    await session.flush()


async def _drop_member(session: AsyncSession, node: str, kind: str, source_id: str) -> None:
    node_id = await session.scalar(select(GridNode.id).where(GridNode.name == node))
    if node_id is not None:
        await session.execute(
            delete(GridNodeMember).where(
                GridNodeMember.node_id == node_id,
                GridNodeMember.source_kind == kind,
                GridNodeMember.source_id == source_id,
            )
        )


async def mappings(session: AsyncSession, model_name: str) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(GridMapping).where(GridMapping.model_name == model_name).order_by(GridMapping.id)
    )
    return [{"bus": r.bus, "kind": r.source_kind, "id": r.source_id} for r in rows]
