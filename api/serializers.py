"""Request and response shapes of the REST API.

Request serializers parse untrusted JSON strictly: the contract forbids type coercion (``123``
is not a body, ``"5"`` is not a seq, ``1`` is not ``true``), so the fields below refuse what
DRF would otherwise convert. Limits that are settings are read when a serializer is built, so
the OpenAPI schema states the limits the server enforces. The use-case functions re-check
what they are given; these serializers exist to report every bad field at once and to
describe the API.

Response serializers mostly document the payloads that messaging.payloads builds (the same
shapes WebSocket frames carry); model-backed ones (devices, members, flags) also render.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator, URLValidator
from rest_framework import serializers
from rest_framework.fields import empty

from messaging.checks import MAX_SEQ
from messaging.models import Conversation, Device, Flag, Membership, Message
from notifications.models import PushSubscription

# Bounds the work of hashing a password; far beyond any password manager's output.
PASSWORD_MAX_LENGTH = 1024
NOT_ONLY_WHITESPACE = RegexValidator(r"\S", message="May not be blank.")


# --- Strict fields ----------------------------------------------------------------------------

class StrictCharField(serializers.CharField):
    """A string, and only a string (DRF's CharField turns 123 into "123")."""

    default_error_messages = {"not_a_string": "Must be a string.", "surrogate": "Must be valid Unicode text."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        try:
            data.encode("utf-8")  # JSON may carry lone surrogates ("\ud800") that no database stores
        except UnicodeEncodeError:
            self.fail("surrogate")
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


class StrictUUIDField(serializers.UUIDField):
    """A UUID string (DRF's UUIDField also takes an integer)."""

    def to_internal_value(self, data: Any):
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


# --- Users and authentication -------------------------------------------------------------------

class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField(source="shown_name", help_text="The display name, or the username if none.")


class SignupSerializer(RequestSerializer):
    username = StrictCharField(max_length=150, validators=[UnicodeUsernameValidator()])
    password = StrictCharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)
    display_name = StrictCharField(max_length=100, required=False, allow_blank=True, default="")


class LoginSerializer(RequestSerializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)


class AuthResponseSerializer(serializers.Serializer):
    user = UserSerializer()
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`.")


class TokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField()


class WsTicketCreateSerializer(RequestSerializer):
    device = StrictUUIDField(required=False, help_text="Bind the ticket to this device of yours.")


class WsTicketResponseSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Pass as `/ws/v1/?device=<id>&ticket=<ticket>`; works once.")
    expires_in = serializers.IntegerField(help_text="Seconds.")


class UserSearchQuerySerializer(RequestSerializer):
    search = StrictCharField(required=False, allow_blank=True, max_length=150,
                             help_text="Part of a username or display name; empty finds no one.")


class UserSearchResponseSerializer(serializers.Serializer):
    results = UserSerializer(many=True)


# --- Devices ------------------------------------------------------------------------------------

class DeviceCreateSerializer(RequestSerializer):
    name = StrictCharField(max_length=Device._meta.get_field("name").max_length, required=False, allow_blank=True)
    platform = StrictCharField(max_length=Device._meta.get_field("platform").max_length, required=False,
                               allow_blank=True)


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "name", "platform", "created_at", "last_seen_at"]


class PushEndpointField(StrictCharField):
    """An https URL; plain http only to this machine (a local push service in development)."""

    default_error_messages = {"invalid_url": "Must be a URL.", "insecure": "Must be an https URL."}
    _validate_url = URLValidator(schemes=["https", "http"])

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", PushSubscription._meta.get_field("endpoint").max_length)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data)
        try:
            self._validate_url(url)
        except DjangoValidationError:
            self.fail("invalid_url")
        parts = urlsplit(url)
        if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
            self.fail("insecure")
        return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Base64UrlKeyField(StrictCharField):
    """A base64url key (padding optional) that decodes to exactly ``size`` bytes."""

    default_error_messages = {"bad_key": "Must be a base64url encoded {size}-byte key."}
    _ALPHABET = RegexValidator(r"^[A-Za-z0-9_-]+={0,2}$")

    def __init__(self, *, size: int, **kwargs: Any) -> None:
        self.size = size
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            self._ALPHABET(value)  # b64decode would silently skip characters outside it
            decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (DjangoValidationError, binascii.Error, ValueError):
            self.fail("bad_key", size=self.size)
        if len(decoded) != self.size:
            self.fail("bad_key", size=self.size)
        return value


def _key_length(field: str) -> int:
    return PushSubscription._meta.get_field(field).max_length


class PushKeysSerializer(serializers.Serializer):
    p256dh = Base64UrlKeyField(size=65, max_length=_key_length("p256dh"),
                               help_text="The client's P-256 public key (uncompressed point).")
    auth = Base64UrlKeyField(size=16, max_length=_key_length("auth"), help_text="The client's authentication secret.")


class PushSubscriptionSaveSerializer(RequestSerializer):
    """What the browser's `PushSubscription.toJSON()` returns."""

    endpoint = PushEndpointField()
    keys = PushKeysSerializer()


class PushSubscriptionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PushSubscription
        fields = ["device", "endpoint", "created_at", "updated_at"]


# --- Conversations ------------------------------------------------------------------------------

class ConversationCreateSerializer(RequestSerializer):
    """`direct`: `members` names the one other user. `group`: `title` (optional) and `members`.
    `channel`: `title` (required), `public`, optional `members`."""

    kind = serializers.ChoiceField(choices=Conversation.Kind.choices)
    public = StrictBooleanField(required=False, default=False, help_text="Channels only.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["title"] = StrictCharField(required=False, allow_blank=True, max_length=settings.PARLEY_MAX_TITLE_LENGTH)
        fields["members"] = serializers.ListField(
            child=StrictIntegerField(min_value=1), required=False, default=list,
            max_length=settings.PARLEY_MAX_MEMBERS_PER_REQUEST, help_text="User ids.",
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs["kind"]
        if kind == Conversation.Kind.DIRECT and len(attrs["members"]) != 1:
            raise serializers.ValidationError({"members": ["A direct conversation names exactly one other user."]})
        if attrs["public"] and kind != Conversation.Kind.CHANNEL:
            raise serializers.ValidationError({"public": ["Only channels can be public."]})
        return attrs


class MembershipStateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    delivered_seq = serializers.IntegerField()
    read_seq = serializers.IntegerField()
    unread = serializers.IntegerField(help_text="Messages after read_seq not sent by me.")


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Conversation.Kind.choices)
    title = serializers.CharField(allow_blank=True)
    public = serializers.BooleanField()
    member_count = serializers.IntegerField()
    slow_mode_seconds = serializers.IntegerField(help_text="Each member may send one message per this many "
                                                           "seconds (0: no slow mode). Set by moderators.")
    last_seq = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    last_activity_at = serializers.DateTimeField()
    me = MembershipStateSerializer(allow_null=True, help_text="null when you are not a member (public channels).")


class MemberSerializer(serializers.ModelSerializer):
    user = UserSerializer()
    online = serializers.BooleanField(
        read_only=True, allow_null=True,
        help_text="Presence now (lossy, like `presence` frames): for members asking about a conversation "
                  "below PARLEY_LARGE_CHANNEL_THRESHOLD members, else null.",
    )

    class Meta:
        model = Membership
        fields = ["user", "role", "joined_at", "delivered_seq", "read_seq", "online"]


class AddMembersSerializer(RequestSerializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {"user_ids": serializers.ListField(
            child=StrictIntegerField(min_value=1), allow_empty=False,
            max_length=settings.PARLEY_MAX_MEMBERS_PER_REQUEST,
        )}


class AddMembersResponseSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.IntegerField(), help_text="Who was not a member before.")


# --- Messages -----------------------------------------------------------------------------------

class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    conversation = serializers.IntegerField()
    seq = serializers.IntegerField()
    sender = UserSerializer()
    body = serializers.CharField(allow_blank=True, help_text='"" once removed.')
    client_msg_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=Message.State.choices)


class SendMessageSerializer(RequestSerializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "client_msg_id": StrictCharField(
                max_length=settings.PARLEY_MAX_CLIENT_MSG_ID_LENGTH, trim_whitespace=False,
                help_text="Your key for this send: a retry with the same key returns the stored message.",
            ),
            "body": StrictCharField(max_length=settings.PARLEY_MAX_BODY_LENGTH, trim_whitespace=False,
                                    validators=[NOT_ONLY_WHITESPACE]),
            "device": StrictUUIDField(required=False, help_text="The sending device, if one of yours."),
        }


class SendMessageResponseSerializer(serializers.Serializer):
    message = MessageSerializer()
    duplicate = serializers.BooleanField(help_text="true when this was a retry of a stored send.")


class MessagesQuerySerializer(RequestSerializer):
    """Query parameters: strings that must spell integers (so no strict fields here)."""

    after_seq = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEQ,
                                         help_text="Messages with a greater seq (the default, from 0).")
    before_seq = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEQ,
                                          help_text="The messages just before this seq, in ascending order.")
    limit = serializers.IntegerField(required=False, min_value=1,
                                     help_text="Page size; values above the maximum (200) are capped.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "after_seq" in attrs and "before_seq" in attrs:
            raise serializers.ValidationError({"before_seq": ["Give after_seq or before_seq, not both."]})
        return attrs


class MessagePageSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True)
    has_more = serializers.BooleanField()


class ReadSerializer(RequestSerializer):
    seq = seq_field(help_text="Clamped to the conversation's last_seq.")


class DeliveredSerializer(RequestSerializer):
    seq = seq_field(help_text="Clamped to the conversation's last_seq.")
    device = StrictUUIDField(help_text="The device that holds everything up to seq.")


class WatermarksSerializer(serializers.Serializer):
    delivered_seq = serializers.IntegerField()
    read_seq = serializers.IntegerField()


class MemberReceiptSerializer(serializers.Serializer):
    user = serializers.IntegerField()
    delivered_seq = serializers.IntegerField()
    read_seq = serializers.IntegerField()


class ReceiptsSerializer(serializers.Serializer):
    members = MemberReceiptSerializer(many=True)


class RecipientStateSerializer(serializers.Serializer):
    user = UserSerializer()
    state = serializers.ChoiceField(choices=["sent", "delivered", "read"])


class ReceiptCountsSerializer(serializers.Serializer):
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()


class MessageInfoSerializer(serializers.Serializer):
    message = MessageSerializer()
    recipients = RecipientStateSerializer(many=True, help_text="Every member but the sender.")
    counts = ReceiptCountsSerializer(help_text="Each recipient counted once, under its state.")


class FlagCreateSerializer(RequestSerializer):
    reason = serializers.ChoiceField(choices=Flag.Reason.choices)
    note = StrictCharField(required=False, allow_blank=True, max_length=Flag._meta.get_field("note").max_length)


class FlagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Flag
        fields = ["id", "message", "reason", "note", "status", "created_at"]

