"""The one request-body parser of the REST API: JSON, bounded in size and depth.

DRF's stock JSONParser reads the whole body, whatever its length (Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` guards ``request.body``, which DRF does not use), and lets the
decoder's ``RecursionError`` on deeply nested input escape as a 500 with a traceback, on
every endpoint, login and signup included. Here a body over ``PARLEY_MAX_REQUEST_BYTES`` is a
413, one nested deeper than ``PARLEY_JSON_MAX_DEPTH`` a 400, and a string holding a lone
surrogate a 400 naming its field, all in the API's error shape, before any serializer sees them.
"""
from __future__ import annotations

import json
from typing import IO, Any, Mapping

from django.conf import settings
from rest_framework import exceptions, parsers, status


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def check_structure(value: Any, *, max_depth: int) -> None:
    """Refuse a body nested more than ``max_depth`` arrays or objects deep (ParseError), or with
    a string that holds a lone surrogate (ValidationError naming the field, the API's usual
    400): JSON can spell one (``"\\ud800"``), but it is not Unicode text, and no part of Parley,
    its database or its JSON renderer can encode it. Iterative: no recursion for a hostile
    body to exhaust."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _require_text(item, path)
            continue
        if isinstance(item, dict):
            children = []
            for key, child in item.items():
                _require_text(key, path or "non_field_errors")
                children.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            children = [(child, f"{path}.{index}" if path else str(index)) for index, child in enumerate(item)]
        else:
            continue
        if depth > max_depth:
            raise exceptions.ParseError(f"JSON parse error - nested too deep (at most {max_depth} levels).")
        stack.extend((child, depth + 1, child_path) for child, child_path in children)


def _require_text(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise exceptions.ValidationError({field or "non_field_errors": ["Must be valid Unicode text."]}) from None


class BoundedJSONParser(parsers.JSONParser):
    def parse(self, stream: IO[bytes], media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.PARLEY_MAX_REQUEST_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and str(declared).isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"Request bodies are limited to {limit} bytes.")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestTooLarge(f"Request bodies are limited to {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deep.") from None
        except (ValueError, UnicodeDecodeError) as error:
            raise exceptions.ParseError(f"JSON parse error - {error}") from None
        check_structure(data, max_depth=settings.PARLEY_JSON_MAX_DEPTH)
        return data


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); DRF's parser refuses them too.
    raise ValueError(f"{name} is not valid JSON")
