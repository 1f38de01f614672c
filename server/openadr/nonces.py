"""ReplayProtect nonces, recorded durably with group commit.

Every signed message's nonce must be stored before the message is answered (in the database, so every server
process and a restarted one still know it). One INSERT transaction per message would cost more CPU than the XML
signature itself, so concurrent messages share one: callers queue their nonce and wait; a writer task inserts
everything queued in one ``INSERT .. ON CONFLICT DO NOTHING RETURNING`` and tells each caller whether its nonce
was new. The guarantee is the same as a per-message insert (durable before the answer), the cost is shared.

    request A --nonce a--\\
    request B --nonce b---> queue --> writer: INSERT (a, b, c) ON CONFLICT DO NOTHING RETURNING nonce --> a,b new
    request C --nonce c--/                                                                             c replayed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.dialects import postgresql, sqlite

from server.store import Store
from server.store.models import OadrNonce
from server.store.types import utcnow

log = logging.getLogger("dso.openadr")
MAX_BATCH = 500


class NonceWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: asyncio.Queue[tuple[str, asyncio.Future[bool]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self._insert = postgresql.insert if store.backend == "postgresql" else sqlite.insert

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="openadr-nonces")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def record(self, key: str) -> bool:
        """True when ``key`` was not seen before (and is now stored), False for a replay."""
        if self.task is None or self.task.done():
            raise RuntimeError("nonce writer is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self.queue.put((key, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                fresh = await self._insert_batch([key for key, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it, the writer must go on
                log.exception("recording ReplayProtect nonces failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for key, future in batch:
                if not future.done():
                    # a nonce twice in one batch: only its first sender gets True
                    future.set_result(key in fresh)
                    fresh.discard(key)

    async def _insert_batch(self, keys: list[str]) -> set[str]:
        now = utcnow()
        rows = [{"nonce": k, "seen_at": now} for k in dict.fromkeys(keys)]
        stmt = (self._insert(OadrNonce).values(rows).on_conflict_do_nothing(index_elements=["nonce"])
                .returning(OadrNonce.nonce))
        async with self.store.engine.begin() as conn:
            return set((await conn.execute(stmt)).scalars().all())
