"""All tables. Each area of the domain has its own module; importing this package registers every table."""

from server.store.models.base import Base
from server.store.models.devices import Aggregator, EndDevice
from server.store.models.openadr import Ven
from server.store.models.sep2 import (
    Sep2Control,
    Sep2Curve,
    Sep2DeviceResource,
    Sep2Fsa,
    Sep2FsaProgram,
    Sep2Mmr,
    Sep2Mup,
    Sep2MupReading,
    Sep2Program,
    Sep2Response,
    Sep2Setting,
)

__all__ = ["Base", "Aggregator", "EndDevice", "Ven", "Sep2Control", "Sep2Curve", "Sep2DeviceResource", "Sep2Fsa", "Sep2FsaProgram", "Sep2Mmr", "Sep2Mup",
           "Sep2MupReading", "Sep2Program", "Sep2Response", "Sep2Setting"]
