"""Conversations and their members (CONTRACT, "Conversations"). Thin edges: parse strictly,
authorize with ``access_*``, delegate to messaging.conversations, render with the payloads
the WebSocket shares. A private conversation that is not yours is a 404, like one that does
not exist.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Case, Value, When
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import presence, selectors
from messaging.access import access_conversation
from messaging.conversations import (
    UNSET,
    do_add_members,
    do_create_group,
    do_get_or_create_direct,
    do_join_channel,
    do_remove_member,
    do_set_role,
    do_update_conversation,
    do_update_my_settings,
)
from messaging.fanout import is_large
from messaging.models import Conversation, Membership
from messaging.payloads import conversation_payload, user_payload

from .common import (
    AUTH_ERRORS,
    CONVERSATION_ID,
    AuthenticatedRequest,
    ConversationPagination,
    E,
    MemberPagination,
    id_param,
    paginate,
)
from .fields import parse

# The members list's order: owners, admins, members.
ROLE_ORDER = Case(*(When(role=role, then=Value(rank)) for rank, role in enumerate(Membership.Role.values)))
from .serializers import (
    AddMembersResponseSerializer,
    AddMembersSerializer,
    ConversationCreateSerializer,
    ConversationSerializer,
    ConversationUpdateSerializer,
    MemberSerializer,
    MembershipStateSerializer,
    MySettingsSerializer,
    RoleSerializer,
)


class ConversationsView(APIView):
    pagination_class = ConversationPagination

    @extend_schema(
        operation_id="conversations_list", responses={200: ConversationSerializer(many=True), **AUTH_ERRORS},
        description="Your conversations, most recent activity first.",
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        paginator = self.pagination_class()
        page = paginate(paginator, selectors.my_memberships(request.user), request, self)
        return paginator.get_paginated_response([conversation_payload(m.conversation, m) for m in page])

    @extend_schema(
        operation_id="conversations_create", request=ConversationCreateSerializer,
        responses={201: ConversationSerializer, 200: ConversationSerializer, 400: E, **AUTH_ERRORS},
        description="201 with a new conversation; 200 with the existing direct conversation of the pair.",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        data = parse(ConversationCreateSerializer, request.data)
        if data["kind"] == Conversation.Kind.DIRECT:
            result = do_get_or_create_direct(creator=request.user, other_user_id=data["members"][0])
        else:
            result = do_create_group(creator=request.user, title=data.get("title"), member_ids=data["members"],
                                     kind=data["kind"], public=data["public"])
        return Response(conversation_payload(result.conversation, result.membership),
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class ConversationView(APIView):
    @extend_schema(
        operation_id="conversations_retrieve", parameters=[CONVERSATION_ID],
        responses={200: ConversationSerializer, 404: E, **AUTH_ERRORS},
        description="Yours, or a public channel (then `me` is null).",
    )
    def get(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        conversation, membership = access_conversation(request.user, conversation_id)
        return Response(conversation_payload(conversation, membership))

    @extend_schema(
        operation_id="conversations_update", parameters=[CONVERSATION_ID], request=ConversationUpdateSerializer,
        responses={200: ConversationSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="Owners and admins of a group or channel change its `title` and `topic` (403 for other "
                    "members and in direct conversations); every member's devices get `conversation.updated`.",
    )
    def patch(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        data = parse(ConversationUpdateSerializer, request.data)
        conversation, membership = do_update_conversation(
            actor=request.user, conversation_id=conversation_id,
            title=data.get("title", UNSET), topic=data.get("topic", UNSET))
        return Response(conversation_payload(conversation, membership))


class MySettingsView(APIView):
    @extend_schema(
        operation_id="conversations_my_settings", parameters=[CONVERSATION_ID], request=MySettingsSerializer,
        responses={200: MembershipStateSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="Your notification settings here: `notify` (all, mentions, none) and `muted_until` (a time, "
                    "or null to unmute). Offline pushes follow them (a mention still notifies under `mentions`; "
                    "nothing does while muted). Answers your `me`; your other devices get "
                    "`conversation.updated`.",
    )
    def patch(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        data = parse(MySettingsSerializer, request.data)
        return Response(do_update_my_settings(user=request.user, conversation_id=conversation_id,
                                              notify=data.get("notify", UNSET),
                                              muted_until=data.get("muted_until", UNSET)))


class MembersView(APIView):
    pagination_class = MemberPagination

    @extend_schema(operation_id="conversations_members_list", parameters=[CONVERSATION_ID],
                   responses={200: MemberSerializer(many=True), 404: E, **AUTH_ERRORS})
    def get(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        conversation, membership = access_conversation(request.user, conversation_id)
        # Owners first, then admins, then members, each by when they joined.
        members = (Membership.objects.filter(conversation=conversation).select_related("user")
                   .order_by(ROLE_ORDER, "joined_at", "id"))
        paginator = self.pagination_class()
        page = paginate(paginator, members, request, self)
        # A presence snapshot, so a client that just connected need not wait for the next
        # presence frame; only where those frames go (members of small conversations).
        online = None
        seen: dict[int, datetime] = {}
        if membership is not None and not is_large(conversation.member_count):
            online = presence.online_user_ids([m.user_id for m in page])
            seen = presence.last_seen([m.user_id for m in page if m.user_id not in online])
        # Marks are for members, as /receipts is: a public channel's outsiders see who is in it.
        marks = membership is not None
        return paginator.get_paginated_response([
            member_payload(m, marks=marks, online=None if online is None else m.user_id in online,
                           last_seen_at=seen.get(m.user_id))
            for m in page])

    @extend_schema(
        operation_id="conversations_members_add", parameters=[CONVERSATION_ID], request=AddMembersSerializer,
        responses={200: AddMembersResponseSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="Owners and admins of groups and channels add members (403 otherwise).",
    )
    def post(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        data = parse(AddMembersSerializer, request.data)
        added = do_add_members(actor=request.user, conversation_id=conversation_id, user_ids=data["user_ids"])
        return Response({"added": added})


def member_payload(membership: Membership, *, marks: bool, online: bool | None,
                   last_seen_at: datetime | None) -> dict[str, Any]:
    return {
        "user": user_payload(membership.user), "role": membership.role, "joined_at": membership.joined_at,
        "delivered_seq": membership.delivered_seq if marks else None,
        "read_seq": membership.read_seq if marks else None,
        "online": online, "last_seen_at": last_seen_at,
    }


class MemberView(APIView):
    @extend_schema(
        operation_id="conversations_members_set_role",
        parameters=[CONVERSATION_ID, id_param("user_id", "user")], request=RoleSerializer,
        responses={200: MemberSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="The owner makes another member an `admin`, or an admin a `member` again (403 for anyone "
                    "else).",
    )
    def patch(self, request: AuthenticatedRequest, conversation_id: int, user_id: int) -> Response:
        data = parse(RoleSerializer, request.data)
        member = do_set_role(actor=request.user, conversation_id=conversation_id, user_id=user_id, role=data["role"])
        return Response(member_payload(member, marks=True, online=None, last_seen_at=None))

    @extend_schema(
        operation_id="conversations_members_remove",
        parameters=[CONVERSATION_ID, id_param("user_id", "user")], responses={204: None, 404: E, **AUTH_ERRORS},
        description="Leave (your own id; an owner's ownership passes to the longest-standing admin, else "
                    "member), or, as owner or admin, remove someone whose role is below yours (403 otherwise).",
    )
    def delete(self, request: AuthenticatedRequest, conversation_id: int, user_id: int) -> Response:
        do_remove_member(actor=request.user, conversation_id=conversation_id, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JoinView(APIView):
    @extend_schema(
        operation_id="conversations_join", parameters=[CONVERSATION_ID], request=None,
        responses={201: ConversationSerializer, 200: ConversationSerializer, 404: E, **AUTH_ERRORS},
        description="Join a public channel (201); 200 if you are a member already.",
    )
    def post(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        result = do_join_channel(user=request.user, conversation_id=conversation_id)
        return Response(conversation_payload(result.conversation, result.membership),
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
