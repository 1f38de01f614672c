"""The change record on SQLite and PostgreSQL: what core functions record in a transaction reaches the listeners
once, merged, inside that transaction's commit (rows they write commit with it); a rollback publishes nothing; the
outbox wake-up comes after the commit; a store nothing was attached to publishes nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from server.core import changes, programs
from server.core import sep2_device as devres
from server.store.models import Sep2Setting

seen: list[changes.Change] = []


async def listener(session, settings, change: changes.Change) -> int:
    if settings is not LISTENING:
        return 0
    seen.append(change)
    # what a listener writes belongs to the transaction of the change
    await devres.set_setting(session, f"heard:{len(seen)}", ",".join(map(str, sorted(change.programs))))
    return 1


LISTENING = SimpleNamespace(name="test settings")
changes.listen(listener)


@pytest.fixture
def woken(store):
    calls: list[int] = []
    changes.attach(store.sessions, LISTENING, lambda: calls.append(1))
    seen.clear()
    yield calls
    store.sessions.configure(info={})


async def test_recorded_changes_are_published_once_in_the_commit(store, woken):
    async with store.sessions.begin() as session:
        a = await programs.create_program(session, "chg-a", 1)
        b = await programs.create_program(session, "chg-b", 2)
        await programs.set_default_control(session, a, {"opModExpLimW": 1000})
        await programs.update_program(session, b, description="b")
        assert seen == [] and woken == []  # nothing before the commit
    assert len(seen) == 1 and seen[0].programs == {a.id, b.id}
    assert woken == [1]
    async with store.sessions() as session:
        row = await session.get(Sep2Setting, "heard:1")
        assert row is not None and row.value == f"{min(a.id, b.id)},{max(a.id, b.id)}"


async def test_a_rollback_publishes_nothing(store, woken):
    with pytest.raises(RuntimeError):
        async with store.sessions.begin() as session:
            p = await programs.create_program(session, "chg-rolled-back", 1)
            await programs.set_default_control(session, p, {"opModExpLimW": 1000})
            raise RuntimeError("abort")
    async with store.sessions.begin() as session:  # the next transaction starts clean
        await devres.set_setting(session, "unrelated", "1")
    assert seen == [] and woken == []
    async with store.sessions() as session:
        assert (
            list(await session.scalars(select(Sep2Setting.key).where(Sep2Setting.key.like("heard:%")))) == []
        )


async def test_unattached_store_publishes_nothing(store):
    seen.clear()
    async with store.sessions.begin() as session:
        p = await programs.create_program(session, "chg-quiet", 1)
        await programs.set_default_control(session, p, {"opModExpLimW": 1000})
    assert seen == []
