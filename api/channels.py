"""The public channel directory: ``GET /api/v1/channels`` (an extension of the contract).

Public channels are joinable by anyone (``POST /api/v1/conversations/{id}/join``), so the
directory lists them for every signed-in user, biggest first, with ``me`` set where the
viewer is already a member. Private conversations never appear here.
"""
from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.models import Conversation, Membership, User
from messaging.payloads import conversation_payload

from .common import AUTH_ERRORS, AuthenticatedRequest, ConversationPagination, paginate
from .fields import ErrorSerializer, RequestSerializer, StrictCharField, parse
from .serializers import ConversationSerializer


def public_channels(*, search: str) -> QuerySet[Conversation]:
    channels = Conversation.objects.filter(kind=Conversation.Kind.CHANNEL, public=True)
    if search.strip():
        channels = channels.filter(title__icontains=search.strip())
    return channels.order_by("-member_count", "-last_activity_at", "-id")


def memberships_in(user: User, conversations: list[Conversation]) -> dict[int, Membership]:
    """The viewer's memberships among one page of conversations, in one query."""
    rows = Membership.objects.filter(user=user, conversation__in=conversations)
    return {m.conversation_id: m for m in rows}


class ChannelSearchQuerySerializer(RequestSerializer):
    search = StrictCharField(required=False, allow_blank=True, max_length=200,
                             help_text="Part of a channel title; empty lists them all.")


class PublicChannelsView(APIView):
    pagination_class = ConversationPagination

    @extend_schema(
        operation_id="channels_list", parameters=[ChannelSearchQuerySerializer],
        responses={200: ConversationSerializer(many=True), 400: ErrorSerializer, **AUTH_ERRORS},
        description="Public channels anyone can join, most members first; `me` is null where you are "
                    "not a member. Paginated like the conversation list.",
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        query = parse(ChannelSearchQuerySerializer, request.query_params)
        paginator = self.pagination_class()
        page = paginate(paginator, public_channels(search=query.get("search", "")), request, self)
        mine = memberships_in(request.user, page)
        return paginator.get_paginated_response([conversation_payload(c, mine.get(c.pk)) for c in page])
