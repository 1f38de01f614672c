"""A 2030.5 request body is read whole however it arrives: a client's body comes in pieces (TLS records are at
most 16 KiB), and one ``StreamReader.read(n)`` returns only what has arrived. A MirrorReadingSet of a week of
15-minute readings (~30 kB) was cut short and refused as malformed XML."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.sep2.common import read_limited

LIMIT = 100_000


async def _client() -> TestClient:
    async def echo(request: web.Request) -> web.Response:
        body = await read_limited(request.content, LIMIT)
        return web.json_response({"size": len(body), "ok": body == b"x" * len(body)})

    app = web.Application()
    app.router.add_post("/", echo)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def _pieces(n: int, size: int):
    for _ in range(n):
        yield b"x" * size
        await asyncio.sleep(0.01)  # each piece arrives on its own


async def test_a_body_sent_in_pieces_is_read_whole():
    client = await _client()
    try:
        r = await client.post("/", data=_pieces(5, 16_384))
        assert await r.json() == {"size": 5 * 16_384, "ok": True}
        r = await client.post("/", data=b"x" * 40_000)
        assert await r.json() == {"size": 40_000, "ok": True}
    finally:
        await client.close()


async def test_a_body_over_the_limit_is_read_one_byte_past_it():
    client = await _client()
    try:
        r = await client.post("/", data=_pieces(8, 16_384))  # 131 072 bytes
        assert await r.json() == {"size": LIMIT + 1, "ok": True}
        r = await client.post("/", data=b"")
        assert await r.json() == {"size": 0, "ok": True}
    finally:
        await client.close()
