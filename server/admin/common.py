"""Helpers every admin handler uses: the JSON body, the runtime, JSON answers, list paging."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from server.core.errors import Invalid
from server.runtime import RUNTIME, Runtime


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    return body


def field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True, default: Any = None
) -> Any:
    """A typed field of a JSON body (bools are not ints here)."""
    if name not in body or body[name] is None:
        if required:
            raise Invalid(f"missing field {name!r}")
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise Invalid(f"field {name!r} must be {names}")
    return value


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda o: json.dumps(o, default=str))


@dataclass(frozen=True)
class Window:
    """One page of an admin list: ``?offset=`` rows skipped, at most ``?limit=`` returned (the database does
    both); the answer stays a JSON array and says the whole list's length in ``X-Total-Count``."""

    offset: int
    limit: int


MAX_PAGE = 10_000


def window(request: web.Request, default_limit: int = 1000) -> Window:
    def number(name: str, default: int, low: int) -> int:
        raw = request.query.get(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise Invalid(f"{name} must be an integer") from None
        if value < low:
            raise Invalid(f"{name} must be at least {low}")
        return value

    return Window(number("offset", 0, 0), min(number("limit", default_limit, 1), MAX_PAGE))


def list_reply(items: list[Any], total: int) -> web.Response:
    return reply(items, headers={"X-Total-Count": str(total)})


def parse_time(value: object, name: str, allow_now: bool = True) -> dt.datetime:
    """ISO 8601 with a UTC offset (or ``now`` where allowed), as aware UTC; anything else is a 400."""
    if allow_now and value == "now":
        return dt.datetime.now(dt.UTC)
    expected = "ISO 8601 or 'now'" if allow_now else "ISO 8601"
    if not isinstance(value, str):
        raise Invalid(f"{name} must be {expected}, got {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name} must be {expected}, got {value!r}") from None
    if parsed.tzinfo is None:
        raise Invalid(f"{name} must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
    return parsed.astimezone(dt.UTC)


def optional_time(value: str | None, name: str) -> dt.datetime | None:
    return None if value is None or value == "" else parse_time(value, name)


def path_id(request: web.Request, noun: str) -> int:
    """The ``{id}`` of a route: digits only (no sign, no spaces), else 400 naming what it identifies."""
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()):
        raise Invalid(f"{noun} id must be an integer")
    return int(raw)


def event_id(request: web.Request) -> int:
    return path_id(request, "event")
