"""The support tables in docs/ are the server's route tables in prose: every route served is listed with its
methods, and nothing is listed that is not served."""

from __future__ import annotations

import re
from collections import defaultdict

from support import REPO

from server.sep2 import routes as sep2_routes


def table_routes(doc: str) -> dict[str, set[str]]:
    """Route -> methods from the rows of a Markdown support table (route and methods in backticked/plain cells)."""
    found: dict[str, set[str]] = {}
    for line in (REPO / "docs" / doc).read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) < 4 or not cells[2].startswith("`"):
            continue
        route = cells[2].strip("`").replace("\\|", "|")
        found[route] = {m.strip() for m in cells[3].split(",")}
    return found


def served_2030_5() -> dict[str, set[str]]:
    served: dict[str, set[str]] = defaultdict(set)
    for module in sep2_routes.FUNCTION_SETS:
        for route in module.routes:
            served[route.path].add(route.method)
    return dict(served)


def test_2030_5_table_lists_exactly_the_served_routes_and_methods():
    documented, served = table_routes("2030_5.md"), served_2030_5()
    assert sorted(set(served) - set(documented)) == [], "served but not in docs/2030_5.md"
    assert sorted(set(documented) - set(served)) == [], "in docs/2030_5.md but not served"
    wrong = {path: (documented[path], served[path]) for path in served if documented[path] != served[path]}
    assert wrong == {}, "methods differ (documented, served)"


def test_openadr_table_lists_exactly_the_served_services_and_messages():
    import server.openadr  # noqa: F401 - importing the adapter registers every service's handlers
    from server.openadr import transport

    documented: set[tuple[str, str]] = set()
    for line in (REPO / "docs" / "openadr.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[1].startswith("`/"):
            documented |= {(cells[1].strip("`/"), m.strip()) for m in cells[2].split(",")}
    served = {(service, kind) for service, kinds in transport.HANDLERS.items() for kind in kinds}
    assert sorted(served - documented) == [], "served but not in docs/openadr.md"
    assert sorted(documented - served) == [], "in docs/openadr.md but not served"


def test_openadr3_table_lists_exactly_the_served_routes_and_methods():
    from server.config import Settings
    from server.openadr3 import create_app
    from server.runtime import Runtime

    app = create_app(Runtime(settings=Settings(), store=None))  # type: ignore[arg-type] - routes only
    served: dict[str, set[str]] = defaultdict(set)
    prefix = Settings().openadr3.prefix.rstrip("/")
    for sub in [app, *(r.get_info().get("app") for r in app.router.resources() if "app" in r.get_info())]:
        if sub is None:
            continue
        for route in sub.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            if sub is not app and route.method != "HEAD":
                served[path.removeprefix(prefix)].add(route.method)
    documented = table_routes("openadr3.md")
    assert sorted(set(served) - set(documented)) == [], "served but not in docs/openadr3.md"
    assert sorted(set(documented) - set(served)) == [], "in docs/openadr3.md but not served"
    wrong = {path: (documented[path], served[path]) for path in served if documented[path] != served[path]}
    assert wrong == {}, "methods differ (documented, served)"
