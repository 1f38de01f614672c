"""Templates (Jinja2, autoescaped) and the console's static files (a fixed set read once; no path is ever
joined from a request)."""

from __future__ import annotations

import datetime as dt
import mimetypes
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from server.admin.access import PRINCIPAL, public
from server.core import staff

routes = web.RouteTableDef()

ENV = web.AppKey("console_templates", jinja2.Environment)
STATIC = web.AppKey("console_static", dict)
PREFIX = "/console"


def _files() -> dict[str, tuple[bytes, str]]:
    root = resources.files("server.console") / "static"
    out: dict[str, tuple[bytes, str]] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, name + "/")
            else:
                kind = mimetypes.guess_type(child.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind.endswith("javascript"):
                    kind += "; charset=utf-8"
                out[name] = (child.read_bytes(), kind)

    walk(root, "")
    return out


def when(value: dt.datetime | str | None) -> str:
    """A time as people read it on the console: UTC, to the second."""
    if value is None:
        return "never"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = int(((now or dt.datetime.now(dt.UTC)) - value).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if abs(seconds) >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def setup(app: web.Application) -> None:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("server.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["ago"] = ago
    app[ENV] = env
    app[STATIC] = _files()


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    who = request.get(PRINCIPAL)
    actions = who.actions if who is not None else frozenset()
    body = (
        request.app[ENV]
        .get_template(template)
        .render(
            who=who,
            csrf=who.csrf if who is not None and who.csrf else "",
            can=lambda action: action in actions,
            A=staff,
            path=request.path,
            query=request.query,
            **context,
        )
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


@routes.get(PREFIX + "/static/{name:.+}")
@public
async def static(request: web.Request) -> web.Response:
    found = request.app[STATIC].get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, kind = found
    return web.Response(body=body, headers={"Content-Type": kind, "Cache-Control": "max-age=3600"})
