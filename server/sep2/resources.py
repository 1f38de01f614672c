"""Subscribable 2030.5 resources, as their function-set modules declare them.

Each function-set module declares, next to the GET handler of a resource a client may subscribe to:

* ``path``: its href pattern (``{e}`` an EndDevice, ``{p}`` and ``{t}`` the objects below it -- stored with the
  Subscription as ``subject_device_id``, ``program_id`` and ``target_id``);
* ``render(ctx, scope, params)``: the function that serves the GET -- the GET handler is a thin wrapper around it,
  and a notification carries what it returns for the subscriber's scope (IEEE 2030.5 §8.7.3.2: the representation
  SHALL be identical to a GET's). It raises NotFound/Forbidden when the scope may not see the resource, which is
  also how a subscription to it is refused;
* ``affected(change)``: which Subscriptions of this kind a recorded change (``server.core.changes``) may alter, as
  a condition on the Subscription row (indexed columns only);
* optional hooks: ``render_many`` (render many subscriptions in a handful of queries, for fan-out to thousands of
  devices; the GET calls it too, with one), ``touched`` (subscriptions changed only indirectly, notified when their
  body differs from the last one, e.g. potentiallySuperseded flipping in another program), ``triggered`` (the
  candidates a change triggers after a check the database cannot make, e.g. a reading Condition).

``server.sep2.subscriptions`` iterates these declarations; adding a subscribable resource is one declaration.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sqlalchemy import ColumnElement, or_
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.changes import Change
from server.core.errors import DomainError
from server.core.scope import Scope
from server.sep2.render import RenderCtx
from server.store.models import Sep2Subscription


@dataclass(frozen=True)
class Params:
    """What an href names and which window of a list to render (a GET's ``s``/``l``/``a``)."""

    e: int | None = None
    p: int | None = None
    t: int | None = None
    start: int = 0
    limit: int = 1
    after: dt.datetime | None = None


Render = Callable[[RenderCtx, Scope, Params], Awaitable[etree._Element]]
# one result per (scope, params): the element, or the DomainError a GET would answer
RenderMany = Callable[[RenderCtx, list[tuple[Scope, Params]]], Awaitable[list[etree._Element | DomainError]]]
Affected = Callable[[Change], ColumnElement[bool] | None]
Candidates = Callable[[AsyncSession, Change, dt.datetime], Awaitable[list[Sep2Subscription]]]


@dataclass(frozen=True)
class Subscribable:
    kind: str  # stored with each Subscription (``Sep2Subscription.kind``)
    path: str
    render: Render
    affected: Affected
    is_list: bool  # a 2030.5 List: Subscription.limit counts its items
    render_many: RenderMany | None = None
    touched: Candidates | None = None
    triggered: Candidates | None = None
    conditional: bool = False  # takes a Subscription Condition (SubscribableType 3)

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compile(self.path)


def _compile(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w)\\\}", r"(?P<\1>\\d{1,9})", re.escape(path)) + "$")


REGISTRY: dict[str, Subscribable] = {}


def subscribable(
    kind: str,
    path: str,
    *,
    affected: Affected,
    is_list: bool,
    render_many: RenderMany | None = None,
    touched: Candidates | None = None,
    triggered: Candidates | None = None,
    conditional: bool = False,
) -> Callable[[Render], Render]:
    """Declare the resource that the decorated render function serves."""

    def declare(render: Render) -> Render:
        if kind in REGISTRY:
            raise ValueError(f"subscribable kind {kind!r} declared twice")
        REGISTRY[kind] = Subscribable(
            kind, path, render, affected, is_list, render_many, touched, triggered, conditional
        )
        return render

    return declare


def match(path: str) -> tuple[Subscribable, Params] | None:
    for decl in REGISTRY.values():
        m = decl.pattern.match(path)
        if m:
            groups: dict[str, Any] = {k: int(v) for k, v in m.groupdict().items()}
            return decl, Params(groups.get("e"), groups.get("p"), groups.get("t"))
    return None


def by_type(change: Change, *names: str) -> ColumnElement[bool] | None:
    """Subscriptions of a kind whose resource shows a resource type staff changed (a poll or post rate)."""
    return Sep2Subscription.id.is_not(None) if change.resource_types & set(names) else None


def any_of(conds: list[ColumnElement[bool]], change: Change, *types: str) -> ColumnElement[bool] | None:
    """An ``affected`` clause: any of ``conds``, or a rate change of these resource types (``by_type``); None
    when none can apply."""
    typed = by_type(change, *types)
    if typed is not None:
        conds = [*conds, typed]
    return or_(*conds) if conds else None


def page_params(pg: Any, e: int | None = None, p: int | None = None, t: int | None = None) -> Params:
    """The Params of a GET: the ids in its path and its page (``server.sep2.common.page``)."""
    return Params(e, p, t, pg.start, pg.limit, pg.after)
