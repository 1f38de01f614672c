"""One page of an ordered query and the number of rows of the whole query, both computed by the database
(OFFSET/LIMIT and COUNT): a list handler never loads every row to slice or count it in Python."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


async def count_rows(session: AsyncSession, query: Select[Any]) -> int:
    """COUNT(*) of what ``query`` selects (its ORDER BY dropped: it changes nothing in a count)."""
    return int(await session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)


async def fetch_page(session: AsyncSession, query: Select[T], offset: int, limit: int) -> tuple[list[T], int]:
    """Rows ``offset .. offset+limit`` of ``query`` (which must be ordered, ties broken by a unique column) and
    the total number of rows it selects."""
    total = await count_rows(session, query)
    if limit <= 0 or offset >= total:
        return [], total
    return list(await session.scalars(query.offset(offset).limit(limit))), total
