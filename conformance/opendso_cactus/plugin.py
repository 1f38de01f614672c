"""Carries out cactus-client admin instructions against a running OpenDSO, only through its admin API.

The server is found from ``DSO_ADMIN_URL`` (e.g. ``http://127.0.0.1:8444``) and ``DSO_ADMIN_TOKEN``. Install
into the cactus venv with ``pip install ./conformance``; cactus-client discovers it by its entry point.

Instruction -> admin API:

    ensure-end-device          PUT/DELETE /api/v1/sep2/end-devices/{lfdi}  (+ PUT /api/v1/sep2/aggregators/{lfdi})
    ensure-fsa                 PUT /api/v1/sep2/end-devices/{lfdi}/fsa/{annotation}
    ensure-der-program         POST /api/v1/programs + POST /api/v1/programs/{id}/assign
    ensure-der-control-list    as ensure-der-program (a program is what carries a DERControlList)
    ensure-mup-list-empty      DELETE /api/v1/sep2/mups?owner={certificate lfdi}
    create-der-control         POST /api/v1/controls
    create-default-der-control PUT /api/v1/programs/{id}/default-control
    clear-der-controls         GET /api/v1/controls?lfdi= + POST /api/v1/controls/{id}/cancel
    set-poll-rate              PUT /api/v1/sep2/poll-rates/{resource}
    set-post-rate              PUT /api/v1/sep2/post-rates/{resource}
    set-client-access          PUT /api/v1/sep2/access/{certificate lfdi}

After each instruction the plugin waits (at most ``SETTLE_S``) until the server has made the first delivery attempt
of every notification that instruction queued (GET /api/v1/deliveries): cactus collects notifications the moment
the instruction returns, and a check that runs on the stale copy it discovered earlier logs a warning even when
the retried attempt then passes (which ``--strict`` counts as a failure).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import time
from typing import Any

import aiohttp
from cactus_client.admin import hookimpl
from cactus_client.model.execution import ActionResult
from cryptography import x509

log = logging.getLogger("opendso_cactus")

DEFAULT_FSA = "default"
# an "active" control starts this long ago, so it is active the moment the client looks
ACTIVE_LEAD_S = 10
ACTIVE_DURATION_S = 300
SCHEDULED_LEAD_S = 60
SCHEDULED_DURATION_S = 120
STACK_GAP_S = 10
# how long an instruction waits for the notifications it caused to be attempted; how often it looks
SETTLE_S = 5.0
SETTLE_POLL_S = 0.05


def cert_lfdi(path: str) -> str:
    """LFDI of a PEM certificate file: the first 160 bits of SHA-256 over its DER encoding."""
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()[:40].upper()


class AdminApiError(Exception):
    pass


class OpenDsoAdmin:
    """A tiny async client for the OpenDSO admin API."""

    def __init__(self, base: str | None = None, token: str | None = None) -> None:
        self.base = (base or os.environ.get("DSO_ADMIN_URL", "http://127.0.0.1:8444")).rstrip("/")
        self.token = token if token is not None else os.environ.get("DSO_ADMIN_TOKEN", "")

    async def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, json=body, headers=headers) as resp,
        ):
            raw = await resp.read()
            if resp.status >= 400 and resp.status not in ok:
                raise AdminApiError(f"{method} {path} -> {resp.status}: {raw[:300]!r}")
            if not raw:
                return None
            return await resp.json(content_type=None)


def _base(params: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {}
    # opModStorageTargetW: the CSIP-AUS 1.3 storage target (draft storage procedures)
    for key in ("opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW", "opModStorageTargetW"):
        if params.get(key) is not None:
            base[key] = float(params[key])
    for key in ("opModConnect", "opModEnergize"):
        if params.get(key) is not None:
            base[key] = bool(params[key])
    if params.get("opModFixedW") is not None:
        base["opModFixedW"] = int(round(float(params["opModFixedW"])))
    if params.get("rampTms") is not None:
        base["rampTms"] = int(params["rampTms"])
    return base


class OpenDsoAdminPlugin:
    def __init__(self) -> None:
        self.api = OpenDsoAdmin()

    # ------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _client(context, alias: str | None):
        return context.client_config_for(alias)

    async def _device(self, lfdi: str) -> dict[str, Any] | None:
        return await self.api.call("GET", f"/api/v1/sep2/devices/{lfdi}", ok=(404,)) or None

    async def _program(self, lfdi: str, primacy: int | None, fsa: str | None = None) -> dict[str, Any]:
        """The device's program with ``primacy`` (created when missing); without a primacy the device's
        highest-priority program, or a new one at primacy 1."""
        view = await self._device(lfdi)
        if view is None or "programs" not in view:
            raise AdminApiError(f"no EndDevice {lfdi} (ensure-end-device must come first)")
        progs = view["programs"]
        if primacy is None and progs and fsa is None:
            return progs[0]
        primacy = 1 if primacy is None else primacy
        if fsa is None:
            for p in progs:
                if p["primacy"] == primacy:
                    return p
        name = f"cactus-{lfdi[:10]}-{fsa or DEFAULT_FSA}-{primacy}"
        existing = await self.api.call("GET", f"/api/v1/programs/{name}", ok=(404,))
        if not existing or "id" not in existing:
            existing = await self.api.call("POST", "/api/v1/programs", {"name": name, "primacy": primacy})
        await self.api.call(
            "POST", f"/api/v1/programs/{existing['id']}/assign", {"lfdi": lfdi, "fsa": fsa or DEFAULT_FSA}
        )
        return existing

    async def _controls(self, lfdi: str) -> list[dict[str, Any]]:
        return await self.api.call("GET", f"/api/v1/controls?lfdi={lfdi}") or []

    # -------------------------------------------------------------------------------------------- hooks
    @hookimpl
    async def admin_setup(self, context) -> ActionResult:
        try:
            for client in context.client_configs.values():
                if str(client.type) == "aggregator":
                    await self.api.call(
                        "PUT", f"/api/v1/sep2/aggregators/{cert_lfdi(client.certificate_file)}"
                    )
                # every run starts with full access
                await self.api.call(
                    "PUT", f"/api/v1/sep2/access/{cert_lfdi(client.certificate_file)}", {"granted": True}
                )
        except Exception as exc:  # noqa: BLE001 - reported to cactus as a failed setup
            return ActionResult.failed(f"OpenDSO admin setup failed: {exc}")
        return ActionResult.done()

    @hookimpl
    async def admin_teardown(self, context) -> ActionResult:
        return ActionResult.done()

    @hookimpl
    async def admin_instruction(self, instruction, step, context) -> ActionResult | None:
        client = self._client(context, instruction.client)
        params = dict(instruction.parameters or {})
        kind = str(instruction.type)
        handler = getattr(self, "do_" + kind.replace("-", "_"), None)
        if handler is None:
            return None
        log.info("opendso: %s %s for %s", kind, params, client.id)
        newest = await self._newest_delivery()
        await handler(client, params)
        await self._settle(newest)
        return ActionResult.done()

    async def _newest_delivery(self) -> int:
        rows = await self.api.call("GET", "/api/v1/deliveries?limit=1") or []
        return int(rows[0]["id"]) if rows else 0

    async def _settle(self, after: int) -> None:
        """Wait until every delivery queued after message ``after`` has had its first attempt recorded (a
        message still retrying does not hold it up), or ``SETTLE_S`` has passed."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            pending = await self.api.call("GET", "/api/v1/deliveries?status=pending&limit=100") or []
            unsent = [m["id"] for m in pending if int(m["id"]) > after and int(m["attempts"]) == 0]
            if not unsent:
                return
            if time.monotonic() >= deadline:
                log.warning("opendso: deliveries %s not yet attempted after %.1fs", unsent, SETTLE_S)
                return
            await asyncio.sleep(SETTLE_POLL_S)

    # ------------------------------------------------------------------------------------- instructions
    async def do_ensure_end_device(self, client, params: dict[str, Any]) -> None:
        lfdi = client.lfdi.upper()
        aggregator = None
        if str(client.type) == "aggregator" or params.get("client_type") == "aggregator":
            aggregator = cert_lfdi(client.certificate_file)
            await self.api.call("PUT", f"/api/v1/sep2/aggregators/{aggregator}")
        if params.get("registered", True):
            body: dict[str, Any] = {"pin": int(client.pin)}
            if aggregator and aggregator != lfdi:
                body["aggregator"] = aggregator
            await self.api.call("PUT", f"/api/v1/sep2/end-devices/{lfdi}", body)
        else:
            await self.api.call("DELETE", f"/api/v1/sep2/end-devices/{lfdi}")

    async def do_ensure_fsa(self, client, params: dict[str, Any]) -> None:
        title = params.get("annotation") or DEFAULT_FSA
        await self.api.call("PUT", f"/api/v1/sep2/end-devices/{client.lfdi.upper()}/fsa/{title}")
        if params.get("primacy") is not None:
            await self._program(client.lfdi.upper(), int(params["primacy"]), title)

    async def do_ensure_der_program(self, client, params: dict[str, Any]) -> None:
        primacy = params.get("primacy")
        await self._program(
            client.lfdi.upper(), None if primacy is None else int(primacy), params.get("fsa_annotation")
        )

    async def do_ensure_der_control_list(self, client, params: dict[str, Any]) -> None:
        await self._program(client.lfdi.upper(), None)

    async def do_ensure_mup_list_empty(self, client, params: dict[str, Any]) -> None:
        await self.api.call("DELETE", f"/api/v1/sep2/mups?owner={cert_lfdi(client.certificate_file)}")

    async def do_create_der_control(self, client, params: dict[str, Any]) -> None:
        lfdi = client.lfdi.upper()
        primacy = params.get("primacy")
        program = await self._program(lfdi, None if primacy is None else int(primacy))
        now = dt.datetime.now(dt.UTC)
        status = params.get("status", "active")
        offset = params.get("start_offset_seconds")
        if status == "scheduled":
            duration = int(params.get("duration_seconds") or SCHEDULED_DURATION_S)
            if offset is not None:
                start = now + dt.timedelta(seconds=int(offset))
            else:
                # stack after the last live scheduled control so scheduled controls never overlap
                start = now + dt.timedelta(seconds=SCHEDULED_LEAD_S)
                for c in await self._controls(lfdi):
                    end = dt.datetime.fromisoformat(c["start"]) + dt.timedelta(seconds=c["duration_s"])
                    if (
                        c["cancelled_at"] is None
                        and end > now
                        and end + dt.timedelta(seconds=STACK_GAP_S) > start
                    ):
                        start = end + dt.timedelta(seconds=STACK_GAP_S)
        else:
            duration = int(params.get("duration_seconds") or ACTIVE_DURATION_S)
            start = now - dt.timedelta(seconds=ACTIVE_LEAD_S) + dt.timedelta(seconds=int(offset or 0))
        body: dict[str, Any] = {
            "program": program["id"],
            "start": start.isoformat(),
            "duration_s": duration,
            "base": _base(params),
        }
        if params.get("randomizeStart_seconds") is not None:
            body["randomize_start_s"] = int(params["randomizeStart_seconds"])
        await self.api.call("POST", "/api/v1/controls", body)

    async def do_create_default_der_control(self, client, params: dict[str, Any]) -> None:
        primacy = params.get("primacy")
        program = await self._program(client.lfdi.upper(), None if primacy is None else int(primacy))
        body: dict[str, Any] = {"base": _base(params)}
        if params.get("setGradW") is not None:
            body["setGradW"] = int(params["setGradW"])
        await self.api.call("PUT", f"/api/v1/programs/{program['id']}/default-control", body)

    async def do_clear_der_controls(self, client, params: dict[str, Any]) -> None:
        now = dt.datetime.now(dt.UTC)
        live = []
        for c in await self._controls(client.lfdi.upper()):
            end = dt.datetime.fromisoformat(c["start"]) + dt.timedelta(seconds=c["duration_s"])
            if c["cancelled_at"] is None and end > now:
                live.append(c)
        if not params.get("all", False):
            live = sorted(live, key=lambda c: c["creation_time"])[-1:]
        for c in live:
            await self.api.call("POST", f"/api/v1/controls/{c['id']}/cancel", {})

    async def do_set_poll_rate(self, client, params: dict[str, Any]) -> None:
        await self.api.call(
            "PUT", f"/api/v1/sep2/poll-rates/{params['resource']}", {"rate_s": int(params["rate_seconds"])}
        )

    async def do_set_post_rate(self, client, params: dict[str, Any]) -> None:
        await self.api.call(
            "PUT", f"/api/v1/sep2/post-rates/{params['resource']}", {"rate_s": int(params["rate_seconds"])}
        )

    async def do_set_client_access(self, client, params: dict[str, Any]) -> None:
        await self.api.call(
            "PUT",
            f"/api/v1/sep2/access/{cert_lfdi(client.certificate_file)}",
            {"granted": bool(params["granted"])},
        )


plugin = OpenDsoAdminPlugin()
