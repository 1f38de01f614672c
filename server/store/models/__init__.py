"""All tables. Each area of the domain has its own module; importing this package registers every table."""

from server.store.models.alarms import Alarm
from server.store.models.base import Base
from server.store.models.delivery import DeliveryInstance, DeliveryMessage
from server.store.models.devices import Aggregator, EndDevice
from server.store.models.events import Event, EventResponse, EventTarget, Program, ProgramMember
from server.store.models.grid import ForecastPoint, ForecastRun, GridNode, GridNodeMember
from server.store.models.market import FlexOffer
from server.store.models.modbus import ModbusDevice
from server.store.models.openadr import (
    OadrNonce,
    OadrOpt,
    OadrReportDescription,
    OadrReportRequest,
    Ven,
)
from server.store.models.openadr3 import (
    Oadr3Client,
    Oadr3Report,
    Oadr3Resource,
    Oadr3Subscription,
    Oadr3Token,
    Oadr3Ven,
)
from server.store.models.plans import GridMapping, GridModel, Plan, PlanEvent
from server.store.models.sep2 import (
    Sep2Curve,
    Sep2DeviceResource,
    Sep2Fsa,
    Sep2FsaProgram,
    Sep2Mmr,
    Sep2Mup,
    Sep2MupReading,
    Sep2Setting,
)
from server.store.models.sep2_influence import (
    Sep2LogEvent,
    Sep2Subscription,
)
from server.store.models.staff import AuditRecord, StaffAccount, StaffSession, StaffToken
from server.store.models.telemetry import TelemetryReading

__all__ = [
    "Alarm",
    "Base",
    "Aggregator",
    "EndDevice",
    "Event",
    "FlexOffer",
    "EventResponse",
    "EventTarget",
    "Program",
    "ProgramMember",
    "ForecastPoint",
    "ForecastRun",
    "GridNode",
    "GridNodeMember",
    "GridMapping",
    "GridModel",
    "Plan",
    "PlanEvent",
    "ModbusDevice",
    "DeliveryInstance",
    "DeliveryMessage",
    "Ven",
    "OadrNonce",
    "OadrOpt",
    "OadrReportDescription",
    "OadrReportRequest",
    "Oadr3Client",
    "Oadr3Report",
    "Oadr3Resource",
    "Oadr3Subscription",
    "Oadr3Token",
    "Oadr3Ven",
    "TelemetryReading",
    "AuditRecord",
    "StaffAccount",
    "StaffSession",
    "StaffToken",
    "Sep2Curve",
    "Sep2DeviceResource",
    "Sep2Fsa",
    "Sep2FsaProgram",
    "Sep2Mmr",
    "Sep2Mup",
    "Sep2MupReading",
    "Sep2Setting",
    "Sep2LogEvent",
    "Sep2Subscription",
]
