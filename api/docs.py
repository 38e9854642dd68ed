"""The browsable API reference at /api/v1/docs, rendered on the server from the OpenAPI schema.

Swagger UI and Redoc load their JavaScript from a CDN; this page needs nothing but the
server, so it works offline and behind strict networks. The machine-readable schema stays at
/api/v1/schema.
"""
from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views import View
from drf_spectacular.generators import SchemaGenerator

_METHODS = ("get", "post", "put", "patch", "delete")
_REF_PREFIX = "#/components/schemas/"
_CONSTRAINTS = ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "pattern", "default")


def type_html(schema: dict[str, Any]) -> SafeString:
    """A one-line, linked description of a JSON schema: "array of Message", "string (uuid)", ..."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(_REF_PREFIX)
        return format_html('<a href="#schema-{}">{}</a>', name, name)
    if "allOf" in schema or "oneOf" in schema:
        parts = [type_html(s) for s in schema.get("allOf") or schema.get("oneOf") or []]
        text = format_html_join(" or ", "{}", ((p,) for p in parts))
    elif schema.get("type") == "array":
        text = format_html("array of {}", type_html(schema.get("items", {})))
    elif "enum" in schema:
        text = format_html("one of {}", ", ".join(str(v) for v in schema["enum"] if v is not None))
    elif schema.get("type") == "object" and "additionalProperties" in schema:
        text = format_html("object of {}", type_html(schema["additionalProperties"] or {}))
    else:
        text = format_html("{}{}", schema.get("type", "any"), f" ({schema['format']})" if "format" in schema else "")
    return format_html("{} or null", text) if schema.get("nullable") else text


def _constraints(schema: dict[str, Any]) -> str:
    return ", ".join(f"{key} {json.dumps(schema[key])}" for key in _CONSTRAINTS if key in schema)


def _body_type(content: dict[str, Any] | None) -> SafeString | None:
    if not content:
        return None
    media = content.get("application/json") or next(iter(content.values()))
    return type_html(media.get("schema", {}))


def _operation(path: str, method: str, op: dict[str, Any]) -> dict[str, Any]:
    return {
        "anchor": op["operationId"],
        "method": method.upper(),
        "path": path,
        "description": op.get("description", ""),
        "parameters": [
            {"name": p["name"], "in": p["in"], "required": p.get("required", False),
             "type": type_html(p.get("schema", {})), "constraints": _constraints(p.get("schema", {})),
             "description": p.get("description", "")}
            for p in op.get("parameters", [])
        ],
        "request": _body_type(op.get("requestBody", {}).get("content")),
        "responses": [
            {"status": code, "description": response.get("description", ""),
             "type": _body_type(response.get("content"))}
            for code, response in sorted(op.get("responses", {}).items())
        ],
    }


def _component(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    required = set(schema.get("required", []))
    return {
        "name": name,
        "description": schema.get("description", ""),
        "type": None if "properties" in schema else type_html(schema),
        "fields": [
            {"name": field, "type": type_html(spec), "required": field in required,
             "read_only": spec.get("readOnly", False), "constraints": _constraints(spec),
             "description": spec.get("description", "")}
            for field, spec in schema.get("properties", {}).items()
        ],
    }


class ApiDocsView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        schema = SchemaGenerator().get_schema(request=None, public=True)
        operations = [
            _operation(path, method, op)
            for path, item in schema["paths"].items()
            for method, op in item.items() if method in _METHODS
        ]
        components = [_component(name, s) for name, s in schema.get("components", {}).get("schemas", {}).items()]
        return render(request, "api/docs.html", {
            "info": schema["info"], "operations": operations, "components": components,
        })
