"""Network models for the server: a SimBench code or a pandapower JSON document -> the model (checked as the
planner needs it) and the summary the store keeps beside it (each bus's zone, each zone's grid node and rating).

Pure computation; the admin API runs it in an executor."""

from __future__ import annotations

from typing import Any

from server.orchestration.network.model import Network, NetworkError
from server.orchestration.network.pandapower_io import from_pandapower
from server.orchestration.network.topology import MV_ZONE, build_tree


def from_simbench(code: str) -> Network:
    from server.orchestration.network.simbench_io import simbench_net

    return from_pandapower(simbench_net(code), name=code)


def from_pandapower_json(text: str, name: str) -> Network:
    try:
        import pandapower
    except ImportError:
        raise NetworkError("pandapower is not installed: pip install 'opendso[grid]'") from None
    try:
        net = pandapower.from_json_string(text)
    except Exception as exc:  # pandapower raises whatever its JSON reader met
        raise NetworkError(f"not a pandapower network: {exc}") from None
    return from_pandapower(net, name=name)


def summary(model: Network, name: str) -> dict[str, Any]:
    """What mapping and planning need without reading the whole model: every bus's zone, every zone's grid
    node (``NAME/<transformer>`` for an MV/LV transformer, ``NAME`` for the MV network) and rating."""
    model.validate()
    tree = build_tree(model)
    trafos = {t.id: t for t in model.trafos}
    names = [t.name for t in model.trafos]
    zones: dict[str, dict[str, Any]] = {str(MV_ZONE): {"node": name, "trafo": None, "rating_kva": None}}
    for z in sorted({int(z) for z in tree.zone if int(z) != MV_ZONE}):
        t = trafos[z]
        label = t.name if t.name and names.count(t.name) == 1 else f"trafo {t.id}"
        zones[str(z)] = {
            "node": f"{name}/{label}"[:100],
            "trafo": t.id,
            "rating_kva": round(t.sn_mva * 1000 * t.parallel, 3),
        }
    bus_zone = {str(b.id): int(tree.zone[tree.pos[b.id]]) for b in model.buses}
    connectable = {str(b.id): b.vn_kv for b in model.buses if b.id != model.slack.bus}
    return {
        "buses": len(model.buses),
        "bus_zone": bus_zone,
        "zones": zones,
        "connectable": connectable,
        "connection_points": sorted(model.connection_points()),
        "bus_names": {str(b.id): b.name for b in model.buses},
    }


def prepared(model: Network, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    model.name = name
    return model.to_dict(), summary(model, name)
