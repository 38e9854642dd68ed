"""Strict request fields, and the parse step every view starts with.

Request serializers parse untrusted JSON strictly: the contract forbids type coercion (``123``
is not a body, ``"5"`` is not a seq, ``1`` is not ``true``), so the fields below refuse what
DRF would otherwise convert. The use-case functions re-check what they are given
(messaging.checks); serializers exist to report every bad field at once and to describe the
API. Every failure has one shape, :class:`ErrorSerializer`.
"""
from __future__ import annotations

import uuid
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers
from rest_framework.fields import empty

from messaging.checks import MAX_SEQ

PASSWORD_MAX_LENGTH = 1024
NOT_ONLY_WHITESPACE = RegexValidator(r"\S", message="May not be blank.")


# --- Strict fields ----------------------------------------------------------------------------

class StrictCharField(serializers.CharField):
    """A string, and only a string (DRF's CharField turns 123 into "123")."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        # Lone surrogates never get this far: the parser refuses them (api.parsers).
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, and only that (not "5", not 5.0, not true)."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean, and only that (not 1, not "true")."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictDateTimeField(serializers.DateTimeField):
    """An ISO 8601 string, and only that (DRF also takes a datetime object, and chokes on a number)."""

    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str):
            self.fail("invalid", format="ISO 8601")
        return super().to_internal_value(value)


class StrictUUIDField(serializers.UUIDField):
    """A UUID string (DRF's UUIDField also takes an integer)."""

    def to_internal_value(self, data: Any) -> uuid.UUID:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


def seq_field(**kwargs: Any) -> StrictIntegerField:
    return StrictIntegerField(min_value=0, max_value=MAX_SEQ, **kwargs)


def _dotted(detail: dict[Any, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in detail.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class RequestSerializer(serializers.Serializer):
    # Reports nested errors under dotted names ("keys.auth", "members.0"): one list per field,
    # the shape of the API's error body.

    def run_validation(self, data: Any = empty) -> Any:
        try:
            return super().run_validation(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                raise serializers.ValidationError(_dotted(exc.detail)) from None
            raise


def parse(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """The validated data, or a 400 that lists every bad field."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class ErrorSerializer(serializers.Serializer):
    """Every failure: `code` is the machine-readable kind, shared with WebSocket error frames.

    Validation errors also list each bad field's messages under `fields` and at the top level.
    """

    def get_fields(self) -> dict[str, serializers.Field]:
        # Declared here because a class attribute named "fields" would hide Serializer.fields.
        return {
            "code": serializers.CharField(),
            "detail": serializers.CharField(),
            "fields": serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                            required=False),
        }
