"""The JSON side of the 3.x API: Problem bodies for every refusal, request bodies parsed and checked against the
specification's schemas, query parameters, paging in SQL, and answers checked on the way out.

Bodies are parsed strictly: no NaN/Infinity, no number outside a double's range, no integer of more digits than
Python's limit, no nesting deeper than ``MAX_DEPTH``; a key whose value is ``null`` counts as absent (clients
serialise unset optional fields as ``null`` where the specification has no ``nullable``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import DomainError, Invalid
from server.core.oadr3_clients import Caller
from server.openadr3 import spec
from server.runtime import RUNTIME, Runtime

log = logging.getLogger("dso.openadr3")

JSON = "application/json"
PROBLEM = "application/problem+json"
MAX_DEPTH = 32
MAX_LIMIT = 50
CALLER = web.RequestKey("oadr3_caller", Caller)
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail[:500],
    }
    return web.Response(status=status, text=json.dumps(body), content_type=JSON, headers=headers)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal is a Problem; a domain error's status is its own; an unexpected error is a 500 and a log."""
    try:
        return await handler(request)
    except DomainError as exc:
        return problem(exc.status, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return problem(
            413, f"request body larger than {request.app[RUNTIME].settings.openadr3.max_body_bytes} bytes"
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        extra = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem(exc.status, exc.reason or TITLES.get(exc.status, "error"), extra)
    except Exception:
        log.exception("OpenADR 3 request %s %s failed", request.method, request.path)
        return problem(500, "internal error")


# ----------------------------------------------------------------------------------------------------- bodies
def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Invalid(f"number {text[:40]} is out of range")
    return value


def _constant(text: str) -> Any:
    raise Invalid(f"{text} is not a JSON number")


def _depth(value: Any, level: int = 0) -> None:
    if level > MAX_DEPTH:
        raise Invalid(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for v in value.values():
            _depth(v, level + 1)
    elif isinstance(value, list):
        for v in value:
            _depth(v, level + 1)


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def parse_json(raw: bytes) -> Any:
    # a cheap bound before the parser recurses: more opening brackets than the depth allows in a row
    if re.search(rb"[\[{](\s*[\[{]){%d}" % MAX_DEPTH, raw):
        raise Invalid(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw, parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"body is not JSON: {exc}"[:300]) from None
    _depth(value)
    return value


async def body(
    request: web.Request, schema: str, checked_as: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The request's JSON object, valid against schema ``schema`` of the specification (as ``checked_as`` turns
    it, when given), else Invalid (400)."""
    if request.content_type != JSON:
        raise web.HTTPUnsupportedMediaType(
            reason=f"send {JSON}, not {request.content_type or 'no content type'}"
        )
    value = without_nulls(parse_json(await request.read()))
    if not isinstance(value, dict):
        raise Invalid("body must be a JSON object")
    wrong = spec.errors(schema, checked_as(value) if checked_as else value)
    if wrong:
        raise Invalid(f"not a valid {schema}: " + "; ".join(wrong))
    return value


def answer(
    request: web.Request, schema: str, value: Any, status: int = 200, many: bool = False, checked: Any = None
) -> web.Response:
    """A JSON answer, checked against the specification when ``openadr3.validate_responses`` is on (``checked``:
    the form to check when the answer repeats a client's 3.0.1 spellings)."""
    if request.app[RUNTIME].settings.openadr3.validate_responses:
        wrong = spec.errors(schema, value if checked is None else checked, many)
        if wrong:
            log.error("OpenADR 3 answer is not a valid %s: %s", schema, "; ".join(wrong))
            return problem(500, "the server produced an invalid answer")
    return web.Response(status=status, text=json.dumps(value), content_type=JSON)


# ----------------------------------------------------------------------------------------------- query strings
_OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def object_id(value: str, what: str) -> int:
    """The integer key behind an objectID; an id of the wrong form names nothing (404, as for an unknown id)."""
    if not _OBJECT_ID.match(value):
        raise Invalid(f"{what} must be an objectID ([a-zA-Z0-9_-], 1..128 characters)")
    if not value.isdigit() or len(value) > 18:
        raise web.HTTPNotFound(reason=f"no {what} {value}")
    return int(value)


def path_id(request: web.Request, name: str) -> int:
    return object_id(request.match_info[name], name)


def query_id(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not _OBJECT_ID.match(value):
        raise Invalid(f"{name} must be an objectID")
    # an id this server never issues matches nothing
    return int(value) if value.isdigit() and len(value) <= 18 else -1


def query_str(request: web.Request, name: str, max_len: int = 128) -> str | None:
    value = request.query.get(name)
    if value is not None and not 1 <= len(value) <= max_len:
        raise Invalid(f"{name} must be 1..{max_len} characters")
    return value


def query_list(request: web.Request, name: str) -> list[str]:
    """A list parameter: repeated (``targets=a&targets=b``, form style exploded) or comma-separated."""
    out: list[str] = []
    for value in request.query.getall(name, []):
        out.extend(v for v in value.split(",") if v)
    if any(len(v) > 128 for v in out) or len(out) > 50:
        raise Invalid(f"{name}: at most 50 values of 1..128 characters")
    return out


def query_bool(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise Invalid(f"{name} must be true or false")
    return value.lower() == "true"


def _int(request: web.Request, name: str, default: int, maximum: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    if not re.fullmatch(r"\d{1,10}", value) or int(value) > maximum:
        raise Invalid(f"{name} must be an integer 0..{maximum}")
    return int(value)


def _window(request: web.Request) -> tuple[int, int]:
    return _int(request, "skip", 0, 2**31 - 1), _int(request, "limit", MAX_LIMIT, MAX_LIMIT)


async def page(request: web.Request, session: AsyncSession, query: Select[Any]) -> list[Any]:
    """``skip``/``limit`` (at most 50, the specification's maximum) applied in SQL."""
    skip, limit = _window(request)
    if limit == 0:
        return []
    return list(await session.scalars(query.offset(skip).limit(limit)))


async def page_rows(
    request: web.Request, session: AsyncSession, query: Select[*tuple[Any, ...]]
) -> list[Any]:
    """``page`` for a query of several columns: the rows."""
    skip, limit = _window(request)
    if limit == 0:
        return []
    return list((await session.execute(query.offset(skip).limit(limit))).all())


# --------------------------------------------------------------------------------------------- times, durations
_DURATION = re.compile(
    r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
MAX_SECONDS = 2**32 - 1  # the longest event the core keeps
EPOCH_NOW = dt.datetime(1, 1, 1, tzinfo=dt.UTC)  # the specification's "0001-01-01": now


def seconds(value: str, what: str) -> int:
    """An ISO 8601 duration in whole seconds (a year counts 365 days, a month 30)."""
    m = _DURATION.match(value)
    if not m:
        raise Invalid(f"{what}: {value[:40]!r} is not an ISO 8601 duration")
    sign, years, months, days, unit, hours, minutes, secs = m.groups()
    days_n = int(days or 0) * (7 if unit == "W" else 1)
    total = (
        int(years or 0) * 365 * 86400
        + int(months or 0) * 30 * 86400
        + days_n * 86400
        + int(hours or 0) * 3600
        + int(minutes or 0) * 60
        + float(secs or 0)
    )
    if total > MAX_SECONDS:
        raise Invalid(f"{what}: {value[:40]} is longer than {MAX_SECONDS} s")
    return -int(total) if sign else int(total)


def iso_duration(total: int) -> str:
    return f"PT{int(total)}S"


def timestamp(value: str, what: str, now: dt.datetime) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise Invalid(f"{what}: {value[:40]!r} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        if parsed.replace(tzinfo=dt.UTC) <= EPOCH_NOW.replace(year=1, month=1, day=2):
            return now
        raise Invalid(f"{what}: {value[:40]!r} needs a time zone")
    if parsed.year == 1:
        return now
    return parsed.astimezone(dt.UTC)


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
