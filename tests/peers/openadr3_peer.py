"""ElaadNL's openadr3-client (PyPI) driving the server: run by a Python >= 3.12 interpreter (the client needs it),
one action per call, its result printed as one JSON line. ``tests/support/openadr3.py`` runs it.

    python openadr3_peer.py ACTION CONFIG.json

CONFIG holds ``url`` (the 3.1 base URL), ``ca`` and the action's own fields. The CA goes to requests through
REQUESTS_CA_BUNDLE (set by the caller): the client's token discovery and OAuth2 session use requests' default
trust.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from openadr3_client._models.common.interval import Interval
from openadr3_client._models.common.interval_period import IntervalPeriod
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.oadr310._vtn.interfaces.filters import TargetFilter
from openadr3_client.oadr310.models.event.event import EventUpdate, NewEvent
from openadr3_client.oadr310.models.event.event_payload import EventPayload, EventPayloadType
from openadr3_client.oadr310.models.program.program import NewProgram
from openadr3_client.oadr310.models.report.report import NewReport, ReportResource
from openadr3_client.oadr310.models.report.report_payload import ReportPayload, ReportPayloadType
from openadr3_client.oadr310.models.resource.resource import NewResourceVenRequest
from openadr3_client.oadr310.models.subscriptions.subscription import (
    NewSubscription,
    Object,
    ObjectOperation,
    Operation,
)
from openadr3_client.oadr310.models.ven.ven import NewVenVenRequest
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion


def bl(cfg: dict[str, Any]):
    return BusinessLogicHttpClientFactory.create_http_bl_client(
        vtn_base_url=cfg["url"],
        client_id=cfg["client_id"],
        client_secret=cfg["client_secret"],
        token_url=None,  # discovered: GET /auth/server
        verify_vtn_tls_certificate=Path(cfg["ca"]),
        version=OADRVersion.OADR_310,
    )


def ven(cfg: dict[str, Any]):
    return VirtualEndNodeHttpClientFactory.create_http_ven_client(
        vtn_base_url=cfg["url"],
        client_id=cfg["client_id"],
        client_secret=cfg["client_secret"],
        token_url=None,
        verify_vtn_tls_certificate=Path(cfg["ca"]),
        version=OADRVersion.OADR_310,
    )


def simple_event(program_id: str, level: int, minutes: int, targets: list[str] | None) -> NewEvent:
    return NewEvent(
        program_id=program_id,
        event_name="peer-event",
        targets=tuple(targets) if targets else None,
        interval_period=IntervalPeriod(start=dt.datetime.now(dt.UTC), duration=dt.timedelta(minutes=minutes)),
        intervals=(Interval(id=0, payloads=(EventPayload(type=EventPayloadType.SIMPLE, values=(level,)),)),),
    )


def act(action: str, cfg: dict[str, Any]) -> Any:
    if action == "bl-program-and-event":
        client = bl(cfg)
        program = client.programs.create_program(NewProgram(program_name=cfg["program"]))
        event = client.events.create_event(simple_event(program.id, cfg["level"], 30, cfg.get("targets")))
        return {"program": program.model_dump(mode="json"), "event": event.model_dump(mode="json")}
    if action == "bl-event":
        event = bl(cfg).events.create_event(
            simple_event(cfg["program_id"], cfg["level"], 30, cfg.get("targets"))
        )
        return event.model_dump(mode="json")
    if action == "bl-modify":
        client = bl(cfg)
        current = client.events.get_event_by_id(cfg["event_id"])
        update = EventUpdate(
            program_id=current.program_id,
            event_name=current.event_name,
            interval_period=current.interval_period,
            intervals=(
                Interval(
                    id=0, payloads=(EventPayload(type=EventPayloadType.SIMPLE, values=(cfg["level"],)),)
                ),
            ),
        )
        return client.events.update_event_by_id(cfg["event_id"], update).model_dump(mode="json")
    if action == "bl-cancel":
        return bl(cfg).events.delete_event_by_id(cfg["event_id"]).model_dump(mode="json")
    if action == "ven-register":
        client = ven(cfg)
        registered = client.vens.create_ven(NewVenVenRequest(ven_name=cfg["ven_name"]))
        resource = client.resources.create_resource(
            NewResourceVenRequest(resource_name=cfg["resource"], ven_id=registered.id)
        )
        subscription = client.subscriptions.create_subscription(
            NewSubscription(
                client_name=cfg["ven_name"],
                object_operations=(
                    ObjectOperation(
                        objects=(Object.EVENT,),
                        operations=(Operation.POST, Operation.PUT, Operation.DELETE),  # its 3.0.1 names
                        callback_url=cfg["callback"],
                        bearer_token=cfg["bearer"],
                    ),
                ),
            )
        )
        return {
            "ven": registered.model_dump(mode="json"),
            "resource": resource.model_dump(mode="json"),
            "subscription": subscription.model_dump(mode="json"),
        }
    if action == "ven-events":
        client = ven(cfg)
        target = TargetFilter(targets=cfg["targets"]) if cfg.get("targets") else None
        found = client.events.get_events(target=target, pagination=None, program_id=cfg.get("program_id"))
        return [e.model_dump(mode="json") for e in found]
    if action == "ven-report":
        client = ven(cfg)
        start = dt.datetime.fromisoformat(cfg["start"])
        report = NewReport(
            event_id=cfg["event_id"],
            client_name=cfg["ven_name"],
            report_name="usage",
            resources=(
                ReportResource(
                    resource_name=cfg["resource"],
                    interval_period=IntervalPeriod(start=start, duration=dt.timedelta(minutes=5)),
                    intervals=tuple(
                        Interval(
                            id=n,
                            interval_period=IntervalPeriod(
                                start=start + dt.timedelta(minutes=5 * n), duration=dt.timedelta(minutes=5)
                            ),
                            payloads=(ReportPayload(type=ReportPayloadType.USAGE, values=(value,)),),
                        )
                        for n, value in enumerate(cfg["values"])
                    ),
                ),
            ),
        )
        return client.reports.create_report(report).model_dump(mode="json")
    raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    config = json.loads(Path(sys.argv[2]).read_text())
    print(json.dumps(act(sys.argv[1], config)))
