"""Many devices' DERControlLists rendered in one pass (a notification fan-out) read exactly as each device's own
render does: a control rendered for one device and copied for the next carries the next device's hrefs
(the control's own and its curves'), and nothing of the first device's."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select

from server import pki
from server.config import Settings
from server.core import events, programs
from server.core.scope import Party, Scope
from server.sep2 import xml
from server.sep2.derp import render_control_resources
from server.sep2.render import RenderCtx
from server.sep2.resources import Params
from server.store.models import EndDevice, Sep2Fsa, Sep2FsaProgram
from server.store.types import utcnow


async def _devices_with_controls(session, n: int) -> tuple[list[EndDevice], int]:
    program = await programs.create_program(session, "shared-render", 1)
    curve = await programs.create_curve(session, program, 11, [[95, 30], [105, -30]], 2)  # volt-var
    now = utcnow()
    lfdis = [f"{0xABC000 + i:040X}" for i in range(n)]
    await session.execute(
        insert(EndDevice),
        [
            {
                "lfdi": lfdi,
                "sfdi": pki.sfdi_from_lfdi(lfdi),
                "name": "",
                "device_category": "",
                "registered_by": "test",
                "enabled": True,
                "created_at": now,
                "changed_at": now,
            }
            for lfdi in lfdis
        ],
    )
    devices = list(await session.scalars(select(EndDevice).order_by(EndDevice.id)))
    for d in devices:
        fsa = Sep2Fsa(end_device_id=d.id, title="default", created_at=now)
        session.add(fsa)
        await session.flush()
        await session.execute(insert(Sep2FsaProgram), [{"fsa_id": fsa.id, "program_id": program.id}])
    soon = now + dt.timedelta(minutes=5)
    for i, base in enumerate(
        ({"opModExpLimW": 5000}, {"opModVoltVar": curve.id, "opModConnect": True}, {"opModExpLimW": 1500})
    ):
        await events.create(
            session,
            program,
            events.NewEvent(
                start=soon + dt.timedelta(minutes=10 * i), duration_s=900, payload={"base": base}
            ),
        )
    # one active now, overlapping a scheduled one: statuses differ between controls
    await events.create(
        session, program, events.NewEvent(start=now, duration_s=1200, payload={"base": {"opModExpLimW": 900}})
    )
    return devices, program.id


def _scope(device: EndDevice) -> Scope:
    return Scope(Party.DEVICE, lfdi=device.lfdi, sfdi=device.sfdi, device_id=device.id)


async def test_one_pass_over_many_devices_renders_what_each_device_alone_gets(sqlite_store):
    async with sqlite_store.sessions.begin() as session:
        devices, program_id = await _devices_with_controls(session, 3)
    now = utcnow()
    async with sqlite_store.sessions() as session:
        ctx = RenderCtx(session, Settings(), now)
        for kind in ("derc-list", "actderc"):
            wants = [(_scope(d), Params(e=d.id, p=program_id, limit=10)) for d in devices]
            together = await render_control_resources(ctx, kind, wants)
            for (scope, params), shared in zip(wants, together, strict=True):
                (alone,) = await render_control_resources(
                    RenderCtx(session, Settings(), now), kind, [(scope, params)]
                )
                assert xml.serialize(shared) == xml.serialize(alone), (kind, params.e)
            lists = [xml.serialize(el).decode() for el in together]
            assert lists[0] != lists[1]  # the hrefs differ
            for d, body in zip(devices, lists, strict=True):
                others = [o.id for o in devices if o.id != d.id]
                assert f"/edev/{d.id}/derp/{program_id}/" in body
                assert not any(f"/edev/{o}/" in body for o in others), (kind, d.id)
        full = await render_control_resources(
            ctx, "derc-list", [(_scope(d), Params(e=d.id, p=program_id, limit=10)) for d in devices]
        )
        last = full[-1]
        assert last.get("all") == "4"
        curves = [el.get("href") for el in last.iter(xml.q("opModVoltVar"))]
        assert curves and all(h.startswith(f"/edev/{devices[-1].id}/derp/{program_id}/dc/") for h in curves)
