"""The per-request metrics: labelled children are looked up once per label set and count like before."""

from __future__ import annotations

import logging

import pytest
from aiohttp import ClientSession, web

from server.config import ConfigError, LoggingSettings, Settings, _validate
from server.observability import Metrics, observe_middleware


def test_metric_children_are_cached_and_count():
    m = Metrics()
    first = m.children("protocol", "/x", "POST", 200)
    assert m.children("protocol", "/x", "POST", 200) is first
    first[0].inc()
    first[1].observe(0.01)
    m.children("protocol", "/x", "POST", 463)[0].inc()
    sample = m.registry.get_sample_value
    assert (
        sample(
            "dso_http_requests_total",
            {"listener": "protocol", "route": "/x", "method": "POST", "status": "200"},
        )
        == 1
    )
    assert (
        sample(
            "dso_http_requests_total",
            {"listener": "protocol", "route": "/x", "method": "POST", "status": "463"},
        )
        == 1
    )
    assert (
        sample("dso_http_request_seconds_count", {"listener": "protocol", "route": "/x", "method": "POST"})
        == 1
    )
    # unusual method names are still counted, but not remembered
    assert m.children("protocol", "/x", "BREW", 405) is not m.children("protocol", "/x", "BREW", 405)


async def _logged_requests(requests: str, caplog) -> tuple[list[str], float | None]:
    """GET 200, GET 404, HEAD 200 and POST 201 through the middleware on a loopback server; the lines logged."""
    metrics = Metrics()
    app = web.Application(middlewares=[observe_middleware("protocol", metrics, requests)])

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="x")

    async def created(_request: web.Request) -> web.Response:
        return web.Response(status=201)

    app.router.add_get("/poll", ok)
    app.router.add_post("/write", created)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    caplog.clear()
    try:
        with caplog.at_level(logging.INFO, logger="dso.http"):
            async with ClientSession(f"http://127.0.0.1:{port}") as client:
                for method, path in (
                    ("GET", "/poll"),
                    ("GET", "/missing"),
                    ("HEAD", "/poll"),
                    ("POST", "/write"),
                ):
                    async with client.request(method, path) as r:
                        await r.read()
    finally:
        await runner.cleanup()
    polls = metrics.registry.get_sample_value(
        "dso_http_requests_total",
        {"listener": "protocol", "route": "/poll", "method": "GET", "status": "200"},
    )
    return [r.getMessage() for r in caplog.records if r.name == "dso.http"], polls


async def test_request_log_modes(caplog):
    assert (await _logged_requests("all", caplog))[0] == [
        "GET /poll 200",
        "GET /missing 404",
        "HEAD /poll 200",
        "POST /write 201",
    ]
    # the default: a fleet's successful polls are only counted
    lines, polls = await _logged_requests("changes", caplog)
    assert lines == ["GET /missing 404", "POST /write 201"]
    assert polls == 1
    lines, polls = await _logged_requests("none", caplog)
    assert lines == [] and polls == 1


def test_request_log_setting_is_checked():
    assert LoggingSettings().requests == "changes"
    settings = Settings()
    settings.logging.requests = "some"
    with pytest.raises(ConfigError, match="logging.requests"):
        _validate(settings)
