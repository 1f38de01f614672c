"""The network model the planner and the server share (plain dataclasses, JSON-serialisable), its checks
(radial, no islands, every element on a known bus, every branch rated) and its importers (pandapower JSON,
SimBench codes with their profiles). Importers need the optional ``grid`` extra; the model does not."""

from server.orchestration.network.model import (
    Bus,
    Coupler,
    Line,
    Load,
    Network,
    NetworkError,
    Profiles,
    Sgen,
    Slack,
    Storage,
    Trafo,
)

__all__ = [
    "Bus",
    "Coupler",
    "Line",
    "Load",
    "Network",
    "NetworkError",
    "Profiles",
    "Sgen",
    "Slack",
    "Storage",
    "Trafo",
]
