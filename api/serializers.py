"""Request and response shapes of the REST API (the strict fields are in api.fields).

Limits that are settings are read when a serializer is built, so the OpenAPI schema states
the limits the server enforces. Response serializers mostly document the payloads that
messaging.payloads builds (the same shapes WebSocket frames carry); model-backed ones
(members, flags) also render.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from messaging.checks import MAX_SEQ
from messaging.models import Conversation, Flag, Membership, Message, MessageChange, char_limit
from messaging.roles import Action

from .fields import (
    NOT_ONLY_WHITESPACE,
    PASSWORD_MAX_LENGTH,
    RequestSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictDateTimeField,
    StrictIntegerField,
    StrictUUIDField,
    seq_field,
)

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
    unread_mentions = serializers.IntegerField(help_text="Messages after read_seq that mention me "
                                                         "(counted from seqs, never a counter).")
    notify = serializers.ChoiceField(choices=Membership.Notify.choices,
                                     help_text="Which messages notify me when I am offline (and in the browser "
                                               "app's hidden tab): all, mentions of me, or none.")
    muted_until = serializers.DateTimeField(allow_null=True, help_text="No notification at all before this "
                                                                       "time; null: not muted.")
    can = serializers.ListField(child=serializers.ChoiceField(choices=[a.value for a in Action]),
                                help_text="What I may do here (docs/api.md, \"Roles\").")


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Conversation.Kind.choices)
    title = serializers.CharField(allow_blank=True)
    topic = serializers.CharField(allow_blank=True, help_text="What the conversation is about (owners and admins "
                                                              "set it).")
    public = serializers.BooleanField()
    default = serializers.BooleanField(help_text="A channel new users join when they sign up (set by a site "
                                                 "admin).")
    member_count = serializers.IntegerField()
    slow_mode_seconds = serializers.IntegerField(help_text="Each member may send one message per this many "
                                                           "seconds (0: no slow mode). Set by moderators.")
    last_seq = serializers.IntegerField()
    last_change = serializers.IntegerField(help_text="The highest change number (edits, deletes, reactions, "
                                                     "removals) of this conversation's change stream.")
    created_at = serializers.DateTimeField()
    last_activity_at = serializers.DateTimeField()
    me = MembershipStateSerializer(allow_null=True, help_text="null when you are not a member (public channels).")


class MemberSerializer(serializers.Serializer):
    user = UserSerializer()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    joined_at = serializers.DateTimeField()
    delivered_seq = serializers.IntegerField(allow_null=True, help_text="null unless you are a member (as "
                                                                        "`/receipts`).")
    read_seq = serializers.IntegerField(allow_null=True, help_text="null unless you are a member (as `/receipts`).")
    online = serializers.BooleanField(
        allow_null=True,
        help_text="Presence now (lossy, like `presence` frames): for members asking about a conversation "
                  "below PARLEY_LARGE_CHANNEL_THRESHOLD members, else null.",
    )
    last_seen_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When an offline member's last socket closed, where `online` is given and the cache still "
                  "remembers it (PARLEY_PRESENCE_LAST_SEEN_SECONDS); else null. Lossy, never stored.",
    )


class AddMembersSerializer(RequestSerializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {"user_ids": serializers.ListField(
            child=StrictIntegerField(min_value=1), allow_empty=False,
            max_length=settings.PARLEY_MAX_MEMBERS_PER_REQUEST,
        )}


class AddMembersResponseSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.IntegerField(), help_text="Who was not a member before.")


class ConversationUpdateSerializer(RequestSerializer):
    """Give what changes; what is left out stays as it is."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "title": StrictCharField(required=False, allow_blank=True, max_length=settings.PARLEY_MAX_TITLE_LENGTH,
                                     help_text="A channel's title may not be blank."),
            "topic": StrictCharField(required=False, allow_blank=True, max_length=settings.PARLEY_MAX_TOPIC_LENGTH),
        }


class MySettingsSerializer(RequestSerializer):
    notify = serializers.ChoiceField(choices=Membership.Notify.choices, required=False)
    muted_until = StrictDateTimeField(required=False, allow_null=True,
                                      help_text="ISO 8601; no notification before it. null unmutes.")


class RoleSerializer(RequestSerializer):
    role = serializers.ChoiceField(choices=[Membership.Role.ADMIN, Membership.Role.MEMBER])


# --- Messages -----------------------------------------------------------------------------------

class ReplySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    seq = serializers.IntegerField()
    sender = UserSerializer()
    excerpt = serializers.CharField(allow_blank=True, help_text="The start of the original as it is now; \"\" "
                                                                "once it is deleted or removed.")
    state = serializers.ChoiceField(choices=Message.State.choices)


class ReactionSummarySerializer(serializers.Serializer):
    emoji = serializers.CharField()
    count = serializers.IntegerField()
    users = serializers.ListField(child=serializers.IntegerField(), help_text="The first users to react "
                                                                              "(PARLEY_REACTION_USERS_SHOWN, 50).")


class AttachmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(help_text="The uploader's file name, sanitized.")
    size = serializers.IntegerField(help_text="In bytes.")
    content_type = serializers.CharField(help_text="Detected from the file's content, not the client's word.")
    url = serializers.CharField(help_text="Serves the file to the conversation's members only (404 to anyone "
                                          "else); images inline, every other type as a download.")
    thumbnail_url = serializers.CharField(allow_null=True, help_text="Images: a re-encoded thumbnail.")
    width = serializers.IntegerField(allow_null=True, help_text="Images: in pixels.")
    height = serializers.IntegerField(allow_null=True, help_text="Images: in pixels.")


class UploadSerializer(RequestSerializer):
    file = serializers.FileField(help_text="The file (multipart/form-data). Its type is detected from its bytes; "
                                           "size and type limits are settings (413 / 400).")
    conversation = serializers.IntegerField(required=False, min_value=1, max_value=MAX_SEQ,
                                            help_text="Bind the upload to one of your conversations (404 "
                                                      "otherwise); without it, the send that attaches it binds it.")


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    conversation = serializers.IntegerField()
    seq = serializers.IntegerField()
    sender = UserSerializer()
    body = serializers.CharField(allow_blank=True, help_text='"" once removed or deleted.')
    html = serializers.CharField(allow_blank=True, help_text="The body rendered for display: a Markdown subset, "
                                                             "sanitized on the server (allow-listed tags only).")
    client_msg_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=Message.State.choices)
    edited_at = serializers.DateTimeField(allow_null=True)
    reply_to = ReplySerializer(allow_null=True)
    mentions = serializers.ListField(child=serializers.IntegerField(), help_text="Ids of the members mentioned.")
    reactions = ReactionSummarySerializer(many=True)
    attachments = AttachmentSerializer(many=True, help_text="Empty once removed or deleted.")
    version = serializers.IntegerField(help_text="The change number that last changed this message (0: never). "
                                                 "Keep the copy with the highest version.")


class SendMessageSerializer(RequestSerializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "client_msg_id": StrictCharField(
                max_length=settings.PARLEY_MAX_CLIENT_MSG_ID_LENGTH, trim_whitespace=False,
                help_text="Your key for this send: a retry with the same key returns the stored message.",
            ),
            "body": StrictCharField(max_length=settings.PARLEY_MAX_BODY_LENGTH, trim_whitespace=False,
                                    allow_blank=True,
                                    help_text="Not blank, unless the message carries attachments."),
            "device": StrictUUIDField(required=False, help_text="The sending device, if one of yours."),
            "reply_to": StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_SEQ,
                                           help_text="The id of the message of this conversation this answers."),
            "attachments": serializers.ListField(
                child=StrictIntegerField(min_value=1, max_value=MAX_SEQ), required=False,
                max_length=settings.PARLEY_MAX_ATTACHMENTS_PER_MESSAGE,
                help_text="Ids of your uploads not sent yet (POST /api/v1/uploads), in the order shown."),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("attachments") and not attrs["body"].strip():
            raise serializers.ValidationError({"body": ["May not be blank."]})
        return attrs


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


class EditMessageSerializer(RequestSerializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {"body": StrictCharField(max_length=settings.PARLEY_MAX_BODY_LENGTH, trim_whitespace=False,
                                        validators=[NOT_ONLY_WHITESPACE])}


class ReactionSerializer(RequestSerializer):
    emoji = StrictCharField(max_length=64, help_text="One Unicode emoji, or a :short_name: such as :thumbs_up:.")


class ChangeSerializer(serializers.Serializer):
    change = serializers.IntegerField()
    conversation = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=MessageChange.Kind.choices)
    message = MessageSerializer(help_text="The message as it is now.")
    actor = serializers.IntegerField(allow_null=True, help_text="Who made the change (a user id).")
    at = serializers.DateTimeField()


class ChangesQuerySerializer(RequestSerializer):
    after = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEQ,
                                     help_text="Changes with a greater number (the default, from 0).")
    limit = serializers.IntegerField(required=False, min_value=1,
                                     help_text="Page size; values above the maximum (200) are capped.")


class ChangePageSerializer(serializers.Serializer):
    changes = ChangeSerializer(many=True)
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
    note = StrictCharField(required=False, allow_blank=True, max_length=char_limit(Flag, "note"))


class FlagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Flag
        fields = ["id", "message", "reason", "note", "status", "created_at"]



# --- Search --------------------------------------------------------------------------------------

class SearchQuerySerializer(RequestSerializer):
    """Query parameters (strings that must spell integers where they are ids)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "q": serializers.CharField(max_length=settings.PARLEY_SEARCH_MAX_QUERY_LENGTH, trim_whitespace=True,
                                       help_text="What to find: words, \"a phrase\", `or`, `-word` (web-search "
                                                 "syntax on PostgreSQL; every word on other databases)."),
            "conversation": serializers.IntegerField(required=False, min_value=1, max_value=MAX_SEQ,
                                                     help_text="Only this conversation (yours)."),
            "before": serializers.IntegerField(required=False, min_value=1, max_value=MAX_SEQ,
                                               help_text="The cursor: only messages with a smaller id (the last "
                                                         "id of the previous page)."),
            "limit": serializers.IntegerField(required=False, min_value=1,
                                              help_text="Page size (default PARLEY_SEARCH_PAGE_SIZE_DEFAULT, 20); "
                                                        "values above PARLEY_SEARCH_PAGE_SIZE_MAX (50) are capped."),
        }


class SearchConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField(allow_blank=True)
    kind = serializers.ChoiceField(choices=Conversation.Kind.choices)


class SearchResultSerializer(serializers.Serializer):
    message = MessageSerializer()
    conversation = SearchConversationSerializer()
    highlight = serializers.CharField(allow_blank=True, help_text="The matching part of the body as HTML: "
                                                                  "escaped text with `<mark>` around the matches, "
                                                                  "and no other markup.")


class SearchPageSerializer(serializers.Serializer):
    results = SearchResultSerializer(many=True)
    has_more = serializers.BooleanField()
