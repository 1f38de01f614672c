"""All tables. Each area of the domain has its own module; importing this package registers every table."""

from server.store.models.base import Base
from server.store.models.devices import Aggregator, EndDevice
from server.store.models.grid import ForecastPoint, ForecastRun, GridNode, GridNodeMember
from server.store.models.openadr import Ven
from server.store.models.outbox import OutboxMessage

__all__ = ["Base", "Aggregator", "EndDevice", "ForecastPoint", "ForecastRun", "GridNode", "GridNodeMember",
           "OutboxMessage", "Ven"]
