"""Parse human durations for CLI flags: ``90``, ``15m``, ``24h``, ``2d``."""

from __future__ import annotations

import argparse

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> int:
    text = text.strip().lower()
    unit = UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 900, 15m, 24h or 2d") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return int(value)
