"""Conversations and their members (CONTRACT, "Conversations"). Thin edges: parse strictly,
authorize with ``access_*``, delegate to messaging.conversations, render with the payloads
the WebSocket shares. A private conversation that is not yours is a 404, like one that does
not exist.
"""
from __future__ import annotations

from datetime import datetime

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import presence, selectors
from messaging.access import access_conversation
from messaging.conversations import (
    do_add_members,
    do_create_group,
    do_get_or_create_direct,
    do_join_channel,
    do_remove_member,
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
from .serializers import (
    AddMembersResponseSerializer,
    AddMembersSerializer,
    ConversationCreateSerializer,
    ConversationSerializer,
    MemberSerializer,
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


class MembersView(APIView):
    pagination_class = MemberPagination

    @extend_schema(operation_id="conversations_members_list", parameters=[CONVERSATION_ID],
                   responses={200: MemberSerializer(many=True), 404: E, **AUTH_ERRORS})
    def get(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        conversation, membership = access_conversation(request.user, conversation_id)
        members = Membership.objects.filter(conversation=conversation).select_related("user").order_by("id")
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
        return paginator.get_paginated_response([{
            "user": user_payload(m.user), "role": m.role, "joined_at": m.joined_at,
            "delivered_seq": m.delivered_seq if marks else None, "read_seq": m.read_seq if marks else None,
            "online": None if online is None else m.user_id in online,
            "last_seen_at": seen.get(m.user_id),
        } for m in page])

    @extend_schema(
        operation_id="conversations_members_add", parameters=[CONVERSATION_ID], request=AddMembersSerializer,
        responses={200: AddMembersResponseSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="Owners and admins of groups and channels add members (403 otherwise).",
    )
    def post(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        data = parse(AddMembersSerializer, request.data)
        added = do_add_members(actor=request.user, conversation_id=conversation_id, user_ids=data["user_ids"])
        return Response({"added": added})


class MemberView(APIView):
    @extend_schema(
        operation_id="conversations_members_remove",
        parameters=[CONVERSATION_ID, id_param("user_id", "user")], responses={204: None, 404: E, **AUTH_ERRORS},
        description="Leave (your own id), or remove someone as owner or admin.",
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
