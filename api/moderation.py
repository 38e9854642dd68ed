"""Moderation over REST (CONTRACT, "Moderation"): a member's flag on a message, and the
moderators' endpoints under /api/v1/moderation/.

Thin edges over messaging.moderation: every moderators' view first authorizes
(``access_moderator``: 403 for everyone but moderators, before the payload is even looked
at), then parses, delegates and renders.
"""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.models import Flag, ModerationDecision
from messaging.moderation import (
    NOTE_MAX_LENGTH,
    RESOLUTIONS,
    access_moderator,
    audit_payloads,
    decision_log,
    do_flag_message,
    do_resolve_flag,
    do_set_slow_mode,
    do_set_suspended,
    flag_context,
    flag_payloads,
    flag_queue,
)
from messaging.payloads import conversation_payload, user_payload

from .common import (
    AUTH_ERRORS,
    CONVERSATION_ID,
    AuthenticatedRequest,
    BoundedLimitOffsetPagination,
    id_param,
    paginate,
)
from .fields import (
    ErrorSerializer,
    RequestSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    parse,
)
from .serializers import (
    ConversationSerializer,
    FlagCreateSerializer,
    FlagSerializer,
    MessageSerializer,
    UserSerializer,
)

E = ErrorSerializer


def note_field() -> StrictCharField:
    return StrictCharField(required=False, allow_blank=True, max_length=NOTE_MAX_LENGTH,
                           help_text="Why: kept in the audit record.")


# --- Shapes --------------------------------------------------------------------------------------

class FlagQueueQuerySerializer(RequestSerializer):
    status = serializers.ChoiceField(choices=Flag.Status.choices, required=False, default=Flag.Status.OPEN,
                                     help_text="open (default: oldest first) or resolved (latest first).")


class DecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.ChoiceField(choices=ModerationDecision.Action.choices)
    note = serializers.CharField(allow_blank=True)
    moderator = UserSerializer()
    created_at = serializers.DateTimeField()


class EditSerializer(serializers.Serializer):
    body = serializers.CharField()
    replaced_at = serializers.DateTimeField()


class ModerationFlagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reason = serializers.ChoiceField(choices=Flag.Reason.choices)
    note = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Flag.Status.choices)
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    reporter = UserSerializer()
    message = MessageSerializer(help_text="As members see it: once removed, its body is empty.")
    evidence = serializers.CharField(allow_blank=True, help_text="The text now, also after a removal or a "
                                                                 "moderator's delete (moderators only).")
    reported_body = serializers.CharField(allow_blank=True, help_text="What the message said when it was "
                                                                      "reported, whatever happened since.")
    edits = EditSerializer(many=True, help_text="The bodies it had before each edit, oldest first.")
    conversation = ConversationSerializer()
    decision = DecisionSerializer(allow_null=True, help_text="What resolved the flag; null while open.")


class FlagContextSerializer(serializers.Serializer):
    flag = serializers.IntegerField()
    conversation = ConversationSerializer(help_text="`me` is the moderator's membership, null if not a member.")
    messages = MessageSerializer(many=True, help_text="The flagged message with PARLEY_MODERATION_CONTEXT_MESSAGES "
                                                      "before and after it, in seq order, as members see them.")
    flagged_seq = serializers.IntegerField()
    sender = UserSerializer()
    sender_suspended = serializers.BooleanField()
    can_open = serializers.BooleanField(help_text="Whether the moderator can open the conversation in the app "
                                                  "(a member, or a public channel).")


class AuditSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.ChoiceField(choices=ModerationDecision.Action.choices)
    note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    moderator = UserSerializer()
    user = UserSerializer(allow_null=True, help_text="Whom it was about: the suspended user, or the sender.")
    conversation = ConversationSerializer(allow_null=True)
    message_id = serializers.IntegerField(allow_null=True)
    slow_mode_seconds = serializers.IntegerField(allow_null=True)


class ResolveFlagSerializer(RequestSerializer):
    action = serializers.ChoiceField(choices=RESOLUTIONS, help_text="remove_message also resolves every "
                                                                    "other open flag of the message.")
    note = note_field()


class SuspensionSerializer(RequestSerializer):
    suspended = StrictBooleanField()
    note = note_field()


class SuspensionResponseSerializer(serializers.Serializer):
    user = UserSerializer()
    suspended = serializers.BooleanField()
    suspended_at = serializers.DateTimeField(allow_null=True)


class SlowModeSerializer(RequestSerializer):
    note = note_field()

    def get_fields(self) -> dict[str, serializers.Field]:
        return {**super().get_fields(), "seconds": StrictIntegerField(
            min_value=0, max_value=settings.PARLEY_SLOW_MODE_MAX_SECONDS,
            help_text="One message per member per this many seconds; 0 turns slow mode off.")}


# --- Views ---------------------------------------------------------------------------------------

class FlagView(APIView):
    @extend_schema(
        operation_id="messages_flag", parameters=[id_param("message_id", "message")], request=FlagCreateSerializer,
        responses={201: FlagSerializer, 400: E, 404: E, 409: E, **AUTH_ERRORS},
        description="Report a message to the moderators. One open flag per reporter and message (409).",
    )
    def post(self, request: AuthenticatedRequest, message_id: int) -> Response:
        data = parse(FlagCreateSerializer, request.data)
        flag = do_flag_message(reporter=request.user, message_id=message_id, reason=data["reason"],
                               note=data.get("note"))
        return Response(FlagSerializer(flag).data, status=status.HTTP_201_CREATED)


class FlagPagination(BoundedLimitOffsetPagination):
    @property
    def default_limit(self) -> int:  # type: ignore[override]
        return settings.PARLEY_PAGE_SIZE_DEFAULT


class FlagQueueView(APIView):
    pagination_class = FlagPagination

    @extend_schema(
        operation_id="moderation_flags_list", parameters=[FlagQueueQuerySerializer],
        responses={200: ModerationFlagSerializer(many=True), 400: E, **AUTH_ERRORS},
        description="The moderators' queue: flags with their message, conversation and reporter.",
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        access_moderator(request.user)
        query = parse(FlagQueueQuerySerializer, request.query_params)
        paginator = self.pagination_class()
        page = paginate(paginator, flag_queue(status=query["status"]), request, self)
        return paginator.get_paginated_response(flag_payloads(page))


class FlagContextView(APIView):
    @extend_schema(
        operation_id="moderation_flags_context", parameters=[id_param("flag_id", "flag")],
        responses={200: FlagContextSerializer, 404: E, **AUTH_ERRORS},
        description="The flagged message in context (a few messages before and after), its sender's "
                    "suspension, and whether the moderator can open the conversation in the app.",
    )
    def get(self, request: AuthenticatedRequest, flag_id: int) -> Response:
        return Response(flag_context(moderator=request.user, flag_id=flag_id))


class DecisionsView(APIView):
    pagination_class = FlagPagination

    @extend_schema(
        operation_id="moderation_decisions_list", responses={200: AuditSerializer(many=True), **AUTH_ERRORS},
        description="The audit trail: every moderation decision (dismissals, removals, suspensions and their "
                    "lifting, slow mode), latest first.",
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        paginator = self.pagination_class()
        page = paginate(paginator, decision_log(moderator=request.user), request, self)
        return paginator.get_paginated_response(audit_payloads(page))


class ResolveFlagView(APIView):
    @extend_schema(
        operation_id="moderation_flags_resolve", parameters=[id_param("flag_id", "flag")],
        request=ResolveFlagSerializer,
        responses={200: ModerationFlagSerializer, 400: E, 404: E, 409: E, **AUTH_ERRORS},
        description="Dismiss the flag, or remove its message (tombstoned for everyone; members are told "
                    "with message.removed). 409 once the flag is resolved.",
    )
    def post(self, request: AuthenticatedRequest, flag_id: int) -> Response:
        access_moderator(request.user)
        data = parse(ResolveFlagSerializer, request.data)
        flag = do_resolve_flag(moderator=request.user, flag_id=flag_id, action=data["action"],
                               note=data.get("note"))
        return Response(flag_payloads([flag])[0])


class SuspensionView(APIView):
    @extend_schema(
        operation_id="moderation_users_suspension", parameters=[id_param("user_id", "user")],
        request=SuspensionSerializer,
        responses={200: SuspensionResponseSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="Suspend a user (no sending; open sockets close with 4403 and new ones are refused) "
                    "or lift the suspension. The user can still log in and read.",
    )
    def put(self, request: AuthenticatedRequest, user_id: int) -> Response:
        access_moderator(request.user)
        data = parse(SuspensionSerializer, request.data)
        user = do_set_suspended(moderator=request.user, user_id=user_id, suspended=data["suspended"],
                                note=data.get("note"))
        return Response({"user": user_payload(user), "suspended": user.is_suspended,
                         "suspended_at": user.suspended_at})


class SlowModeView(APIView):
    @extend_schema(
        operation_id="moderation_conversations_slow_mode",
        parameters=[CONVERSATION_ID],
        request=SlowModeSerializer, responses={200: ConversationSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="Set the conversation's slow mode; its members get conversation.updated.",
    )
    def put(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        access_moderator(request.user)
        data = parse(SlowModeSerializer, request.data)
        conversation = do_set_slow_mode(moderator=request.user, conversation_id=conversation_id,
                                        seconds=data["seconds"], note=data.get("note"))
        return Response(conversation_payload(conversation, None))
