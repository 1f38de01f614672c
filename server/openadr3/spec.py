"""The OpenADR 3.1.0 OpenAPI specification (``spec/openadr3-3.1.0.yaml``, the OpenADR Alliance's, Apache-2.0: see
``spec/NOTICE``) turned into JSON Schema validators, one per component schema.

OpenAPI 3.0 schemas are JSON Schema (draft 4 flavoured) with ``nullable``; it becomes a ``null`` alternative here,
and the boolean exclusive bounds become draft 7 numbers. Two of the
specification's output schemas contradict themselves (``ven`` and ``resource`` combine ``objectMetadata``, whose
``objectType`` is one of PROGRAM, EVENT ..., with the request shapes whose ``objectType`` is BL_VEN_REQUEST /
BL_RESOURCE_REQUEST), so no object could satisfy them; for those two the request's ``objectType`` is left out of
the output check and the metadata's (VEN, RESOURCE) applies. Nothing else is changed.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft7Validator

SPEC_FILE = "openadr3-3.1.0.yaml"
VERSION = "3.1.0"


@functools.cache
def document() -> dict[str, Any]:
    text = resources.files("server.openadr3").joinpath("spec", SPEC_FILE).read_text(encoding="utf-8")
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v) for k, v in node.items() if k not in ("nullable", "discriminator", "example")}
    # OpenAPI 3.0 spells an exclusive bound as a flag beside the bound (JSON Schema draft 4)
    for flag, bound in (("exclusiveMaximum", "maximum"), ("exclusiveMinimum", "minimum")):
        if isinstance(out.get(flag), bool):
            if out.pop(flag) and bound in out:
                out[flag] = out.pop(bound)
    if out.get("format") == "int32":  # a bound the format states but JSON Schema does not check
        out.setdefault("minimum", -(2**31))
        out.setdefault("maximum", 2**31 - 1)
    if node.get("nullable") is True:
        if "type" in out and "$ref" not in out:
            kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*kinds, "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _ven_resource_outputs(schemas: dict[str, Any]) -> None:
    for output, request in (("ven", "BlVenRequest"), ("resource", "BlResourceRequest")):
        relaxed = copy.deepcopy(schemas[request])
        relaxed["properties"].pop("objectType", None)
        relaxed["required"] = [r for r in relaxed.get("required", []) if r != "objectType"]
        schemas[f"{request}Output"] = relaxed
        schemas[output]["allOf"] = [
            {"$ref": "#/components/schemas/objectMetadata"},
            {"$ref": f"#/components/schemas/{request}Output"},
        ]


@functools.cache
def _components() -> dict[str, Any]:
    schemas = _convert(document()["components"]["schemas"])
    _ven_resource_outputs(schemas)
    return {"schemas": schemas}


@functools.cache
def validator(name: str) -> Draft7Validator:
    """The validator of one component schema (``programRequest``, ``event``, ``problem`` ...)."""
    components = _components()
    if name not in components["schemas"]:
        raise KeyError(f"the specification has no schema {name!r}")
    return Draft7Validator({"components": components, "$ref": f"#/components/schemas/{name}"})


@functools.cache
def list_validator(name: str) -> Draft7Validator:
    components = _components()
    return Draft7Validator(
        {"components": components, "type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}
    )


def errors(name: str, value: Any, many: bool = False) -> list[str]:
    """What is wrong with ``value`` as schema ``name`` (a list of them with ``many``); empty when it is valid."""
    v = list_validator(name) if many else validator(name)
    found = sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(body)'}: {e.message}"[:300] for e in found[:5]]
