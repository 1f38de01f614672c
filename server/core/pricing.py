"""Tariffs and time-varying prices (the 2030.5 Pricing function set, protocol-neutral).

A tariff (TariffProfile) has a currency (ISO 4217 numeric), a power-of-ten for its prices and a primacy; it has
rate components (what is priced: a ReadingType, e.g. energy delivered in Wh, and roleFlags); each rate component
carries price intervals (TimeTariffInterval events) holding a price per consumption tier (ConsumptionTariffInterval:
``startValue`` of the block and its ``price``, in currency units x 10^pricePowerOfTenMultiplier per unit of the
ReadingType). A tariff is a ``price`` program, a rate component a ``rate`` program under it; a price interval
is an event of the rate component, created like every event (``server.core.events.create``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from server.core import programs
from server.core.errors import Invalid
from server.store.models import Program

CURRENCIES = {36: "AUD", 124: "CAD", 554: "NZD", 826: "GBP", 840: "USD", 978: "EUR"}


async def create_tariff(
    session: AsyncSession,
    name: str,
    *,
    currency: int = 840,
    price_power_of_ten: int = -3,
    primacy: int = 1,
    rate_code: str = "",
    description: str = "",
) -> Program:
    if currency not in CURRENCIES:
        raise Invalid(f"currency must be an ISO 4217 numeric code, one of {sorted(CURRENCIES)}")
    if not -9 <= price_power_of_ten <= 9:
        raise Invalid("price_power_of_ten must be -9..9")
    if len(rate_code) > 20:
        raise Invalid("rate_code is at most 20 characters")
    return await programs.create(
        session,
        "price",
        name,
        primacy=primacy,
        description=description,
        attrs={
            "currency": currency,
            "pricePowerOfTenMultiplier": price_power_of_ten,
            "rateCode": rate_code,
            "serviceCategoryKind": 0,
        },
    )


async def add_rate(
    session: AsyncSession,
    tariff: Program,
    name: str,
    *,
    uom: int = 72,
    flow_direction: int = 1,
    role_flags: int = 1,
    power_of_ten: int = 0,
    description: str = "",
) -> Program:
    """A RateComponent; by default energy (uom 72 Wh) delivered to the customer (flowDirection 1)."""
    if uom not in (38, 72, 61, 63, 71, 73):
        raise Invalid("uom must be one of 38 (W), 61 (VA), 63 (var), 71 (VAh), 72 (Wh), 73 (varh)")
    if flow_direction not in (0, 1, 19):
        raise Invalid("flow_direction must be 0 (none), 1 (forward/delivered) or 19 (reverse/received)")
    if not 0 <= role_flags <= 0xFFFF or not -9 <= power_of_ten <= 9:
        raise Invalid("role_flags must be 0..65535 and power_of_ten -9..9")
    return await programs.create(
        session,
        "rate",
        name,
        parent=tariff,
        primacy=tariff.primacy,
        description=description,
        attrs={
            "uom": uom,
            "flowDirection": flow_direction,
            "roleFlags": role_flags,
            "powerOfTenMultiplier": power_of_ten,
        },
    )


def check_tiers(tiers: object) -> list[dict[str, int]]:
    """ConsumptionTariffIntervals: 1..20 blocks, startValue ascending from 0, price an Int32."""
    if not isinstance(tiers, list) or not 1 <= len(tiers) <= 20:
        raise Invalid("prices must hold 1..20 consumption blocks")
    clean = []
    for i, t in enumerate(tiers):
        if not isinstance(t, dict):
            raise Invalid(f"prices[{i}] must be an object {{price, start_value}}")
        price, start = t.get("price"), t.get("start_value", 0 if i == 0 else None)
        if isinstance(price, bool) or not isinstance(price, int):
            raise Invalid(f"prices[{i}].price must be an integer")
        if isinstance(start, bool) or not isinstance(start, int):
            raise Invalid(f"prices[{i}].start_value must be an integer")
        if not -(2**31) <= price < 2**31 or not 0 <= start < 2**48:
            raise Invalid(f"prices[{i}]: price must fit Int32 and start_value UInt48")
        clean.append({"price": price, "startValue": start})
    if clean[0]["startValue"] != 0 or any(
        b["startValue"] <= a["startValue"] for a, b in zip(clean, clean[1:], strict=False)
    ):
        raise Invalid("consumption blocks must start at 0 and ascend")
    return clean
