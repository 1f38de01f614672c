"""What a process pays for before it does anything: ``dso`` builds its whole parser on every run, which must not
import the store, SQLAlchemy or aiohttp (a command that only talks to the admin API would pay for them; the
choices come from ``server.choices``); the server loads scipy with its first plan, not when it starts."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from support import REPO

HEAVY = ("sqlalchemy", "aiohttp", "server.store", "server.delivery", "server.core.alarms", "server.core.mv")


def imported_by(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"import json, sys; {code}; print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(out.stdout)


def test_building_the_parser_imports_neither_the_store_nor_aiohttp():
    assert imported_by("from server.cli import build_parser; build_parser()", HEAVY) == []


def test_the_server_application_starts_without_scipy():
    assert imported_by("import server.app", ("scipy", "server.orchestration.plan")) == [
        "server.orchestration.plan"
    ]


def choices(parser: argparse.ArgumentParser, *path: str) -> list[str]:
    """The choices of the option ``path[-1]`` of the (sub-)command ``path[:-1]``."""
    *commands, option = path
    for command in commands:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[command]
    return list(next(a.choices for a in parser._actions if option in a.option_strings))


def test_the_parser_offers_the_domains_own_choices():
    from server.cli import build_parser
    from server.core import alarms, mv, oadr3_clients, offers
    from server.delivery import outbox

    parser = build_parser()
    assert choices(parser, "alarms", "list", "--kind") == list(alarms.KINDS)
    assert choices(parser, "alarms", "list", "--state") == list(alarms.STATES)
    assert choices(parser, "deliveries", "list", "--status") == list(outbox.STATUSES)
    assert choices(parser, "mv", "--adjustment") == list(mv.ADJUSTMENTS)
    assert choices(parser, "offers", "list", "--status") == list(offers.OFFER_STATUSES)
    assert choices(parser, "oadr3", "client", "create", "--role") == list(oadr3_clients.ROLES)
