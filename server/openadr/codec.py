"""OpenADR 2.0b XML in one place: hardened parsing, schema validation, element builders and readers.

Everything is built with lxml element APIs, so every value is escaped by construction (no templates). The official
2.0b schemas are resolved at runtime from the installed ``openleadr`` package (``openleadr/schema/oadr_20b.xsd``)
and compiled once; the repository never carries a copy.

Parsing is hardened: any DOCTYPE/ENTITY is refused before lxml sees the bytes (one entity-expansion body is enough
to exhaust a naive parser), entities are never resolved and the network is never touched.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

NS = {
    "oadr": "http://openadr.org/oadr-2.0b/2012/07",
    "ei": "http://docs.oasis-open.org/ns/energyinterop/201110",
    "pyld": "http://docs.oasis-open.org/ns/energyinterop/201110/payloads",
    "emix": "http://docs.oasis-open.org/ns/emix/2011/06",
    "xcal": "urn:ietf:params:xml:ns:icalendar-2.0",
    "strm": "urn:ietf:params:xml:ns:icalendar-2.0:stream",
    "power": "http://docs.oasis-open.org/ns/emix/2011/06/power",
    "scale": "http://docs.oasis-open.org/ns/emix/2011/06/siscale",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "dsp": "http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties",
}
# namespaces declared once on oadrSignedObject so the output stays compact
_ENVELOPE_NSMAP = {k: NS[k] for k in ("oadr", "ei", "pyld", "emix", "xcal", "strm")}


class XmlRejected(Exception):
    """The body is not acceptable XML (not well-formed, DOCTYPE/entities, wrong root). Maps to responseCode 400."""


class SchemaInvalid(Exception):
    """Well-formed but not valid against the 2.0b schema. Maps to responseCode 454 (invalid data)."""


def q(prefix: str, local: str) -> str:
    """Clark notation ``{namespace}local``."""
    return f"{{{NS[prefix]}}}{local}"


# ---------------------------------------------------------------------------------------------- schema
def schema_path() -> Path:
    """The official 2.0b schema inside the installed openleadr package (never copied into this repository)."""
    path = Path(str(importlib.resources.files("openleadr") / "schema" / "oadr_20b.xsd"))
    if not path.is_file():
        raise RuntimeError(f"OpenADR 2.0b schema not found at {path}; install the openleadr package")
    return path


_SCHEMA: etree.XMLSchema | None = None


def schema() -> etree.XMLSchema:
    """The compiled schema; compiled on first use (``setup`` calls this at start-up so requests never pay)."""
    global _SCHEMA
    if _SCHEMA is None:
        # the XSD imports its siblings by relative path: local files only, never the network
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        _SCHEMA = etree.XMLSchema(etree.parse(str(schema_path()), parser))
    return _SCHEMA


# ---------------------------------------------------------------------------------------------- parsing
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def parse(body: bytes) -> etree._Element:
    """Parse a request body into an oadrPayload root element or raise XmlRejected."""
    # DTDs are how entity bombs and external entities get in; OpenADR never needs one
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise XmlRejected("DOCTYPE and entity declarations are not accepted")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"not well-formed XML: {exc}") from None
    # the byte check above misses other encodings (UTF-16): the parsed document must not carry a DTD either
    if root is not None and (
        root.getroottree().docinfo.internalDTD is not None or root.getroottree().docinfo.doctype
    ):
        raise XmlRejected("DOCTYPE and entity declarations are not accepted")
    if root is None or root.tag != q("oadr", "oadrPayload"):
        raise XmlRejected("root element must be oadr:oadrPayload")
    return root


def validate(root: etree._Element) -> None:
    s = schema()
    if not s.validate(root):
        error = s.error_log.last_error
        raise SchemaInvalid(
            f"schema-invalid: line {error.line}: {error.message}" if error else "schema-invalid"
        )


SIGNED_OBJECT = q("oadr", "oadrSignedObject")


def message_of(root: etree._Element) -> etree._Element:
    """The one message element inside oadrSignedObject (the schema guarantees there is exactly one)."""
    signed = next(root.iterchildren(SIGNED_OBJECT), None)
    if signed is None or len(signed) == 0:
        raise XmlRejected("missing oadrSignedObject")
    return signed[0]


def local(el: etree._Element) -> str:
    tag = el.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else etree.QName(el).localname


_PREFIXED = re.compile(r"\b([A-Za-z][\w-]*):(?=[A-Za-z_*])")


@functools.lru_cache(maxsize=512)
def clark(path: str) -> str:
    """``ei:venID/pyld:x`` -> ``{ns-of-ei}venID/{ns-of-pyld}x`` (lxml then skips its per-call prefix mapping)."""
    if "{" in path:  # already in Clark notation
        return path
    return _PREFIXED.sub(lambda m: f"{{{NS[m.group(1)]}}}", path)


def text(el: etree._Element | None, path: str, default: str | None = None) -> str | None:
    """Text of the first ``path`` (prefixed, e.g. ``ei:venID``) below ``el``, stripped; ``default`` if absent."""
    if el is None:
        return default
    found = el.find(clark(path))
    if found is None or found.text is None:
        return default
    return found.text.strip()


def texts(el: etree._Element, path: str) -> list[str]:
    return [f.text.strip() for f in el.findall(clark(path)) if f.text and f.text.strip()]


# ---------------------------------------------------------------------------------------------- values
def fmt_dt(value: dt.datetime) -> str:
    """UTC date-time with a Z suffix (VENs such as openleadr accept only this form)."""
    value = value.astimezone(dt.UTC)
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    return base + (f".{value.microsecond:06d}Z" if value.microsecond else "Z")


_DT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$")


def parse_dt(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    m = _DT.match(value.strip())
    if not m:
        raise ValueError(f"bad date-time {value!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or ".0")[1:7].ljust(6, "0"))
    zone = m.group(8)
    tz = dt.UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    # a date-time without zone is taken as UTC: 2.0b requires UTC and every VEN seen sends Z
    return dt.datetime(y, mo, d, h, mi, s, micro, tzinfo=tz).astimezone(dt.UTC)


def fmt_duration(seconds: float) -> str:
    """RFC 5545 duration; zero is PT0S."""
    total = int(round(seconds))
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{sign}P{days}D" if days else f"{sign}P"
    if hours or minutes or secs or not days:
        out += "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
        out += f"{secs}S" if secs or not (hours or minutes) else ""
    return out


_DUR = re.compile(r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(value: str | None) -> float | None:
    """Seconds of an RFC 5545 duration (openleadr sends ``P`` for zero, which is accepted as 0)."""
    if value is None:
        return None
    m = _DUR.match(value.strip())
    if not m:
        raise ValueError(f"bad duration {value!r}")
    sign, w, d, h, mi, s = m.groups()
    seconds = (
        int(w or 0) * 7 * 86400 + int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    )
    return -seconds if sign == "-" else seconds


# ---------------------------------------------------------------------------------------------- building
def sub(parent: etree._Element, prefix: str, tag: str, value: object = None) -> etree._Element:
    el = etree.SubElement(parent, q(prefix, tag))
    if value is not None:
        el.text = str(value)
    return el


def message(tag: str) -> etree._Element:
    """A new top-level 2.0b message element with schemaVersion."""
    el = etree.Element(q("oadr", tag), nsmap=_ENVELOPE_NSMAP)
    el.set(q("ei", "schemaVersion"), "2.0b")
    return el


def envelope(msg: etree._Element) -> etree._Element:
    """Wrap a message in oadrPayload/oadrSignedObject (Id target of the XML signature reference)."""
    # Only oadr on the envelope: inclusive C14N pulls every in-scope namespace into the signed forms, so the
    # envelope must declare nothing the Signature and oadrSignedObject do not declare themselves.
    root = etree.Element(q("oadr", "oadrPayload"), nsmap={"oadr": NS["oadr"]})
    signed = etree.SubElement(root, q("oadr", "oadrSignedObject"), nsmap=_ENVELOPE_NSMAP)
    signed.set(q("oadr", "Id"), "oadrSignedObject")
    signed.append(msg)
    return root


def serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def ei_response(parent: etree._Element, code: int, description: str, request_id: str | None) -> None:
    resp = sub(parent, "ei", "eiResponse")
    sub(resp, "ei", "responseCode", code)
    sub(resp, "ei", "responseDescription", description)
    sub(resp, "pyld", "requestID", request_id or "")


def response(
    code: int, description: str, request_id: str | None, ven_id: str | None = None
) -> etree._Element:
    msg = message("oadrResponse")
    ei_response(msg, code, description, request_id)
    if ven_id:
        sub(msg, "ei", "venID", ven_id)
    return msg


def xcal_duration(parent: etree._Element, prefix: str, tag: str, seconds: float) -> None:
    holder = sub(parent, prefix, tag)
    sub(holder, "xcal", "duration", fmt_duration(seconds))


def xcal_dtstart(parent: etree._Element, when: dt.datetime) -> None:
    holder = sub(parent, "xcal", "dtstart")
    sub(holder, "xcal", "date-time", fmt_dt(when))


def report_request(
    parent: etree._Element,
    report_request_id: str,
    specifier_id: str,
    granularity_s: float,
    back_duration_s: float,
    r_ids: list[tuple[str, str]],
) -> None:
    """One oadrReportRequest: ``r_ids`` are (rID, readingType) pairs (an empty rID list means ``0``: all)."""
    req = sub(parent, "oadr", "oadrReportRequest")
    sub(req, "ei", "reportRequestID", report_request_id)
    spec = sub(req, "ei", "reportSpecifier")
    sub(spec, "ei", "reportSpecifierID", specifier_id)
    xcal_duration(spec, "xcal", "granularity", granularity_s)
    xcal_duration(spec, "ei", "reportBackDuration", back_duration_s)
    for r_id, reading_type in r_ids or [("0", "x-notApplicable")]:
        payload = sub(spec, "ei", "specifierPayload")
        sub(payload, "ei", "rID", r_id)
        sub(payload, "ei", "readingType", reading_type or "x-notApplicable")


# ================================================================================================ messages out
def created_party_registration(
    request_id: str | None,
    vtn_id: str,
    poll_freq_s: int,
    ven_id: str | None = None,
    registration_id: str | None = None,
    code: int = 200,
    description: str = "OK",
) -> etree._Element:
    msg = message("oadrCreatedPartyRegistration")
    ei_response(msg, code, description, request_id)
    if registration_id:
        sub(msg, "ei", "registrationID", registration_id)
    if ven_id:
        sub(msg, "ei", "venID", ven_id)
    sub(msg, "ei", "vtnID", vtn_id)
    profiles = sub(msg, "oadr", "oadrProfiles")
    profile = sub(profiles, "oadr", "oadrProfile")
    sub(profile, "oadr", "oadrProfileName", "2.0b")
    transports = sub(profile, "oadr", "oadrTransports")
    sub(sub(transports, "oadr", "oadrTransport"), "oadr", "oadrTransportName", "simpleHttp")
    freq = sub(msg, "oadr", "oadrRequestedOadrPollFreq")
    sub(freq, "xcal", "duration", fmt_duration(poll_freq_s))
    return msg


def canceled_party_registration(
    request_id: str | None, registration_id: str | None, ven_id: str, code: int = 200, description: str = "OK"
) -> etree._Element:
    msg = message("oadrCanceledPartyRegistration")
    ei_response(msg, code, description, request_id)
    if registration_id:
        sub(msg, "ei", "registrationID", registration_id)
    sub(msg, "ei", "venID", ven_id)
    return msg


def cancel_party_registration(request_id: str, registration_id: str, ven_id: str) -> etree._Element:
    msg = message("oadrCancelPartyRegistration")
    sub(msg, "pyld", "requestID", request_id)
    sub(msg, "ei", "registrationID", registration_id)
    sub(msg, "ei", "venID", ven_id)
    return msg


def request_reregistration(ven_id: str) -> etree._Element:
    msg = message("oadrRequestReregistration")
    sub(msg, "ei", "venID", ven_id)
    return msg


@dataclass
class EventOut:
    """What one oadrEvent shows one VEN (targets are cut down to that VEN: it never learns other venIDs)."""

    event_id: str
    modification_number: int
    modification_reason: str
    modification_time: dt.datetime | None
    priority: int
    market_context: str
    created: dt.datetime
    status: str
    test_event: bool
    comment: str
    start: dt.datetime
    duration_s: int
    randomization_s: int
    signal_name: str
    signal_type: str
    signal_id: str
    intervals: list[tuple[int, float]]
    current_value: float
    ven_id: str
    resource_ids: list[str] = field(default_factory=list)
    group_ids: list[str] = field(default_factory=list)
    response_required: str = "always"


def distribute_event(request_id: str, vtn_id: str, events: list[EventOut]) -> etree._Element:
    msg = message("oadrDistributeEvent")
    sub(msg, "pyld", "requestID", request_id)
    sub(msg, "ei", "vtnID", vtn_id)
    for e in events:
        oe = sub(msg, "oadr", "oadrEvent")
        ee = sub(oe, "ei", "eiEvent")
        desc = sub(ee, "ei", "eventDescriptor")
        sub(desc, "ei", "eventID", e.event_id)
        sub(desc, "ei", "modificationNumber", e.modification_number)
        if e.modification_time is not None and e.modification_number:
            sub(desc, "ei", "modificationDateTime", fmt_dt(e.modification_time))
        if e.modification_reason:
            sub(desc, "ei", "modificationReason", e.modification_reason)
        sub(desc, "ei", "priority", e.priority)
        sub(sub(desc, "ei", "eiMarketContext"), "emix", "marketContext", e.market_context)
        sub(desc, "ei", "createdDateTime", fmt_dt(e.created))
        sub(desc, "ei", "eventStatus", e.status)
        sub(desc, "ei", "testEvent", "true" if e.test_event else "false")
        if e.comment:
            sub(desc, "ei", "vtnComment", e.comment)
        period = sub(ee, "ei", "eiActivePeriod")
        props = sub(period, "xcal", "properties")
        xcal_dtstart(props, e.start)
        xcal_duration(props, "xcal", "duration", e.duration_s)
        if e.randomization_s:
            tolerate = sub(sub(props, "xcal", "tolerance"), "xcal", "tolerate")
            sub(tolerate, "xcal", "startafter", fmt_duration(e.randomization_s))
        sub(period, "xcal", "components")
        signals = sub(ee, "ei", "eiEventSignals")
        signal = sub(signals, "ei", "eiEventSignal")
        intervals = sub(signal, "strm", "intervals")
        for index, (duration_s, value) in enumerate(e.intervals):
            interval = sub(intervals, "ei", "interval")
            xcal_duration(interval, "xcal", "duration", duration_s)
            # VENs such as openleadr require the uid to be an integer string
            sub(sub(interval, "xcal", "uid"), "xcal", "text", index)
            sub(sub(sub(interval, "ei", "signalPayload"), "ei", "payloadFloat"), "ei", "value", _num(value))
        sub(signal, "ei", "signalName", e.signal_name)
        sub(signal, "ei", "signalType", e.signal_type)
        sub(signal, "ei", "signalID", e.signal_id)
        sub(
            sub(sub(signal, "ei", "currentValue"), "ei", "payloadFloat"), "ei", "value", _num(e.current_value)
        )
        target = sub(ee, "ei", "eiTarget")
        for group in e.group_ids:
            sub(target, "ei", "groupID", group)
        for resource in e.resource_ids:
            sub(target, "ei", "resourceID", resource)
        sub(target, "ei", "venID", e.ven_id)
        sub(oe, "oadr", "oadrResponseRequired", e.response_required)
    return msg


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def registered_report(
    request_id: str | None, ven_id: str, requests: list[tuple[str, str, int, int, list[tuple[str, str]]]]
) -> etree._Element:
    """``requests``: (reportRequestID, reportSpecifierID, granularity_s, reportBackDuration_s, [(rID, readingType)])."""
    msg = message("oadrRegisteredReport")
    ei_response(msg, 200, "OK", request_id)
    for rrid, spec, gran, back, r_ids in requests:
        report_request(msg, rrid, spec, gran, back, r_ids)
    sub(msg, "ei", "venID", ven_id)
    return msg


def register_report(request_id: str, ven_id: str) -> etree._Element:
    """The VTN's own oadrRegisterReport: this VTN offers no reports of its own, so the metadata is empty."""
    msg = message("oadrRegisterReport")
    sub(msg, "pyld", "requestID", request_id)
    sub(msg, "ei", "venID", ven_id)
    return msg


def create_report(
    request_id: str,
    ven_id: str,
    rrid: str,
    spec: str,
    granularity_s: int,
    back_s: int,
    r_ids: list[tuple[str, str]],
) -> etree._Element:
    msg = message("oadrCreateReport")
    sub(msg, "pyld", "requestID", request_id)
    report_request(msg, rrid, spec, granularity_s, back_s, r_ids)
    sub(msg, "ei", "venID", ven_id)
    return msg


def cancel_report(request_id: str, ven_id: str, rrid: str, report_to_follow: bool = False) -> etree._Element:
    msg = message("oadrCancelReport")
    sub(msg, "pyld", "requestID", request_id)
    sub(msg, "ei", "reportRequestID", rrid)
    sub(msg, "pyld", "reportToFollow", "true" if report_to_follow else "false")
    sub(msg, "ei", "venID", ven_id)
    return msg


def pending_reports_reply(
    tag: str, request_id: str | None, ven_id: str, pending: list[str]
) -> etree._Element:
    """oadrCreatedReport / oadrCanceledReport."""
    msg = message(tag)
    ei_response(msg, 200, "OK", request_id)
    holder = sub(msg, "oadr", "oadrPendingReports")
    for rrid in pending:
        sub(holder, "ei", "reportRequestID", rrid)
    sub(msg, "ei", "venID", ven_id)
    return msg


def updated_report(request_id: str | None, ven_id: str) -> etree._Element:
    msg = message("oadrUpdatedReport")
    ei_response(msg, 200, "OK", request_id)
    sub(msg, "ei", "venID", ven_id)
    return msg


def opt_reply(tag: str, request_id: str | None, opt_id: str) -> etree._Element:
    """oadrCreatedOpt / oadrCanceledOpt."""
    msg = message(tag)
    ei_response(msg, 200, "OK", request_id)
    sub(msg, "ei", "optID", opt_id)
    return msg


# ================================================================================================ messages in
@dataclass
class Registration:
    registration_id: str | None
    ven_id: str | None
    profile: str
    transport: str
    transport_address: str
    report_only: bool
    xml_signature: bool
    ven_name: str
    http_pull: bool


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("true", "1")


def read_create_party_registration(msg: etree._Element) -> Registration:
    return Registration(
        registration_id=text(msg, "ei:registrationID") or None,
        ven_id=text(msg, "ei:venID") or None,
        profile=text(msg, "oadr:oadrProfileName", "") or "",
        transport=text(msg, "oadr:oadrTransportName", "") or "",
        transport_address=text(msg, "oadr:oadrTransportAddress", "") or "",
        report_only=_bool(text(msg, "oadr:oadrReportOnly")),
        xml_signature=_bool(text(msg, "oadr:oadrXmlSignature")),
        ven_name=text(msg, "oadr:oadrVenName", "") or "",
        # absent means pull: push needs an explicit "false" and a transport address
        http_pull=_bool(text(msg, "oadr:oadrHttpPullModel"), default=True),
    )


@dataclass
class EventResponseIn:
    code: int
    request_id: str
    event_id: str
    modification_number: int
    opt_type: str


def read_created_event(msg: etree._Element) -> list[EventResponseIn]:
    out = []
    for r in msg.findall("pyld:eiCreatedEvent/ei:eventResponses/ei:eventResponse", NS):
        out.append(
            EventResponseIn(
                code=int(text(r, "ei:responseCode", "0") or 0),
                request_id=text(r, "pyld:requestID", "") or "",
                event_id=text(r, "ei:qualifiedEventID/ei:eventID", "") or "",
                modification_number=int(text(r, "ei:qualifiedEventID/ei:modificationNumber", "0") or 0),
                opt_type=text(r, "ei:optType", "") or "",
            )
        )
    return out


def _measurement(desc: etree._Element) -> tuple[str, str, str]:
    """(quantity name, itemUnits, siScaleCode) of the itemBase inside an oadrReportDescription."""
    known = {q("ei", t) for t in ("rID", "reportSubject", "reportDataSource", "reportType", "readingType")}
    known |= {q("emix", "marketContext"), q("oadr", "oadrSamplingRate")}
    for child in desc:
        if child.tag in known or not isinstance(child.tag, str):
            continue
        units = child.find("{*}itemUnits")
        scale = child.find("{*}siScaleCode")
        name = etree.QName(child).localname
        if name == "customUnit":
            # a custom quantity is named by its description, not by the element
            described = child.find("{*}itemDescription")
            name = described.text.strip() if described is not None and described.text else name
        return (
            name,
            units.text.strip() if units is not None and units.text else "",
            scale.text.strip() if scale is not None and scale.text else "none",
        )
    return "", "", "none"


def read_register_report(msg: etree._Element) -> list[Any]:
    from server.core.reports import Description, OfferedReport

    offered = []
    for report in msg.findall("oadr:oadrReport", NS):
        descs = []
        for d in report.findall("oadr:oadrReportDescription", NS):
            name, unit, scale = _measurement(d)
            descs.append(
                Description(
                    r_id=text(d, "ei:rID", "") or "",
                    resource_id=text(d, "ei:reportDataSource/ei:resourceID", "") or "",
                    report_type=text(d, "ei:reportType", "") or "",
                    reading_type=text(d, "ei:readingType", "") or "",
                    measurement=name,
                    unit=unit,
                    scale=scale,
                    min_period_s=parse_duration(text(d, "oadr:oadrSamplingRate/oadr:oadrMinPeriod")),
                    max_period_s=parse_duration(text(d, "oadr:oadrSamplingRate/oadr:oadrMaxPeriod")),
                )
            )
        offered.append(
            OfferedReport(
                specifier_id=text(report, "ei:reportSpecifierID", "") or "",
                report_name=text(report, "ei:reportName", "") or "",
                descriptions=descs,
            )
        )
    return offered


def read_update_report(msg: etree._Element) -> list[Any]:
    from server.core.reports import ReportData, Value

    out = []
    for report in msg.findall("oadr:oadrReport", NS):
        start = parse_dt(text(report, "xcal:dtstart/xcal:date-time"))
        data = ReportData(
            report_request_id=text(report, "ei:reportRequestID", "") or "",
            specifier_id=text(report, "ei:reportSpecifierID", "") or "",
            report_name=text(report, "ei:reportName", "") or "",
        )
        cursor = start
        for interval in report.findall("strm:intervals/ei:interval", NS):
            when = parse_dt(text(interval, "xcal:dtstart/xcal:date-time")) or cursor
            duration = parse_duration(text(interval, "xcal:duration/xcal:duration"))
            if when is None:
                raise ValueError("report interval without dtstart (and no report dtstart)")
            cursor = when + dt.timedelta(seconds=duration or 0)
            for payload in interval.findall("oadr:oadrReportPayload", NS):
                r_id = text(payload, "ei:rID", "") or ""
                value = text(payload, "ei:payloadFloat/ei:value")
                if value is not None:
                    data.values.append(Value(r_id, when, float(value), duration))
                    continue
                status = payload.find("oadr:oadrPayloadResourceStatus", NS)
                if status is not None:
                    # status reports land as 0/1 series: online and manual override
                    online = _bool(text(status, "oadr:oadrOnline"))
                    data.values.append(Value(r_id, when, 1.0 if online else 0.0, duration))
        out.append(data)
    return out


@dataclass
class OptIn:
    opt_id: str
    opt_type: str
    opt_reason: str
    market_context: str
    event_id: str | None
    modification_number: int | None
    availability: list[dict[str, Any]]
    targets: dict[str, list[str]]
    created: dt.datetime | None


def read_create_opt(msg: etree._Element) -> OptIn:
    availability = []
    for avail in msg.findall("xcal:vavailability/xcal:components/xcal:available/xcal:properties", NS):
        start = parse_dt(text(avail, "xcal:dtstart/xcal:date-time"))
        availability.append(
            {
                "start": start.isoformat() if start else None,
                "duration_s": parse_duration(text(avail, "xcal:duration/xcal:duration")),
            }
        )
    targets: dict[str, list[str]] = {}
    for target in msg.findall("ei:eiTarget", NS):
        for kind in ("resourceID", "groupID", "venID", "partyID"):
            values = texts(target, f"ei:{kind}")
            if values:
                targets.setdefault(kind, []).extend(values)
    mod = text(msg, "ei:qualifiedEventID/ei:modificationNumber")
    return OptIn(
        opt_id=text(msg, "ei:optID", "") or "",
        opt_type=text(msg, "ei:optType", "") or "",
        opt_reason=text(msg, "ei:optReason", "") or "",
        market_context=text(msg, "emix:marketContext", "") or "",
        event_id=text(msg, "ei:qualifiedEventID/ei:eventID"),
        modification_number=int(mod) if mod is not None else None,
        availability=availability,
        targets=targets,
        created=parse_dt(text(msg, "ei:createdDateTime")),
    )
