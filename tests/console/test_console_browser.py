"""The operator console in a real headless Chromium (Debian's package, driven by Playwright): log in with password
and TOTP, see the fleet, create an export-limit control for a device and see it on the device page and in the
events view, cancel it, watch an alarm arrive without reloading and acknowledge it; a viewer sees the pages but
the server refuses (403) every mutating console route, even with the session's CSRF token; logout ends the
session and its cookie. Screenshots of the main pages go to tests/artifacts/console/."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from support import REPO, LiveServer

from server.admin.access import MUTATING, is_public, required_action
from server.core import alarms
from server.core.staff import ROLES
from server.store import create_store

CHROMIUM = os.environ.get("DSO_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("DSO_REQUIRE_BROWSER", "") not in ("", "0", "false")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = REPO / "tests" / "artifacts" / "console"
DEVICES = [(f"roof-{i:02d}", f"{i:02X}" * 20) for i in range(1, 6)]


def _browser_or_reason() -> str | None:
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"playwright is not installed: {exc}"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _browser_or_reason()
    if reason:
        message = f"browser tests DID NOT RUN: {reason}"
        if REQUIRE_BROWSER:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    # last contact reaches the database within a second, so the fleet shows the polling device online
    env = {"DSO_ORCHESTRATION__ENABLED": "false", "DSO_ALARMS__CONTACT_FLUSH_S": "1"}
    home = tmp_path_factory.mktemp("console")
    for attempt in range(
        3
    ):  # a port picked free can be taken by another test process before the server binds it
        live = LiveServer(home / f"dso{attempt}", extra_env=env).init()
        try:
            live.start()
            break
        except AssertionError as exc:
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def fleet(server) -> dict[str, Any]:
    """A small demo fleet: 2030.5 devices, a VEN, a grid node; and one account per role."""
    ids = {}
    for name, lfdi in DEVICES:
        status, body = server.admin("POST", "/api/v1/devices", {"lfdi": lfdi, "name": name})
        assert status == 201, body
        ids[name] = body["id"]
    status, body = server.admin(
        "POST", "/api/v1/vens", {"name": "vpp-north", "fingerprint": "AA:BB:CC:DD:EE:FF:00:11:22:33"}
    )
    assert status == 201, body
    # one device with a certificate of its own polls over mutual TLS: its last contact makes it online
    live = server.issue_device("roof-live")
    status, body = server.admin("POST", "/api/v1/devices", {"lfdi": live["lfdi"], "name": "roof-live"})
    assert status == 201, body
    ctx = server.client_context(live["cert"], live["key"])
    assert server.request(ctx, "GET", "/dcap")[0] == 200
    # a feeder with a week of metered load and a forecast of it
    status, body = server.admin(
        "POST", "/api/v1/grid/nodes", {"name": "feeder-1", "kind": "feeder", "export_limit_kw": 250}
    )
    assert status == 201, body
    lfdi = DEVICES[0][1]
    assert (
        server.admin("POST", "/api/v1/grid/nodes/feeder-1/members", {"kind": "device", "id": lfdi})[0] == 201
    )
    now = int(time.time()) // 900 * 900
    noise = random.Random(7)
    readings = [
        [
            dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(),
            40_000 + 25_000 * math.sin(2 * math.pi * (ts % 86400) / 86400) + noise.gauss(0, 6_000),
        ]
        for ts in range(now - 7 * 86400, now, 900)
    ]
    status, body = server.admin(
        "POST",
        "/api/v1/telemetry",
        {"source_kind": "device", "source_id": lfdi, "measurement": "realPower", "readings": readings},
    )
    assert status in (200, 201), body
    status, body = server.admin("POST", "/api/v1/forecasts", {"node": "feeder-1", "history_days": 7})
    assert status == 201, body
    accounts = {}
    for role in ("operator", "viewer"):
        status, body = server.admin("POST", "/api/v1/staff", {"name": f"{role}-ann", "role": role})
        assert status == 201, body
        accounts[role] = body
    return {"devices": ids, "accounts": accounts}


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page, server: LiveServer, account: dict[str, Any], second: str | None = None) -> None:
    page.goto(server.info["admin_url"] + "/console/fleet")
    assert page.url.endswith("/console/login")  # no session: the login form
    page.fill("input[name=name]", account["name"])
    page.fill("input[name=password]", account["password"])
    page.fill("input[name=totp]", second or pyotp.TOTP(account["totp_secret"]).now())
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/console/fleet")


def post(page, path: str, form: dict[str, str] | None = None, csrf: bool = True) -> int:
    """A POST the page's own JavaScript could make: the session cookie, and the CSRF token from the page."""
    return page.evaluate(
        """async ([path, form, csrf]) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch(path, {method: 'POST', body: new URLSearchParams(form),
                                         headers: csrf ? {'X-CSRF-Token': token} : {}});
            return r.status;
        }""",
        [path, form or {}, csrf],
    )


def console_mutations() -> list[tuple[str, str, str]]:
    """(method, path, action) of every mutating console route, from the admin application's router."""
    from server.admin import create_admin_app
    from server.config import Settings
    from server.runtime import Runtime

    app = create_admin_app(Runtime(settings=Settings(), store=create_store("sqlite+aiosqlite:///:memory:")))
    out = []
    for r in app.router.routes():
        canonical = r.resource.canonical if r.resource is not None else ""
        if r.method in MUTATING and canonical.startswith("/console/") and not is_public(r.handler):
            out.append((r.method, canonical, str(required_action(r.handler, r.method))))
    return sorted(out)


def raise_alarm(server: LiveServer, subject: str) -> None:
    async def run() -> None:
        store = create_store(f"sqlite+aiosqlite:///{Path(server.config).parent / 'dso.sqlite3'}")
        try:
            async with store.sessions.begin() as session:
                await alarms.raise_alarm(session, alarms.COMMS_LOST, subject, f"{subject} went quiet")
        finally:
            await store.close()

    # Playwright's sync API runs an event loop in this thread: the store gets a thread of its own
    worker = threading.Thread(target=asyncio.run, args=(run(),))
    worker.start()
    worker.join(30)


def test_operator_logs_in_controls_a_device_and_acknowledges_an_alarm(browser, server, fleet):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, server, fleet["accounts"]["operator"])
    # the fleet: every demo device, offline (never heard), paged and filtered in SQL
    for name, _ in DEVICES:
        assert page.locator("#fleet", has_text=name).count() == 1
    assert page.locator("#fleet tbody tr.offline").count() == len(DEVICES)  # enrolled, never heard
    online = page.locator("#fleet tbody tr.online")
    assert online.count() == 1 and "roof-live" in online.inner_text() and "s ago" in online.inner_text()
    page.goto(server.info["admin_url"] + "/console/fleet?state=offline")
    assert page.locator("#fleet tbody tr").count() == len(DEVICES)
    page.goto(server.info["admin_url"] + "/console/fleet?q=roof-03")
    assert page.locator("#fleet tbody tr").count() == 1
    page.goto(server.info["admin_url"] + "/console/fleet")
    shot(page, "fleet")

    # an export-limit control for roof-02, from its page
    page.click("text=roof-02")
    page.wait_for_url(re.compile(r".*/console/devices/\d+$"))
    page.fill("#export-limit-form input[name=export_limit_w]", "1500")
    page.fill("#export-limit-form input[name=duration_min]", "45")
    page.click("#export-limit-form button[type=submit]")
    row = page.locator("#device-controls tbody tr", has_text="opModExpLimW 1500")
    row.wait_for()
    assert row.locator(".event-state").inner_text() == "active"
    shot(page, "device")
    status, controls = server.admin("GET", f"/api/v1/controls?lfdi={DEVICES[1][1]}")
    assert status == 200 and [c["base"] for c in controls] == [{"opModExpLimW": 1500}]
    control_id = controls[0]["id"]

    # the same control in the events view, and cancelled from there
    page.goto(server.info["admin_url"] + "/console/events")
    event_row = page.locator(f"#events tr[data-event='{control_id}']")
    assert (
        "opModExpLimW 1500" in event_row.inner_text()
        and event_row.locator(".event-state").inner_text() == "active"
    )
    page.locator("#event-timeline[data-drawn]").wait_for()
    assert page.locator("#event-timeline").get_attribute("data-drawn") == "1"  # the control, on the time line
    shot(page, "events")
    event_row.locator("button.cancel").click()
    page.locator(f"#events tr[data-event='{control_id}'].cancelled").wait_for()
    assert server.admin("GET", f"/api/v1/controls/{control_id}")[1]["cancelled_at"] is not None
    page.goto(server.info["admin_url"] + f"/console/devices/{fleet['devices']['roof-02']}")
    assert page.locator("#device-controls tbody tr.cancelled", has_text="opModExpLimW 1500").count() == 1

    # an alarm raised while the page is open appears without a reload (server-sent events), then acknowledged
    page.goto(server.info["admin_url"] + "/console/alarms")
    page.locator("body[data-live-open='1']").wait_for()
    raise_alarm(server, "device:" + DEVICES[0][1])
    alarm_row = page.locator("#alarms tbody tr", has_text="went quiet")
    alarm_row.wait_for(timeout=15_000)
    alarm_row.locator("button.acknowledge").click()
    page.locator("#alarms tbody tr", has_text="operator-ann").wait_for()
    shot(page, "alarms")

    # the grid: the node tree, limits, and the chart of measured load, forecast and band (drawn by Chart.js)
    page.goto(server.info["admin_url"] + "/console/grid?node=feeder-1")
    assert "250 kW" in page.locator("dl.facts").inner_text()
    page.locator("#grid-chart[data-drawn]").wait_for()
    assert (
        int(page.locator("#grid-chart").get_attribute("data-drawn")) > 96
    )  # 96 forecast intervals + measured
    # the export-limit plan from that forecast, previewed (approving it would dispatch it)
    page.click("#plan-form button[value='0']")
    page.locator("#plan-facts").wait_for()
    assert "250 kW over 1 sites" in page.locator("#plan-facts").inner_text()
    shot(page, "grid")
    page.goto(server.info["admin_url"] + "/console/deliveries")
    shot(page, "deliveries")

    # logout ends the session: the old cookie no longer opens a page or makes a change
    stolen = next(c for c in context.cookies() if c["name"] == "dso_session")
    assert stolen["httpOnly"] and stolen["secure"] and stolen["sameSite"] == "Strict"
    # nothing the console does breaks its content security policy (no inline script or style) or fails
    assert problems == []
    page.click("#logout")
    page.wait_for_url("**/console/login")
    thief = browser.new_context()
    thief.add_cookies([stolen])
    other = thief.new_page()
    other.goto(server.info["admin_url"] + "/console/fleet")
    assert other.url.endswith("/console/login")
    thief.close()
    page.goto(server.info["admin_url"] + "/console/fleet")
    assert page.url.endswith("/console/login")
    context.close()


def test_a_viewer_sees_the_pages_but_every_mutation_is_refused_by_the_server(browser, server, fleet):
    context = browser.new_context()
    page = context.new_page()
    log_in(page, server, fleet["accounts"]["viewer"])
    device_id = fleet["devices"]["roof-01"]
    for path in (
        "/console/fleet",
        f"/console/devices/{device_id}",
        "/console/events",
        "/console/grid",
        "/console/deliveries",
        "/console/alarms",
    ):
        page.goto(server.info["admin_url"] + path)
        assert page.url.endswith(path) and page.locator("main h1").count() == 1, path
    # no forms are offered ...
    page.goto(server.info["admin_url"] + f"/console/devices/{device_id}")
    assert page.locator("#export-limit-form").count() == 0
    # ... and the server refuses each mutation outright, CSRF token and all
    routes = console_mutations()
    assert {path for _, path, _ in routes} >= {
        "/console/devices/{id}/controls",
        "/console/events",
        "/console/events/{id}/cancel",
        "/console/devices",
        "/console/alarms/{id}/acknowledge",
        "/console/grid/{node}/plan",
    }
    forms = {"/console/devices/{id}/controls": {"export_limit_w": "10", "duration_min": "5"}}
    for method, path, action in routes:
        assert action not in ROLES["viewer"]
        status = post(
            page, path.replace("{id}", str(device_id)).replace("{node}", "feeder-1"), forms.get(path)
        )
        assert status == 403, (method, path, status)
    # the operator's session without its CSRF token is refused too
    operator = browser.new_context()
    op_page = operator.new_page()
    # a TOTP code is good once: the operator's second login of this minute uses a recovery code
    log_in(op_page, server, fleet["accounts"]["operator"], fleet["accounts"]["operator"]["recovery_codes"][0])
    assert (
        post(
            op_page,
            f"/console/devices/{device_id}/controls",
            forms["/console/devices/{id}/controls"],
            csrf=False,
        )
        == 403
    )
    operator.close()
    status, controls = server.admin("GET", f"/api/v1/controls?lfdi={DEVICES[0][1]}")
    assert status == 200 and controls == []  # nothing was stored by any refused request
    context.close()
