"""SunSpec register maps: model discovery, inverter (101-103) decoding, immediate controls (123) encoding.

Pure functions over lists of 16-bit register values, so they are testable without a device.
"""

from __future__ import annotations

from dataclasses import dataclass

SUNS = (0x5375, 0x6E53)  # "SunS"
BASE_ADDRESSES = (40000, 0, 50000)  # where SunSpec devices put the marker, in the order we probe
END_MODEL = 0xFFFF
INVERTER_MODELS = (101, 102, 103)
NAMEPLATE = 120
CONTROLS = 123
NOT_IMPLEMENTED_U16 = 0xFFFF
NOT_IMPLEMENTED_I16 = 0x8000


@dataclass(frozen=True)
class ModelBlock:
    id: int
    address: int  # first data register (after ID and L)
    length: int


def int16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def scale(raw: int, sf_raw: int, signed: bool = False) -> float | None:
    """value * 10**sf, or None when the point or its scale factor is 'not implemented'."""
    if sf_raw == NOT_IMPLEMENTED_I16 or raw == (NOT_IMPLEMENTED_I16 if signed else NOT_IMPLEMENTED_U16):
        return None
    value = int16(raw) if signed else raw
    return value * 10.0 ** int16(sf_raw)


def string(registers: list[int]) -> str:
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def decode_common(data: list[int]) -> dict[str, str]:
    return {
        "manufacturer": string(data[0:16]),
        "model": string(data[16:32]),
        "version": string(data[40:48]),
        "serial": string(data[48:64]),
    }


def decode_inverter(data: list[int]) -> dict[str, float]:
    """Model 101/102/103 (integer + scale factor): measurements in SI units; missing points are left out."""
    points = {
        "current": scale(data[0], data[4]),
        "voltage": scale(data[8], data[11]),
        "realPower": scale(data[12], data[13], signed=True),
        "frequency": scale(data[14], data[15]),
        "apparentPower": scale(data[16], data[17], signed=True),
        "reactivePower": scale(data[18], data[19], signed=True),
        "powerFactor": scale(data[20], data[21], signed=True),
        # WH is an acc32 over two registers; 0 means "not accumulated"
        "energyReal": None
        if data[24] == NOT_IMPLEMENTED_I16
        else ((data[22] << 16) | data[23]) * 10.0 ** int16(data[24]),
        "operatingState": float(data[36]) if data[36] != NOT_IMPLEMENTED_U16 else None,
    }
    if points["powerFactor"] is not None:
        points["powerFactor"] /= 100  # SunSpec PF is in percent
    return {k: v for k, v in points.items() if v is not None}


def decode_nameplate(data: list[int]) -> dict[str, float]:
    rating = scale(data[1], data[2])
    return {"ratedPower": rating} if rating is not None else {}


# model 123 offsets (within the data block)
CONN, WMAXLIMPCT, WMAXLIMPCT_RVRT, WMAXLIM_ENA, WMAXLIMPCT_SF = 2, 3, 5, 7, 21


def encode_export_limit(percent: float, sf_raw: int) -> list[tuple[int, int]]:
    """(offset, value) writes setting WMaxLimPct (percent of WMax) and enabling it."""
    if not 0 <= percent <= 100:
        raise ValueError("export limit must be 0..100 % of the rated power")
    sf = 0 if sf_raw == NOT_IMPLEMENTED_I16 else int16(sf_raw)
    raw = round(percent / 10.0**sf)
    if not 0 <= raw <= 0xFFFE:
        raise ValueError("export limit does not fit the device's scale factor")
    return [(WMAXLIMPCT, raw), (WMAXLIM_ENA, 1)]


def encode_release_limit() -> list[tuple[int, int]]:
    return [(WMAXLIM_ENA, 0)]


def encode_connect(connected: bool) -> list[tuple[int, int]]:
    return [(CONN, 1 if connected else 0)]
